"""REST API of expenses: record, read and list them, the report per owner and period, and an opportunity's
cost of sale."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from crm_sales.expenses import domain, handlers, repository
from crm_sales.web import parse_period, rates_of
from crm_shared.api import Cursor, IdempotencyKey, IdInPath, Limit, Page, command_event_id, keyset_page
from crm_shared.events import Currency, EntityId, Line, Money, Text, utc_now
from crm_shared.problems import Problem
from crm_shared.security import Principal, UserId, requires
from crm_shared.service import StoreDep
from crm_shared.store import as_stored

router = APIRouter(prefix="/v1", tags=["expenses"])

ExpenseReader = Annotated[Principal, requires("expenses:read")]
ExpenseWriter = Annotated[Principal, requires("expenses:write")]


class ExpenseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    category: domain.ExpenseCategory
    amount: Money
    currency: Currency
    spent_on: date
    account_id: EntityId | None = None
    opportunity_id: EntityId | None = None
    description: Text | None = Field(default=None, max_length=500)
    receipt_ref: Line | None = Field(
        default=None, min_length=1, max_length=200, description="Where the receipt is: a document id or a URL."
    )


class ExpenseView(BaseModel):
    expense_id: str
    owner_id: str | None
    category: domain.ExpenseCategory
    amount: Decimal
    currency: str
    spent_on: date
    account_id: str | None
    opportunity_id: str | None
    territory: str | None
    description: str | None
    receipt_ref: str | None
    created_at: datetime

    @classmethod
    def of(cls, e: domain.Expense) -> ExpenseView:
        return cls(**e.__dict__)


EXPENSE_EXAMPLE = {
    "category": "travel",
    "amount": "86.40",
    "currency": "EUR",
    "spent_on": "2026-11-30",
    "opportunity_id": "O-5001",
    "receipt_ref": "receipts/2026/11/4411.pdf",
}


@router.post(
    "/expenses",
    response_model=ExpenseView,
    status_code=status.HTTP_201_CREATED,
    summary="Record an expense against an account or an opportunity (the caller's own)",
    responses={
        200: {"description": "Already recorded with this Idempotency-Key"},
        409: {"description": "The Idempotency-Key recorded another expense"},
        422: {"description": "Invalid: tied to nothing, an unknown account or opportunity, spent in the future"},
    },
)
async def record_expense(
    request: Request,
    principal: ExpenseWriter,
    store: StoreDep,
    response: Response,
    body: Annotated[ExpenseBody, Body(examples=[EXPENSE_EXAMPLE])],
    idempotency_key: IdempotencyKey = None,
) -> ExpenseView:
    if not rates_of(request).knows(body.currency):
        raise Problem(
            422,
            "Currency not accepted",
            f"no exchange rate for {body.currency}",
            accepted_currencies=list(rates_of(request).currencies),
        )
    now = utc_now()
    expense = domain.Expense(
        expense_id=f"EXP-{command_event_id('sales/expenses', idempotency_key)}",
        owner_id=None if principal.kind == "api_key" else principal.id,
        created_at=as_stored(now),
        **body.model_dump(),
    )
    try:
        kept, created = await handlers.record(store, expense, today=now.date(), principal=principal)
    except domain.ExpenseRefused as exc:
        raise Problem(422, "Expense invalid", str(exc)) from exc
    except handlers.UnknownLink as exc:
        raise Problem(422, "Unknown link", str(exc)) from exc
    except handlers.ExpenseIdTaken as exc:
        raise Problem(409, "Idempotency-Key reused", str(exc)) from exc
    if not created:
        response.status_code = status.HTTP_200_OK
    return ExpenseView.of(kept)


Owner = Annotated[UserId | None, Query()]
PeriodQuery = Annotated[
    str | None, Query(max_length=7, description="A year (2027), a quarter (2027-Q1) or a month (2027-01).")
]


def _query(
    owner_id: str | None,
    account_id: str | None,
    opportunity_id: str | None,
    category: str | None,
    period: str | None,
) -> dict[str, Any]:
    query: dict[str, Any] = {
        k: v
        for k, v in {
            "owner_id": owner_id,
            "account_id": account_id,
            "opportunity_id": opportunity_id,
            "category": category,
        }.items()
        if v is not None
    }
    if period is not None:
        parsed = parse_period(period)
        query["spent_at"] = {"$gte": parsed.start_at, "$lt": parsed.end_at}
    return query


@router.get(
    "/expenses",
    response_model=Page[ExpenseView],
    summary="Expenses the caller sees, the latest spent first",
)
async def list_expenses(
    principal: ExpenseReader,
    store: StoreDep,
    owner_id: Owner = None,
    account_id: Annotated[EntityId | None, Query()] = None,
    opportunity_id: Annotated[EntityId | None, Query()] = None,
    category: Annotated[domain.ExpenseCategory | None, Query()] = None,
    period: PeriodQuery = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[ExpenseView]:
    query = _query(owner_id, account_id, opportunity_id, category, period)
    docs, next_cursor = await keyset_page(
        store.db[repository.EXPENSES],
        handlers.seen_by(principal, query),
        time_field="spent_at",
        limit=limit,
        cursor=cursor,
        newest_first=True,
    )
    return Page[ExpenseView](items=[ExpenseView.of(repository.from_document(d)) for d in docs], next_cursor=next_cursor)


class ReportView(BaseModel):
    owner_id: str | None
    period: str | None
    currency: str = Field(description="The reporting currency.")
    count: int
    total: Decimal
    by_category: dict[domain.ExpenseCategory, Decimal]
    unpriced: list[str] = Field(description="Expenses left out: no exchange rate for their currency any more.")


@router.get(
    "/expenses/report",
    response_model=ReportView,
    summary="Expenses per category and in all, in the reporting currency, for an owner and a period",
    responses={422: {"description": "Not a period"}},
)
async def expense_report(
    request: Request,
    principal: ExpenseReader,
    store: StoreDep,
    owner_id: Owner = None,
    period: PeriodQuery = None,
) -> ReportView:
    rates = rates_of(request)
    found, unpriced = await handlers.report(
        store, _query(owner_id, None, None, None, period), rates, principal=principal
    )
    return ReportView(
        owner_id=owner_id,
        period=period,
        currency=rates.reporting_currency,
        count=found.count,
        total=found.total,
        by_category=found.by_category,
        unpriced=unpriced,
    )


@router.get(
    "/expenses/{expense_id}",
    response_model=ExpenseView,
    summary="One expense",
    responses={404: {"description": "No such expense, or not one the caller sees"}},
)
async def get_expense(principal: ExpenseReader, store: StoreDep, expense_id: IdInPath) -> ExpenseView:
    expense = await handlers.find(store, expense_id, principal=principal)
    if expense is None:
        raise Problem(404, "Expense not found", f"no expense {expense_id}")
    return ExpenseView.of(expense)


class CostOfSaleView(BaseModel):
    opportunity_id: str
    currency: str
    expenses: Decimal = Field(description="The expenses recorded against the opportunity.")
    won_amount: Decimal | None = Field(description="What it was won for; null while it is not won.")
    ratio: Decimal | None = Field(description="expenses / won_amount.")


@router.get(
    "/opportunities/{opportunity_id}/cost-of-sale",
    response_model=CostOfSaleView,
    summary="An opportunity's cost of sale: its expenses beside what it was won for",
    responses={404: {"description": "No such opportunity, or not one the caller sees"}},
)
async def get_cost_of_sale(
    request: Request, principal: ExpenseReader, store: StoreDep, opportunity_id: IdInPath
) -> CostOfSaleView:
    rates = rates_of(request)
    found = await handlers.cost_of_sale(store, opportunity_id, rates, principal=principal)
    if found is None:
        raise Problem(404, "Opportunity not found", f"no opportunity {opportunity_id}")
    return CostOfSaleView(opportunity_id=opportunity_id, currency=rates.reporting_currency, **found.__dict__)
