"""Expenses, pure: what an expense must be, the report's sums, the cost of sale."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm_sales.expenses import domain

TODAY = date(2026, 12, 3)


def expense(**fields: object) -> domain.Expense:
    base: dict[str, object] = {
        "expense_id": "EXP-1",
        "owner_id": "rep-1",
        "category": "travel",
        "amount": Decimal("10.00"),
        "currency": "EUR",
        "spent_on": TODAY,
        "created_at": datetime(2026, 12, 3, tzinfo=UTC),
        "account_id": "A-1",
    }
    return domain.Expense(**(base | fields))  # type: ignore[arg-type]


def test_an_expense_is_tied_to_an_account_or_opportunity_spent_and_above_zero() -> None:
    assert domain.record(expense(), TODAY) == expense()
    assert domain.record(expense(account_id=None, opportunity_id="O-1"), TODAY).opportunity_id == "O-1"
    for bad, words in (
        ({"account_id": None}, "against an account or an opportunity"),
        ({"spent_on": date(2026, 12, 4)}, "is in the future"),
        ({"amount": Decimal(0)}, "above 0"),
    ):
        with pytest.raises(domain.ExpenseRefused, match=words):
            domain.record(expense(**bad), TODAY)


@given(st.lists(st.tuples(st.sampled_from(domain.CATEGORIES), st.decimals(0, 100_000, places=2)), max_size=50))
def test_the_report_is_the_sum_of_its_categories(items: list[tuple[domain.ExpenseCategory, Decimal]]) -> None:
    found = domain.report(items)
    assert found.count == len(items)
    assert found.total == sum((a for _, a in items), Decimal(0)) == sum(found.by_category.values(), Decimal(0))
    for category in domain.CATEGORIES:
        assert found.by_category[category] == sum((a for c, a in items if c == category), Decimal(0))


def test_the_cost_of_sale_is_a_ratio_only_of_a_won_amount() -> None:
    assert domain.cost_of_sale(Decimal("100"), Decimal("2000")).ratio == Decimal("0.0500")
    assert domain.cost_of_sale(Decimal("100"), None).ratio is None
    assert domain.cost_of_sale(Decimal("100"), Decimal(0)).ratio is None
