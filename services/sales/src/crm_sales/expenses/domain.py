"""Expenses a sales person records against an account or an opportunity, the report per owner and period, and
the cost of sale of an opportunity. Pure: no I/O, no framework; money is Decimal, reported in the reporting
currency."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Literal, get_args

ExpenseCategory = Literal["travel", "lodging", "meals", "mileage", "entertainment", "samples", "other"]
CATEGORIES: tuple[ExpenseCategory, ...] = get_args(ExpenseCategory)


class ExpenseRefused(Exception):
    """Not an expense sales can keep: tied to nothing, or spent in the future."""


@dataclass(frozen=True)
class Expense:
    expense_id: str
    owner_id: str | None
    category: ExpenseCategory
    amount: Decimal
    currency: str
    spent_on: date
    created_at: datetime
    account_id: str | None = None
    opportunity_id: str | None = None
    territory: str | None = None
    description: str | None = None
    receipt_ref: str | None = None


def record(expense: Expense, today: date) -> Expense:
    """The expense, checked: tied to an account or an opportunity, spent on or before today, more than 0."""
    if expense.account_id is None and expense.opportunity_id is None:
        raise ExpenseRefused("an expense is recorded against an account or an opportunity: name one")
    if expense.spent_on > today:
        raise ExpenseRefused(f"spent_on {expense.spent_on} is in the future: record an expense once it is spent")
    if expense.amount <= 0:
        raise ExpenseRefused("an expense's amount is above 0")
    return expense


@dataclass(frozen=True)
class Report:
    count: int
    total: Decimal
    by_category: dict[ExpenseCategory, Decimal]


def report(converted: Iterable[tuple[ExpenseCategory, Decimal]]) -> Report:
    """Totals of expenses already converted to the reporting currency, per category and in all."""
    by_category = dict.fromkeys(CATEGORIES, Decimal(0))
    count = 0
    for category, amount in converted:
        by_category[category] += amount
        count += 1
    return Report(count, sum(by_category.values(), Decimal(0)), by_category)


@dataclass(frozen=True)
class CostOfSale:
    expenses: Decimal
    won_amount: Decimal | None
    """The opportunity's amount once won; None while it is not."""
    ratio: Decimal | None
    """expenses / won amount, 4 decimal places; None unless won with an amount above 0."""


def cost_of_sale(expenses: Decimal, won_amount: Decimal | None) -> CostOfSale:
    ratio = None
    if won_amount is not None and won_amount > 0:
        ratio = (expenses / won_amount).quantize(Decimal("0.0001"), ROUND_HALF_EVEN)
    return CostOfSale(expenses, won_amount, ratio)
