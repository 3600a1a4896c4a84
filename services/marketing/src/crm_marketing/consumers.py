"""Kafka subscribers of marketing: batches of records, each batch applied by a handler in one transaction."""

from collections.abc import Sequence
from typing import Any

from crm_marketing import handlers
from crm_marketing.identity import HOLDER
from crm_marketing.settings import MarketingSettings
from crm_shared import identity
from crm_shared.events import AnyEvent, CloudEvent, DeadLetter, MarketingEvent, SegmentChangedEvent
from crm_shared.service import Runtime
from crm_shared.store import BatchOutcome
from crm_shared.topics import Topic


def register(runtime: Runtime, settings: MarketingSettings) -> None:
    journeys, policy, engagement = settings.journeys, settings.policy, settings.engagement

    async def on_segment_changes(events: Sequence[CloudEvent[Any]]) -> BatchOutcome:
        return await handlers.apply_segment_changes(runtime.require_store(), events, journeys, policy)

    runtime.subscribe(
        Topic.SCORING_SEGMENTS,
        schema=SegmentChangedEvent,
        handler=on_segment_changes,
        title="crm.scoring.segments:marketing",
        description="Segment changes from scoring; each may trigger journeys (welcome, high-value thank-you, "
        "service recovery, win-back, as configured). Invalid records go to crm.deadletter with the reason.",
    )

    # Any catalog event is accepted on the topics below: types marketing does not use are ignored,
    # not dead-lettered, so other services can publish more on them without breaking marketing.
    async def on_customer_events(events: Sequence[CloudEvent[Any]]) -> BatchOutcome:
        return await handlers.apply_customer_events(runtime.require_store(), events, engagement)

    runtime.subscribe(
        Topic.CUSTOMER_EVENTS,
        schema=AnyEvent,
        handler=on_customer_events,
        title="crm.customer.events:marketing",
        description="Sign-ups and consent changes, for marketing's projection of channel consents and the "
        "preferred channel (no name, email or phone is kept); logged interactions (crm.interaction.logged.v1), "
        "counted toward each prospect's engagement score, which hands the prospect to sales as a qualified lead "
        "once it reaches the threshold. Other event types are ignored.",
    )

    async def on_support_events(events: Sequence[CloudEvent[Any]]) -> BatchOutcome:
        return await handlers.apply_support_events(runtime.require_store(), events, journeys, policy)

    runtime.subscribe(
        Topic.SUPPORT_EVENTS,
        schema=AnyEvent,
        handler=on_support_events,
        title="crm.support.events:marketing",
        description="Complaints (crm.complaint.filed.v1) start the complaint journeys (complaint-recovery), "
        "one episode per complaint. Other event types are ignored.",
    )

    async def on_sales_events(events: Sequence[CloudEvent[Any]]) -> BatchOutcome:
        return await handlers.apply_sales_events(runtime.require_store(), events, policy)

    runtime.subscribe(
        Topic.SALES_EVENTS,
        schema=AnyEvent,
        handler=on_sales_events,
        title="crm.sales.events:marketing",
        description="Orders (crm.order.placed.v1), attributed as conversions to the customer's enrolments "
        "(contacted or held out) within the attribution window. Other event types are ignored.",
    )

    identity.subscribe(runtime, "marketing", HOLDER)

    runtime.publishes(
        Topic.MARKETING_EVENTS,
        title="crm.marketing.events",
        description="crm.campaign.enrolled.v1 once per customer and journey episode (contacted, holdout or "
        "skipped, with the channel and the reason); crm.campaign.contacted.v1 for each contact; "
        "crm.campaign.converted.v1 for each order attributed to an enrolment; crm.lead.qualified.v1 for each "
        "customer handed to sales (from a segment on demand, or once per prospect whose engagement reached the "
        "threshold, segment_id 'engagement'). Key: customer id.",
        schema=MarketingEvent,
    )
    runtime.publishes(
        Topic.DEADLETTER,
        title="crm.deadletter:marketing",
        description="Records marketing rejected, with the reason and the original bytes, topic, partition and offset.",
        schema=DeadLetter,
    )
