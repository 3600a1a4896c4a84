"""Scores from facts: every rule by hand, and the same facts in any order give the same scores."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_scoring import domain
from crm_scoring.domain import Cancelled, Complaint, CustomerFacts, Paid, Placed, Refunded, Segments, Survey, Thresholds

T0 = datetime(2026, 11, 1, 9, tzinfo=UTC)
DEFAULT = Thresholds()


def placed(order_id: str, total: str, days: float = 0) -> Placed:
    return Placed(order_id, Decimal(total), "EUR", T0 + timedelta(days=days))


def complaint(complaint_id: str, severity: domain.Severity, dimension: domain.Dimension = "service") -> Complaint:
    return Complaint(complaint_id, severity, dimension, T0)


def survey(survey_id: str, kind: domain.SurveyKind, score: int, dimension: domain.Dimension = "service") -> Survey:
    return Survey(survey_id, kind, score, dimension, T0)


def facts_of(*facts: domain.Fact) -> CustomerFacts:
    return domain.record_all(CustomerFacts("C-1"), facts)


def scores_of(*facts: domain.Fact, thresholds: Thresholds = DEFAULT, as_of: datetime | None = None) -> domain.Scores:
    customer = facts_of(*facts)
    return domain.score(customer, as_of or customer.latest_at or T0, thresholds)


# ---------------------------------------------------------------- RFM and value tier


def test_no_orders_is_a_potential_prospect_with_no_recency() -> None:
    scores = scores_of(complaint("T-1", "low"))
    assert (scores.frequency, scores.monetary, scores.average_order_value) == (0, Decimal(0), Decimal("0.00"))
    assert (scores.recency_days, scores.first_order_at, scores.last_order_at) == (None, None, None)
    assert (scores.value_tier, scores.lifecycle_stage) == ("potential", "prospect")


def test_rfm_of_three_orders_with_a_partial_refund() -> None:
    refund = Refunded("O-2", "e-refund", Decimal("50.00"), T0 + timedelta(days=3))
    scores = scores_of(
        placed("O-1", "100.00"), placed("O-2", "200.00", days=2), placed("O-3", "10.10", days=5), refund, as_of=None
    )
    assert scores.frequency == 3
    assert scores.monetary == Decimal("260.10")
    assert scores.average_order_value == Decimal("86.70")
    assert (scores.first_order_at, scores.last_order_at) == (T0, T0 + timedelta(days=5))
    assert scores.recency_days == 0


def test_recency_counts_whole_days_to_as_of() -> None:
    order = placed("O-1", "10.00")
    assert scores_of(order, as_of=T0 + timedelta(days=3, hours=23)).recency_days == 3
    assert domain.recency_days(T0, T0 - timedelta(days=1)) == 0
    assert domain.recency_days(None, T0) is None


@pytest.mark.parametrize(
    ("total", "tier"),
    [("999.99", "low_value"), ("1000", "high_value"), ("1000.00", "high_value"), ("1000.01", "high_value")],
)
def test_value_tier_boundary_is_inclusive_at_1000(total: str, tier: str) -> None:
    assert scores_of(placed("O-1", total)).value_tier == tier


def test_value_tier_is_on_net_value_after_refunds_and_follows_the_configured_threshold() -> None:
    order = placed("O-1", "1500.00")
    refund = Refunded("O-1", "e-r", Decimal("600.00"), T0)
    assert scores_of(order, refund).value_tier == "low_value"
    assert scores_of(order, refund, thresholds=Thresholds(high_value_monetary=Decimal(900))).value_tier == "high_value"


def test_refunds_are_capped_at_the_order_total() -> None:
    refunds = [Refunded("O-1", f"e-{i}", Decimal("80.00"), T0) for i in range(2)]
    scores = scores_of(placed("O-1", "100.00"), placed("O-2", "30.00"), *refunds)
    assert scores.monetary == Decimal("30.00")
    assert scores.average_order_value == Decimal("15.00")


def test_a_refund_before_its_order_counts_once_the_order_arrives() -> None:
    refund = Refunded("O-1", "e-r", Decimal("40.00"), T0 - timedelta(hours=1))
    early = scores_of(refund)
    assert (early.frequency, early.monetary) == (0, Decimal(0))
    assert scores_of(refund, placed("O-1", "100.00")).monetary == Decimal("60.00")


def test_a_cancelled_order_does_not_count_even_when_the_cancel_comes_first() -> None:
    cancel = Cancelled("O-1", T0 - timedelta(minutes=5))
    for facts in ((placed("O-1", "2000.00"), cancel), (cancel, placed("O-1", "2000.00"))):
        scores = scores_of(placed("O-2", "5.00"), *facts)
        assert (scores.frequency, scores.monetary, scores.value_tier) == (1, Decimal("5.00"), "low_value")


def test_payments_are_recorded_but_change_no_score() -> None:
    order = placed("O-1", "100.00")
    payment = Paid("O-1", "e-pay", Decimal("100.00"), T0)
    assert facts_of(order, payment).orders["O-1"].payments == {"e-pay": payment}
    assert scores_of(order, payment) == scores_of(order)


# ---------------------------------------------------------------- lifecycle


@pytest.mark.parametrize(
    ("count", "stable_after", "stage"),
    [
        (0, 9, "prospect"),
        (1, 9, "first_time_buyer"),
        (2, 9, "repeat"),
        (8, 9, "repeat"),
        (9, 9, "stable"),
        (2, 3, "repeat"),
        (3, 3, "stable"),
        (2, 2, "stable"),
    ],
)
def test_lifecycle_stage_by_order_count(count: int, stable_after: int, stage: str) -> None:
    facts = domain.record_all(CustomerFacts("C-1"), [placed(f"O-{i}", "10.00", days=i) for i in range(count)])
    assert domain.score(facts, T0, Thresholds(stable_after_orders=stable_after)).lifecycle_stage == stage


def test_bad_thresholds_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        Thresholds(stable_after_orders=1)
    with pytest.raises(ValueError, match="positive"):
        Thresholds(high_value_monetary=Decimal(0))


# ---------------------------------------------------------------- satisfaction


def test_satisfaction_is_none_without_signal() -> None:
    scores = scores_of(placed("O-1", "10.00"))
    assert scores.satisfaction is None
    assert scores.satisfaction_by_dimension == {"product": None, "service": None, "people": None}


@pytest.mark.parametrize(
    ("fact", "expected"),
    [
        (survey("S", "csat", 1), 0.0),
        (survey("S", "csat", 4), 0.75),
        (survey("S", "csat", 5), 1.0),
        (survey("S", "nps", 0), 0.0),
        (survey("S", "nps", 7), 0.7),
        (survey("S", "nps", 10), 1.0),
        (complaint("T", "low"), 0.5),
        (complaint("T", "medium"), 0.25),
        (complaint("T", "high"), 0.0),
    ],
)
def test_each_signal_on_its_own(fact: domain.Fact, expected: float) -> None:
    assert scores_of(fact).satisfaction == expected


def test_satisfaction_is_the_mean_of_signals_overall_and_per_dimension() -> None:
    scores = scores_of(
        survey("S-1", "csat", 4, "product"),  # 0.75
        survey("S-2", "nps", 9, "service"),  # 0.9
        complaint("T-1", "medium", "service"),  # 0.25
        complaint("T-2", "high", "people"),  # 0.0
    )
    assert scores.satisfaction == round((0.75 + 0.9 + 0.25 + 0.0) / 4, 4) == 0.475
    assert scores.satisfaction_by_dimension == {"product": 0.75, "service": 0.575, "people": 0.0}


def test_satisfaction_is_rounded_to_four_places() -> None:
    scores = scores_of(survey("S-1", "csat", 5), complaint("T-1", "high"), complaint("T-2", "high"))
    assert scores.satisfaction == 0.3333


# ---------------------------------------------------------------- churn risk


def orders(n: int) -> list[Placed]:
    return [placed(f"O-{i}", "10.00", days=i) for i in range(n)]


@pytest.mark.parametrize(
    ("facts", "risk", "band"),
    [
        ([], 0.2, "low"),
        (orders(1), 0.2, "low"),
        (orders(2), 0.1, "low"),
        (orders(9), 0.05, "low"),
        ([*orders(1), complaint("T-1", "low")], 0.3, "medium"),
        ([*orders(2), complaint("T-1", "medium")], 0.35, "medium"),
        ([*orders(1), complaint("T-1", "high")], 0.7, "high"),
        ([*orders(9), complaint("T-1", "medium"), complaint("T-2", "medium"), complaint("T-3", "low")], 0.65, "high"),
        ([*orders(2), survey("S-1", "csat", 2)], 0.25, "low"),
        ([*orders(2), survey("S-1", "csat", 3)], 0.1, "low"),
        ([*orders(2), survey("S-1", "nps", 6), survey("S-2", "csat", 1)], 0.4, "medium"),
        ([*orders(2), survey("S-1", "nps", 7)], 0.1, "low"),
        ([*orders(2), survey("S-1", "nps", 6), complaint("T-1", "medium")], 0.5, "medium"),
        ([complaint("T-1", "high"), complaint("T-2", "high"), complaint("T-3", "low")], 1.0, "high"),
    ],
)
def test_churn_risk_sums_caps_and_bands(facts: list[domain.Fact], risk: float, band: str) -> None:
    scores = domain.score(facts_of(*facts), T0, DEFAULT)
    assert (scores.churn_risk, scores.churn_risk_band) == (risk, band)


@pytest.mark.parametrize(("risk", "band"), [(0.2999, "low"), (0.3, "medium"), (0.5999, "medium"), (0.6, "high")])
def test_churn_band_limits(risk: float, band: str) -> None:
    assert domain.churn_risk_band(risk) == band


# ---------------------------------------------------------------- facts: duplicates and contradictions


def test_the_same_fact_twice_changes_nothing_and_the_earliest_time_wins() -> None:
    once = facts_of(complaint("T-1", "high"))
    assert facts_of(complaint("T-1", "high"), complaint("T-1", "high")) == once
    later = Complaint("T-1", "high", "service", T0 + timedelta(days=1))
    assert facts_of(later, complaint("T-1", "high")) == once
    assert facts_of(complaint("T-1", "high"), later) == once


def test_a_cancellation_twice_keeps_the_earliest() -> None:
    cancels = (Cancelled("O-1", T0 + timedelta(hours=2)), Cancelled("O-1", T0 + timedelta(hours=1)))
    assert facts_of(*cancels).orders["O-1"].cancelled_at == T0 + timedelta(hours=1)


@pytest.mark.parametrize(
    ("first", "second", "message"),
    [
        (placed("O-1", "10.00"), placed("O-1", "11.00"), "order O-1 is already known with different content"),
        (complaint("T-1", "low"), complaint("T-1", "high"), "complaint T-1"),
        (survey("S-1", "csat", 5), survey("S-1", "csat", 1), "survey S-1"),
        (
            Refunded("O-1", "e-r", Decimal(1), T0),
            Refunded("O-1", "e-r", Decimal(2), T0),
            "refund e-r",
        ),
    ],
)
def test_a_contradicting_fact_is_rejected(first: domain.Fact, second: domain.Fact, message: str) -> None:
    with pytest.raises(domain.FactRejected, match=message):
        facts_of(first, second)


# ---------------------------------------------------------------- segment changes


def test_segment_changes_from_a_never_seen_customer() -> None:
    initial = domain.initial_segments(DEFAULT)
    assert initial == Segments("potential", "prospect", "low")
    after = scores_of(placed("O-1", "1500.00")).segments
    assert domain.segment_changes(initial, after) == [
        ("value_tier", "potential", "high_value"),
        ("lifecycle_stage", "prospect", "first_time_buyer"),
    ]
    assert domain.segment_changes(after, after) == []


def test_a_high_complaint_changes_only_the_churn_band() -> None:
    before = scores_of(placed("O-1", "1500.00")).segments
    after = scores_of(placed("O-1", "1500.00"), complaint("T-1", "high")).segments
    assert domain.segment_changes(before, after) == [("churn_risk_band", "low", "high")]


# ---------------------------------------------------------------- order-insensitivity


@st.composite
def fact_pools(draw: st.DrawFn) -> list[domain.Fact]:
    """Facts with consistent content per key, including the same fact at another time."""

    def at() -> datetime:
        return T0 + timedelta(minutes=draw(st.integers(0, 60 * 24 * 60)))

    money = st.decimals(min_value=0, max_value=3000, places=2, allow_nan=False, allow_infinity=False)
    pool: list[domain.Fact] = []
    for i in range(draw(st.integers(0, 4))):
        order_id = f"O-{i}"
        total = draw(money)
        pool += [Placed(order_id, total, "EUR", at()) for _ in range(draw(st.integers(1, 2)))]
        pool += [Refunded(order_id, f"R-{i}-{j}", draw(money), at()) for j in range(draw(st.integers(0, 2)))]
        pool += [Cancelled(order_id, at()) for _ in range(draw(st.integers(0, 2)) // 2)]
        pool += [Paid(order_id, f"P-{i}", total, at()) for _ in range(draw(st.integers(0, 1)))]
    dimensions = st.sampled_from(domain.DIMENSIONS)
    for i in range(draw(st.integers(0, 3))):
        severity, dimension = draw(st.sampled_from(["low", "medium", "high"])), draw(dimensions)
        pool += [Complaint(f"T-{i}", severity, dimension, at()) for _ in range(draw(st.integers(1, 2)))]
    for i in range(draw(st.integers(0, 3))):
        kind, dimension = draw(st.sampled_from(["csat", "nps"])), draw(dimensions)
        value = draw(st.integers(1, 5) if kind == "csat" else st.integers(0, 10))
        pool += [Survey(f"S-{i}", kind, value, dimension, at()) for _ in range(draw(st.integers(1, 2)))]
    return pool


@settings(max_examples=200, deadline=None)
@given(data=st.data(), pool=fact_pools())
def test_any_order_with_duplicates_gives_the_same_scores(data: st.DataObject, pool: list[domain.Fact]) -> None:
    with_duplicates = pool + data.draw(st.lists(st.sampled_from(pool), max_size=10)) if pool else []
    shuffled = data.draw(st.permutations(with_duplicates))

    reference = facts_of(*with_duplicates)
    other = facts_of(*shuffled)

    assert other == reference
    as_of = reference.latest_at or T0
    assert other.latest_at == reference.latest_at
    assert domain.score(other, as_of, DEFAULT) == domain.score(reference, as_of, DEFAULT)


def test_a_tier_move_is_up_or_down_by_the_tiers_order_and_an_entry_from_no_tier() -> None:
    assert domain.VALUE_TIERS == ("potential", "low_value", "high_value")
    assert domain.tier_move("potential", "low_value") == "upgrade"
    assert domain.tier_move("potential", "high_value") == "upgrade"
    assert domain.tier_move("low_value", "high_value") == "upgrade"
    assert domain.tier_move("high_value", "low_value") == "downgrade"
    assert domain.tier_move("low_value", "potential") == "downgrade"
    assert domain.tier_move(None, "high_value") == "entered"
