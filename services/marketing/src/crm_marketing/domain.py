"""Triggered journeys, contact preferences and enrolments. Pure: no I/O, no framework.

A journey is data: which segment change triggers it and which campaign it runs. Scoring publishes
one segment-changed event per boundary crossing, so that event's id names the journey *episode*: a
customer is enrolled at most once per (journey, episode), and a later crossing is a new episode.

Contact preferences are marketing's own projection of the customer's channel consents (no name,
email or phone): each channel keeps the newest fact about it, by the fact's own time, so the same
facts in any order give the same preferences.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

from crm_shared.events import Channel, CustomerRegistered, SegmentChanged, SegmentDimension, derived_event_id

EnrolmentStatus = Literal["contacted", "holdout", "skipped"]

NO_CONSENT_ON_RECORD = "no consent on record"
EVERY_CHANNEL_REFUSED = "customer refused every channel"

# Outbound channels first: when the preferred one is not granted, marketing reaches out where it may.
CHANNEL_FALLBACK_ORDER: tuple[Channel, ...] = (
    "email",
    "sms",
    "phone",
    "call_centre",
    "face_to_face",
    "partner",
    "web",
    "pos",
)


# ---------------------------------------------------------------- journeys


@dataclass(frozen=True)
class Journey:
    """A campaign triggered when a customer's segment on `dimension` becomes `new_value`."""

    name: str
    campaign_id: str
    dimension: SegmentDimension
    new_value: str
    requires_value_tier: str | None
    description: str

    @property
    def channel_rules(self) -> str:
        order = ", ".join(CHANNEL_FALLBACK_ORDER)
        return f"the customer's preferred channel if granted, else the first granted of: {order}"


def check_journeys(*journeys: Journey) -> tuple[Journey, ...]:
    """Refuse a configuration where two journeys share a name (enrolments are unique per journey name)."""
    names = [j.name for j in journeys]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"journey names must be unique, repeated: {', '.join(duplicates)}")
    return journeys


DEFAULT_JOURNEYS: tuple[Journey, ...] = check_journeys(
    Journey(
        name="welcome",
        campaign_id="welcome",
        dimension="lifecycle_stage",
        new_value="first_time_buyer",
        requires_value_tier=None,
        description="Welcome a customer after the first order, the hard conversion, so a second one follows.",
    ),
    Journey(
        name="high-value-thank-you",
        campaign_id="high-value-thank-you",
        dimension="value_tier",
        new_value="high_value",
        requires_value_tier=None,
        description="Thank a customer who became high value and introduce their one-to-one follow-up.",
    ),
    Journey(
        name="service-recovery",
        campaign_id="service-recovery",
        dimension="churn_risk_band",
        new_value="high",
        requires_value_tier="high_value",
        description="Win back the trust of a high-value customer whose churn risk became high.",
    ),
)


def journeys_triggered(change: SegmentChanged, journeys: Iterable[Journey]) -> list[Journey]:
    """The journeys this segment change starts, in configuration order."""
    if change.old == change.new:
        return []
    return [
        j
        for j in journeys
        if j.dimension == change.dimension
        and j.new_value == change.new
        and (j.requires_value_tier is None or change.scores.value_tier == j.requires_value_tier)
    ]


# ---------------------------------------------------------------- contact preferences


@dataclass(frozen=True)
class Fact:
    """When a preference was stated, and by which event; the newest (at, event_id) wins."""

    at: datetime
    event_id: str

    def newer_than(self, other: Fact | None) -> bool:
        return other is None or (self.at, self.event_id) > (other.at, other.event_id)


@dataclass(frozen=True)
class Consent:
    granted: bool
    fact: Fact


@dataclass(frozen=True)
class Preferred:
    channel: Channel | None
    fact: Fact


@dataclass(frozen=True)
class ContactPreferences:
    customer_id: str
    consents: Mapping[Channel, Consent] = field(default_factory=dict)
    preferred: Preferred | None = None

    @property
    def granted(self) -> tuple[Channel, ...]:
        return tuple(c for c in CHANNEL_FALLBACK_ORDER if (k := self.consents.get(c)) and k.granted)

    @property
    def refused(self) -> tuple[Channel, ...]:
        return tuple(c for c in CHANNEL_FALLBACK_ORDER if (k := self.consents.get(c)) and not k.granted)

    @property
    def preferred_channel(self) -> Channel | None:
        return self.preferred.channel if self.preferred else None


def record_registration(
    prefs: ContactPreferences | None, registered: CustomerRegistered, event_id: str, at: datetime
) -> ContactPreferences:
    """Merge the consents stated at sign-up; a channel's newer fact (by its own time) wins."""
    prefs = prefs or ContactPreferences(customer_id=registered.customer_id)
    fact = Fact(at, event_id)
    consents = dict(prefs.consents)
    for consent in registered.consents:
        if fact.newer_than(k.fact if (k := consents.get(consent.channel)) else None):
            consents[consent.channel] = Consent(consent.granted, fact)
    preferred = prefs.preferred
    if fact.newer_than(preferred.fact if preferred else None):
        preferred = Preferred(registered.preferred_channel, fact)
    return replace(prefs, consents=consents, preferred=preferred)


@dataclass(frozen=True)
class ChannelChoice:
    channel: Channel | None
    reason: str | None = None


def choose_channel(prefs: ContactPreferences | None) -> ChannelChoice:
    """The preferred channel if granted, else the first granted in CHANNEL_FALLBACK_ORDER, else why not."""
    if prefs is None or not prefs.consents:
        return ChannelChoice(None, NO_CONSENT_ON_RECORD)
    granted = prefs.granted
    if not granted:
        return ChannelChoice(None, EVERY_CHANNEL_REFUSED)
    if prefs.preferred_channel in granted:
        return ChannelChoice(prefs.preferred_channel)
    return ChannelChoice(granted[0])


# ---------------------------------------------------------------- enrolments


@dataclass(frozen=True)
class Enrolment:
    enrolment_id: str
    customer_id: str
    campaign_id: str
    journey: str
    episode: str
    channel: Channel | None
    status: EnrolmentStatus
    reason: str | None
    trigger_event_id: str
    enrolled_at: datetime


def enrolment_id(customer_id: str, journey: str, episode: str) -> str:
    """Derived from what makes an enrolment unique, so a retry derives the same id."""
    return derived_event_id("/crm/marketing/enrolments", customer_id, journey, episode)


def enrol(
    journey: Journey,
    customer_id: str,
    episode: str,
    trigger_event_id: str,
    prefs: ContactPreferences | None,
    at: datetime,
) -> Enrolment:
    """Decide how the customer takes part in the journey's episode.

    Issue #5 adds the holdout group (status "holdout"), campaign budgets and frequency caps: they
    decide here, before the channel, since a held-out or capped customer is not contacted at all.
    """
    choice = choose_channel(prefs)
    return Enrolment(
        enrolment_id=enrolment_id(customer_id, journey.name, episode),
        customer_id=customer_id,
        campaign_id=journey.campaign_id,
        journey=journey.name,
        episode=episode,
        channel=choice.channel,
        status="contacted" if choice.channel is not None else "skipped",
        reason=choice.reason,
        trigger_event_id=trigger_event_id,
        enrolled_at=at,
    )
