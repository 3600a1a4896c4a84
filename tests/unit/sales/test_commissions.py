"""Commission arithmetic, pure: marginal tiers above the quota, which plan applies, and the statement with its
clawbacks; hypothesis checks the money whatever the revenue, quota and rates."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm_sales.commissions import domain

PLAN = domain.Plan(
    "north",
    Decimal("0.05"),
    (domain.Tier(Decimal("1"), Decimal("0.08")), domain.Tier(Decimal("1.5"), Decimal("0.10"))),
    territory="north",
)


def test_tiers_are_marginal_above_shares_of_the_quota() -> None:
    quota = Decimal("100000")
    assert domain.commission(Decimal("80000"), quota, PLAN) == Decimal("4000.00")
    # 5% of 100,000 + 8% of 30,000.
    assert domain.commission(Decimal("130000"), quota, PLAN) == Decimal("7400.00")
    # 5% of 100,000 + 8% of 50,000 + 10% of 40,000.
    assert domain.commission(Decimal("190000"), quota, PLAN) == Decimal("13000.00")
    # Without a quota the base rate applies throughout; negative revenue earns negative commission.
    assert domain.commission(Decimal("190000"), None, PLAN) == Decimal("9500.00")
    assert domain.commission(Decimal("-1000"), quota, PLAN) == Decimal("-50.00")
    assert domain.commission(Decimal("0.10"), quota, PLAN) == Decimal("0.00")  # half-even: 0.005 -> 0.00


def test_a_plan_is_for_one_owner_or_territory_with_rising_tiers() -> None:
    with pytest.raises(domain.PlanInvalid, match="exactly one"):
        domain.Plan("p", Decimal("0.05"))
    with pytest.raises(domain.PlanInvalid, match="from 0 to 1"):
        domain.Plan("p", Decimal("1.5"), owner_id="ann")
    falling = (domain.Tier(Decimal("1.5"), Decimal("0.1")), domain.Tier(Decimal("1"), Decimal("0.2")))
    with pytest.raises(domain.PlanInvalid, match="each above the one before"):
        domain.Plan("p", Decimal("0.05"), falling, owner_id="ann")
    own = domain.Plan("ann", Decimal("0.07"), owner_id="ann")
    assert domain.plan_for([PLAN, own], "ann", ["north"]) == own
    assert domain.plan_for([PLAN, own], "bob", ["south", "north"]) == PLAN
    assert domain.plan_for([PLAN, own], "bob", ["south"]) is None


def test_a_refund_of_revenue_already_paid_out_is_clawed_back_at_that_statements_rate() -> None:
    first = domain.statement(
        "ann", "2027-01", PLAN, paid=Decimal("130000"), refunded=Decimal(0), clawbacks=[], quota=Decimal("100000")
    )
    assert (first.commission, first.effective_rate) == (Decimal("7400.00"), Decimal("0.056923"))
    back = domain.Clawback("O-1", Decimal("10000"), "2027-01", first.effective_rate)
    second = domain.statement(
        "ann", "2027-02", PLAN, paid=Decimal("20000"), refunded=Decimal(0), clawbacks=[back], quota=Decimal("100000")
    )
    assert (second.commission, back.amount, second.payable) == (
        Decimal("1000.00"),
        Decimal("569.23"),
        Decimal("430.77"),
    )
    no_plan = domain.statement("x", "2027-02", None, paid=Decimal(5), refunded=Decimal(0), clawbacks=[back], quota=None)
    assert (no_plan.commission, no_plan.payable) == (Decimal("0.00"), Decimal("-569.23"))


money = st.decimals(min_value=0, max_value=10_000_000, places=2, allow_nan=False, allow_infinity=False)
rates = st.integers(min_value=0, max_value=10_000).map(lambda n: Decimal(n) / 10_000)


@given(
    money,
    st.none() | money,
    rates,
    st.lists(st.tuples(st.integers(1, 300), rates), max_size=4, unique_by=lambda t: t[0]),
)
def test_commission_is_between_the_lowest_and_highest_rate_and_never_falls_as_revenue_rises(
    revenue: Decimal, quota: Decimal | None, base: Decimal, tiers: list[tuple[int, Decimal]]
) -> None:
    plan = domain.Plan("p", base, tuple(domain.Tier(Decimal(s) / 100, r) for s, r in sorted(tiers)), owner_id="ann")
    earned = domain.commission(revenue, quota, plan)
    all_rates = [base, *(r for _, r in tiers)]
    assert (revenue * min(all_rates)).quantize(domain.CENT) - domain.CENT <= earned
    assert earned <= (revenue * max(all_rates)).quantize(domain.CENT) + domain.CENT
    assert domain.commission(revenue + Decimal("100.00"), quota, plan) >= earned
    if quota is None or not tiers:
        assert earned == (revenue * base).quantize(domain.CENT)


@given(money, st.lists(money, max_size=5), rates)
def test_the_payable_is_the_commission_less_every_clawback(
    paid: Decimal, refunds: list[Decimal], rate: Decimal
) -> None:
    clawbacks = [domain.Clawback(f"O-{n}", r, "2027-01", rate) for n, r in enumerate(refunds)]
    s = domain.statement("ann", "2027-02", PLAN, paid=paid, refunded=Decimal(0), clawbacks=clawbacks, quota=None)
    assert s.payable == s.commission - sum((c.amount for c in clawbacks), Decimal(0))
    assert s.commission == (paid * PLAN.base_rate).quantize(domain.CENT)
