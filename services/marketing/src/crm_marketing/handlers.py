"""Use cases of marketing, each batch of events in one transaction with its outbox and processed-event records.

Learn consents from customer events; enrol on segment changes and complaints, exactly once per
(customer, journey, episode); attribute orders to enrolments as conversions, whichever arrives first;
launch segment campaigns; hand a segment's members to sales as qualified leads, and a prospect whose
logged interactions reach the engagement threshold, once.

A consumer's batch is loaded into a working set (one query per collection), its events are applied in
order against it (so each sees what the ones before it enrolled, contacted, spent, ordered or consented)
and what changed is written in bulk. The single-event functions (`apply_segment_change`, ...) apply a
batch of one.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from crm_marketing import domain, engagement, repository
from crm_marketing.journeys import DEFAULT_JOURNEYS, Journey, journeys_for_complaint, journeys_triggered
from crm_marketing.segments import Group, to_filter
from crm_marketing.working_set import Engagements, Ledger
from crm_shared import identity
from crm_shared.events import (
    CampaignContacted,
    CampaignContactedEvent,
    CampaignConverted,
    CampaignConvertedEvent,
    CampaignEnrolled,
    CampaignEnrolledEvent,
    CloudEvent,
    ComplaintFiledEvent,
    ConsentChangedEvent,
    CustomerRegisteredEvent,
    InteractionLoggedEvent,
    LeadQualified,
    LeadQualifiedEvent,
    OrderCancelledEvent,
    OrderPlacedEvent,
    SegmentChangedEvent,
    derived_event_id,
)
from crm_shared.logging import get_logger
from crm_shared.store import AlreadyApplied, Batch, BatchOutcome, Store, UnitOfWork
from crm_shared.topics import Topic

SOURCE = "/crm/marketing"
CONSUMER = "marketing"
DEFAULT_POLICY = domain.Policy()
DEFAULT_ENGAGEMENT = engagement.EngagementRule()

log = get_logger(__name__)


def _log_ignored(events: Sequence[CloudEvent[Any]], outcome: BatchOutcome, what: str) -> None:
    ignored = set(outcome.ignored)
    for event in events:
        if event.id in ignored:
            log.debug(what, event_type=event.type)


# ---------------------------------------------------------------- consents and interactions


def _is_customer_event(event: CloudEvent[Any]) -> bool:
    return isinstance(event, CustomerRegisteredEvent | ConsentChangedEvent | InteractionLoggedEvent)


async def apply_customer_events(
    store: Store, events: Sequence[CloudEvent[Any]], rule: engagement.EngagementRule = DEFAULT_ENGAGEMENT
) -> BatchOutcome:
    """Keep marketing's consent projection and count interactions toward engagement, the batch in one
    transaction; other customer events are not marketing's concern. The result of a sign-up or consent change
    is the customer's preferences after it; of an interaction, the lead it handed over, if any."""

    async def work(uow: UnitOfWork, batch: Batch[CloudEvent[Any]]) -> None:
        consents = [e for e in batch.events if not isinstance(e, InteractionLoggedEvent)]
        interactions = [e for e in batch.events if isinstance(e, InteractionLoggedEvent)]
        # A sign-up is filed under the id it names even when merged away (crm_shared.identity): that id's
        # consents are then kept with its documents put aside, for an unmerge, so it counts nowhere meanwhile.
        signed_up = [e.customer_id for e in consents if isinstance(e, CustomerRegisteredEvent)]
        aside = set(await identity.resolve(uow.db, signed_up, session=uow.session)) if signed_up else set()
        filed_ids = (e.customer_id for e in consents if e.customer_id not in aside)
        preferences = await repository.preferences_of(uow, filed_ids)
        preferences |= await repository.preferences_of(uow, aside, repository.MERGED_PREFERENCES)
        engagements = await Engagements.load(uow, interactions, rule)
        changed: dict[str, domain.ContactPreferences] = {}
        for event in batch.events:
            if isinstance(event, InteractionLoggedEvent):
                batch.done(event, _count_interaction(engagements, uow, event, rule))
                continue
            before = preferences.get(event.customer_id)
            if isinstance(event, CustomerRegisteredEvent):
                after = domain.record_registration(before, event.data, event.id, event.time)
            else:
                after = domain.record_consent_change(before, event.data, event.id, event.time)
            if after != before:
                preferences[event.customer_id] = changed[event.customer_id] = after
            batch.done(event, after)
        filed = [p for c, p in changed.items() if c not in aside]
        put_aside = [p for c, p in changed.items() if c in aside]
        await repository.write(
            uow,
            {
                repository.CONTACT_PREFERENCES: [repository.preferences_write(p) for p in filed],
                repository.ATTRIBUTES: [repository.consents_write(p) for p in filed],
                repository.MERGED_PREFERENCES: [repository.preferences_write(p) for p in put_aside],
                repository.MERGED_ATTRIBUTES: [repository.consents_write(p) for p in put_aside],
            },
        )
        await engagements.write(uow)

    outcome = await store.apply_batch(CONSUMER, events, work, relevant=_is_customer_event)
    for result in outcome.results.values():
        if isinstance(result, LeadQualified):
            log.info("lead_qualified_by_engagement", customer_id=result.customer_id, lead_id=result.lead_id)
    _log_ignored(events, outcome, "customer_event_not_used")
    return outcome


async def apply_customer_event(
    store: Store, event: CloudEvent[Any], rule: engagement.EngagementRule = DEFAULT_ENGAGEMENT
) -> domain.ContactPreferences | None:
    """One customer event: the preferences after a sign-up or consent change, None for another event type
    (an interaction is counted, see `apply_interaction`); raises AlreadyApplied."""
    result = (await apply_customer_events(store, [event], rule)).result_of(event)
    return result if isinstance(result, domain.ContactPreferences) else None


def _count_interaction(
    engagements: Engagements, uow: UnitOfWork, event: InteractionLoggedEvent, rule: engagement.EngagementRule
) -> LeadQualified | None:
    """Keep the interaction; a prospect whose engagement reaches the threshold is handed to sales, once ever."""
    logged = event.data
    interaction = engagement.Interaction(logged.interaction_id, logged.kind, event.time)
    origin = identity.origin_fields(event)
    if not engagements.record_interaction(logged.customer_id, interaction, logged.channel, event.id, origin):
        return None
    standing = engagements.standing_of(logged.customer_id)
    if not engagement.is_prospect(standing.get("lifecycle_stage"), standing.get("last_order_at") is not None):
        return None
    # Only windows holding this interaction can have changed; others were judged when they filled.
    nearby = engagements.interactions_between(logged.customer_id, event.time - rule.window, event.time + rule.window)
    qualifying = engagement.first_qualifying(nearby, rule)
    if qualifying is None or qualifying.ends_at is None:
        return None
    lead = LeadQualified(
        customer_id=logged.customer_id,
        lead_id=engagement.lead_id(logged.customer_id),
        segment_id=engagement.ENGAGEMENT_SEGMENT,
        reason=engagement.lead_reason(qualifying, rule),
        value_tier=standing.get("value_tier"),
        lifecycle_stage=standing.get("lifecycle_stage"),
    )
    handed_over = engagements.hand_over(
        lead.lead_id,
        lead.customer_id,
        qualifying.ends_at,
        qualifying.score,
        [i.interaction_id for i in qualifying.counted],
        origin,
    )
    if not handed_over:
        return None
    uow.emit(
        LeadQualifiedEvent.create(
            lead,
            source=SOURCE,
            id=derived_event_id(SOURCE, "lead", lead.lead_id),
            time=qualifying.ends_at,
            cause=event,
        ),
        Topic.MARKETING_EVENTS,
    )
    return lead


async def apply_interaction(
    store: Store, event: InteractionLoggedEvent, rule: engagement.EngagementRule = DEFAULT_ENGAGEMENT
) -> LeadQualified | None:
    """Keep the interaction; returns the lead handed over now, if any. Raises AlreadyApplied."""
    lead: LeadQualified | None = (await apply_customer_events(store, [event], rule)).result_of(event)
    return lead


# ---------------------------------------------------------------- enrolments


def _conversion(enrolment: domain.Enrolment, order: dict[str, Any]) -> dict[str, Any]:
    return {
        "_id": derived_event_id("/crm/marketing/conversions", enrolment.enrolment_id, order["_id"]),
        "enrolment_id": enrolment.enrolment_id,
        "customer_id": enrolment.customer_id,
        "campaign_id": enrolment.campaign_id,
        "journey": enrolment.journey,
        "group": "treated" if enrolment.status == "contacted" else "holdout",
        "order_id": order["_id"],
        "currency": order["currency"],
        "revenue": order["total"],
        "enrolled_at": enrolment.enrolled_at,
        "ordered_at": order["ordered_at"],
        # An unmerge gives the conversion back with its enrolment.
        **({identity.ORIGIN: enrolment.origin_customer_id} if enrolment.origin_customer_id else {}),
    }


def _convert(
    ledger: Ledger, uow: UnitOfWork, enrolment: domain.Enrolment, order: dict[str, Any], cause: CloudEvent[Any] | None
) -> bool:
    """Record the conversion and publish it, once, whichever of the order and the enrolment came first."""
    conversion = _conversion(enrolment, order)
    if not ledger.add_conversion(conversion):
        return False
    uow.emit(
        CampaignConvertedEvent.create(
            CampaignConverted(**{k: v for k, v in conversion.items() if k not in ("_id", identity.ORIGIN)}),
            source=SOURCE,
            id=derived_event_id(SOURCE, "converted", conversion["_id"]),
            time=conversion["ordered_at"],
            cause=cause,
        ),
        Topic.MARKETING_EVENTS,
    )
    return True


@dataclass(frozen=True)
class Occasion:
    """What an enrolment is for and what started it: a journey's trigger, or a campaign's launch."""

    journey: str
    campaign_id: str
    frequency_capped: bool
    episode: str
    trigger_id: str
    enrolled_event_id: str
    at: datetime
    cause: CloudEvent[Any] | None = None


def _enrol(
    ledger: Ledger,
    uow: UnitOfWork,
    customer_id: str,
    occasion: Occasion,
    campaign: dict[str, Any] | None,
    policy: domain.Policy,
) -> domain.Enrolment:
    """Decide (holdout, consent, frequency cap, budget), record the enrolment and publish what was decided."""
    at, cause = occasion.at, occasion.cause
    ledger.lock_contacts(customer_id)
    # The latest consent marketing knows, so a refusal that arrived before this change is respected.
    prefs = ledger.preferences.get(customer_id)
    recent = ledger.recent_capped_contacts(customer_id, at, policy.cap_period) if occasion.frequency_capped else 0
    decision = domain.decide(
        customer_id,
        occasion.journey,
        prefs,
        policy,
        recent_contacts=recent,
        frequency_capped=occasion.frequency_capped,
        only_channel=campaign.get("channel") if campaign else None,
    )
    cost: Decimal = campaign["cost_per_contact"] if campaign else Decimal(0)
    if decision.status == "contacted" and campaign and not ledger.spend(campaign, cost):
        decision = domain.Decision("skipped", reason=domain.BUDGET_EXHAUSTED)
    enrolment = domain.enrol(
        customer_id,
        occasion.journey,
        campaign["_id"] if campaign else occasion.campaign_id,
        occasion.episode,
        occasion.trigger_id,
        decision,
        at,
        cost,
        occasion.frequency_capped,
        identity.origin_fields(cause).get(identity.ORIGIN) if cause else None,
    )
    ledger.add_enrolment(enrolment)
    uow.emit(
        CampaignEnrolledEvent.create(
            CampaignEnrolled(
                customer_id=enrolment.customer_id,
                enrolment_id=enrolment.enrolment_id,
                campaign_id=enrolment.campaign_id,
                journey=enrolment.journey,
                episode=enrolment.episode,
                channel=enrolment.channel,
                status=enrolment.status,
                reason=enrolment.reason,
                trigger_event_id=enrolment.trigger_event_id,
            ),
            source=SOURCE,
            id=occasion.enrolled_event_id,
            time=at,
            cause=cause,
        ),
        Topic.MARKETING_EVENTS,
    )
    if enrolment.status == "contacted" and enrolment.channel is not None:
        uow.emit(
            CampaignContactedEvent.create(
                CampaignContacted(
                    customer_id=enrolment.customer_id,
                    enrolment_id=enrolment.enrolment_id,
                    campaign_id=enrolment.campaign_id,
                    journey=enrolment.journey,
                    channel=enrolment.channel,
                    cost=enrolment.cost,
                ),
                source=SOURCE,
                id=derived_event_id(SOURCE, "contacted", enrolment.enrolment_id),
                time=at,
                cause=cause,
            ),
            Topic.MARKETING_EVENTS,
        )
    if enrolment.status != "skipped":
        # An order that arrived before the enrolment (another topic, another pace) still counts.
        for order in ledger.orders_after(customer_id, at, policy.attribution_window):
            _convert(ledger, uow, enrolment, order, cause)
    return enrolment


def _enrol_in_journey(
    ledger: Ledger,
    uow: UnitOfWork,
    journey: Journey,
    customer_id: str,
    episode: str,
    cause: CloudEvent[Any],
    policy: domain.Policy,
) -> domain.Enrolment | None:
    """Enrol in the journey's episode, unless already enrolled, under the planned campaign running it if any."""
    if ledger.enrolled(customer_id, journey.name, episode):
        return None
    ledger.ensure_journey_campaign(journey)
    campaign = ledger.active_campaign(journey.name, cause.time)
    occasion = Occasion(
        journey=journey.name,
        campaign_id=journey.campaign,
        frequency_capped=journey.frequency_capped,
        episode=episode,
        trigger_id=cause.id,
        enrolled_event_id=derived_event_id(SOURCE, cause.id, journey.name),
        at=cause.time,
        cause=cause,
    )
    return _enrol(ledger, uow, customer_id, occasion, campaign, policy)


Trigger = Callable[[CloudEvent[Any]], tuple[Sequence[Journey], str]]
"""The journeys an event starts, and the episode it names."""


async def _enrol_batch(
    store: Store,
    events: Sequence[CloudEvent[Any]],
    trigger: Trigger,
    policy: domain.Policy,
    relevant: Callable[[CloudEvent[Any]], bool] | None = None,
) -> BatchOutcome:
    """Enrol each event's customer in the journeys it starts, the batch in one transaction; the result of
    each event is the list of its new enrolments."""

    async def work(uow: UnitOfWork, batch: Batch[CloudEvent[Any]]) -> None:
        started = [(event, *trigger(event)) for event in batch.events]
        enrolling = [(event, js, episode) for event, js, episode in started if js]
        journeys = {j.name: j for _, js, _ in enrolling for j in js}
        ledger = await Ledger.for_enrolments(
            uow,
            policy,
            customers=list(dict.fromkeys(event.customer_id for event, _, _ in enrolling)),
            times=[event.time for event, _, _ in enrolling],
            episodes=((event.customer_id, j.name, episode) for event, js, episode in enrolling for j in js),
            campaign_ids=(j.campaign for j in journeys.values()),
            journeys=journeys,
            scored=list(dict.fromkeys(e.customer_id for e in batch.events if isinstance(e, SegmentChangedEvent))),
        )
        for event, triggered, episode in started:
            if isinstance(event, SegmentChangedEvent):
                ledger.record_scores(event.customer_id, event.data.scores, event.time)
            enrolments = []
            for journey in triggered:
                enrolment = _enrol_in_journey(ledger, uow, journey, event.customer_id, episode, event, policy)
                if enrolment is not None:
                    enrolments.append(enrolment)
            batch.done(event, enrolments)
        await ledger.write(uow)

    outcome = await store.apply_batch(CONSUMER, events, work, relevant=relevant)
    for enrolments in outcome.results.values():
        for e in enrolments:
            log.info(
                "customer_enrolled", customer_id=e.customer_id, journey=e.journey, status=e.status, channel=e.channel
            )
    return outcome


async def apply_segment_changes(
    store: Store,
    events: Sequence[CloudEvent[Any]],
    journeys: Sequence[Journey] = DEFAULT_JOURNEYS,
    policy: domain.Policy = DEFAULT_POLICY,
) -> BatchOutcome:
    """Keep each change's scores and enrol the customer in every journey it triggers; the change's event id is
    the episode."""

    def trigger(event: CloudEvent[Any]) -> tuple[Sequence[Journey], str]:
        return journeys_triggered(event.data, journeys), event.id

    return await _enrol_batch(store, events, trigger, policy)


async def apply_segment_change(
    store: Store,
    event: SegmentChangedEvent,
    journeys: Sequence[Journey] = DEFAULT_JOURNEYS,
    policy: domain.Policy = DEFAULT_POLICY,
) -> list[domain.Enrolment]:
    """One segment change: the enrolments it made; raises AlreadyApplied."""
    enrolments: list[domain.Enrolment] = (await apply_segment_changes(store, [event], journeys, policy)).result_of(
        event
    )
    return enrolments


async def apply_support_events(
    store: Store,
    events: Sequence[CloudEvent[Any]],
    journeys: Sequence[Journey] = DEFAULT_JOURNEYS,
    policy: domain.Policy = DEFAULT_POLICY,
) -> BatchOutcome:
    """A complaint enrols the customer in the complaint journeys; the complaint id is the episode. Other support
    events are not marketing's concern."""
    complaint_journeys = journeys_for_complaint(journeys)

    def trigger(event: CloudEvent[Any]) -> tuple[Sequence[Journey], str]:
        return complaint_journeys, event.data.complaint_id

    outcome = await _enrol_batch(
        store, events, trigger, policy, relevant=lambda event: isinstance(event, ComplaintFiledEvent)
    )
    _log_ignored(events, outcome, "support_event_not_used")
    return outcome


async def apply_support_event(
    store: Store,
    event: CloudEvent[Any],
    journeys: Sequence[Journey] = DEFAULT_JOURNEYS,
    policy: domain.Policy = DEFAULT_POLICY,
) -> list[domain.Enrolment]:
    """One support event: the enrolments a complaint made, none for another event type; raises AlreadyApplied."""
    enrolments: list[domain.Enrolment] | None = (
        await apply_support_events(store, [event], journeys, policy)
    ).result_of(event)
    return enrolments or []


# ---------------------------------------------------------------- results


async def apply_sales_events(
    store: Store, events: Sequence[CloudEvent[Any]], policy: domain.Policy = DEFAULT_POLICY
) -> BatchOutcome:
    """Keep each order and attribute it to the enrolments it converts; a cancellation withdraws the order's
    conversions. The result of each event is the change in conversions (+new, -withdrawn). Payments and
    refunds change nothing."""

    async def work(uow: UnitOfWork, batch: Batch[CloudEvent[Any]]) -> None:
        placed = [e for e in batch.events if isinstance(e, OrderPlacedEvent)]
        ledger = await Ledger.for_orders(
            uow,
            policy,
            order_ids=[e.data.order_id for e in batch.events],
            placed=[(e.data.customer_id, e.time) for e in placed],
        )
        for event in batch.events:
            if isinstance(event, OrderCancelledEvent):
                cancelled = event.data
                origin = identity.origin_fields(event)
                batch.done(event, -ledger.cancel_order(cancelled.order_id, cancelled.customer_id, event.time, origin))
                continue
            order_placed = event.data
            order = ledger.record_order(
                order_placed.order_id,
                order_placed.customer_id,
                order_placed.currency,
                order_placed.total,
                event.time,
                identity.origin_fields(event),
            )
            ledger.record_last_order(order_placed.customer_id, event.time)
            converted = 0
            if order.get("cancelled_at") is None:
                for enrolment in ledger.attributable_enrolments(
                    order_placed.customer_id, event.time, policy.attribution_window
                ):
                    converted += _convert(ledger, uow, enrolment, order, event)
            batch.done(event, converted)
        await ledger.write(uow)

    outcome = await store.apply_batch(
        CONSUMER, events, work, relevant=lambda event: isinstance(event, OrderPlacedEvent | OrderCancelledEvent)
    )
    _log_ignored(events, outcome, "sales_event_not_used")
    return outcome


async def apply_sales_event(store: Store, event: CloudEvent[Any], policy: domain.Policy = DEFAULT_POLICY) -> int:
    """One sales event: the change in conversions (0 for an event type marketing does not use); raises
    AlreadyApplied."""
    change: int | None = (await apply_sales_events(store, [event], policy)).result_of(event)
    return change or 0


# ---------------------------------------------------------------- campaigns on a segment


class CampaignArchived(Exception):
    """The campaign was archived while it was being launched: nobody more is enrolled."""


@dataclass(frozen=True)
class LaunchReport:
    campaign_id: str
    enrolled: dict[str, int]
    already_enrolled: int


async def launch_campaign(
    store: Store,
    campaign: dict[str, Any],
    audience: Group,
    at: datetime,
    policy: domain.Policy = DEFAULT_POLICY,
    batch: int = 500,
) -> LaunchReport:
    """Enrol the segment's current members in the campaign, once each: a relaunch enrols only newcomers.

    One transaction per member, so a large segment never holds one long transaction, and a launch cut
    short is completed by launching again. Each reads the campaign again, so archiving it stops the launch
    (CampaignArchived) at the next member.
    """
    campaign_id: str = campaign["_id"]
    enrolled = {"contacted": 0, "holdout": 0, "skipped": 0}
    already = 0
    last = ""
    while True:
        query = {"$and": [to_filter(audience, at), {"_id": {"$gt": last}}]}
        docs = await store.db[repository.ATTRIBUTES].find(query, {"_id": 1}).sort("_id", 1).limit(batch).to_list(batch)
        for doc in docs:
            customer_id: str = doc["_id"]
            occasion = Occasion(
                journey=campaign_id,
                campaign_id=campaign_id,
                frequency_capped=True,
                episode=campaign_id,
                trigger_id=f"launch:{campaign_id}",
                enrolled_event_id=derived_event_id(SOURCE, "launch", campaign_id, customer_id),
                at=at,
            )

            applies = f"marketing:launch:{campaign_id}:{customer_id}"

            async def work(
                uow: UnitOfWork, customer_id: str = customer_id, occasion: Occasion = occasion, applies: str = applies
            ) -> str:
                ledger = await Ledger.for_enrolments(
                    uow,
                    policy,
                    customers=[customer_id],
                    times=[at],
                    episodes=[(customer_id, campaign_id, campaign_id)],
                    campaign_ids=[campaign_id],
                )
                live = ledger.live_campaign(campaign_id)
                if live is None:
                    raise CampaignArchived(campaign_id)
                if ledger.enrolled(customer_id, campaign_id, campaign_id):
                    # Enrolled under an id merged into this one: the customer was enrolled once already.
                    raise AlreadyApplied(applies)
                status = _enrol(ledger, uow, customer_id, occasion, live, policy).status
                await ledger.write(uow)
                return status

            try:
                status = await store.transaction(work, applies=applies)
            except AlreadyApplied:
                already += 1
            else:
                enrolled[status] += 1
        if len(docs) < batch:
            break
        last = docs[-1]["_id"]
    log.info("campaign_launched", campaign_id=campaign_id, **enrolled, already_enrolled=already)
    return LaunchReport(campaign_id, enrolled, already)


# ---------------------------------------------------------------- qualified leads for sales


async def hand_over_leads(
    store: Store, segment_id: str, reason: str, audience: Group, at: datetime, batch: int = 500
) -> tuple[int, int]:
    """Hand the segment's current members to sales as qualified leads, once each per segment.

    Returns (handed over now, handed over before). One transaction per lead, like a launch.
    """
    new = already = 0
    last = ""
    while True:
        query = {"$and": [to_filter(audience, at), {"_id": {"$gt": last}}]}
        docs = await store.db[repository.ATTRIBUTES].find(query).sort("_id", 1).limit(batch).to_list(batch)
        for doc in docs:
            lead = LeadQualified(
                customer_id=doc["_id"],
                lead_id=derived_event_id("/crm/marketing/leads", segment_id, doc["_id"]),
                segment_id=segment_id,
                reason=reason,
                value_tier=doc.get("value_tier"),
                lifecycle_stage=doc.get("lifecycle_stage"),
            )

            applies = f"marketing:lead:{lead.lead_id}"

            async def work(uow: UnitOfWork, lead: LeadQualified = lead, applies: str = applies) -> None:
                if not await repository.record_lead(uow, lead.lead_id, lead.customer_id, segment_id, at):
                    raise AlreadyApplied(applies)  # handed over under an id merged into this one
                uow.emit(
                    LeadQualifiedEvent.create(
                        lead, source=SOURCE, id=derived_event_id(SOURCE, "lead", lead.lead_id), time=at
                    ),
                    Topic.MARKETING_EVENTS,
                )

            try:
                await store.transaction(work, applies=applies)
            except AlreadyApplied:
                already += 1
            else:
                new += 1
        if len(docs) < batch:
            break
        last = docs[-1]["_id"]
    log.info("leads_handed_over", segment_id=segment_id, new=new, already=already)
    return new, already
