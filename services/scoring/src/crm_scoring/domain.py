"""A customer's scores, computed from the facts scoring has seen about them. Pure: no I/O, no framework.

The facts are keyed (orders by order id, refunds and payments by their event id, complaints and surveys
by their own id) and merged with a rule that is commutative and idempotent: the same fact again is a
no-op, and when only its time differs the earliest time is kept. So the same set of events, in any
order and with duplicates, gives the same facts and hence the same scores. A fact that contradicts
one already known under its key is refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Literal, TypeVar

from crm_shared.events import Dimension, SegmentDimension

MODEL_VERSION = "rules-v1"

ValueTier = Literal["potential", "low_value", "high_value"]
LifecycleStage = Literal["prospect", "first_time_buyer", "repeat", "stable", "at_risk", "lost", "reactivated"]
ChurnRiskBand = Literal["low", "medium", "high"]
Severity = Literal["low", "medium", "high"]
SurveyKind = Literal["csat", "nps"]

DIMENSIONS: tuple[Dimension, ...] = ("product", "service", "people")

# A complaint is a satisfaction signal of its own: the worse it is, the lower.
COMPLAINT_SATISFACTION: Mapping[Severity, Fraction] = {
    "low": Fraction(1, 2),
    "medium": Fraction(1, 4),
    "high": Fraction(0),
}
CHURN_BASE_FEW_ORDERS = Decimal("0.2")
CHURN_BASE_REPEAT = Decimal("0.1")
CHURN_BASE_STABLE = Decimal("0.05")
CHURN_PER_COMPLAINT: Mapping[Severity, Decimal] = {
    "low": Decimal("0.1"),
    "medium": Decimal("0.25"),
    "high": Decimal("0.5"),
}
CHURN_PER_BAD_SURVEY = Decimal("0.15")
BAD_CSAT_AT_MOST = 2
BAD_NPS_AT_MOST = 6
CHURN_MEDIUM_FROM = 0.3
CHURN_HIGH_FROM = 0.6

_CENT = Decimal("0.01")


class FactRejected(Exception):
    """The fact contradicts what scoring already knows under the same key."""


@dataclass(frozen=True)
class Thresholds:
    """The configurable boundaries of the segments."""

    high_value_monetary: Decimal = Decimal(1000)
    stable_after_orders: int = 9

    def __post_init__(self) -> None:
        if not self.high_value_monetary.is_finite() or self.high_value_monetary <= 0:
            raise ValueError(f"high_value_monetary must be a positive amount, got {self.high_value_monetary}")
        if self.stable_after_orders < 2:
            raise ValueError(f"stable_after_orders must be at least 2, got {self.stable_after_orders}")


# ---------------------------------------------------------------- facts


@dataclass(frozen=True)
class Placed:
    order_id: str
    total: Decimal
    currency: str
    at: datetime


@dataclass(frozen=True)
class Cancelled:
    order_id: str
    at: datetime


@dataclass(frozen=True)
class Refunded:
    order_id: str
    refund_id: str  # the refund event's id: one order may be refunded several times
    amount: Decimal
    at: datetime


@dataclass(frozen=True)
class Paid:
    order_id: str
    payment_id: str  # the payment event's id
    amount: Decimal
    at: datetime


@dataclass(frozen=True)
class Complaint:
    complaint_id: str
    severity: Severity
    dimension: Dimension
    at: datetime


@dataclass(frozen=True)
class Survey:
    survey_id: str
    kind: SurveyKind
    score: int
    dimension: Dimension
    at: datetime


Fact = Placed | Cancelled | Refunded | Paid | Complaint | Survey


@dataclass(frozen=True)
class OrderFacts:
    """What is known about one order; a refund or a cancellation may be known before the order itself."""

    order_id: str
    placed: Placed | None = None
    cancelled_at: datetime | None = None
    refunds: Mapping[str, Refunded] = field(default_factory=dict)
    payments: Mapping[str, Paid] = field(default_factory=dict)

    @property
    def refunded(self) -> Decimal:
        return sum((r.amount for r in self.refunds.values()), Decimal(0))

    @property
    def counts(self) -> bool:
        """Whether the order counts towards the scores: placed and not cancelled."""
        return self.placed is not None and self.cancelled_at is None

    @property
    def net_value(self) -> Decimal:
        """The total less the refunds, the refunds capped at the total; 0 for an order that does not count."""
        if self.placed is None or not self.counts:
            return Decimal(0)
        return self.placed.total - min(self.refunded, self.placed.total)


@dataclass(frozen=True)
class CustomerFacts:
    customer_id: str
    orders: Mapping[str, OrderFacts] = field(default_factory=dict)
    complaints: Mapping[str, Complaint] = field(default_factory=dict)
    surveys: Mapping[str, Survey] = field(default_factory=dict)

    @property
    def latest_at(self) -> datetime | None:
        """The newest time among the facts: the deterministic 'now' of scores computed from them."""
        times: list[datetime] = [c.at for c in self.complaints.values()] + [s.at for s in self.surveys.values()]
        for order in self.orders.values():
            times += [r.at for r in order.refunds.values()] + [p.at for p in order.payments.values()]
            times += [t for t in (order.placed.at if order.placed else None, order.cancelled_at) if t is not None]
        return max(times, default=None)


F = TypeVar("F", Placed, Refunded, Paid, Complaint, Survey)


def _merge(known: F | None, fact: F, what: str) -> F:
    if known is None:
        return fact
    if replace(known, at=fact.at) != fact:
        raise FactRejected(f"{what} is already known with different content")
    return known if known.at <= fact.at else fact


def record(facts: CustomerFacts, fact: Fact) -> CustomerFacts:
    """The facts with `fact` added; unchanged when it was known already. Raises FactRejected on a contradiction."""
    if isinstance(fact, Complaint):
        complaint = _merge(facts.complaints.get(fact.complaint_id), fact, f"complaint {fact.complaint_id}")
        return replace(facts, complaints={**facts.complaints, fact.complaint_id: complaint})
    if isinstance(fact, Survey):
        survey = _merge(facts.surveys.get(fact.survey_id), fact, f"survey {fact.survey_id}")
        return replace(facts, surveys={**facts.surveys, fact.survey_id: survey})
    order = facts.orders.get(fact.order_id) or OrderFacts(fact.order_id)
    if isinstance(fact, Placed):
        order = replace(order, placed=_merge(order.placed, fact, f"order {fact.order_id}"))
    elif isinstance(fact, Cancelled):
        at = fact.at if order.cancelled_at is None else min(order.cancelled_at, fact.at)
        order = replace(order, cancelled_at=at)
    elif isinstance(fact, Refunded):
        refund = _merge(order.refunds.get(fact.refund_id), fact, f"refund {fact.refund_id}")
        order = replace(order, refunds={**order.refunds, fact.refund_id: refund})
    else:
        payment = _merge(order.payments.get(fact.payment_id), fact, f"payment {fact.payment_id}")
        order = replace(order, payments={**order.payments, fact.payment_id: payment})
    return replace(facts, orders={**facts.orders, fact.order_id: order})


def record_all(facts: CustomerFacts, new_facts: Iterable[Fact]) -> CustomerFacts:
    for fact in new_facts:
        facts = record(facts, fact)
    return facts


# ---------------------------------------------------------------- scores


@dataclass(frozen=True)
class Segments:
    value_tier: ValueTier
    lifecycle_stage: LifecycleStage
    churn_risk_band: ChurnRiskBand


@dataclass(frozen=True)
class Scores:
    recency_days: int | None
    frequency: int
    monetary: Decimal
    average_order_value: Decimal
    first_order_at: datetime | None
    last_order_at: datetime | None
    value_tier: ValueTier
    lifecycle_stage: LifecycleStage
    satisfaction: float | None
    satisfaction_by_dimension: Mapping[Dimension, float | None]
    churn_risk: float
    churn_risk_band: ChurnRiskBand

    @property
    def segments(self) -> Segments:
        return Segments(self.value_tier, self.lifecycle_stage, self.churn_risk_band)


def recency_days(last_order_at: datetime | None, as_of: datetime) -> int | None:
    """Whole days from the last order to `as_of`; never negative (a clock behind the order's time)."""
    if last_order_at is None:
        return None
    return max(0, (as_of - last_order_at).days)


def value_tier(frequency: int, monetary: Decimal, thresholds: Thresholds) -> ValueTier:
    """The customer's value tier. A threshold on net value for now; the 80/20 rule will replace it here."""
    if frequency == 0:
        return "potential"
    return "high_value" if monetary >= thresholds.high_value_monetary else "low_value"


def lifecycle_stage(frequency: int, thresholds: Thresholds) -> LifecycleStage:
    """The stage by order count. at_risk, lost and reactivated need time decay and are not computed yet."""
    if frequency == 0:
        return "prospect"
    if frequency == 1:
        return "first_time_buyer"
    return "repeat" if frequency < thresholds.stable_after_orders else "stable"


def _survey_signal(survey: Survey) -> Fraction:
    return Fraction(survey.score - 1, 4) if survey.kind == "csat" else Fraction(survey.score, 10)


def is_bad(survey: Survey) -> bool:
    return survey.score <= (BAD_CSAT_AT_MOST if survey.kind == "csat" else BAD_NPS_AT_MOST)


def _mean(signals: list[Fraction]) -> float | None:
    # Exact arithmetic, then one rounding: the result does not depend on the order of the facts.
    return round(float(sum(signals, Fraction(0)) / len(signals)), 4) if signals else None


def satisfaction(facts: CustomerFacts, dimension: Dimension | None = None) -> float | None:
    """The mean of every satisfaction signal (on one dimension, when given), in [0, 1]; None without signal."""
    signals = [_survey_signal(s) for s in facts.surveys.values() if dimension in (None, s.dimension)]
    signals += [
        COMPLAINT_SATISFACTION[c.severity] for c in facts.complaints.values() if dimension in (None, c.dimension)
    ]
    return _mean(signals)


def churn_risk(facts: CustomerFacts, frequency: int, thresholds: Thresholds) -> float:
    if frequency < 2:
        risk = CHURN_BASE_FEW_ORDERS
    elif frequency < thresholds.stable_after_orders:
        risk = CHURN_BASE_REPEAT
    else:
        risk = CHURN_BASE_STABLE
    risk += sum((CHURN_PER_COMPLAINT[c.severity] for c in facts.complaints.values()), Decimal(0))
    risk += CHURN_PER_BAD_SURVEY * sum(1 for s in facts.surveys.values() if is_bad(s))
    return round(float(min(risk, Decimal(1))), 4)


def churn_risk_band(risk: float) -> ChurnRiskBand:
    if risk >= CHURN_HIGH_FROM:
        return "high"
    return "medium" if risk >= CHURN_MEDIUM_FROM else "low"


def score(facts: CustomerFacts, as_of: datetime, thresholds: Thresholds) -> Scores:
    counted = [o for o in facts.orders.values() if o.counts and o.placed is not None]
    times = sorted(o.placed.at for o in counted if o.placed is not None)
    frequency = len(counted)
    monetary = sum((o.net_value for o in counted), Decimal(0))
    average = (monetary / frequency).quantize(_CENT) if frequency else Decimal(0).quantize(_CENT)
    risk = churn_risk(facts, frequency, thresholds)
    return Scores(
        recency_days=recency_days(times[-1] if times else None, as_of),
        frequency=frequency,
        monetary=monetary,
        average_order_value=average,
        first_order_at=times[0] if times else None,
        last_order_at=times[-1] if times else None,
        value_tier=value_tier(frequency, monetary, thresholds),
        lifecycle_stage=lifecycle_stage(frequency, thresholds),
        satisfaction=satisfaction(facts),
        satisfaction_by_dimension={d: satisfaction(facts, d) for d in DIMENSIONS},
        churn_risk=risk,
        churn_risk_band=churn_risk_band(risk),
    )


def initial_segments(thresholds: Thresholds) -> Segments:
    """The segments of a customer scoring has never seen: those of empty facts (potential, prospect, low)."""
    empty = CustomerFacts(customer_id="")
    return Segments(
        value_tier(0, Decimal(0), thresholds),
        lifecycle_stage(0, thresholds),
        churn_risk_band(churn_risk(empty, 0, thresholds)),
    )


def segment_changes(before: Segments, after: Segments) -> list[tuple[SegmentDimension, str, str]]:
    """(dimension, old, new) for every dimension that changed, in a fixed order; empty when none did."""
    pairs: list[tuple[SegmentDimension, str, str]] = [
        ("value_tier", before.value_tier, after.value_tier),
        ("lifecycle_stage", before.lifecycle_stage, after.lifecycle_stage),
        ("churn_risk_band", before.churn_risk_band, after.churn_risk_band),
    ]
    return [(dimension, old, new) for dimension, old, new in pairs if old != new]
