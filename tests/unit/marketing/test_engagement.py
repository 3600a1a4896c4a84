"""The engagement score: weights, the window, duplicates, order, and when it qualifies a prospect."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from crm_marketing import engagement
from crm_marketing.engagement import EngagementRule, Interaction
from crm_marketing.settings import MarketingSettings

T0 = datetime(2026, 11, 1, tzinfo=UTC)
RULE = EngagementRule()
KINDS = ("call", "visit", "email", "web", "chat", "meeting")


def touch(interaction_id: str, kind: engagement.InteractionKind, days: float = 0) -> Interaction:
    return Interaction(interaction_id, kind, T0 + timedelta(days=days))


def test_each_kind_weighs_its_default_points() -> None:
    for kind, points in {"meeting": 3, "visit": 3, "call": 2, "chat": 1, "email": 1, "web": 1}.items():
        assert engagement.current_engagement([touch("I-1", kind)], RULE).score == points  # type: ignore[arg-type]


def test_the_score_adds_the_weights_of_the_interactions_in_the_window() -> None:
    current = engagement.current_engagement(
        [touch("I-1", "call"), touch("I-2", "web", 1), touch("I-3", "meeting", 2)], RULE
    )
    assert (current.score, [i.interaction_id for i in current.counted]) == (6, ["I-1", "I-2", "I-3"])
    assert current.ends_at == T0 + timedelta(days=2)


def test_configured_weights_are_used() -> None:
    rule = EngagementRule(weights={**engagement.DEFAULT_WEIGHTS, "web": 0, "call": 5})
    assert engagement.current_engagement([touch("I-1", "call"), touch("I-2", "web", 1)], rule).score == 5


def test_an_interaction_exactly_at_the_window_start_counts_and_one_a_second_earlier_does_not() -> None:
    latest = touch("I-3", "web", 30)
    at_start = touch("I-2", "call", 0)
    before = Interaction("I-1", "meeting", T0 - timedelta(seconds=1))
    current = engagement.current_engagement([before, at_start, latest], RULE)
    assert (current.score, [i.interaction_id for i in current.counted]) == (3, ["I-2", "I-3"])


def test_a_duplicate_interaction_counts_once() -> None:
    once = engagement.current_engagement([touch("I-1", "meeting")], RULE)
    twice = engagement.current_engagement([touch("I-1", "meeting"), touch("I-1", "meeting")], RULE)
    assert twice == once and once.score == 3


def test_no_interactions_score_nothing_and_never_qualify() -> None:
    assert engagement.current_engagement([], RULE) == engagement.NO_ENGAGEMENT
    assert engagement.first_qualifying([], RULE) is None


def test_below_the_threshold_nothing_qualifies() -> None:
    assert (
        engagement.first_qualifying([touch("I-1", "call"), touch("I-2", "chat", 1), touch("I-3", "web", 2)], RULE)
        is None
    )


def test_the_earliest_window_reaching_the_threshold_qualifies() -> None:
    touches = [touch("I-1", "meeting"), touch("I-2", "call", 1), touch("I-3", "visit", 2)]
    qualifying = engagement.first_qualifying(touches, RULE)
    assert qualifying is not None
    assert (qualifying.score, qualifying.ends_at) == (5, T0 + timedelta(days=1))
    assert [i.interaction_id for i in qualifying.counted] == ["I-1", "I-2"]


def test_interactions_too_far_apart_never_qualify_even_when_their_sum_would() -> None:
    touches = [touch("I-1", "meeting"), touch("I-2", "call", 31), touch("I-3", "meeting", 62)]
    assert sum(RULE.weight(i.kind) for i in touches) >= RULE.threshold
    assert engagement.first_qualifying(touches, RULE) is None


def test_a_qualification_in_the_past_stands_when_a_later_interaction_comes_first() -> None:
    late = touch("I-9", "web", 100)
    early = [touch("I-1", "meeting"), touch("I-2", "call", 1)]
    assert engagement.current_engagement([late, *early], RULE).score == 1
    qualifying = engagement.first_qualifying([late, *early], RULE)
    assert qualifying is not None and qualifying.ends_at == T0 + timedelta(days=1)


interactions = st.lists(
    st.builds(
        Interaction,
        interaction_id=st.sampled_from([f"I-{i}" for i in range(12)]),
        kind=st.sampled_from(KINDS),
        at=st.integers(min_value=0, max_value=90 * 24).map(lambda h: T0 + timedelta(hours=h)),
    ),
    max_size=25,
)


@given(interactions, st.randoms(use_true_random=False))
def test_the_same_interactions_in_any_order_or_repeated_give_the_same_engagement(
    touches: list[Interaction], rnd: object
) -> None:
    shuffled = [*touches, *touches[: len(touches) // 2]]
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert engagement.current_engagement(shuffled, RULE) == engagement.current_engagement(touches, RULE)
    assert engagement.first_qualifying(shuffled, RULE) == engagement.first_qualifying(touches, RULE)


@given(interactions)
def test_the_qualifying_window_reaches_the_threshold_and_ends_at_one_of_its_interactions(
    touches: list[Interaction],
) -> None:
    qualifying = engagement.first_qualifying(touches, RULE)
    if qualifying is not None:
        assert qualifying.score >= RULE.threshold
        assert qualifying.counted[-1].at == qualifying.ends_at
        assert all(qualifying.ends_at - RULE.window <= i.at for i in qualifying.counted)


def test_the_lead_reason_names_the_score_and_the_interactions() -> None:
    qualifying = engagement.first_qualifying([touch("I-1", "meeting"), touch("I-2", "call", 1)], RULE)
    assert qualifying is not None
    assert engagement.lead_reason(qualifying, RULE) == (
        "Engagement score 5 reached 5 within 30 days, from 2 interactions: "
        "meeting I-1 on 2026-11-01 (+3), call I-2 on 2026-11-02 (+2)"
    )


def test_a_long_lead_reason_fits_the_event_and_says_how_many_it_left_out() -> None:
    many = [touch(f"I-{i:03d}-with-a-long-id", "web", i / 10) for i in range(60)]
    window = engagement.current_engagement(many, RULE)
    reason = engagement.lead_reason(window, RULE)
    assert len(reason) <= 500
    assert reason.startswith("Engagement score 60 reached 5") and reason.endswith("more")


@pytest.mark.parametrize(
    ("stage", "ordered", "prospect"),
    [(None, False, True), ("prospect", False, True), ("first_time_buyer", False, False), (None, True, False)],
)
def test_a_prospect_has_no_known_order_and_no_later_stage(stage: str | None, ordered: bool, prospect: bool) -> None:
    assert engagement.is_prospect(stage, ordered) is prospect


def test_the_lead_id_is_one_per_customer() -> None:
    assert engagement.lead_id("C-1") == engagement.lead_id("C-1") != engagement.lead_id("C-2")


# ---------------------------------------------------------------- settings


def test_the_defaults() -> None:
    rule = MarketingSettings().engagement
    assert (dict(rule.weights), rule.threshold, rule.window) == (
        {"meeting": 3, "visit": 3, "call": 2, "chat": 1, "email": 1, "web": 1},
        5,
        timedelta(days=30),
    )


def test_configured_weights_replace_the_defaults_they_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_MARKETING_LEAD_ENGAGEMENT_WEIGHTS", json.dumps({"web": 0, "meeting": 5}))
    monkeypatch.setenv("CRM_MARKETING_LEAD_QUALIFIED_SCORE", "8")
    monkeypatch.setenv("CRM_MARKETING_LEAD_ENGAGEMENT_DAYS", "14")
    rule = MarketingSettings().engagement
    assert (rule.weight("web"), rule.weight("meeting"), rule.weight("call")) == (0, 5, 2)
    assert (rule.threshold, rule.window) == (8, timedelta(days=14))


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("LEAD_ENGAGEMENT_WEIGHTS", "{meeting: 3}", "expected a JSON object of weights"),
        ("LEAD_ENGAGEMENT_WEIGHTS", '{"meeting": 3', "expected a JSON object of weights"),
        ("LEAD_ENGAGEMENT_WEIGHTS", "[3, 2]", "lead_engagement_weights\n  Input should be a valid dictionary"),
        ("LEAD_ENGAGEMENT_WEIGHTS", '{"meet": 3}', "lead_engagement_weights.meet.[key]"),
        ("LEAD_ENGAGEMENT_WEIGHTS", '{"web": -1}', "lead_engagement_weights.web\n  Input should be greater than"),
        ("LEAD_ENGAGEMENT_WEIGHTS", '{"web": 1.5}', "lead_engagement_weights.web"),
        ("LEAD_QUALIFIED_SCORE", "0", "lead_qualified_score"),
        ("LEAD_QUALIFIED_SCORE", "five", "lead_qualified_score"),
        ("LEAD_ENGAGEMENT_DAYS", "0", "lead_engagement_days"),
        ("LEAD_ENGAGEMENT_DAYS", "400", "lead_engagement_days"),
    ],
)
def test_a_bad_engagement_setting_stops_the_service_saying_why(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(f"CRM_MARKETING_{name}", value)
    with pytest.raises(ValidationError) as refused:
        MarketingSettings()
    assert message in str(refused.value)
