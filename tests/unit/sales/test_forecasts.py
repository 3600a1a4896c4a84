"""Forecast arithmetic, pure: periods, the roll-up per forecast category, weighted pipeline, attainment against
the quota, and accuracy; hypothesis checks the money sums whatever the deals."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm_sales.forecasts import domain

Q1 = domain.Period.parse("2027-Q1")


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2027", date(2027, 1, 1), date(2028, 1, 1)),
        ("2027-Q1", date(2027, 1, 1), date(2027, 4, 1)),
        ("2027-Q4", date(2027, 10, 1), date(2028, 1, 1)),
        ("2027-02", date(2027, 2, 1), date(2027, 3, 1)),
        ("2027-12", date(2027, 12, 1), date(2028, 1, 1)),
    ],
)
def test_a_period_is_a_year_a_quarter_or_a_month(text: str, start: date, end: date) -> None:
    period = domain.Period.parse(text)
    assert (period.start, period.end, period.name) == (start, end, text)
    assert period.start_at == datetime(start.year, start.month, start.day, tzinfo=UTC)


@pytest.mark.parametrize("text", ["2027-Q5", "2027-13", "27", "2027-1", "Q1", "3000", "2027-Q1x"])
def test_anything_else_is_not_a_period(text: str) -> None:
    with pytest.raises(domain.PeriodInvalid, match=r"is not a year \(2027\), a quarter"):
        domain.Period.parse(text)


def deal(amount: str, probability: str, category: str, n: int = 1) -> domain.OpenDeal:
    return domain.OpenDeal(f"O-{n}", Decimal(amount), Decimal(probability), category)  # type: ignore[arg-type]


def test_the_roll_up_of_a_period() -> None:
    deals = [
        deal("1000.00", "0.1", "pipeline"),
        deal("2000.00", "0.6", "best_case"),
        deal("3000.00", "0.8", "commit"),
        deal("500.00", "0.3", "omitted"),
        deal("333.33", "0.3333", "pipeline"),
    ]
    f = domain.forecast(Q1, deals, [Decimal("4000.00")], Decimal("10000.00"))
    assert f.categories["pipeline"] == domain.CategoryTotal(2, Decimal("1333.33"), Decimal("211.10"))
    assert f.categories["closed"] == domain.CategoryTotal(1, Decimal("4000.00"), Decimal("4000.00"))
    assert f.categories["omitted"].weighted == Decimal("150.00")
    # Weighted: 100 + 111.10 (333.33 x 0.3333 = 111.098889) + 1200 + 2400; the omitted deal does not count.
    assert f.weighted_pipeline == Decimal("3811.10")
    assert (f.closed_won, f.commit, f.best_case) == (Decimal("4000.00"), Decimal("7000.00"), Decimal("9000.00"))
    assert (f.attainment, f.gap) == (Decimal("0.4000"), Decimal("6000.00"))
    over = domain.forecast(Q1, [], [Decimal("12000")], Decimal("10000"))
    assert (over.attainment, over.gap) == (Decimal("1.2000"), Decimal(0))
    assert domain.forecast(Q1, deals, [], None).attainment is None
    assert domain.forecast(Q1, deals, [], Decimal(0)).attainment is None


amounts = st.decimals(min_value=0, max_value=10_000_000, places=2, allow_nan=False, allow_infinity=False)
probabilities = st.integers(min_value=0, max_value=10_000).map(lambda n: Decimal(n) / 10_000)
categories = st.sampled_from(["pipeline", "best_case", "commit", "omitted"])


@given(
    st.lists(st.tuples(amounts, probabilities, categories), max_size=40),
    st.lists(amounts, max_size=10),
    st.none() | amounts,
)
def test_the_totals_add_up_whatever_the_deals(
    open_deals: list[tuple[Decimal, Decimal, str]], won: list[Decimal], quota: Decimal | None
) -> None:
    deals = [deal(str(a), str(p), c, n) for n, (a, p, c) in enumerate(open_deals)]
    f = domain.forecast(Q1, deals, won, quota)
    assert sum(t.count for t in f.categories.values()) == len(deals) + len(won)
    assert sum((t.amount for t in f.categories.values()), Decimal(0)) == sum(a for a, _, _ in open_deals) + sum(
        won, Decimal(0)
    )
    assert f.closed_won == sum(won, Decimal(0))
    # Weighted never exceeds the amount, per category and in all; each deal rounds on its own to cents.
    for total in f.categories.values():
        assert 0 <= total.weighted <= total.amount
        assert total.weighted == total.weighted.quantize(domain.CENT)
    assert f.weighted_pipeline <= f.best_case - f.closed_won + f.categories["pipeline"].amount
    assert f.closed_won <= f.commit <= f.best_case
    if quota is not None:
        assert f.gap == max(quota - f.closed_won, Decimal(0))
        assert f.gap + min(f.closed_won, quota) == quota


def test_accuracy_says_how_far_the_forecast_was_from_what_was_paid() -> None:
    at = datetime(2027, 1, 2, tzinfo=UTC)
    a = domain.accuracy(Q1, at, Decimal("3000"), Decimal("1000"), Decimal("2500"), Decimal("5000"))
    assert (a.forecast_total, a.error) == (Decimal("4000"), Decimal("-0.2000"))
    assert domain.accuracy(Q1, at, Decimal("1"), Decimal("0"), Decimal("0"), Decimal("0")).error is None
    assert Q1.is_over(datetime(2027, 4, 1, tzinfo=UTC)) and not Q1.is_over(datetime(2027, 3, 31, 23, tzinfo=UTC))
    with pytest.raises(ValueError, match="a probability is from 0 to 1"):
        domain.probability(1.5)
    assert domain.probability(0.33333) == Decimal("0.3333")
