"""Use cases of expenses: record one against an account or opportunity the caller sees, read them, the report
per owner and period, and the cost of sale of an opportunity; each person only the expenses they see."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal
from typing import Any

from crm_sales.accounts.repository import ACCOUNTS
from crm_sales.expenses import domain, repository
from crm_sales.opportunities.repository import OPPORTUNITIES
from crm_shared.money import ExchangeRates, UnknownCurrency
from crm_shared.security import OWNED, Principal
from crm_shared.store import Store, UnitOfWork

EXPENSE_ACCESS = OWNED
"""A person sees the expenses they recorded, their team's and their territories'; API keys and those who see
every record see every expense."""


class UnknownLink(LookupError):
    """The expense names an account or opportunity there is none of (or one the caller does not see)."""


class ExpenseIdTaken(Exception):
    """The Idempotency-Key (the expense id) recorded another expense."""


def seen_by(principal: Principal, query: dict[str, Any]) -> dict[str, Any]:
    return EXPENSE_ACCESS.restrict(principal, query)


async def record(
    store: Store, expense: domain.Expense, *, today: date, principal: Principal
) -> tuple[domain.Expense, bool]:
    """Keep the expense (its territory that of its opportunity or account); (the one kept before, False) for a
    repeated request. Raises ExpenseRefused, UnknownLink or ExpenseIdTaken."""
    domain.record(expense, today)

    async def work(uow: UnitOfWork) -> tuple[domain.Expense, bool]:
        found = await uow.db[repository.EXPENSES].find_one({"_id": expense.expense_id}, session=uow.session)
        if found is not None:
            kept = repository.from_document(found)
            if replace(kept, created_at=expense.created_at, territory=None) != replace(expense, territory=None):
                raise ExpenseIdTaken(f"expense {expense.expense_id} exists with other content")
            return kept, False
        territory = None
        for what, collection, key in (
            ("opportunity", OPPORTUNITIES, expense.opportunity_id),
            ("account", ACCOUNTS, expense.account_id),
        ):
            if key is None:
                continue
            doc = await uow.db[collection].find_one(
                OWNED.restrict(principal, {"_id": key}), {"territory": 1}, session=uow.session
            )
            if doc is None:
                raise UnknownLink(f"no {what} {key}")
            territory = territory or doc.get("territory")
        kept = replace(expense, territory=territory)
        await uow.db[repository.EXPENSES].insert_one(repository.to_document(kept), session=uow.session)
        return kept, True

    return await store.transaction_racing(work)


async def find(store: Store, expense_id: str, *, principal: Principal) -> domain.Expense | None:
    doc = await store.db[repository.EXPENSES].find_one(seen_by(principal, {"_id": expense_id}))
    return repository.from_document(doc) if doc else None


def _converted(expense: domain.Expense, rates: ExchangeRates) -> Decimal | None:
    try:
        return rates.convert(expense.amount, expense.currency)
    except UnknownCurrency:
        return None


async def report(
    store: Store, query: dict[str, Any], rates: ExchangeRates, *, principal: Principal
) -> tuple[domain.Report, list[str]]:
    """The expenses matching `query` the caller sees, totalled in the reporting currency; and the ids of those
    left out because their currency has no rate any more."""
    converted: list[tuple[domain.ExpenseCategory, Decimal]] = []
    unpriced: list[str] = []
    async for doc in store.db[repository.EXPENSES].find(seen_by(principal, query)):
        expense = repository.from_document(doc)
        amount = _converted(expense, rates)
        if amount is None:
            unpriced.append(expense.expense_id)
        else:
            converted.append((expense.category, amount))
    return domain.report(converted), sorted(unpriced)


async def cost_of_sale(
    store: Store, opportunity_id: str, rates: ExchangeRates, *, principal: Principal
) -> domain.CostOfSale | None:
    """The expenses recorded against the opportunity beside what it was won for, both in the reporting currency;
    None when the caller sees no such opportunity."""
    opportunity = await store.db[OPPORTUNITIES].find_one(OWNED.restrict(principal, {"_id": opportunity_id}))
    if opportunity is None:
        return None
    spent = Decimal(0)
    async for doc in store.db[repository.EXPENSES].find({"opportunity_id": opportunity_id}):
        amount = _converted(repository.from_document(doc), rates)
        spent += amount or Decimal(0)
    won = None
    if opportunity.get("status") == "won":
        try:
            won = rates.convert(opportunity["amount"], opportunity["currency"])
        except UnknownCurrency:
            won = None
    return domain.cost_of_sale(spent, won)
