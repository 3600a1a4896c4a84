"""Use cases of marketing, each in one transaction with its outbox and processed-event record.

Learn consents from customer events; enrol on segment changes and complaints, exactly once per
(customer, journey, episode); attribute orders to enrolments as conversions, whichever arrives first;
launch segment campaigns; hand a segment's members to sales as qualified leads, and a prospect whose
logged interactions reach the engagement threshold, once.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from crm_marketing import domain, engagement, repository
from crm_marketing.journeys import DEFAULT_JOURNEYS, Journey, journeys_for_complaint, journeys_triggered
from crm_marketing.segments import Group, to_filter
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
from crm_shared.store import AlreadyApplied, Store, UnitOfWork
from crm_shared.topics import Topic

SOURCE = "/crm/marketing"
DEFAULT_POLICY = domain.Policy()
DEFAULT_ENGAGEMENT = engagement.EngagementRule()

log = get_logger(__name__)


def _applies(event: CloudEvent[Any]) -> str:
    return f"marketing:{event.id}"


# ---------------------------------------------------------------- consents


async def apply_customer_event(
    store: Store, event: CloudEvent[Any], rule: engagement.EngagementRule = DEFAULT_ENGAGEMENT
) -> domain.ContactPreferences | None:
    """Keep marketing's consent projection and count interactions toward engagement; other customer events
    are not marketing's concern."""
    if isinstance(event, InteractionLoggedEvent):
        await apply_interaction(store, event, rule)
        return None
    if not isinstance(event, CustomerRegisteredEvent | ConsentChangedEvent):
        log.debug("customer_event_not_used", event_type=event.type)
        return None

    async def work(uow: UnitOfWork) -> domain.ContactPreferences:
        before = await repository.get_preferences(uow, event.customer_id)
        if isinstance(event, CustomerRegisteredEvent):
            after = domain.record_registration(before, event.data, event.id, event.time)
        else:
            after = domain.record_consent_change(before, event.data, event.id, event.time)
        if after != before:
            await repository.save_preferences(uow, after)
            await repository.record_consents(uow, after)
        return after

    return await store.transaction(work, applies=_applies(event))


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
    }


async def _convert(
    uow: UnitOfWork, enrolment: domain.Enrolment, order: dict[str, Any], cause: CloudEvent[Any] | None
) -> bool:
    """Record the conversion and publish it, once, whichever of the order and the enrolment came first."""
    conversion = _conversion(enrolment, order)
    if not await repository.insert_conversion(uow, conversion):
        return False
    uow.emit(
        CampaignConvertedEvent.create(
            CampaignConverted(**{k: v for k, v in conversion.items() if k != "_id"}),
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


async def _enrol(
    uow: UnitOfWork, customer_id: str, occasion: Occasion, campaign: dict[str, Any] | None, policy: domain.Policy
) -> domain.Enrolment:
    """Decide (holdout, consent, frequency cap, budget), record the enrolment and publish what was decided."""
    at, cause = occasion.at, occasion.cause
    await repository.lock_contacts(uow, customer_id)
    # The latest consent marketing knows, so a refusal that arrived before this change is respected.
    prefs = await repository.get_preferences(uow, customer_id)
    recent = (
        await repository.recent_capped_contacts(uow, customer_id, at, policy.cap_period)
        if occasion.frequency_capped
        else 0
    )
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
    if decision.status == "contacted" and campaign and not await repository.spend(uow, campaign, cost):
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
    )
    await repository.insert_enrolment(uow, enrolment)
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
        for order in await repository.orders_after(uow, customer_id, at, policy.attribution_window):
            await _convert(uow, enrolment, order, cause)
    return enrolment


async def _enrol_in_journey(
    uow: UnitOfWork,
    journey: Journey,
    customer_id: str,
    episode: str,
    cause: CloudEvent[Any],
    policy: domain.Policy,
) -> domain.Enrolment | None:
    """Enrol in the journey's episode, unless already enrolled, under the planned campaign running it if any."""
    if await repository.enrolment_exists(uow, domain.enrolment_id(customer_id, journey.name, episode)):
        return None
    await repository.ensure_journey_campaign(uow, journey)
    campaign = await repository.active_campaign(uow, journey.name, cause.time)
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
    return await _enrol(uow, customer_id, occasion, campaign, policy)


async def _enrol_in(
    store: Store,
    event: CloudEvent[Any],
    triggered: Sequence[Journey],
    episode: str,
    policy: domain.Policy,
) -> list[domain.Enrolment]:
    async def work(uow: UnitOfWork) -> list[domain.Enrolment]:
        if isinstance(event, SegmentChangedEvent):
            await repository.record_scores(uow, event.customer_id, event.data.scores, event.time)
        enrolments = []
        for journey in triggered:
            enrolment = await _enrol_in_journey(uow, journey, event.customer_id, episode, event, policy)
            if enrolment is not None:
                enrolments.append(enrolment)
        return enrolments

    enrolments = await store.transaction(work, applies=_applies(event))
    for e in enrolments:
        log.info("customer_enrolled", customer_id=e.customer_id, journey=e.journey, status=e.status, channel=e.channel)
    return enrolments


async def apply_segment_change(
    store: Store,
    event: SegmentChangedEvent,
    journeys: Sequence[Journey] = DEFAULT_JOURNEYS,
    policy: domain.Policy = DEFAULT_POLICY,
) -> list[domain.Enrolment]:
    """Enrol the customer in every journey the change triggers; the change's event id is the episode."""
    return await _enrol_in(store, event, journeys_triggered(event.data, journeys), event.id, policy)


async def apply_support_event(
    store: Store,
    event: CloudEvent[Any],
    journeys: Sequence[Journey] = DEFAULT_JOURNEYS,
    policy: domain.Policy = DEFAULT_POLICY,
) -> list[domain.Enrolment]:
    """A complaint enrols the customer in the complaint journeys; the complaint id is the episode."""
    if not isinstance(event, ComplaintFiledEvent):
        log.debug("support_event_not_used", event_type=event.type)
        return []
    return await _enrol_in(store, event, journeys_for_complaint(journeys), event.data.complaint_id, policy)


# ---------------------------------------------------------------- results


async def apply_sales_event(store: Store, event: CloudEvent[Any], policy: domain.Policy = DEFAULT_POLICY) -> int:
    """Keep the order and attribute it to the enrolments it converts; a cancellation withdraws the order's
    conversions. Returns the change in conversions (+new, -withdrawn). Payments and refunds change nothing."""
    if isinstance(event, OrderCancelledEvent):
        cancelled = event.data

        async def withdraw(uow: UnitOfWork) -> int:
            return -await repository.cancel_order(uow, cancelled.order_id, cancelled.customer_id, event.time)

        return await store.transaction(withdraw, applies=_applies(event))
    if not isinstance(event, OrderPlacedEvent):
        log.debug("sales_event_not_used", event_type=event.type)
        return 0
    placed = event.data

    async def work(uow: UnitOfWork) -> int:
        order = await repository.record_order(
            uow, placed.order_id, placed.customer_id, placed.currency, placed.total, event.time
        )
        await repository.record_last_order(uow, placed.customer_id, event.time)
        if order.get("cancelled_at") is not None:
            return 0
        converted = 0
        for enrolment in await repository.attributable_enrolments(
            uow, placed.customer_id, event.time, policy.attribution_window
        ):
            converted += await _convert(uow, enrolment, order, event)
        return converted

    return await store.transaction(work, applies=_applies(event))


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

            async def work(uow: UnitOfWork, customer_id: str = customer_id, occasion: Occasion = occasion) -> str:
                live = await repository.live_campaign(uow, campaign_id)
                if live is None:
                    raise CampaignArchived(campaign_id)
                return (await _enrol(uow, customer_id, occasion, live, policy)).status

            try:
                status = await store.transaction(work, applies=f"marketing:launch:{campaign_id}:{customer_id}")
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

            async def work(uow: UnitOfWork, lead: LeadQualified = lead) -> None:
                await repository.record_lead(uow, lead.lead_id, lead.customer_id, segment_id, at)
                uow.emit(
                    LeadQualifiedEvent.create(
                        lead, source=SOURCE, id=derived_event_id(SOURCE, "lead", lead.lead_id), time=at
                    ),
                    Topic.MARKETING_EVENTS,
                )

            try:
                await store.transaction(work, applies=f"marketing:lead:{lead.lead_id}")
            except AlreadyApplied:
                already += 1
            else:
                new += 1
        if len(docs) < batch:
            break
        last = docs[-1]["_id"]
    log.info("leads_handed_over", segment_id=segment_id, new=new, already=already)
    return new, already


async def apply_interaction(
    store: Store, event: InteractionLoggedEvent, rule: engagement.EngagementRule = DEFAULT_ENGAGEMENT
) -> LeadQualified | None:
    """Keep the interaction; a prospect whose engagement reaches the threshold is handed to sales, once ever.

    Returns the lead handed over now, if any.
    """
    logged = event.data
    interaction = engagement.Interaction(logged.interaction_id, logged.kind, event.time)

    async def work(uow: UnitOfWork) -> LeadQualified | None:
        if not await repository.record_interaction(uow, logged.customer_id, interaction, logged.channel, event.id):
            return None
        standing = await repository.customer_standing(uow, logged.customer_id)
        if not engagement.is_prospect(standing.get("lifecycle_stage"), standing.get("last_order_at") is not None):
            return None
        # Only windows holding this interaction can have changed; others were judged when they filled.
        nearby = await repository.interactions_between(
            uow.db, logged.customer_id, event.time - rule.window, event.time + rule.window, uow.session
        )
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
        handed_over = await repository.insert_engagement_lead(
            uow,
            lead.lead_id,
            lead.customer_id,
            qualifying.ends_at,
            qualifying.score,
            [i.interaction_id for i in qualifying.counted],
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

    lead = await store.transaction(work, applies=_applies(event))
    if lead is not None:
        log.info("lead_qualified_by_engagement", customer_id=lead.customer_id, lead_id=lead.lead_id)
    return lead
