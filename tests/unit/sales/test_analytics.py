"""Conversion analytics, pure: lead to first order per group, win rate per stage, velocity, the 80/20 view."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from crm_sales.analytics import domain

T0 = datetime(2026, 10, 1, tzinfo=UTC)


def lead(n: int, source: str, owner: str | None, converted: bool, order_after_days: float | None) -> domain.LeadOutcome:
    first = T0 + timedelta(days=order_after_days) if order_after_days is not None else None
    return domain.LeadOutcome(f"L-{n}", source, owner, T0, converted, first)


def test_lead_to_first_order_per_source_with_the_median_days() -> None:
    outcomes = [
        lead(1, "referral", "ann", True, 2),
        lead(2, "referral", "ann", True, 10),
        lead(3, "referral", "bob", True, None),
        lead(4, "inbound", None, False, None),
    ]
    by_source = {r.key: r for r in domain.conversion(outcomes, lambda o: o.source)}
    assert by_source["referral"] == domain.ConversionRow("referral", 3, 3, 2, Decimal("0.6667"), 6.0)
    assert by_source["inbound"] == domain.ConversionRow("inbound", 1, 0, 0, Decimal("0.0000"), None)
    by_owner = domain.conversion(outcomes, lambda o: o.owner_id)
    assert [(r.key, r.leads) for r in by_owner] == [("ann", 2), (None, 1), ("bob", 1)]


def closed(won: bool, amount: str, stages: set[str], days: int) -> domain.Closed:
    return domain.Closed(won, Decimal(amount), frozenset(stages), T0, T0 + timedelta(days=days))


def test_win_rate_per_stage_and_the_pipelines_velocity() -> None:
    history = [
        closed(True, "1000", {"qualify", "propose"}, 10),
        closed(True, "3000", {"qualify", "propose"}, 30),
        closed(False, "500", {"qualify"}, 20),
        closed(False, "800", {"qualify", "propose"}, 20),
    ]
    rates = {r.stage_id: r for r in domain.stage_rates(history, ["qualify", "propose", "negotiate"])}
    assert (rates["qualify"].reached, rates["qualify"].won, rates["qualify"].win_rate) == (4, 2, Decimal("0.5000"))
    assert rates["propose"].win_rate == Decimal("0.6667")
    assert (rates["negotiate"].reached, rates["negotiate"].win_rate) == (0, None)
    v = domain.velocity(history, open_count=10)
    # 10 open x 0.5 x 2000 average won / 20 days.
    assert (v.win_rate, v.average_won_amount, v.average_cycle_days, v.per_day) == (
        Decimal("0.5000"),
        Decimal("2000.00"),
        Decimal("20.0"),
        Decimal("500.00"),
    )
    assert domain.velocity([], open_count=3).per_day is None


def test_the_80_20_view_of_revenue_by_account() -> None:
    revenue = {f"A-{n}": Decimal(amount) for n, amount in enumerate(["800", "100", "50", "30", "20"])}
    found = domain.pareto(revenue, {"A-0": "Big Co"})
    assert found.total == Decimal("1000")
    assert [(a.account_id, a.name, a.share) for a in found.accounts[:2]] == [
        ("A-0", "Big Co", Decimal("0.8000")),
        ("A-1", "A-1", Decimal("0.1000")),
    ]
    assert (found.top_fifth_share, found.accounts_for_80_percent) == (Decimal("0.8000"), 1)
    empty = domain.pareto({}, {})
    assert (empty.total, empty.top_fifth_share, empty.accounts_for_80_percent, empty.accounts) == (0, None, 0, [])


@given(st.dictionaries(st.text("ab", min_size=1, max_size=4), st.decimals(0, 10**9, places=2), max_size=30))
def test_the_running_share_rises_to_one_and_the_80_percent_count_is_the_fewest(revenue: dict[str, Decimal]) -> None:
    found = domain.pareto(revenue, {})
    assert sum((a.revenue for a in found.accounts), Decimal(0)) == found.total
    shares = [a.cumulative_share for a in found.accounts]
    if found.total:
        assert shares == sorted(shares) and shares[-1] == Decimal(1)
        needed = found.accounts_for_80_percent
        top = sum((a.revenue for a in found.accounts[:needed]), Decimal(0))
        assert top * 5 >= found.total * 4
        assert needed == 1 or sum((a.revenue for a in found.accounts[: needed - 1]), Decimal(0)) * 5 < found.total * 4
