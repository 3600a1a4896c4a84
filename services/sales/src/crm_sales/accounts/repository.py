"""The sales database's `accounts` collection: `_id`, `name`, `name_key` (the name as two spellings of it share
it), `industry`, `company_size`, `region`, `territory`, `owner_id`, `created_at` and `contacts` (customer ids,
each once: added with $addToSet)."""

from collections.abc import Mapping
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel

from crm_sales.accounts.domain import Account, name_key
from crm_shared.store import IndexSpec, UnitOfWork

ACCOUNTS = "accounts"

_NEWEST = [("created_at", DESCENDING), ("_id", DESCENDING)]

INDEXES = (
    IndexSpec(ACCOUNTS, IndexModel(_NEWEST, name="newest_created_first")),
    # A person's list is an $or of their owners and their territories: one index per branch.
    IndexSpec(ACCOUNTS, IndexModel([("owner_id", ASCENDING), *_NEWEST], name="by_owner_created")),
    IndexSpec(ACCOUNTS, IndexModel([("territory", ASCENDING), *_NEWEST], name="by_territory_created")),
    IndexSpec(ACCOUNTS, IndexModel([("contacts", ASCENDING), *_NEWEST], name="by_contact_created")),
    # A converted lead's company is the account of that name, if there is one.
    IndexSpec(ACCOUNTS, IndexModel([("name_key", ASCENDING)], name="by_name")),
)


def to_document(account: Account) -> dict[str, Any]:
    return {
        "_id": account.account_id,
        "name": account.name,
        "name_key": name_key(account.name),
        "industry": account.industry,
        "company_size": account.company_size,
        "region": account.region,
        "territory": account.territory,
        "owner_id": account.owner_id,
        "created_at": account.created_at,
        "contacts": list(account.contacts),
    }


def from_document(doc: Mapping[str, Any]) -> Account:
    return Account(
        account_id=doc["_id"],
        name=doc["name"],
        created_at=doc["created_at"],
        industry=doc.get("industry"),
        company_size=doc.get("company_size"),
        region=doc.get("region"),
        territory=doc.get("territory"),
        owner_id=doc.get("owner_id"),
        contacts=tuple(doc.get("contacts", ())),
    )


async def get_account(uow: UnitOfWork, query: dict[str, Any]) -> Account | None:
    doc = await uow.db[ACCOUNTS].find_one(query, session=uow.session)
    return from_document(doc) if doc else None


async def insert_account(uow: UnitOfWork, account: Account) -> None:
    await uow.db[ACCOUNTS].insert_one(to_document(account), session=uow.session)


async def add_contact(uow: UnitOfWork, account_id: str, customer_id: str) -> None:
    """Link the customer to the account as a contact (a second link is no change)."""
    await uow.db[ACCOUNTS].update_one(
        {"_id": account_id}, {"$addToSet": {"contacts": customer_id}}, session=uow.session
    )
