"""Contact preferences and how a customer takes part in a journey. Pure: no I/O, no framework.

Contact preferences are marketing's own projection of the customer's channel consents (no name,
email or phone): each channel keeps the newest fact about it, by the fact's own time; at equal times
a refusal wins over a grant, whatever the event ids (a tie never contacts someone who said no). Facts
are ranked by a total order, so the same facts in any order give the same preferences.

An enrolment decides, in this order: the holdout group (a deterministic draw per customer and
journey, so a redelivery decides the same), the channel (a refused channel is never used), the
frequency cap across every capped journey, then the campaign budget (enforced by the repository,
atomically). Only a contacted enrolment reaches the customer and spends the budget.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

from crm_shared.events import Channel, ConsentChanged, CustomerRegistered, derived_event_id

EnrolmentStatus = Literal["contacted", "holdout", "skipped"]

NO_CONSENT_ON_RECORD = "no consent on record"
EVERY_CHANNEL_REFUSED = "customer refused every channel"
FREQUENCY_CAP = "frequency cap"
BUDGET_EXHAUSTED = "budget exhausted"
HOLDOUT = "holdout group"

# Outbound channels first: when the preferred one is not granted, marketing reaches out where it may.
CHANNEL_FALLBACK_ORDER: tuple[Channel, ...] = (
    "email",
    "sms",
    "phone",
    "post",
    "call_centre",
    "face_to_face",
    "partner",
    "web",
    "pos",
)


# ---------------------------------------------------------------- contact preferences


@dataclass(frozen=True)
class Fact:
    """When a preference was stated, and by which event; for the preferred channel the newest (at, event_id) wins."""

    at: datetime
    event_id: str

    def newer_than(self, other: Fact | None) -> bool:
        return other is None or (self.at, self.event_id) > (other.at, other.event_id)


@dataclass(frozen=True)
class Consent:
    granted: bool
    fact: Fact

    def supersedes(self, other: Consent | None) -> bool:
        """Newer wins; at equal times a refusal beats a grant; the event id only breaks what is left of a tie.

        The customer service stamps a refusal at the time of the channel's last change when that is ahead
        of its clock, so a refusal can carry exactly the time of the grant it answers.
        """
        return other is None or self._rank > other._rank

    @property
    def _rank(self) -> tuple[datetime, bool, str]:
        return (self.fact.at, not self.granted, self.fact.event_id)


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
    """Merge the marketing consents stated at sign-up (service consents are not marketing's to use); a channel's
    newer fact (by its own time) wins, a refusal on a tie."""
    prefs = prefs or ContactPreferences(customer_id=registered.customer_id)
    fact = Fact(at, event_id)
    consents = dict(prefs.consents)
    for stated in registered.consents:
        if stated.purpose != "marketing":
            continue
        consent = Consent(stated.granted, fact)
        if consent.supersedes(consents.get(stated.channel)):
            consents[stated.channel] = consent
    preferred = prefs.preferred
    if fact.newer_than(preferred.fact if preferred else None):
        preferred = Preferred(registered.preferred_channel, fact)
    return replace(prefs, consents=consents, preferred=preferred)


def record_consent_change(
    prefs: ContactPreferences | None, changed: ConsentChanged, event_id: str, at: datetime
) -> ContactPreferences:
    """Merge one channel's new marketing consent (and the preferred channel, when stated); the newer fact wins, a
    refusal on a tie. A service consent changes nothing here: granting service messages is no marketing consent."""
    prefs = prefs or ContactPreferences(customer_id=changed.customer_id)
    if changed.purpose != "marketing":
        return prefs
    fact = Fact(at, event_id)
    consents = dict(prefs.consents)
    consent = Consent(changed.granted, fact)
    if consent.supersedes(consents.get(changed.channel)):
        consents[changed.channel] = consent
    preferred = prefs.preferred
    if changed.preferred_channel is not None and fact.newer_than(preferred.fact if preferred else None):
        preferred = Preferred(changed.preferred_channel, fact)
    return replace(prefs, consents=consents, preferred=preferred)


@dataclass(frozen=True)
class ChannelChoice:
    channel: Channel | None
    reason: str | None = None


def choose_channel(prefs: ContactPreferences | None, only: Channel | None = None) -> ChannelChoice:
    """The preferred channel if granted, else the first granted in CHANNEL_FALLBACK_ORDER, else why not.

    `only` is a campaign's fixed channel: used when granted, never otherwise.
    """
    if prefs is None or not prefs.consents:
        return ChannelChoice(None, NO_CONSENT_ON_RECORD)
    granted = prefs.granted
    if not granted:
        return ChannelChoice(None, EVERY_CHANNEL_REFUSED)
    if only is not None:
        return ChannelChoice(only) if only in granted else ChannelChoice(None, f"customer has not granted {only}")
    if prefs.preferred_channel in granted:
        return ChannelChoice(prefs.preferred_channel)
    return ChannelChoice(granted[0])


# ---------------------------------------------------------------- holdout and frequency cap


@dataclass(frozen=True)
class Policy:
    """The rules every enrolment follows, from the settings."""

    holdout_share: float = 0.10
    max_contacts_per_period: int = 3
    cap_period: timedelta = timedelta(days=7)
    attribution_window: timedelta = timedelta(days=30)


def holdout_draw(customer_id: str, journey: str) -> float:
    """A number in [0, 1) that is the same every time for this customer and journey."""
    digest = hashlib.sha256(f"holdout|{journey}|{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def in_holdout(customer_id: str, journey: str, share: float) -> bool:
    return holdout_draw(customer_id, journey) < share


def over_frequency_cap(recent_contacts: int, policy: Policy) -> bool:
    """`recent_contacts`: capped contacts of this customer within the cap period before this enrolment."""
    return recent_contacts >= policy.max_contacts_per_period


def can_spend(budget: Decimal, spent: Decimal, cost: Decimal) -> bool:
    """A budget is never overspent: what is left must cover the whole cost."""
    return spent + cost <= budget


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
    cost: Decimal = Decimal(0)
    frequency_capped: bool = True
    origin_customer_id: str | None = None
    """The id the enrolment was filed under first, when it is now a survivor's (a merge, or a trigger that
    named the merged id)."""


def enrolment_id(customer_id: str, journey: str, episode: str) -> str:
    """Derived from what makes an enrolment unique, so a retry derives the same id."""
    return derived_event_id("/crm/marketing/enrolments", customer_id, journey, episode)


@dataclass(frozen=True)
class Decision:
    status: EnrolmentStatus
    channel: Channel | None = None
    reason: str | None = None


def decide(
    customer_id: str,
    journey: str,
    prefs: ContactPreferences | None,
    policy: Policy,
    *,
    recent_contacts: int,
    frequency_capped: bool = True,
    only_channel: Channel | None = None,
) -> Decision:
    """Holdout first (so both groups are drawn alike), then consent, then the frequency cap.

    The budget comes last and is the repository's, since it must be enforced atomically.
    """
    if in_holdout(customer_id, journey, policy.holdout_share):
        return Decision("holdout", reason=HOLDOUT)
    choice = choose_channel(prefs, only_channel)
    if choice.channel is None:
        return Decision("skipped", reason=choice.reason)
    if frequency_capped and over_frequency_cap(recent_contacts, policy):
        return Decision("skipped", reason=FREQUENCY_CAP)
    return Decision("contacted", channel=choice.channel)


def enrol(
    customer_id: str,
    journey: str,
    campaign_id: str,
    episode: str,
    trigger_event_id: str,
    decision: Decision,
    at: datetime,
    cost: Decimal = Decimal(0),
    frequency_capped: bool = True,
    origin_customer_id: str | None = None,
) -> Enrolment:
    return Enrolment(
        enrolment_id=enrolment_id(customer_id, journey, episode),
        customer_id=customer_id,
        campaign_id=campaign_id,
        journey=journey,
        episode=episode,
        channel=decision.channel,
        status=decision.status,
        reason=decision.reason,
        trigger_event_id=trigger_event_id,
        enrolled_at=at,
        cost=cost if decision.status == "contacted" else Decimal(0),
        frequency_capped=frequency_capped,
        origin_customer_id=origin_customer_id,
    )


# ---------------------------------------------------------------- attribution


def attributed(enrolled_at: datetime, ordered_at: datetime, window: timedelta) -> bool:
    """An order counts for an enrolment when placed after it and at most `window` later."""
    return enrolled_at < ordered_at <= enrolled_at + window


@dataclass(frozen=True)
class GroupOutcome:
    """How one group of a campaign did: enrolled customers, those who ordered, and what they spent."""

    enrolled: int
    converted: int
    orders: int
    revenue: Decimal

    @property
    def conversion_rate(self) -> float | None:
        return self.converted / self.enrolled if self.enrolled else None

    @property
    def revenue_per_customer(self) -> Decimal | None:
        return self.revenue / self.enrolled if self.enrolled else None


Z_95 = 1.959964
"""The standard normal quantile of a two-sided 95% interval."""


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson's score interval of a proportion (n > 0): sound at 0 and n successes, where the normal one collapses."""
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def difference_interval(
    successes_1: int, n_1: int, successes_2: int, n_2: int, z: float = Z_95
) -> tuple[float, float] | None:
    """Newcombe's hybrid score interval (1998, his method 10) of p1 - p2, from the Wilson interval of each
    proportion; None when a group is empty."""
    if n_1 <= 0 or n_2 <= 0:
        return None
    p1, p2 = successes_1 / n_1, successes_2 / n_2
    l1, u1 = wilson_interval(successes_1, n_1, z)
    l2, u2 = wilson_interval(successes_2, n_2, z)
    d = p1 - p2
    return d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


@dataclass(frozen=True)
class CampaignResults:
    treated: GroupOutcome
    holdout: GroupOutcome
    cost: Decimal

    @property
    def uplift(self) -> float | None:
        """Treated minus holdout conversion rate (absolute); None without both groups."""
        t, h = self.treated.conversion_rate, self.holdout.conversion_rate
        return t - h if t is not None and h is not None else None

    @property
    def uplift_interval(self) -> tuple[float, float] | None:
        """The uplift's 95% confidence interval (Newcombe's hybrid score interval); None without both groups."""
        t, h = self.treated, self.holdout
        return difference_interval(t.converted, t.enrolled, h.converted, h.enrolled)

    @property
    def incremental_revenue(self) -> Decimal | None:
        """Revenue the contacts added: the revenue-per-customer gap times the contacted customers."""
        t, h = self.treated.revenue_per_customer, self.holdout.revenue_per_customer
        if t is None or h is None:
            return None
        return ((t - h) * self.treated.enrolled).quantize(Decimal("0.01"))

    @property
    def roi(self) -> float | None:
        """(Incremental revenue - cost) / cost; None when nothing was spent or there is no holdout to compare."""
        incremental = self.incremental_revenue
        if incremental is None or self.cost == 0:
            return None
        return float((incremental - self.cost) / self.cost)
