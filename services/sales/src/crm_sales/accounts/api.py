"""REST API of accounts: the organisations sales sells to, made and linked by lead conversions, with their
contacts (customer ids); each person only the accounts they see."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from crm_sales.accounts import domain, repository
from crm_shared.api import Cursor, IdInPath, Limit, Page, keyset_page
from crm_shared.events import CustomerId
from crm_shared.problems import Problem
from crm_shared.security import OWNED, Principal, UserId, requires
from crm_shared.service import StoreDep

router = APIRouter(prefix="/v1", tags=["accounts"])

AccountReader = Annotated[Principal, requires("opportunities:read")]


class AccountView(BaseModel):
    account_id: str
    name: str
    industry: str | None
    company_size: int | None
    region: str | None
    territory: str | None
    owner_id: str | None
    created_at: datetime
    contacts: list[str]

    @classmethod
    def of(cls, a: domain.Account) -> AccountView:
        return cls(**{**a.__dict__, "contacts": list(a.contacts)})


@router.get(
    "/accounts",
    response_model=Page[AccountView],
    summary="Accounts the caller sees, newest first (`contact`: the accounts a customer is a contact of)",
)
async def list_accounts(
    principal: AccountReader,
    store: StoreDep,
    owner_id: Annotated[UserId | None, Query()] = None,
    contact: Annotated[CustomerId | None, Query(description="A customer id among the contacts.")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[AccountView]:
    query: dict[str, Any] = {}
    if owner_id is not None:
        query["owner_id"] = owner_id
    if contact is not None:
        query["contacts"] = contact
    docs, next_cursor = await keyset_page(
        store.db[repository.ACCOUNTS],
        OWNED.restrict(principal, query),
        time_field="created_at",
        limit=limit,
        cursor=cursor,
        newest_first=True,
    )
    return Page[AccountView](items=[AccountView.of(repository.from_document(d)) for d in docs], next_cursor=next_cursor)


@router.get(
    "/accounts/{account_id}",
    response_model=AccountView,
    summary="One account and its contacts",
    responses={404: {"description": "No such account, or not one the caller sees"}},
)
async def get_account(principal: AccountReader, store: StoreDep, account_id: IdInPath) -> AccountView:
    doc = await store.db[repository.ACCOUNTS].find_one(OWNED.restrict(principal, {"_id": account_id}))
    if doc is None:
        raise Problem(404, "Account not found", f"no account {account_id}")
    return AccountView.of(repository.from_document(doc))
