"""Kafka subscribers of marketing: parse the envelope, call a handler."""

from faststream.kafka import KafkaBroker

from crm_marketing import handlers
from crm_shared.consumer import SUBSCRIBER_DEFAULTS
from crm_shared.events import AnyEvent, CampaignEnrolledEvent, DeadLetter, SegmentChangedEvent
from crm_shared.service import Runtime
from crm_shared.topics import Topic


def register(runtime: Runtime) -> None:
    broker: KafkaBroker = runtime.broker

    @broker.subscriber(
        Topic.SCORING_SEGMENTS,
        group_id=runtime.settings.consumer_group,
        title="crm.scoring.segments:marketing",
        description="Segment changes from scoring; each may trigger journeys (welcome, high-value thank-you, "
        "service recovery). Invalid records go to crm.deadletter with the reason.",
        **SUBSCRIBER_DEFAULTS,
    )
    async def on_segment_changed(event: SegmentChangedEvent) -> None:
        await handlers.apply_segment_change(runtime.require_store(), event)

    # Any catalog event is accepted: types marketing does not use (interactions, ...) are ignored,
    # not dead-lettered, so the customer service can publish more on this topic without breaking marketing.
    @broker.subscriber(
        Topic.CUSTOMER_EVENTS,
        group_id=runtime.settings.consumer_group,
        title="crm.customer.events:marketing",
        description="Customer sign-ups, for marketing's projection of channel consents and the preferred channel "
        "(no name, email or phone is kept). Other event types are ignored.",
        **SUBSCRIBER_DEFAULTS,
    )
    async def on_customer_event(event: AnyEvent) -> None:
        await handlers.apply_customer_event(runtime.require_store(), event)

    # Documents what marketing publishes (through its outbox relay) in the AsyncAPI.
    broker.publisher(
        Topic.MARKETING_EVENTS,
        title="crm.marketing.events",
        description="One crm.campaign.enrolled.v1 per customer and journey episode (contacted or skipped, "
        "with the channel and the reason). Key: customer id.",
        schema=CampaignEnrolledEvent,
    )
    broker.publisher(
        Topic.DEADLETTER,
        title="crm.deadletter:marketing",
        description="Records marketing rejected, with the reason and the original bytes, topic, partition and offset.",
        schema=DeadLetter,
    )
