"""Time decay, the loyalty ladder and the formula lifetime value, by hand at the exact boundaries."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_scoring import domain, lifetime, population
from crm_scoring.domain import Complaint, CustomerFacts, Placed, Survey, Thresholds

T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
DEFAULT = Thresholds()  # at risk from 90 days, lost from 180, stable from 9 orders
DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)


def at(days: float) -> datetime:
    return T0 + timedelta(days=days)


@pytest.mark.parametrize(
    ("order_days", "as_of", "stage"),
    [
        ([], at(0), "prospect"),
        ([0], at(0), "first_time_buyer"),
        ([0], at(90) - SECOND, "first_time_buyer"),
        ([0], at(90), "at_risk"),
        ([0], at(180) - SECOND, "at_risk"),
        ([0], at(180), "lost"),
        ([0, 10], at(99), "repeat"),
        ([0, 10], at(100), "at_risk"),
        ([0, 180], at(180), "reactivated"),  # the second order came exactly lost_days after the first
        ([0, 180], at(180) - SECOND, "at_risk"),  # as of just before it, a second short of lost
        ([0, 180 - 1 / 86400], at(180), "repeat"),  # a second earlier and it never was lost
        ([0, 180], at(270), "at_risk"),  # reactivated customers decay again
        ([0, 200, 210], at(210), "repeat"),  # the next order ends the reactivation, by count
        ([*range(8), 300], at(300), "reactivated"),
        ([*range(8), 300, 301], at(301), "stable"),  # 10 orders in all: stable again
        ([*range(9)], at(8), "stable"),
    ],
)
def test_lifecycle_at_the_boundaries(order_days: list[float], as_of: datetime, stage: str) -> None:
    times = [at(d) for d in order_days if at(d) <= as_of]
    assert domain.lifecycle_stage(times, as_of, DEFAULT) == stage


@pytest.mark.parametrize(
    ("order_days", "as_of", "review"),
    [
        ([], at(0), None),
        ([0], at(0), at(90)),
        ([0], at(90) - SECOND, at(90)),
        ([0], at(90), at(180)),
        ([0], at(180) - SECOND, at(180)),
        ([0], at(180), None),
        ([0, 30], at(31), at(120)),
    ],
)
def test_next_review_is_the_next_boundary_time_alone_crosses(
    order_days: list[float], as_of: datetime, review: datetime | None
) -> None:
    assert domain.next_review_at([at(d) for d in order_days], as_of, DEFAULT) == review


def test_lifecycle_follows_configured_days() -> None:
    thresholds = Thresholds(at_risk_days=10, lost_days=20)
    assert domain.lifecycle_stage([T0], at(10), thresholds) == "at_risk"
    assert domain.lifecycle_stage([T0], at(20), thresholds) == "lost"
    assert domain.next_review_at([T0], at(1), thresholds) == at(10)
    with pytest.raises(ValueError, match="at_risk_days < lost_days"):
        Thresholds(at_risk_days=20, lost_days=20)


def placed(order_id: str, days: float = 0, total: str = "10.00") -> Placed:
    return Placed(order_id, Decimal(total), "EUR", at(days))


def survey(survey_id: str, kind: domain.SurveyKind, score: int) -> Survey:
    return Survey(survey_id, kind, score, "service", T0)


def loyalty(*facts: domain.Fact) -> str:
    customer = domain.record_all(CustomerFacts("C-1"), facts)
    return domain.score(customer, customer.latest_at or T0, DEFAULT).loyalty_stage


def test_the_loyalty_ladder() -> None:
    assert loyalty() == "stranger"
    assert loyalty(survey("S-1", "nps", 3)) == "stranger"  # a detractor has not built trust
    assert loyalty(survey("S-1", "nps", 7)) == "prospect"
    assert loyalty(placed("O-1"), domain.Cancelled("O-1", T0)) == "prospect"
    assert loyalty(placed("O-1")) == "buyer"
    # Satisfaction from 0.7 with an order: CSAT 4 is (4 - 1) / 4 = 0.75; NPS 7 is 0.7 exactly; 6 is 0.6.
    assert loyalty(placed("O-1"), survey("S-1", "csat", 4)) == "satisfied"
    assert loyalty(placed("O-1"), survey("S-1", "nps", 7)) == "satisfied"
    assert loyalty(placed("O-1"), survey("S-1", "nps", 6)) == "buyer"
    # A promoter with one order is satisfied; with two, an advocate.
    assert loyalty(placed("O-1"), survey("S-1", "nps", 9)) == "satisfied"
    assert loyalty(placed("O-1"), placed("O-2", 1), survey("S-1", "nps", 9)) == "advocate"
    assert loyalty(placed("O-1"), placed("O-2", 1), survey("S-1", "csat", 5)) == "advocate"
    assert loyalty(placed("O-1"), placed("O-2", 1), survey("S-1", "csat", 4)) == "satisfied"
    high = Complaint("T-1", "high", "service", T0)
    assert loyalty(placed("O-1"), placed("O-2", 1), survey("S-1", "csat", 4), high) == "buyer"


def referral(referral_id: str, days: float = 0) -> domain.Referral:
    return domain.Referral(referral_id, f"C-{referral_id}", at(days))


def test_a_referral_makes_an_advocate_whatever_else_is_known() -> None:
    assert loyalty(referral("R-1")) == "advocate"
    assert loyalty(placed("O-1"), survey("S-1", "csat", 4)) == "satisfied"
    assert loyalty(placed("O-1"), survey("S-1", "csat", 4), referral("R-1")) == "advocate"
    high = Complaint("T-1", "high", "service", T0)
    assert loyalty(placed("O-1"), high, referral("R-1")) == "advocate"
    # Interactions alone build no trust on the ladder.
    assert loyalty(domain.Interaction("I-1", "call", "phone", T0)) == "stranger"


def test_a_referral_or_interaction_counts_once_and_a_contradiction_is_refused() -> None:
    once = domain.record_all(CustomerFacts("C-1"), [referral("R-1", 3), referral("R-1", 1), referral("R-1", 2)])
    assert list(once.referrals.values()) == [referral("R-1", 1)]
    with pytest.raises(domain.FactRejected, match="referral R-1"):
        domain.record(once, domain.Referral("R-1", "C-other", at(1)))
    calls = [domain.Interaction("I-1", "call", "phone", at(d)) for d in (5, 2)]
    facts = domain.record_all(CustomerFacts("C-1"), [*calls, domain.Interaction("I-2", "visit", "face_to_face", at(4))])
    assert len(facts.interactions) == 2 and facts.last_interaction_at == at(4)
    assert facts.latest_at == at(4)


CONFIGURED = domain.FormulaInputs(Decimal(100), Decimal(50), Decimal(10), Decimal("1.5"))


def test_e_is_the_customers_own_referral_count_once_they_referred_else_the_configured_one() -> None:
    assert domain.formula_inputs_for(CustomerFacts("C-1"), CONFIGURED) == (CONFIGURED, "settings")
    facts = domain.record_all(CustomerFacts("C-1"), [placed("O-1"), referral("R-1"), referral("R-2"), referral("R-3")])
    inputs, source = domain.formula_inputs_for(facts, CONFIGURED)
    assert source == "own_referrals"
    assert inputs == domain.FormulaInputs(Decimal(100), Decimal(50), Decimal(10), Decimal(3))
    # D = 10 x (100 + 50) = 1500; F = 3 x D = 4500 (with the configured E it would be 2250).
    value = domain.formula_lifetime_value(inputs)
    assert (value.own, value.referred, value.total) == (Decimal(1500), Decimal(4500), Decimal(6000))


@pytest.mark.parametrize(
    ("a", "b", "c", "e", "d", "f", "g"),
    [
        ("800", "1200", "30", "2", "60000", "120000", "180000"),
        ("100", "50", "10", "0", "1500", "0", "1500"),
        ("0", "0", "5", "3", "0", "0", "0"),
        ("10.5", "0.25", "4", "1.5", "43.00", "64.500", "107.500"),
    ],
)
def test_the_formula_lifetime_value(a: str, b: str, c: str, e: str, d: str, f: str, g: str) -> None:
    value = domain.formula_lifetime_value(domain.FormulaInputs(Decimal(a), Decimal(b), Decimal(c), Decimal(e)))
    assert (value.own, value.referred, value.total) == (Decimal(d), Decimal(f), Decimal(g))


def test_the_main_product_line_is_the_most_ordered_then_the_first_by_name() -> None:
    facts = domain.record_all(
        CustomerFacts("C-1"),
        [
            Placed("O-1", Decimal(1), "EUR", T0, "printers"),
            Placed("O-2", Decimal(1), "EUR", T0, "atm"),
            Placed("O-3", Decimal(1), "EUR", T0, None),
        ],
    )
    assert domain.main_product_line(facts) == "atm"
    assert domain.main_product_line(CustomerFacts("C-2")) is None


# ---------------------------------------------------------------- order-insensitivity with a population


# MBG/NBD on the CDNOW sample (BTYDplus's published fit) and Gamma-Gamma on every purchase of it.
MBG = lifetime.MbgNbdParams(r=0.525, alpha=6.183, a=0.891, b=1.614, log_likelihood=0.0)
GG = lifetime.GammaGammaParams(p=9.88, q=3.40, v=7.93, log_likelihood=0.0)
MODELS = population.FittedModels("mbgnbd-gg-test", MBG, GG, T0, 100, 40)
FITTED = population.Population(0, False, 0.8, (), (), (), None, None, None, MODELS)


POPULATION = population.compute(
    [
        population.CustomerValue(at(d), 1 + d % 4, Decimal(10 * (d + 1)), Decimal(10 * (d + 1)) / (1 + d % 4))
        for d in range(25)
    ],
    revenue_share=0.8,
    min_population=20,
)


@st.composite
def events(draw: st.DrawFn) -> list[domain.Fact]:
    """Orders, cancellations, surveys, interactions and referrals with consistent content per key, some
    repeated at another time."""
    pool: list[domain.Fact] = []
    for i in range(draw(st.integers(0, 5))):
        total = draw(st.decimals(min_value=0, max_value=500, places=2))
        day = draw(st.integers(0, 400))
        pool += [Placed(f"O-{i}", total, "EUR", at(day + k)) for k in range(draw(st.integers(1, 2)))]
        if draw(st.booleans()):
            pool.append(domain.Cancelled(f"O-{i}", at(draw(st.integers(0, 400)))))
    for i in range(draw(st.integers(0, 2))):
        kind = draw(st.sampled_from(["csat", "nps"]))
        score = draw(st.integers(1, 5) if kind == "csat" else st.integers(0, 10))
        pool += [Survey(f"S-{i}", kind, score, "service", at(draw(st.integers(0, 400)))) for _ in range(2)]
    for i in range(draw(st.integers(0, 2))):
        pool += [domain.Interaction(f"I-{i}", "call", "phone", at(draw(st.integers(0, 400)))) for _ in range(2)]
    for i in range(draw(st.integers(0, 2))):
        pool += [domain.Referral(f"R-{i}", f"C-{i}", at(draw(st.integers(0, 400)))) for _ in range(2)]
    return pool


@settings(max_examples=150, deadline=None)
@given(data=st.data(), pool=events())
def test_any_permutation_with_duplicates_gives_the_same_scores(data: st.DataObject, pool: list[domain.Fact]) -> None:
    shuffled = data.draw(st.permutations(pool))
    duplicated = shuffled + data.draw(st.lists(st.sampled_from(pool), max_size=4)) if pool else shuffled
    first = domain.record_all(CustomerFacts("C-1"), pool)
    second = domain.record_all(CustomerFacts("C-1"), duplicated)
    as_of = max(first.latest_at or T0, second.latest_at or T0)
    assert first.latest_at == second.latest_at
    assert domain.score(first, as_of, DEFAULT, POPULATION) == domain.score(second, as_of, DEFAULT, POPULATION)
    with_models = replace(POPULATION, models=MODELS)
    assert domain.score(first, as_of, DEFAULT, with_models) == domain.score(second, as_of, DEFAULT, with_models)


def test_with_models_churn_risk_is_the_probability_of_no_purchase_plus_the_penalties() -> None:
    customer = domain.record_all(CustomerFacts("C-1"), [placed("O-1"), Complaint("T-1", "medium", "service", T0)])
    assert domain.churn_risk(customer, 1, DEFAULT, no_purchase_probability=0.2) == 0.45  # 0.2 + 0.25
    assert domain.churn_risk(customer, 1, DEFAULT, no_purchase_probability=0.87655) == 1.0  # capped
    assert domain.churn_risk(CustomerFacts("C-2"), 3, DEFAULT, no_purchase_probability=0.0) == 0.0


def test_without_models_silence_raises_churn_risk_to_the_stage_floor() -> None:
    customer = domain.record_all(CustomerFacts("C-1"), [placed("O-1")])
    assert domain.churn_risk(customer, 1, DEFAULT, stage="first_time_buyer") == 0.2
    assert domain.churn_risk(customer, 1, DEFAULT, stage="at_risk") == 0.3
    assert domain.churn_risk(customer, 1, DEFAULT, stage="lost") == 0.6
    scores = [domain.score(customer, at(days), DEFAULT) for days in (0, 90, 180)]
    assert [(s.lifecycle_stage, s.churn_risk_band) for s in scores] == [
        ("first_time_buyer", "low"),
        ("at_risk", "medium"),
        ("lost", "high"),
    ]


def test_a_one_time_buyer_s_churn_risk_rises_with_silence_and_p_alive_falls() -> None:
    customer = domain.record_all(CustomerFacts("C-1"), [placed("O-1", 0, "25.00")])
    scores = [domain.score(customer, at(days), DEFAULT, FITTED) for days in (0, 30, 90, 365, 3 * 365)]
    alive = [s.probability_alive for s in scores]
    risk = [s.churn_risk for s in scores]
    assert all(a is not None and 0 < a < 1 for a in alive)
    assert alive == sorted(alive, reverse=True) and len(set(alive)) == len(alive)  # strictly falling
    assert risk == sorted(risk) and len(set(risk)) == len(risk)  # strictly rising
    assert scores[-1].churn_risk > 0.95 and scores[-1].lifecycle_stage == "lost"


def test_a_high_value_one_time_buyer_with_a_high_complaint_is_in_the_high_churn_band() -> None:
    facts = [placed("O-1", 0, "9000.00"), Complaint("T-1", "high", "service", at(1))]
    customer = domain.record_all(CustomerFacts("C-1"), facts)
    for pop in (None, FITTED):
        scores = domain.score(customer, at(1), DEFAULT, pop)
        assert (scores.value_tier, scores.churn_risk_band) == ("high_value", "high"), pop


def test_a_one_time_buyer_s_expected_spend_counts_their_own_order() -> None:
    big = domain.score(domain.record_all(CustomerFacts("C-1"), [placed("O-1", 0, "9000.00")]), at(0), DEFAULT, FITTED)
    small = domain.score(domain.record_all(CustomerFacts("C-2"), [placed("O-1", 0, "10.00")]), at(0), DEFAULT, FITTED)
    # The Gamma-Gamma posterior with n = 1: (v + 9000) p / (p + q - 1).
    assert big.expected_average_spend == Decimal(f"{(7.93 + 9000) * 9.88 / (9.88 + 3.40 - 1):.2f}")
    assert big.expected_average_spend > Decimal(7000) > Decimal(20) > small.expected_average_spend
    assert big.lifetime_value is not None and small.lifetime_value is not None
    assert big.lifetime_value > 100 * small.lifetime_value


def test_the_forecast_is_computed_from_the_orders_in_weeks_from_the_first() -> None:
    # Orders in weeks 0, 10 and 20 (the first is not a repeat), scored at week 39: x = 2, t_x = 20, T = 39.
    facts = domain.record_all(
        CustomerFacts("C-1"), [placed("O-1", 0, "30.00"), placed("O-2", 70, "40.00"), placed("O-3", 140, "60.00")]
    )
    scores = domain.score(facts, at(273), DEFAULT, FITTED)
    forecast = domain.forecast(
        [(o.placed.at, o.placed.total) for o in facts.orders.values() if o.placed], at(273), DEFAULT, FITTED
    )
    assert forecast is not None
    assert (
        forecast.purchases,
        forecast.repeat_purchases,
        forecast.weeks_to_last_purchase,
        forecast.weeks_observed,
    ) == (
        3,
        2,
        20.0,
        39.0,
    )
    alive = float(lifetime.mbgnbd_probability_alive(MBG, 2, 20, 39))
    quiet = float(lifetime.mbgnbd_probability_no_purchase(MBG, 90 / 7, 2, 20, 39))
    assert scores.probability_alive == forecast.probability_alive == round(alive, 4)
    assert scores.churn_risk == round(quiet, 4)
    assert scores.expected_purchases_90d == round(float(lifetime.mbgnbd_expected_purchases(MBG, 90 / 7, 2, 20, 39)), 4)
    spend = float(lifetime.expected_spend(GG, 3, 130 / 3))
    assert scores.expected_average_spend == forecast.expected_spend == Decimal(f"{spend:.2f}")
    weight = forecast.own_spend_weight
    assert spend == pytest.approx(weight * 130 / 3 + (1 - weight) * float(forecast.population_mean_spend), abs=0.01)
    purchases = float(lifetime.discounted_purchases(MBG, 2, 20, 39, 52, 0.1))
    assert scores.lifetime_value == forecast.lifetime_value == Decimal(f"{purchases * spend:.2f}")
    assert domain.score(CustomerFacts("C-2"), at(0), DEFAULT, FITTED).probability_alive is None


def test_the_next_review_is_the_day_silence_lifts_the_churn_band() -> None:
    # A loyal customer (an order a week for 20 weeks) starts in the low band; silence alone lifts it.
    orders = [placed(f"O-{k}", 7 * k, "30.00") for k in range(20)]
    customer = domain.record_all(CustomerFacts("C-1"), orders)
    now = at(7 * 19)
    scores = domain.score(customer, now, DEFAULT, FITTED)
    assert scores.churn_risk_band == "low" and scores.next_review_at is not None
    review = scores.next_review_at
    assert review < at(7 * 19 + 90)  # before the lifecycle's at_risk boundary
    assert domain.score(customer, review, DEFAULT, FITTED).churn_risk_band == "medium"
    assert domain.score(customer, review - DAY, DEFAULT, FITTED).churn_risk_band == "low"


# ---------------------------------------------------------------- CSAT and NPS of the base


def answers(kind: domain.SurveyKind, *scores: int, dimension: domain.Dimension = "service") -> list[Survey]:
    return [Survey(f"{kind}-{i}", kind, score, dimension, T0) for i, score in enumerate(scores)]


def test_csat_percent_is_the_share_of_answers_of_4_or_5() -> None:
    # 10 answers: 5, 5, 4, 4, 4, 4 are satisfied (6); 3, 3, 2, 1 are not: 60%.
    figures = domain.survey_figures(answers("csat", 5, 5, 4, 4, 4, 4, 3, 3, 2, 1))
    assert (figures.csat_answers, figures.csat_satisfied, figures.csat_percent) == (10, 6, 60.0)
    assert domain.survey_figures(answers("csat", 4, 3, 3)).csat_percent == 33.33
    assert (figures.nps_answers, figures.nps) == (0, None)


def test_nps_is_percent_promoters_minus_percent_detractors() -> None:
    # 10 answers: promoters 10, 10, 9 (30%); passives 8, 7; detractors 6, 5, 3, 1, 0 (50%): NPS = 30 - 50 = -20.
    figures = domain.survey_figures(answers("nps", 10, 10, 9, 8, 7, 6, 5, 3, 1, 0))
    assert (figures.promoters, figures.passives, figures.detractors) == (3, 2, 5)
    assert (figures.nps_answers, figures.nps) == (10, -20.0)
    assert domain.survey_figures(answers("nps", 9, 9, 10, 7)).nps == 75.0
    assert domain.survey_figures(answers("nps", 6, 0)).nps == -100.0
    assert (domain.survey_figures(answers("nps", 9)).csat_answers, domain.survey_figures([]).csat_percent) == (0, None)


def test_the_base_satisfaction_takes_the_latest_answer_per_survey_per_dimension() -> None:
    first = Survey("S-1", "nps", 3, "product", T0)
    later = Survey("S-1", "nps", 10, "product", at(1))
    people = answers("csat", 5, 2, dimension="people")
    overall, by_dimension = domain.base_satisfaction([later, *people, first])
    assert overall == domain.base_satisfaction([first, *reversed(people), later])[0]
    assert (overall.nps_answers, overall.nps, overall.csat_answers, overall.csat_percent) == (1, 100.0, 2, 50.0)
    assert (by_dimension["product"].nps, by_dimension["product"].csat_percent) == (100.0, None)
    assert (by_dimension["people"].csat_percent, by_dimension["people"].nps) == (50.0, None)
    assert by_dimension["service"] == domain.survey_figures([])
