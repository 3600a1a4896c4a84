"""Profiles, consents, interactions, referrals and the 360 timeline. Pure: no I/O, no framework.

A registration states who the customer is and which channels they consented to. Registering the
same customer again with the same details is a no-op; with other details it is refused, since
profile updates are a separate use case (to come). Name, email and phone arrive in clear: a registration
that brings them sealed is refused, since only the customer service seals them (with the customer's
`PersonalKey`, in the events it publishes).

Erasing a customer's personal data removes name, email and phone from the profile (and, in the handlers,
destroys the key, so every sealed copy in old events becomes unreadable); the customer id, consents and
registration stay, so refusals keep being honoured. An erased customer may register again: from a time
after the erasure, with new details; each channel's newer answer wins, as for consent changes.

The timeline is one entry per event of any service, readable by a person: its summary is built from
the payload without personal data, and the stored payload of a sign-up leaves out name, email and
phone, which only the profile holds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any, Literal

from crm_shared.events import (
    PERSONAL_FIELDS,
    AccountContactChanged,
    ActivityCompleted,
    ActivityScheduled,
    CampaignContacted,
    CampaignConverted,
    CampaignEnrolled,
    Channel,
    ChannelConsent,
    CloudEvent,
    ComplaintFiled,
    ConsentChanged,
    ConsentPurpose,
    CustomerErased,
    CustomerExportRequested,
    CustomerMatchKeysChanged,
    CustomerMerged,
    CustomerProfileUpdated,
    CustomerReferred,
    CustomerRegistered,
    CustomerUnmerged,
    InteractionLogged,
    LeadConverted,
    LeadQualified,
    OpportunityLost,
    OpportunityOpened,
    OpportunityStageChanged,
    OpportunityWon,
    OrderCancelled,
    OrderFulfilled,
    OrderPaid,
    OrderPlaced,
    OrderRefunded,
    QuoteAccepted,
    QuoteRejected,
    QuoteSent,
    SegmentChanged,
    SlaBreached,
    SlaWarned,
    SurveyAnswered,
    SurveyRequested,
    TicketAssigned,
    TicketOpened,
    TicketReplied,
    TicketStatusChanged,
    VisitScheduled,
    VisitStatusChanged,
)
from crm_shared.personal import is_sealed


class RegistrationRejected(Exception):
    """The registration contradicts the profile already on record."""


class ConsentRejected(Exception):
    """The consent change contradicts the customer's consents (e.g. prefers a channel not granted)."""


class InteractionRejected(Exception):
    """The interaction id is already logged with other content."""


class ReferralRejected(Exception):
    """The referral id is already recorded with other content."""


# ---------------------------------------------------------------- profiles and consents


def consents_by_channel(consents: list[ChannelConsent], purpose: ConsentPurpose = "marketing") -> dict[Channel, bool]:
    """One answer per channel for the purpose; the same channel stated twice with different answers is refused."""
    by_channel: dict[Channel, bool] = {}
    for consent in consents:
        if consent.purpose != purpose:
            continue
        if by_channel.get(consent.channel, consent.granted) != consent.granted:
            raise RegistrationRejected(
                f"the {purpose} consent for {consent.channel} is stated twice with different answers"
            )
        by_channel[consent.channel] = consent.granted
    return by_channel


PERSONAL_DATA = ("name", "email", "phone")
"""The fields of a profile that identify the person: sealed in events, removed by an erasure."""


def sealed_fields(registered: CustomerRegistered) -> list[str]:
    """The personal fields of a registration that arrived sealed (a channel must send them in clear)."""
    return [name for name in PERSONAL_DATA if is_sealed(getattr(registered, name))]


@dataclass(frozen=True)
class Details:
    """What a registration states about the customer; the order of the consents does not matter.

    Name, email and phone are None once the customer's personal data was erased."""

    name: str | None
    email: str | None
    phone: str | None
    channel: Channel
    consents: Mapping[Channel, bool]
    preferred_channel: Channel | None
    kind: Literal["person", "organisation"] = "person"
    service_consents: Mapping[Channel, bool] = field(default_factory=dict)
    """Consents for service messages (about the customer's orders and tickets): allowed unless refused."""

    @classmethod
    def of(cls, registered: CustomerRegistered) -> Details:
        return cls(
            name=registered.name,
            email=registered.email,
            phone=registered.phone,
            channel=registered.channel,
            consents=consents_by_channel(registered.consents),
            preferred_channel=registered.preferred_channel,
            kind=registered.kind,
            service_consents=consents_by_channel(registered.consents, "service"),
        )

    def consents_for(self, purpose: ConsentPurpose) -> Mapping[Channel, bool]:
        return self.consents if purpose == "marketing" else self.service_consents

    def differing_fields(self, other: Details) -> list[str]:
        """The names (never the values: they are personal data) of the fields that differ."""
        return [f.name for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)]

    @property
    def personal_fields(self) -> list[str]:
        """The names of the personal fields that hold a value."""
        return [name for name in PERSONAL_DATA if getattr(self, name) is not None]


@dataclass(frozen=True)
class Profile:
    customer_id: str
    details: Details
    registered_at: datetime
    registered_by: str
    # When each channel's consent last changed after sign-up; the newer fact (by its own time) wins.
    consents_changed_at: Mapping[Channel, datetime] = field(default_factory=dict)
    # When the personal data was erased; None while the profile holds it (and again after a new sign-up).
    erased_at: datetime | None = None
    # As consents_changed_at, for the service consents.
    service_consents_changed_at: Mapping[Channel, datetime] = field(default_factory=dict)

    def changed_at_for(self, purpose: ConsentPurpose) -> Mapping[Channel, datetime]:
        return self.consents_changed_at if purpose == "marketing" else self.service_consents_changed_at

    @property
    def granted(self) -> list[Channel]:
        return sorted(c for c, granted in self.details.consents.items() if granted)

    @property
    def refused(self) -> list[Channel]:
        return sorted(c for c, granted in self.details.consents.items() if not granted)


def register(profile: Profile | None, registered: CustomerRegistered, at: datetime, event_id: str) -> Profile:
    """The profile after this registration: new, unchanged when the same details were registered before, or
    holding the new details when the customer's personal data was erased before `at`."""
    sealed = sealed_fields(registered)
    if sealed:
        raise RegistrationRejected(
            f"the {', '.join(sealed)} of customer {registered.customer_id} arrived sealed: channels send name, "
            "email and phone in clear, only the customer service seals them"
        )
    details = Details.of(registered)
    if profile is None:
        return Profile(registered.customer_id, details, at, event_id)
    if profile.erased_at is not None:
        return _registered_again(profile, details, at)
    differing = profile.details.differing_fields(details)
    if differing:
        raise RegistrationRejected(
            f"customer {registered.customer_id} is already registered with a different {', '.join(differing)};"
            " profile updates are not supported yet"
        )
    return profile


def _registered_again(profile: Profile, details: Details, at: datetime) -> Profile:
    """An erased customer signs up again: the new name, email, phone and channel; each stated consent where it
    is the channel's newer fact (a refusal on a tie), the others as on record; the preferred channel stated
    when it is granted, else the one on record when it still is. The first registration's time stays."""
    assert profile.erased_at is not None
    if at <= profile.erased_at:
        raise RegistrationRejected(
            f"the personal data of customer {profile.customer_id} was erased at {profile.erased_at.isoformat()}: "
            f"a registration of {at.isoformat()}, from before then, is not applied again"
        )

    def merged(
        recorded: Mapping[Channel, bool], times: Mapping[Channel, datetime], stated: Mapping[Channel, bool]
    ) -> tuple[dict[Channel, bool], dict[Channel, datetime]]:
        consents, changed_at = dict(recorded), dict(times)
        for channel, granted in stated.items():
            on_record = (changed_at.get(channel, profile.registered_at), consents.get(channel) is False)
            if (at, not granted) > on_record:
                consents[channel], changed_at[channel] = granted, at
        return consents, changed_at

    consents, changed_at = merged(profile.details.consents, profile.consents_changed_at, details.consents)
    service, service_at = merged(
        profile.details.service_consents, profile.service_consents_changed_at, details.service_consents
    )
    stated, recorded_preferred = details.preferred_channel, profile.details.preferred_channel
    preferred = next((c for c in (stated, recorded_preferred) if c is not None and consents.get(c)), None)
    return replace(
        profile,
        details=replace(details, consents=consents, preferred_channel=preferred, service_consents=service),
        consents_changed_at=changed_at,
        service_consents_changed_at=service_at,
        erased_at=None,
    )


def erase_personal_data(profile: Profile, at: datetime) -> Profile:
    """The profile without name, email and phone, erased at `at`; the customer id, channel, consents, preferred
    channel and registration stay, so refusals keep being honoured. A profile already erased stays as it is."""
    if profile.erased_at is not None and not profile.details.personal_fields:
        return profile
    return replace(profile, details=replace(profile.details, name=None, email=None, phone=None), erased_at=at)


def change_consent(profile: Profile, changed: ConsentChanged, at: datetime) -> Profile:
    """The profile with one channel's consent (and the preferred channel, when stated) changed.

    The newer fact for the channel wins, by its own time, so facts in any order agree; at equal times a
    refusal wins over a grant. The preferred channel is always a granted one: naming one that is not
    granted is refused, and refusing the preferred channel leaves no preferred channel.
    """
    if changed.purpose == "service":
        return _change_service_consent(profile, changed, at)
    previous_at = profile.consents_changed_at.get(changed.channel, profile.registered_at)
    newer, older = (at, not changed.granted), (previous_at, profile.details.consents.get(changed.channel) is False)
    if newer < older:
        return profile
    # A later restatement of the same answer moves the channel's time too, so an older fact stays older.
    changed_at = {**profile.consents_changed_at, changed.channel: at} if newer > older else profile.consents_changed_at
    details = profile.details
    consents = {**details.consents, changed.channel: changed.granted}
    preferred = changed.preferred_channel or details.preferred_channel
    if changed.preferred_channel is not None and not consents.get(changed.preferred_channel):
        raise ConsentRejected(
            f"{changed.preferred_channel} cannot be the preferred channel of customer {profile.customer_id}:"
            " the customer has not granted it"
        )
    if preferred is not None and not consents.get(preferred):
        preferred = None
    if (
        consents == dict(details.consents)
        and preferred == details.preferred_channel
        and changed_at == profile.consents_changed_at
    ):
        return profile
    return replace(
        profile,
        details=replace(details, consents=consents, preferred_channel=preferred),
        consents_changed_at=changed_at,
    )


def _change_service_consent(profile: Profile, changed: ConsentChanged, at: datetime) -> Profile:
    """One channel's service consent: the newer fact wins, a refusal on a tie; no preferred channel here."""
    times = profile.service_consents_changed_at
    recorded = profile.details.service_consents
    newer = (at, not changed.granted)
    older = (times.get(changed.channel, profile.registered_at), recorded.get(changed.channel) is False)
    if newer < older:
        return profile
    changed_at = {**times, changed.channel: at} if newer > older else times
    consents = {**recorded, changed.channel: changed.granted}
    if consents == dict(recorded) and changed_at == times:
        return profile
    return replace(
        profile,
        details=replace(profile.details, service_consents=consents),
        service_consents_changed_at=changed_at,
    )


def answers_nothing_new(profile: Profile, changed: ConsentChanged) -> bool:
    """The profile already holds this answer (and this preferred channel, when one is named)."""
    details = profile.details
    return details.consents_for(changed.purpose).get(changed.channel) == changed.granted and (
        changed.preferred_channel in (None, details.preferred_channel)
    )


def answer_time(profile: Profile, channel: Channel, now: datetime, purpose: ConsentPurpose = "marketing") -> datetime:
    """When an answer the customer gives now takes effect: now, or the time of the channel's last recorded
    change when that is (within the accepted clock skew) ahead, so the answer is never older than what it
    answers and a refusal made now always takes effect."""
    return max(now, profile.changed_at_for(purpose).get(channel, profile.registered_at))


# ---------------------------------------------------------------- assignment


@dataclass(frozen=True)
class Assignment:
    """Who answers for a customer: its owner (a user id) and its territory; None until assigned.

    Row-level access follows from it: a person sees the customers they own, their team owns, or of their
    territories, and with them those customers' interactions and timeline.
    """

    owner_id: str | None = None
    territory: str | None = None


# ---------------------------------------------------------------- personal keys


@dataclass(frozen=True)
class PersonalKey:
    """The AES-256-GCM key the customer's personal fields are sealed with in the events published; destroying
    it erases every sealed copy (crypto-shredding). A customer registered again after erasure gets a new one."""

    customer_id: str
    key_id: str
    key: bytes = field(repr=False)
    created_at: datetime


# ---------------------------------------------------------------- interactions


@dataclass(frozen=True)
class Interaction:
    logged: InteractionLogged
    logged_at: datetime
    event_id: str
    origin: str | None = field(default=None, compare=False)
    """The customer id the event named, when it was filed under the survivor of a merge."""

    @property
    def interaction_id(self) -> str:
        return self.logged.interaction_id


def log_interaction(
    interaction: Interaction | None, logged: InteractionLogged, at: datetime, event_id: str
) -> Interaction:
    """The interaction as recorded; logging the same one again with the same content is a no-op."""
    if interaction is None:
        return Interaction(logged, at, event_id)
    if interaction.logged != logged:
        raise InteractionRejected(f"interaction {logged.interaction_id} was already logged with different content")
    return interaction


# ---------------------------------------------------------------- referrals


@dataclass(frozen=True)
class Referral:
    referred: CustomerReferred
    referred_at: datetime
    event_id: str
    origin: str | None = field(default=None, compare=False)
    """The customer id the event named, when it was filed under the survivor of a merge."""

    @property
    def referral_id(self) -> str:
        return self.referred.referral_id


def record_referral(referral: Referral | None, referred: CustomerReferred, at: datetime, event_id: str) -> Referral:
    """The referral as recorded; recording the same one again with the same content is a no-op."""
    if referral is None:
        return Referral(referred, at, event_id)
    if referral.referred != referred:
        raise ReferralRejected(f"referral {referred.referral_id} was already recorded with different content")
    return referral


# ---------------------------------------------------------------- the 360 timeline


def _order_placed(d: OrderPlaced) -> str:
    return f"Order {d.order_id} placed: {d.total} {d.currency}"


def _order_paid(d: OrderPaid) -> str:
    return f"Order {d.order_id} paid: {d.amount} {d.currency}"


def _order_cancelled(d: OrderCancelled) -> str:
    return f"Order {d.order_id} cancelled"


def _order_refunded(d: OrderRefunded) -> str:
    return f"Order {d.order_id} refunded: {d.amount} {d.currency}"


def _complaint_filed(d: ComplaintFiled) -> str:
    # The complaint's own summary is free text written about a person: it stays in the data.
    return f"Complaint {d.complaint_id} ({d.dimension}, {d.severity})"


def _survey_answered(d: SurveyAnswered) -> str:
    top = 5 if d.kind == "csat" else 10
    return f"{d.kind.upper()} survey {d.survey_id}: {d.score}/{top} ({d.dimension})"


def _customer_registered(d: CustomerRegistered) -> str:
    return f"Registered via {d.channel}"


def _interaction_logged(d: InteractionLogged) -> str:
    return f"Interaction {d.interaction_id}: {d.kind} via {d.channel}"


def _segment_changed(d: SegmentChanged) -> str:
    return f"{d.dimension}: {d.old or 'none'} → {d.new}"


def _campaign_enrolled(d: CampaignEnrolled) -> str:
    if d.status == "contacted":
        return f"Enrolled in {d.journey} by {d.channel}" if d.channel else f"Enrolled in {d.journey}"
    if d.status == "holdout":
        return f"Held out of {d.journey}"
    return f"Not contacted for {d.journey}: {d.reason}" if d.reason else f"Not contacted for {d.journey}"


def _consent_changed(d: ConsentChanged) -> str:
    preferred = " (now the preferred channel)" if d.preferred_channel == d.channel else ""
    other = f" (preferred channel now {d.preferred_channel})" if d.preferred_channel not in (None, d.channel) else ""
    purpose = " messages about orders and tickets" if d.purpose == "service" else ""
    return f"Consent for {d.channel}{purpose} {'granted' if d.granted else 'refused'}{preferred}{other}"


def _campaign_contacted(d: CampaignContacted) -> str:
    return f"Contacted by {d.channel} for {d.journey} (campaign {d.campaign_id})"


def _campaign_converted(d: CampaignConverted) -> str:
    return f"Order {d.order_id} ({d.revenue} {d.currency}) attributed to campaign {d.campaign_id} ({d.group})"


def _lead_qualified(d: LeadQualified) -> str:
    return f"Handed to sales as a qualified lead (segment {d.segment_id})"


def _survey_requested(d: SurveyRequested) -> str:
    about = f" about ticket {d.ticket_id}" if d.ticket_id else ""
    return f"{d.kind.upper()} survey {d.survey_id} requested{about}"


def _ticket_opened(d: TicketOpened) -> str:
    return f"Ticket {d.ticket_id} opened: {d.kind}, {d.priority} priority, via {d.channel}"


def _ticket_status_changed(d: TicketStatusChanged) -> str:
    return f"Ticket {d.ticket_id} reopened" if d.reopened else f"Ticket {d.ticket_id} {d.old} → {d.new}"


def _ticket_assigned(d: TicketAssigned) -> str:
    to = " and ".join(x for x in (d.assignee_id, f"group {d.group}" if d.group else None) if x) or "nobody"
    return f"Ticket {d.ticket_id} assigned to {to}"


def _ticket_replied(d: TicketReplied) -> str:
    what = "Internal note" if not d.public else ("Customer wrote" if d.author == "customer" else "Agent replied")
    return f"{what} on ticket {d.ticket_id}"


def _sla_warned(d: SlaWarned) -> str:
    return f"Ticket {d.ticket_id}: {d.timer.replace('_', ' ')} due soon (policy {d.policy_id})"


def _sla_breached(d: SlaBreached) -> str:
    to = d.escalated_to or (f"group {d.escalated_to_group}" if d.escalated_to_group else None)
    return f"Ticket {d.ticket_id}: {d.timer.replace('_', ' ')} breached" + (f", escalated to {to}" if to else "")


def _visit_scheduled(d: VisitScheduled) -> str:
    return f"Visit {d.visit_id} for ticket {d.ticket_id} booked: {d.skill}, {d.starts_at:%Y-%m-%d %H:%M} UTC"


def _visit_status_changed(d: VisitStatusChanged) -> str:
    if d.status == "completed":
        parts = sum(p.quantity for p in d.parts)
        used = "no parts" if parts == 0 else f"{parts} part" + ("s" if parts > 1 else "")
        return f"Visit {d.visit_id} for ticket {d.ticket_id} completed: {d.minutes_spent} min, {used}"
    return f"Visit {d.visit_id} for ticket {d.ticket_id} {d.status}"


def _profile_updated(d: CustomerProfileUpdated) -> str:
    return "Profile changed: " + ", ".join(f.replace("_", " ") for f in d.changed)


def _contact_changed(d: AccountContactChanged) -> str:
    if not d.roles:
        return f"{d.contact_id} is no longer a contact"
    return f"Contact {d.contact_id}: " + ", ".join(r.replace("_", " ") for r in d.roles)


def _match_keys_changed(d: CustomerMatchKeysChanged) -> str:
    return "Personal data erased" if d.reason == "erased" else "Match keys published"


def _customer_merged(d: CustomerMerged) -> str:
    why = f": {', '.join(d.evidence)}" if d.evidence else ""
    return f"Customer {d.merged_id} merged into this one ({d.decided_by}{why})"


def _customer_unmerged(d: CustomerUnmerged) -> str:
    return f"Merge {d.merge_id} undone: customer {d.merged_id} is separate again"


def _customer_erased(d: CustomerErased) -> str:
    return f"Erasure {d.erasure_id} sent to every service"


def _export_requested(d: CustomerExportRequested) -> str:
    return f"Export {d.request_id} of everything held asked for"


def _customer_referred(d: CustomerReferred) -> str:
    via = f" via {d.channel}" if d.channel else ""
    return f"Referred customer {d.referred_customer_id}{via} (referral {d.referral_id})"


def _lead_converted(d: LeadConverted) -> str:
    how = "registered as a new customer" if d.new_customer else "matched to this customer"
    opp = f", opportunity {d.opportunity_id} opened" if d.opportunity_id else ""
    return f"Lead {d.lead_id} ({d.source}) converted: {how}{opp}"


def _opportunity_opened(d: OpportunityOpened) -> str:
    # The opportunity's name is free text written by a sales person: it stays in the data.
    return f"Opportunity {d.opportunity_id} opened at {d.stage}: {d.amount} {d.currency}"


def _opportunity_stage_changed(d: OpportunityStageChanged) -> str:
    return f"Opportunity {d.opportunity_id}: {d.from_stage} → {d.to_stage} ({d.probability:.0%})"


def _opportunity_won(d: OpportunityWon) -> str:
    order = f", order {d.order_id}" if d.order_id else ""
    return f"Opportunity {d.opportunity_id} won: {d.amount} {d.currency}{order}"


def _opportunity_lost(d: OpportunityLost) -> str:
    return f"Opportunity {d.opportunity_id} lost: {d.amount} {d.currency}"


def _order_fulfilled(d: OrderFulfilled) -> str:
    via = f" via {d.carrier}" if d.carrier else ""
    return f"Order {d.order_id} fulfilled{via}"


def _activity_scheduled(d: ActivityScheduled) -> str:
    # Titles and outcomes are free text about a person: they stay in the data.
    return f"{d.kind.capitalize()} {d.activity_id} scheduled for {d.due_at:%Y-%m-%d %H:%M} UTC"


def _activity_completed(d: ActivityCompleted) -> str:
    return f"{d.kind.capitalize()} {d.activity_id} done"


def _quote_sent(d: QuoteSent) -> str:
    return f"Quote {d.quote_id} sent: {d.total} {d.currency}, valid until {d.valid_until:%Y-%m-%d}"


def _quote_accepted(d: QuoteAccepted) -> str:
    return f"Quote {d.quote_id} accepted: order {d.order_id}, {d.total} {d.currency}"


def _quote_rejected(d: QuoteRejected) -> str:
    return f"Quote {d.quote_id} rejected"


_SUMMARIES: Mapping[type, Callable[[Any], str]] = {
    OrderPlaced: _order_placed,
    OrderPaid: _order_paid,
    OrderCancelled: _order_cancelled,
    OrderRefunded: _order_refunded,
    ComplaintFiled: _complaint_filed,
    SurveyAnswered: _survey_answered,
    CustomerRegistered: _customer_registered,
    InteractionLogged: _interaction_logged,
    SegmentChanged: _segment_changed,
    CampaignEnrolled: _campaign_enrolled,
    ConsentChanged: _consent_changed,
    CampaignContacted: _campaign_contacted,
    CampaignConverted: _campaign_converted,
    LeadQualified: _lead_qualified,
    CustomerReferred: _customer_referred,
    LeadConverted: _lead_converted,
    OpportunityOpened: _opportunity_opened,
    OpportunityStageChanged: _opportunity_stage_changed,
    OpportunityWon: _opportunity_won,
    OpportunityLost: _opportunity_lost,
    OrderFulfilled: _order_fulfilled,
    ActivityScheduled: _activity_scheduled,
    ActivityCompleted: _activity_completed,
    QuoteSent: _quote_sent,
    QuoteAccepted: _quote_accepted,
    QuoteRejected: _quote_rejected,
    CustomerMatchKeysChanged: _match_keys_changed,
    CustomerMerged: _customer_merged,
    CustomerUnmerged: _customer_unmerged,
    CustomerErased: _customer_erased,
    CustomerExportRequested: _export_requested,
    TicketOpened: _ticket_opened,
    TicketStatusChanged: _ticket_status_changed,
    TicketAssigned: _ticket_assigned,
    TicketReplied: _ticket_replied,
    SlaWarned: _sla_warned,
    SlaBreached: _sla_breached,
    SurveyRequested: _survey_requested,
    VisitScheduled: _visit_scheduled,
    VisitStatusChanged: _visit_status_changed,
    CustomerProfileUpdated: _profile_updated,
    AccountContactChanged: _contact_changed,
}


def summarize(event: CloudEvent[Any]) -> str:
    """One short line for a person, without personal data; the event type for a payload not known here."""
    describe = _SUMMARIES.get(type(event.data))
    return describe(event.data) if describe else event.type


def without_personal_data(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in PERSONAL_FIELDS}


@dataclass(frozen=True)
class TimelineEntry:
    event_id: str
    customer_id: str
    type: str
    time: datetime
    source: str
    summary: str
    data: Mapping[str, Any]
    cause: str | None = None
    """The id of the event that caused this one (its `causationid`), which may be on the timeline too."""
    origin: str | None = None
    """The customer id the event named, when it was filed under the survivor of a merge."""


def on_timeline(event: CloudEvent[Any]) -> bool:
    """Whether the event belongs on the customer's timeline: all but a sign-up's match keys."""
    return not (isinstance(event.data, CustomerMatchKeysChanged) and event.data.reason == "registered")


def timeline_entry(event: CloudEvent[Any]) -> TimelineEntry:
    """The entry for one event, at the event's own business time (not its arrival time)."""
    data = event.data.model_dump(mode="python")
    if isinstance(event.data, CustomerRegistered):
        data = without_personal_data(data)
    return TimelineEntry(
        event_id=event.id,
        customer_id=event.customer_id,
        type=event.type,
        time=event.time,
        source=event.source,
        summary=summarize(event),
        data=data,
        cause=event.causationid,
        origin=event.originalsubject,
    )
