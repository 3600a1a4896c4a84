"""Journeys trigger on the right segment changes; the channel respects consent and preference."""

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm_marketing import domain
from crm_marketing.journeys import DEFAULT_JOURNEYS, Journey, check_journeys, journeys_triggered
from crm_shared.events import (
    Channel,
    ChannelConsent,
    ConsentChanged,
    CustomerRegistered,
    ScoreSnapshot,
    SegmentChanged,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def scores(**overrides: Any) -> ScoreSnapshot:
    values: dict[str, Any] = {
        "recency_days": 3,
        "frequency": 1,
        "monetary": Decimal("1500.00"),
        "average_order_value": Decimal("1500.00"),
        "value_tier": "high_value",
        "lifecycle_stage": "first_time_buyer",
        "churn_risk": 0.1,
        "churn_risk_band": "low",
        "satisfaction": None,
    }
    return ScoreSnapshot(**{**values, **overrides})


def change(dimension: Any, old: str | None, new: str, **score_overrides: Any) -> SegmentChanged:
    return SegmentChanged(
        customer_id="C-1",
        dimension=dimension,
        old=old,
        new=new,
        scores=scores(**score_overrides),
        model_version="v1",
        changed_at=T0,
        caused_by="e-order",
    )


def names(journeys: list[Journey]) -> list[str]:
    return [j.name for j in journeys]


def registered(consents: dict[Channel, bool], preferred: Channel | None = None) -> CustomerRegistered:
    return CustomerRegistered(
        customer_id="C-1",
        name="Test Person",
        consents=[ChannelConsent(channel=c, granted=g) for c, g in consents.items()],
        preferred_channel=preferred,
    )


def prefs(consents: dict[Channel, bool], preferred: Channel | None = None) -> domain.ContactPreferences:
    return domain.record_registration(None, registered(consents, preferred), "e-reg", T0)


def refuse(state: domain.ContactPreferences, *channels: Channel) -> domain.ContactPreferences:
    """Refuse channels after sign-up (the contract refuses preferring a refused channel at sign-up)."""
    for i, channel in enumerate(channels):
        changed = ConsentChanged(customer_id=state.customer_id, channel=channel, granted=False)
        state = domain.record_consent_change(state, changed, f"e-refuse-{i}", T0 + timedelta(hours=1))
    return state


# ---------------------------------------------------------------- journeys


def test_the_first_order_triggers_the_welcome_journey() -> None:
    triggered = journeys_triggered(change("lifecycle_stage", "prospect", "first_time_buyer"), DEFAULT_JOURNEYS)
    assert names(triggered) == ["welcome"]


def test_becoming_high_value_triggers_the_thank_you() -> None:
    triggered = journeys_triggered(change("value_tier", "potential", "high_value"), DEFAULT_JOURNEYS)
    assert names(triggered) == ["high-value-thank-you"]


def test_a_high_value_customer_at_high_churn_risk_gets_service_recovery() -> None:
    at_risk = change("churn_risk_band", "low", "high", value_tier="high_value", churn_risk_band="high")
    assert names(journeys_triggered(at_risk, DEFAULT_JOURNEYS)) == ["service-recovery"]


@pytest.mark.parametrize("tier", ["potential", "low_value"])
def test_service_recovery_is_only_for_high_value_customers(tier: str) -> None:
    at_risk = change("churn_risk_band", "medium", "high", value_tier=tier, churn_risk_band="high")
    assert journeys_triggered(at_risk, DEFAULT_JOURNEYS) == []


@pytest.mark.parametrize(
    ("dimension", "old", "new"),
    [
        ("value_tier", "high_value", "low_value"),
        ("churn_risk_band", "low", "medium"),
        ("lifecycle_stage", "first_time_buyer", "repeat"),
        ("rfm_segment", "new", "champions"),
        ("value_tier", "high_value", "high_value"),
    ],
)
def test_other_changes_trigger_nothing(dimension: str, old: str, new: str) -> None:
    assert journeys_triggered(change(dimension, old, new), DEFAULT_JOURNEYS) == []


def test_journeys_are_data_and_names_must_be_unique() -> None:
    vip = Journey(name="vip", campaign_id="vip-2026", dimension="value_tier", new_value="high_value")
    triggered = journeys_triggered(change("value_tier", None, "high_value"), (*DEFAULT_JOURNEYS, vip))
    assert names(triggered) == ["high-value-thank-you", "vip"]
    assert vip.campaign == "vip-2026" and DEFAULT_JOURNEYS[0].campaign == "welcome"
    with pytest.raises(ValueError, match="repeated: vip"):
        check_journeys([vip, vip])


# ---------------------------------------------------------------- channel choice


def test_the_preferred_channel_is_used_when_granted() -> None:
    assert domain.choose_channel(prefs({"email": True, "sms": True}, preferred="sms")) == domain.ChannelChoice("sms")


def test_a_refused_preference_falls_back_to_the_first_granted_channel() -> None:
    choice = domain.choose_channel(refuse(prefs({"sms": True, "phone": True, "email": True}, preferred="sms"), "sms"))
    assert choice == domain.ChannelChoice("email")


def test_only_sms_granted_means_sms() -> None:
    assert domain.choose_channel(prefs({"email": False, "sms": True})) == domain.ChannelChoice("sms")


def test_no_record_means_no_contact() -> None:
    assert domain.choose_channel(None) == domain.ChannelChoice(None, "no consent on record")
    assert domain.choose_channel(prefs({})) == domain.ChannelChoice(None, "no consent on record")


def test_service_consents_are_not_marketing_consents() -> None:
    signed_up = CustomerRegistered(
        customer_id="C-1",
        name="Test Person",
        consents=[
            ChannelConsent(channel="email", granted=False),
            ChannelConsent(channel="sms", granted=True, purpose="service"),
        ],
    )
    state = domain.record_registration(None, signed_up, "e-reg", T0)
    assert (state.granted, state.refused) == ((), ("email",))
    service_grant = ConsentChanged(customer_id="C-1", channel="email", granted=True, purpose="service")
    assert domain.record_consent_change(state, service_grant, "e-2", T0 + timedelta(hours=1)) == state


def test_refusing_every_channel_means_no_contact() -> None:
    choice = domain.choose_channel(refuse(prefs({"email": True, "phone": False}, preferred="email"), "email", "phone"))
    assert choice == domain.ChannelChoice(None, "customer refused every channel")


def test_every_channel_has_a_place_in_the_fallback_order() -> None:
    assert sorted(domain.CHANNEL_FALLBACK_ORDER) == sorted(get_args(Channel))


def test_the_newest_consent_wins_whatever_the_arrival_order() -> None:
    facts = [
        (registered({"email": True, "sms": True}, preferred="email"), "e1", T0),
        (registered({"email": False, "sms": True}, preferred="sms"), "e2", T0 + timedelta(days=2)),
        (registered({"phone": True}), "e3", T0 + timedelta(days=1)),
    ]
    results = set()
    for order in itertools.permutations(facts):
        state = None
        for fact, event_id, at in order:
            state = domain.record_registration(state, fact, event_id, at)
        assert state is not None
        results.add((state.granted, state.refused, state.preferred_channel))
    assert results == {(("sms", "phone"), ("email",), "sms")}


# A consent fact: (channel, granted, event id, seconds after T0) through a registration or a consent change.
ConsentFact = tuple[Channel, bool, str, int, bool]

consent_facts = st.lists(
    st.tuples(
        st.sampled_from(["email", "sms"]),
        st.booleans(),
        st.sampled_from(["e-a", "e-b", "e-c", "e-z", "0", "ffff"]),
        st.integers(min_value=0, max_value=2),
        st.booleans(),
    ),
    max_size=8,
)


def apply(state: domain.ContactPreferences | None, fact: ConsentFact) -> domain.ContactPreferences:
    channel, granted, event_id, seconds, at_sign_up = fact
    at = T0 + timedelta(seconds=seconds)
    if at_sign_up:
        return domain.record_registration(state, registered({channel: granted}), event_id, at)
    changed = ConsentChanged(customer_id="C-1", channel=channel, granted=granted)
    return domain.record_consent_change(state, changed, event_id, at)


@given(
    at=st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2199, 12, 30), timezones=st.just(UTC)),
    grant_id=st.text(min_size=1, max_size=8),
    refusal_id=st.text(min_size=1, max_size=8),
    grant_at_sign_up=st.booleans(),
)
def test_a_refusal_wins_over_a_grant_of_the_same_time_in_either_order(
    at: datetime, grant_id: str, refusal_id: str, grant_at_sign_up: bool
) -> None:
    if grant_at_sign_up:

        def grant(state: domain.ContactPreferences | None) -> domain.ContactPreferences:
            return domain.record_registration(state, registered({"email": True}), grant_id, at)
    else:

        def grant(state: domain.ContactPreferences | None) -> domain.ContactPreferences:
            changed = ConsentChanged(customer_id="C-1", channel="email", granted=True)
            return domain.record_consent_change(state, changed, grant_id, at)

    refused = ConsentChanged(customer_id="C-1", channel="email", granted=False)

    def refusal(state: domain.ContactPreferences | None) -> domain.ContactPreferences:
        return domain.record_consent_change(state, refused, refusal_id, at)

    for state in (refusal(grant(None)), grant(refusal(None))):
        assert (state.granted, state.refused) == ((), ("email",))
        assert domain.choose_channel(state) == domain.ChannelChoice(None, "customer refused every channel")


def test_a_later_grant_still_wins_over_an_earlier_refusal() -> None:
    refused = apply(None, ("email", False, "e-z", 0, False))
    assert apply(refused, ("email", True, "e-a", 1, False)).granted == ("email",)


@given(consent_facts, st.randoms(use_true_random=False))
def test_the_same_consent_facts_in_any_order_give_the_same_preferences(facts: list[ConsentFact], random: Any) -> None:
    shuffled = list(facts)
    random.shuffle(shuffled)
    state = ordered = None
    for fact in facts:
        state = apply(state, fact)
    for fact in shuffled:
        ordered = apply(ordered, fact)
    assert ordered == state
    if state is not None:
        for channel in ("email", "sms"):
            latest = max((f[3] for f in facts if f[0] == channel), default=None)
            tied = {f[1] for f in facts if f[0] == channel and f[3] == latest}
            if tied:
                # The newest time decides; a refusal among the newest decides for it.
                assert (channel in state.granted) == (tied == {True})


def test_enrolment_ids_are_keyed_by_customer_journey_and_episode() -> None:
    first = domain.enrolment_id("C-1", "welcome", "seg-1")
    assert first == domain.enrolment_id("C-1", "welcome", "seg-1")
    assert first != domain.enrolment_id("C-1", "welcome", "seg-2")
    assert first != domain.enrolment_id("C-1", "win-back", "seg-1")
