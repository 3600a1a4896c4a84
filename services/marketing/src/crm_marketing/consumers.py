"""Kafka subscribers of marketing: parse the envelope, call a handler."""

from faststream.kafka import KafkaBroker

from crm_marketing import handlers
from crm_marketing.settings import MarketingSettings
from crm_shared.consumer import SUBSCRIBER_DEFAULTS
from crm_shared.events import AnyEvent, DeadLetter, MarketingEvent, SegmentChangedEvent
from crm_shared.service import Runtime
from crm_shared.topics import Topic


def register(runtime: Runtime, settings: MarketingSettings) -> None:
    broker: KafkaBroker = runtime.broker
    journeys, policy, engagement = settings.journeys, settings.policy, settings.engagement

    @broker.subscriber(
        Topic.SCORING_SEGMENTS,
        group_id=settings.consumer_group,
        title="crm.scoring.segments:marketing",
        description="Segment changes from scoring; each may trigger journeys (welcome, high-value thank-you, "
        "service recovery, win-back, as configured). Invalid records go to crm.deadletter with the reason.",
        **SUBSCRIBER_DEFAULTS,
    )
    async def on_segment_changed(event: SegmentChangedEvent) -> None:
        await handlers.apply_segment_change(runtime.require_store(), event, journeys, policy)

    # Any catalog event is accepted on the topics below: types marketing does not use are ignored,
    # not dead-lettered, so other services can publish more on them without breaking marketing.
    @broker.subscriber(
        Topic.CUSTOMER_EVENTS,
        group_id=settings.consumer_group,
        title="crm.customer.events:marketing",
        description="Sign-ups and consent changes, for marketing's projection of channel consents and the "
        "preferred channel (no name, email or phone is kept); logged interactions (crm.interaction.logged.v1), "
        "counted toward each prospect's engagement score, which hands the prospect to sales as a qualified lead "
        "once it reaches the threshold. Other event types are ignored.",
        **SUBSCRIBER_DEFAULTS,
    )
    async def on_customer_event(event: AnyEvent) -> None:
        await handlers.apply_customer_event(runtime.require_store(), event, engagement)

    @broker.subscriber(
        Topic.SUPPORT_EVENTS,
        group_id=settings.consumer_group,
        title="crm.support.events:marketing",
        description="Complaints (crm.complaint.filed.v1) start the complaint journeys (complaint-recovery), "
        "one episode per complaint. Other event types are ignored.",
        **SUBSCRIBER_DEFAULTS,
    )
    async def on_support_event(event: AnyEvent) -> None:
        await handlers.apply_support_event(runtime.require_store(), event, journeys, policy)

    @broker.subscriber(
        Topic.SALES_EVENTS,
        group_id=settings.consumer_group,
        title="crm.sales.events:marketing",
        description="Orders (crm.order.placed.v1), attributed as conversions to the customer's enrolments "
        "(contacted or held out) within the attribution window. Other event types are ignored.",
        **SUBSCRIBER_DEFAULTS,
    )
    async def on_sales_event(event: AnyEvent) -> None:
        await handlers.apply_sales_event(runtime.require_store(), event, policy)

    # Documents what marketing publishes (through its outbox relay) in the AsyncAPI.
    broker.publisher(
        Topic.MARKETING_EVENTS,
        title="crm.marketing.events",
        description="crm.campaign.enrolled.v1 once per customer and journey episode (contacted, holdout or "
        "skipped, with the channel and the reason); crm.campaign.contacted.v1 for each contact; "
        "crm.campaign.converted.v1 for each order attributed to an enrolment; crm.lead.qualified.v1 for each "
        "customer handed to sales (from a segment on demand, or once per prospect whose engagement reached the "
        "threshold, segment_id 'engagement'). Key: customer id.",
        schema=MarketingEvent,
    )
    broker.publisher(
        Topic.DEADLETTER,
        title="crm.deadletter:marketing",
        description="Records marketing rejected, with the reason and the original bytes, topic, partition and offset.",
        schema=DeadLetter,
    )
