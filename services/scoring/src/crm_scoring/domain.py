"""A customer's scores, computed from the facts scoring has seen about them. Pure: no I/O, no framework.

The facts are keyed (orders by order id, refunds and payments by their event id, complaints, surveys,
interactions and referrals by their own id) and merged with a rule that is commutative and idempotent: the
same fact again is a no-op, and when only its time differs the earliest time is kept. So the same set of events, in any
order and with duplicates, gives the same facts and hence the same scores. A fact that contradicts
one already known under its key is refused.

Money is kept in its own currency: an order's total and its refunds are in the order's currency (a payment or
refund in another currency than its order's is refused as a contradiction, whichever of the two comes second).
The money scores (monetary value, average order value, the models' spend and lifetime value) are in the reporting
currency: each order's net value is converted through the platform's rate table (Thresholds.exchange_rates). An
order in a currency with no rate is refused when it arrives (handlers.py); one already among the facts (the table
lost its rate) does not count towards the scores, and the explanation says so.

Scores are computed as of a given time (the newest fact's for events, the wall clock for the decay pass) and
relative to the population statistics in force (population.py): the same facts, time and statistics always give
the same scores, which is what `crm scoring rebuild` checks.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Literal, TypeVar, get_args

import numpy as np

from crm_scoring import lifetime
from crm_scoring.fitting import FitLimits
from crm_scoring.population import CustomerValue, Population, rfm_scores, rfm_segment, value_quadrant
from crm_shared.events import Dimension, SegmentDimension
from crm_shared.money import ExchangeRates

MODEL_VERSION = "rules-v1"

ValueTier = Literal["potential", "low_value", "high_value"]
VALUE_TIERS: tuple[ValueTier, ...] = get_args(ValueTier)
"""The value tiers from lowest to highest: a move to a later one is an upgrade."""
TierMove = Literal["upgrade", "downgrade", "entered"]
LifecycleStage = Literal["prospect", "first_time_buyer", "repeat", "stable", "at_risk", "lost", "reactivated"]
LoyaltyStage = Literal["stranger", "prospect", "buyer", "satisfied", "advocate"]
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
# Without fitted models, silence raises the risk too: at least medium once the lifecycle says at_risk, at least
# high once it says lost (the rules' stand-in for the models' probability of no purchase).
CHURN_FLOOR: Mapping[str, Decimal] = {"at_risk": Decimal("0.3"), "lost": Decimal("0.6")}
CHURN_PER_BAD_SURVEY = Decimal("0.15")
BAD_CSAT_AT_MOST = 2
BAD_NPS_AT_MOST = 6
CHURN_MEDIUM_FROM = 0.3
CHURN_HIGH_FROM = 0.6
SATISFIED_FROM = 0.7
EXPECTED_PURCHASES_DAYS = 90

_CENT = Decimal("0.01")


class FactRejected(Exception):
    """The fact contradicts what scoring already knows under the same key."""


@dataclass(frozen=True)
class Thresholds:
    """The configurable boundaries of the segments, and the rate table that brings every order into the reporting
    currency the money boundaries (high_value_monetary) and scores are in."""

    high_value_monetary: Decimal = Decimal(1000)
    stable_after_orders: int = 9
    at_risk_days: int = 90
    lost_days: int = 180
    clv_horizon_weeks: float = 52.0
    annual_discount_rate: float = 0.1
    high_value_revenue_share: float = 0.8
    min_population: int = 20
    churn_horizon_days: int = 90
    population_tolerance: float = 0.05
    fit_limits: FitLimits = field(default_factory=FitLimits)
    exchange_rates: ExchangeRates = field(default_factory=ExchangeRates.default)

    def __post_init__(self) -> None:
        if not self.high_value_monetary.is_finite() or self.high_value_monetary <= 0:
            raise ValueError(f"high_value_monetary must be a positive amount, got {self.high_value_monetary}")
        if self.stable_after_orders < 2:
            raise ValueError(f"stable_after_orders must be at least 2, got {self.stable_after_orders}")
        if not 1 <= self.at_risk_days < self.lost_days:
            raise ValueError(f"need 1 <= at_risk_days < lost_days, got {self.at_risk_days} and {self.lost_days}")
        if not self.clv_horizon_weeks > 0 or not 0 <= self.annual_discount_rate <= 1:
            raise ValueError("clv_horizon_weeks must be positive and annual_discount_rate in [0, 1]")
        if not 0 < self.high_value_revenue_share <= 1:
            raise ValueError(f"high_value_revenue_share must be in (0, 1], got {self.high_value_revenue_share}")
        if self.min_population < 1:
            raise ValueError(f"min_population must be at least 1, got {self.min_population}")
        if not 1 <= self.churn_horizon_days <= 3650:
            raise ValueError(f"churn_horizon_days must be 1 to 3650, got {self.churn_horizon_days}")
        if not 0 <= self.population_tolerance < 1:
            raise ValueError(f"population_tolerance must be in [0, 1), got {self.population_tolerance}")


# ---------------------------------------------------------------- facts


@dataclass(frozen=True)
class Placed:
    order_id: str
    total: Decimal
    currency: str
    at: datetime
    product_line: str | None = None


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
    currency: str | None = None  # None: recorded before scoring kept it; the order's currency


@dataclass(frozen=True)
class Paid:
    order_id: str
    payment_id: str  # the payment event's id
    amount: Decimal
    at: datetime
    currency: str | None = None  # None: recorded before scoring kept it; the order's currency


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


@dataclass(frozen=True)
class Interaction:
    interaction_id: str
    kind: str
    channel: str
    at: datetime


@dataclass(frozen=True)
class Referral:
    referral_id: str
    referred_customer_id: str
    at: datetime


Fact = Placed | Cancelled | Refunded | Paid | Complaint | Survey | Interaction | Referral


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
        """The total less the refunds, in the order's currency, the refunds capped at the total; 0 for an order
        that does not count."""
        if self.placed is None or not self.counts:
            return Decimal(0)
        return self.placed.total - min(self.refunded, self.placed.total)

    @property
    def money_currency(self) -> str | None:
        """The currency of the order, else of the refunds and payments known before it (None: none says)."""
        if self.placed is not None:
            return self.placed.currency
        money: list[Refunded | Paid] = [*self.refunds.values(), *self.payments.values()]
        kept = [m.currency for m in money if m.currency is not None]
        return min(kept) if kept else None


def value_in(order: OrderFacts, rates: ExchangeRates) -> Decimal | None:
    """The order's net value in the reporting currency; None when the order does not count or its currency has no
    rate."""
    if not order.counts or order.placed is None or not rates.knows(order.placed.currency):
        return None
    return rates.convert(order.net_value, order.placed.currency)


def counted_orders(facts: CustomerFacts, rates: ExchangeRates) -> list[tuple[Placed, Decimal]]:
    """The orders that count towards the scores (placed, not cancelled, in a currency with a rate) with their net
    value in the reporting currency, oldest first (ties by order id)."""
    counted: list[tuple[Placed, Decimal]] = []
    for order in facts.orders.values():
        value = value_in(order, rates)
        if value is not None and order.placed is not None:
            counted.append((order.placed, value))
    return sorted(counted, key=lambda placed_value: (placed_value[0].at, placed_value[0].order_id))


@dataclass(frozen=True)
class CustomerFacts:
    customer_id: str
    orders: Mapping[str, OrderFacts] = field(default_factory=dict)
    complaints: Mapping[str, Complaint] = field(default_factory=dict)
    surveys: Mapping[str, Survey] = field(default_factory=dict)
    interactions: Mapping[str, Interaction] = field(default_factory=dict)
    referrals: Mapping[str, Referral] = field(default_factory=dict)

    @property
    def latest_at(self) -> datetime | None:
        """The newest time among the facts: the deterministic 'now' of scores computed from them."""
        times: list[datetime] = [c.at for c in self.complaints.values()] + [s.at for s in self.surveys.values()]
        times += [i.at for i in self.interactions.values()] + [r.at for r in self.referrals.values()]
        for order in self.orders.values():
            times += [r.at for r in order.refunds.values()] + [p.at for p in order.payments.values()]
            times += [t for t in (order.placed.at if order.placed else None, order.cancelled_at) if t is not None]
        return max(times, default=None)

    @property
    def last_interaction_at(self) -> datetime | None:
        return max((i.at for i in self.interactions.values()), default=None)


F = TypeVar("F", Placed, Refunded, Paid, Complaint, Survey, Interaction, Referral)


def _merge(known: F | None, fact: F, what: str) -> F:
    if known is None:
        return fact
    if replace(known, at=fact.at) != fact:
        raise FactRejected(f"{what} is already known with different content")
    return known if known.at <= fact.at else fact


def _check_currency(order: OrderFacts, fact: Placed | Cancelled | Refunded | Paid) -> None:
    """An order and its refunds and payments share one currency: amounts of two currencies are never netted."""
    if isinstance(fact, Cancelled):
        return
    if isinstance(fact, Placed):
        known: list[Refunded | Paid] = [*order.refunds.values(), *order.payments.values()]
        for other in sorted(known, key=lambda m: (m.at, m.currency or "")):
            if other.currency is not None and other.currency != fact.currency:
                what = "refund" if isinstance(other, Refunded) else "payment"
                raise FactRejected(
                    f"order {fact.order_id} in {fact.currency} contradicts a {what} of {other.amount} {other.currency} "
                    "known for it before: an order and its refunds and payments are in one currency"
                )
        return
    currency = order.money_currency
    if fact.currency is not None and currency is not None and fact.currency != currency:
        what = "refund" if isinstance(fact, Refunded) else "payment"
        known_as = "the order is" if order.placed is not None else "the refunds and payments known for it are"
        raise FactRejected(
            f"{what} of {fact.amount} {fact.currency} on order {fact.order_id} contradicts its currency: {known_as} in "
            f"{currency}"
        )


def record(facts: CustomerFacts, fact: Fact) -> CustomerFacts:
    """The facts with `fact` added; unchanged when it was known already. Raises FactRejected on a contradiction."""
    if isinstance(fact, Complaint):
        complaint = _merge(facts.complaints.get(fact.complaint_id), fact, f"complaint {fact.complaint_id}")
        return replace(facts, complaints={**facts.complaints, fact.complaint_id: complaint})
    if isinstance(fact, Survey):
        survey = _merge(facts.surveys.get(fact.survey_id), fact, f"survey {fact.survey_id}")
        return replace(facts, surveys={**facts.surveys, fact.survey_id: survey})
    if isinstance(fact, Interaction):
        interaction = _merge(facts.interactions.get(fact.interaction_id), fact, f"interaction {fact.interaction_id}")
        return replace(facts, interactions={**facts.interactions, fact.interaction_id: interaction})
    if isinstance(fact, Referral):
        referral = _merge(facts.referrals.get(fact.referral_id), fact, f"referral {fact.referral_id}")
        return replace(facts, referrals={**facts.referrals, fact.referral_id: referral})
    order = facts.orders.get(fact.order_id) or OrderFacts(fact.order_id)
    _check_currency(order, fact)
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
    rfm_segment: str | None = None


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
    rfm_score: str | None = None
    rfm_segment: str | None = None
    value_quadrant: str | None = None
    loyalty_stage: LoyaltyStage = "stranger"
    probability_alive: float | None = None
    expected_purchases_90d: float | None = None
    expected_average_spend: Decimal | None = None
    lifetime_value: Decimal | None = None
    next_review_at: datetime | None = None

    @property
    def segments(self) -> Segments:
        return Segments(self.value_tier, self.lifecycle_stage, self.churn_risk_band, self.rfm_segment)


def recency_days(last_order_at: datetime | None, as_of: datetime) -> int | None:
    """Whole days from the last order to `as_of`; never negative (a clock behind the order's time)."""
    if last_order_at is None:
        return None
    return max(0, (as_of - last_order_at).days)


def value_tier(
    frequency: int, monetary: Decimal, thresholds: Thresholds, population: Population | None = None
) -> ValueTier:
    """potential without an order; high_value from the population's 80/20 threshold (the monetary value of the
    smallest set of top customers making the configured revenue share); low_value otherwise. While the
    population is not in force (too few buyers) the fixed `high_value_monetary` stands in for the 80/20 one."""
    if frequency == 0:
        return "potential"
    threshold = thresholds.high_value_monetary
    if population is not None and population.in_force and population.high_value_monetary is not None:
        threshold = population.high_value_monetary
    return "high_value" if monetary >= threshold else "low_value"


def lifecycle_stage(order_times: Sequence[datetime], as_of: datetime, thresholds: Thresholds) -> LifecycleStage:
    """The stage from the counted orders' times (sorted) as of `as_of`:

    prospect (no order); lost when the last order is `lost_days` or more before as-of, else at_risk when it is
    `at_risk_days` or more before (both boundaries inclusive); reactivated when the last order came `lost_days`
    or more after the one before it, i.e. after the customer had been lost, and it stays reactivated until the
    next order, which makes it repeat or stable again by its total order count; otherwise first_time_buyer
    (one order), repeat, or stable from `stable_after_orders` orders.
    """
    if not order_times:
        return "prospect"
    idle = as_of - order_times[-1]
    if idle >= timedelta(days=thresholds.lost_days):
        return "lost"
    if idle >= timedelta(days=thresholds.at_risk_days):
        return "at_risk"
    if len(order_times) >= 2 and order_times[-1] - order_times[-2] >= timedelta(days=thresholds.lost_days):
        return "reactivated"
    if len(order_times) == 1:
        return "first_time_buyer"
    return "repeat" if len(order_times) < thresholds.stable_after_orders else "stable"


def next_review_at(order_times: Sequence[datetime], as_of: datetime, thresholds: Thresholds) -> datetime | None:
    """The first time after `as_of` at which the lifecycle stage changes with no new event (at_risk, then lost);
    None when none can (no order yet, or lost already)."""
    if not order_times:
        return None
    for days in (thresholds.at_risk_days, thresholds.lost_days):
        boundary = order_times[-1] + timedelta(days=days)
        if boundary > as_of:
            return boundary
    return None


def _survey_signal(survey: Survey) -> Fraction:
    return Fraction(survey.score - 1, 4) if survey.kind == "csat" else Fraction(survey.score, 10)


def is_bad(survey: Survey) -> bool:
    return survey.score <= (BAD_CSAT_AT_MOST if survey.kind == "csat" else BAD_NPS_AT_MOST)


def is_promoter(survey: Survey) -> bool:
    """An NPS promoter (9-10) or a top CSAT (5)."""
    return survey.score >= 9 if survey.kind == "nps" else survey.score == 5


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


# ---------------------------------------------------------------- CSAT and NPS of the customer base

CSAT_SATISFIED_FROM = 4
NPS_PROMOTER_FROM = 9
NPS_DETRACTOR_AT_MOST = 6


@dataclass(frozen=True)
class SurveyFigures:
    """CSAT % = answers of 4 or 5 over the CSAT answers x 100; NPS = % promoters (9-10) - % detractors (0-6)
    over the NPS answers. None without answers of that kind."""

    csat_answers: int
    csat_satisfied: int
    csat_percent: float | None
    nps_answers: int
    promoters: int
    passives: int
    detractors: int
    nps: float | None


def latest_answers(surveys: Iterable[Survey]) -> list[Survey]:
    """The latest answer per survey id (ties by content, so the result does not depend on the reading order)."""
    latest: dict[str, Survey] = {}
    for survey in surveys:
        known = latest.get(survey.survey_id)
        if known is None or (survey.at, survey.kind, survey.score) > (known.at, known.kind, known.score):
            latest[survey.survey_id] = survey
    return [latest[k] for k in sorted(latest)]


def _percent(part: int, whole: int) -> float | None:
    return round(float(Fraction(100 * part, whole)), 2) if whole else None


def survey_figures(answers: Sequence[Survey]) -> SurveyFigures:
    """CSAT % and NPS of the given answers (one per survey: see latest_answers)."""
    csat = [a.score for a in answers if a.kind == "csat"]
    nps = [a.score for a in answers if a.kind == "nps"]
    satisfied = sum(1 for score in csat if score >= CSAT_SATISFIED_FROM)
    promoters = sum(1 for score in nps if score >= NPS_PROMOTER_FROM)
    detractors = sum(1 for score in nps if score <= NPS_DETRACTOR_AT_MOST)
    return SurveyFigures(
        csat_answers=len(csat),
        csat_satisfied=satisfied,
        csat_percent=_percent(satisfied, len(csat)),
        nps_answers=len(nps),
        promoters=promoters,
        passives=len(nps) - promoters - detractors,
        detractors=detractors,
        nps=_percent(promoters - detractors, len(nps)),
    )


def base_satisfaction(surveys: Iterable[Survey]) -> tuple[SurveyFigures, Mapping[Dimension, SurveyFigures]]:
    """CSAT % and NPS over every stored answer (the latest per survey id), overall and per dimension."""
    answers = latest_answers(surveys)
    return survey_figures(answers), {d: survey_figures([a for a in answers if a.dimension == d]) for d in DIMENSIONS}


def loyalty_stage(facts: CustomerFacts, frequency: int, overall_satisfaction: float | None) -> LoyaltyStage:
    """The loyalty ladder (BRIEF section 2): advocate = at least one referral (advocacy in deed, whatever else is
    known), or a promoter answer (NPS 9-10 or CSAT 5) and at least 2 orders; satisfied = satisfaction >= 0.7 and
    at least 1 order; buyer = at least 1 order; prospect = no counted order yet but trust shown: an order placed
    (even if cancelled) or a survey answer that is not bad; stranger otherwise. Interactions do not move it."""
    if facts.referrals or (frequency >= 2 and any(is_promoter(s) for s in facts.surveys.values())):
        return "advocate"
    if frequency >= 1 and overall_satisfaction is not None and overall_satisfaction >= SATISFIED_FROM:
        return "satisfied"
    if frequency >= 1:
        return "buyer"
    if any(o.placed is not None for o in facts.orders.values()) or any(not is_bad(s) for s in facts.surveys.values()):
        return "prospect"
    return "stranger"


def churn_risk(
    facts: CustomerFacts,
    frequency: int,
    thresholds: Thresholds,
    no_purchase_probability: float | None = None,
    stage: LifecycleStage | None = None,
) -> float:
    """With fitted models, the probability of no purchase in the next `churn_horizon_days` (MBG/NBD); without,
    a base by order count, raised to CHURN_FLOOR by an at_risk or lost lifecycle `stage`. Plus the complaint and
    survey penalties; capped at 1."""
    if no_purchase_probability is not None:
        risk = Decimal(str(round(no_purchase_probability, 4)))
    else:
        if frequency < 2:
            risk = CHURN_BASE_FEW_ORDERS
        elif frequency < thresholds.stable_after_orders:
            risk = CHURN_BASE_REPEAT
        else:
            risk = CHURN_BASE_STABLE
        risk = max(risk, CHURN_FLOOR.get(stage or "", Decimal(0)))
    risk += churn_penalty(facts)
    return round(float(max(Decimal(0), min(risk, Decimal(1)))), 4)


def churn_penalty(facts: CustomerFacts) -> Decimal:
    """What complaints and bad surveys add to the churn risk."""
    penalty = sum((CHURN_PER_COMPLAINT[c.severity] for c in facts.complaints.values()), Decimal(0))
    return penalty + CHURN_PER_BAD_SURVEY * sum(1 for s in facts.surveys.values() if is_bad(s))


def churn_risk_band(risk: float) -> ChurnRiskBand:
    if risk >= CHURN_HIGH_FROM:
        return "high"
    return "medium" if risk >= CHURN_MEDIUM_FROM else "low"


@dataclass(frozen=True)
class Forecast:
    """The models' view of one customer, with every input (time in weeks from the first order, money in the
    reporting currency): what the score page shows beside the realised value and the source's formula."""

    model_version: str
    purchases: int
    repeat_purchases: int
    weeks_to_last_purchase: float
    weeks_observed: float
    mean_spend: Decimal
    probability_alive: float
    no_purchase_probability: float
    churn_horizon_days: int
    expected_purchases_90d: float
    discounted_purchases: float
    horizon_weeks: float
    annual_discount_rate: float
    population_mean_spend: Decimal
    own_spend_weight: float
    expected_spend: Decimal
    lifetime_value: Decimal


def _money(value: float) -> Decimal | None:
    return Decimal(f"{value:.2f}") if math.isfinite(value) else None


def _summary(orders: Sequence[tuple[datetime, Decimal]], as_of: datetime) -> lifetime.PurchaseSummary:
    summaries = lifetime.summarise(
        [("c", at, value) for at, value in orders],
        lifetime.purchase_day(max(as_of, max(at for at, _ in orders))),
    )
    return next(iter(summaries))


def forecast(
    orders: Sequence[tuple[datetime, Decimal]], as_of: datetime, thresholds: Thresholds, population: Population
) -> Forecast | None:
    """P(alive), the probability of no purchase in the churn horizon and the expected purchases in the next 90
    days from MBG/NBD; the expected spend per purchase from Gamma-Gamma with every purchase counted, the first
    included (the posterior mean: a weighted mean of the customer's own mean spend and the population's); and the
    lifetime value, the discounted expected purchases over the horizon times that spend. From the counted orders'
    (time, net value in the reporting currency); None without fitted models or orders."""
    models = population.models
    if models is None or not orders:
        return None
    s = _summary(orders, as_of)
    mbg, gg = models.mbgnbd, models.gamma_gamma
    n = s.x + 1
    alive = float(lifetime.mbgnbd_probability_alive(mbg, s.x, s.t_x, s.T))
    quiet = float(lifetime.mbgnbd_probability_no_purchase(mbg, thresholds.churn_horizon_days / 7, s.x, s.t_x, s.T))
    purchases = float(lifetime.mbgnbd_expected_purchases(mbg, EXPECTED_PURCHASES_DAYS / 7, s.x, s.t_x, s.T))
    discounted = float(
        lifetime.discounted_purchases(
            mbg, s.x, s.t_x, s.T, thresholds.clv_horizon_weeks, thresholds.annual_discount_rate
        )
    )
    mean_spend = max(s.mean_spend, 0.0)
    spend = float(lifetime.expected_spend(gg, n, mean_spend))
    own_weight = gg.p * n / (gg.p * n + gg.q - 1.0)
    spend_money, value_money = _money(spend), _money(discounted * spend)
    population_mean = _money(gg.p * gg.v / (gg.q - 1.0))
    figures = (alive, quiet, purchases, discounted, own_weight)
    if not all(math.isfinite(f) for f in figures) or spend_money is None or value_money is None:
        return None
    if population_mean is None:
        return None
    return Forecast(
        model_version=models.model_version,
        purchases=n,
        repeat_purchases=s.x,
        weeks_to_last_purchase=round(s.t_x, 4),
        weeks_observed=round(s.T, 4),
        mean_spend=Decimal(f"{mean_spend:.2f}"),
        probability_alive=round(alive, 4),
        no_purchase_probability=round(quiet, 4),
        churn_horizon_days=thresholds.churn_horizon_days,
        expected_purchases_90d=round(purchases, 4),
        discounted_purchases=round(discounted, 4),
        horizon_weeks=thresholds.clv_horizon_weeks,
        annual_discount_rate=thresholds.annual_discount_rate,
        population_mean_spend=population_mean,
        own_spend_weight=round(own_weight, 4),
        expected_spend=spend_money,
        lifetime_value=value_money,
    )


def churn_review_at(
    orders: Sequence[tuple[datetime, Decimal]],
    facts: CustomerFacts,
    as_of: datetime,
    thresholds: Thresholds,
    population: Population,
    risk: float,
) -> datetime | None:
    """With fitted models, the first midnight (UTC) after `as_of` at which silence alone lifts the churn risk into
    the next band: the probability of no purchase rises every day without an order. None in the high band, without
    models, or when it would take more than ten years."""
    models = population.models
    band = churn_risk_band(risk)
    if models is None or not orders or band == "high":
        return None
    target = CHURN_MEDIUM_FROM if band == "low" else CHURN_HIGH_FROM
    s = _summary(orders, as_of)
    days = np.arange(1, 3651)
    quiet = lifetime.mbgnbd_probability_no_purchase(
        models.mbgnbd, thresholds.churn_horizon_days / 7, s.x, s.t_x, s.T + days / 7
    )
    # A float estimate finds the day; the exact rule (Decimal, rounded as the score is) confirms it.
    above = np.flatnonzero(np.round(quiet, 4) + float(churn_penalty(facts)) >= target - 1e-9)
    if len(above) == 0:
        return None
    day = max(int(days[above[0]]) - 1, 1)
    start = datetime.combine(lifetime.purchase_day(as_of), datetime.min.time(), tzinfo=UTC)
    for candidate in range(day, min(day + 3, 3651)):
        at = start + timedelta(days=candidate)
        if churn_risk_band(churn_risk(facts, len(orders), thresholds, float(quiet[candidate - 1]))) != band:
            return at
    return start + timedelta(days=int(days[above[0]]))


def score(
    facts: CustomerFacts, as_of: datetime, thresholds: Thresholds, population: Population | None = None
) -> Scores:
    """The scores as of `as_of`, relative to the population statistics when there are any; money in the reporting
    currency of `thresholds.exchange_rates`."""
    purchases = [(placed.at, value) for placed, value in counted_orders(facts, thresholds.exchange_rates)]
    times = [at for at, _ in purchases]
    frequency = len(purchases)
    monetary = sum((value for _, value in purchases), Decimal(0))
    average = (monetary / frequency).quantize(_CENT) if frequency else Decimal(0).quantize(_CENT)
    model = forecast(purchases, as_of, thresholds, population) if population is not None else None
    stage = lifecycle_stage(times, as_of, thresholds)
    risk = churn_risk(facts, frequency, thresholds, model.no_purchase_probability if model else None, stage)
    overall = satisfaction(facts)
    rfm: tuple[int, int, int] | None = None
    quadrant: str | None = None
    if population is not None and population.in_force and times:
        value = CustomerValue(times[-1], frequency, monetary, average)
        rfm = rfm_scores(population, value)
        quadrant = value_quadrant(population, value)
    review = next_review_at(times, as_of, thresholds)
    if model is not None and population is not None:
        churn_review = churn_review_at(purchases, facts, as_of, thresholds, population, risk)
        review = min((r for r in (review, churn_review) if r is not None), default=None)
    return Scores(
        recency_days=recency_days(times[-1] if times else None, as_of),
        frequency=frequency,
        monetary=monetary,
        average_order_value=average,
        first_order_at=times[0] if times else None,
        last_order_at=times[-1] if times else None,
        value_tier=value_tier(frequency, monetary, thresholds, population),
        lifecycle_stage=stage,
        satisfaction=overall,
        satisfaction_by_dimension={d: satisfaction(facts, d) for d in DIMENSIONS},
        churn_risk=risk,
        churn_risk_band=churn_risk_band(risk),
        rfm_score="".join(str(v) for v in rfm) if rfm else None,
        rfm_segment=rfm_segment(*rfm) if rfm else None,
        value_quadrant=quadrant,
        loyalty_stage=loyalty_stage(facts, frequency, overall),
        probability_alive=model.probability_alive if model else None,
        expected_purchases_90d=model.expected_purchases_90d if model else None,
        expected_average_spend=model.expected_spend if model else None,
        lifetime_value=model.lifetime_value if model else None,
        next_review_at=review,
    )


def initial_segments(thresholds: Thresholds) -> Segments:
    """The segments of a customer scoring has never seen: those of empty facts (potential, prospect, low)."""
    empty = CustomerFacts(customer_id="")
    return Segments(
        value_tier(0, Decimal(0), thresholds),
        lifecycle_stage((), datetime.min, thresholds),
        churn_risk_band(churn_risk(empty, 0, thresholds)),
    )


def tier_move(old: ValueTier | None, new: ValueTier) -> TierMove:
    """A value-tier change by VALUE_TIERS' order; entered when the customer had no tier before (old None).
    potential to low_value or high_value, a first counted order, is an upgrade."""
    if old is None:
        return "entered"
    return "upgrade" if VALUE_TIERS.index(new) > VALUE_TIERS.index(old) else "downgrade"


def segment_changes(before: Segments, after: Segments) -> list[tuple[SegmentDimension, str | None, str]]:
    """(dimension, old, new) for every dimension that changed to a value, in a fixed order; empty when none did.
    A segment that disappears (rfm_segment while the population is not in force) is not announced."""
    pairs: list[tuple[SegmentDimension, str | None, str | None]] = [
        ("value_tier", before.value_tier, after.value_tier),
        ("lifecycle_stage", before.lifecycle_stage, after.lifecycle_stage),
        ("rfm_segment", before.rfm_segment, after.rfm_segment),
        ("churn_risk_band", before.churn_risk_band, after.churn_risk_band),
    ]
    return [(dimension, old, new) for dimension, old, new in pairs if old != new and new is not None]


def main_product_line(facts: CustomerFacts) -> str | None:
    """The product line of most of the customer's counted orders (ties: the first by name); None if none says."""
    lines = Counter(
        o.placed.product_line for o in facts.orders.values() if o.counts and o.placed and o.placed.product_line
    )
    if not lines:
        return None
    return min(lines, key=lambda line: (-lines[line], line))


# ---------------------------------------------------------------- the source's formula lifetime value


@dataclass(frozen=True)
class FormulaInputs:
    """The ATM example's inputs per product line (BRIEF section 2): A gross margin per unit, B service and
    spare-parts revenue per unit over the years, C units the customer may buy in its lifetime, E customers
    it may refer."""

    margin_per_unit: Decimal
    service_revenue_per_unit: Decimal
    lifetime_units: Decimal
    referrals: Decimal


@dataclass(frozen=True)
class FormulaLifetimeValue:
    own: Decimal
    referred: Decimal
    total: Decimal


ReferralsSource = Literal["own_referrals", "settings"]


def formula_inputs_for(facts: CustomerFacts, configured: FormulaInputs) -> tuple[FormulaInputs, ReferralsSource]:
    """The inputs for this customer: E is their own referral count once they have referred at least once (what
    they did is better evidence than the product line's assumption, and a floor of what they may refer), else
    the configured E. A, B and C always come from the configuration."""
    if facts.referrals:
        return replace(configured, referrals=Decimal(len(facts.referrals))), "own_referrals"
    return configured, "settings"


def formula_lifetime_value(inputs: FormulaInputs) -> FormulaLifetimeValue:
    """D = C x (A + B), F = E x D, G = D + F.

    The source breaks off after "C x (A x"; D = C x (A + B) is read as the lifetime margin of C units, each
    bringing its gross margin A plus its service and parts revenue B, which is the only reading that keeps A
    and B in the same unit (money per unit).
    """
    own = inputs.lifetime_units * (inputs.margin_per_unit + inputs.service_revenue_per_unit)
    referred = inputs.referrals * own
    return FormulaLifetimeValue(own=own, referred=referred, total=own + referred)
