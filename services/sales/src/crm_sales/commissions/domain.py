"""Commissions: plans as rates on paid revenue net of refunds, with higher rates on what lies above the quota,
and a statement per owner and period; a refund of revenue a closed statement paid commission on claws that
commission back in the next statement. Pure: no I/O, no framework; Decimal throughout, in the reporting
currency, every commission rounded half-even to cents.

Tiers are marginal, like tax brackets: with a quota of 100,000, a base rate of 5% and a tier of 8% from 100% of
quota, revenue of 130,000 earns 5% of 100,000 plus 8% of 30,000.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

CENT = Decimal("0.01")
RATE_PLACES = Decimal("0.000001")


class PlanInvalid(ValueError):
    """The plan cannot be applied: a rate outside 0..1, tiers not rising."""


@dataclass(frozen=True)
class Tier:
    from_quota: Decimal
    """The share of quota the tier starts at (1 is the quota, 1.5 half as much again)."""
    rate: Decimal


@dataclass(frozen=True)
class Plan:
    plan_id: str
    base_rate: Decimal
    tiers: tuple[Tier, ...] = ()
    owner_id: str | None = None
    territory: str | None = None

    def __post_init__(self) -> None:
        if (self.owner_id is None) == (self.territory is None):
            raise PlanInvalid(f"plan {self.plan_id} is for one owner or one territory: give exactly one")
        for rate in (self.base_rate, *(t.rate for t in self.tiers)):
            if not 0 <= rate <= 1:
                raise PlanInvalid(f"plan {self.plan_id}: a rate is from 0 to 1, got {rate}")
        starts = [t.from_quota for t in self.tiers]
        if any(s <= 0 for s in starts) or starts != sorted(set(starts)):
            raise PlanInvalid(f"plan {self.plan_id}: tiers start above 0 of quota, each above the one before")


def commission(revenue: Decimal, quota: Decimal | None, plan: Plan) -> Decimal:
    """What `revenue` earns under `plan`: the base rate up to the first tier, each tier's rate on what lies in
    it. Without a quota (or with revenue of 0 or less) the base rate applies throughout: negative revenue earns
    a negative commission, taken from the statement."""
    if revenue <= 0 or quota is None or quota <= 0 or not plan.tiers:
        return (revenue * plan.base_rate).quantize(CENT, ROUND_HALF_EVEN)
    bounds = [t.from_quota * quota for t in plan.tiers]
    rates = [plan.base_rate, *(t.rate for t in plan.tiers)]
    earned = Decimal(0)
    lower = Decimal(0)
    for rate, upper in zip(rates, [*bounds, None], strict=True):
        top = revenue if upper is None else min(revenue, upper)
        if top > lower:
            earned += (top - lower) * rate
        if upper is not None:
            lower = max(lower, upper)
    return earned.quantize(CENT, ROUND_HALF_EVEN)


@dataclass(frozen=True)
class Clawback:
    """Commission taken back: a refund of revenue a closed statement paid commission on."""

    order_id: str
    refunded: Decimal
    period: str
    """The closed statement's period that paid the commission."""
    rate: Decimal
    """That statement's effective rate (commission / revenue)."""

    @property
    def amount(self) -> Decimal:
        return (self.refunded * self.rate).quantize(CENT, ROUND_HALF_EVEN)


@dataclass(frozen=True)
class Statement:
    owner_id: str
    period: str
    plan_id: str | None
    paid: Decimal
    """Payments in the period on the owner's orders."""
    refunded: Decimal
    """Refunds in the period of revenue no closed statement paid commission on."""
    revenue: Decimal
    quota: Decimal | None
    commission: Decimal
    clawbacks: tuple[Clawback, ...]
    payable: Decimal
    """commission less the clawbacks: negative when they are larger (carried by whoever pays)."""

    @property
    def effective_rate(self) -> Decimal:
        """commission / revenue: what a later clawback of this period's revenue takes back per unit."""
        if self.revenue <= 0:
            return Decimal(0)
        return (self.commission / self.revenue).quantize(RATE_PLACES, ROUND_HALF_EVEN)


def statement(
    owner_id: str,
    period: str,
    plan: Plan | None,
    *,
    paid: Decimal,
    refunded: Decimal,
    clawbacks: Sequence[Clawback],
    quota: Decimal | None,
) -> Statement:
    """The owner's statement: commission on paid less refunded revenue, less what refunds of revenue already
    paid out take back. Without a plan nothing is earned (the clawbacks still apply)."""
    revenue = paid - refunded
    earned = commission(revenue, quota, plan) if plan is not None else Decimal("0.00")
    taken = sum((c.amount for c in clawbacks), Decimal("0.00"))
    return Statement(
        owner_id=owner_id,
        period=period,
        plan_id=plan.plan_id if plan else None,
        paid=paid,
        refunded=refunded,
        revenue=revenue,
        quota=quota,
        commission=earned,
        clawbacks=tuple(clawbacks),
        payable=earned - taken,
    )


def plan_for(plans: Iterable[Plan], owner_id: str, territories: Iterable[str]) -> Plan | None:
    """The owner's own plan, else the plan of the first of their territories (by id) that has one."""
    plans = list(plans)
    by_owner = {p.owner_id: p for p in plans if p.owner_id is not None}
    if owner_id in by_owner:
        return by_owner[owner_id]
    by_territory = {p.territory: p for p in plans if p.territory is not None}
    return next((by_territory[t] for t in sorted(territories) if t in by_territory), None)
