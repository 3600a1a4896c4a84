"""Kafka subscribers of scoring: parse the envelope, call a handler."""

from faststream.kafka import KafkaBroker

from crm_scoring import domain, handlers
from crm_shared.consumer import SUBSCRIBER_DEFAULTS
from crm_shared.events import AnyEvent, DeadLetter, OrderIngest, SegmentChangedEvent, TicketIngest
from crm_shared.service import Runtime
from crm_shared.topics import Topic


def register(runtime: Runtime, thresholds: domain.Thresholds) -> None:
    broker: KafkaBroker = runtime.broker

    @broker.subscriber(
        Topic.SALES_EVENTS,
        group_id=runtime.settings.consumer_group,
        title="crm.sales.events:scoring",
        description="Order facts accepted by sales (placed, paid, cancelled, refunded): recency, frequency, "
        "monetary value, value tier and lifecycle stage. Invalid or contradictory records go to crm.deadletter "
        "with the reason.",
        **SUBSCRIBER_DEFAULTS,
    )
    async def on_sales_event(event: OrderIngest) -> None:
        await handlers.apply_event(runtime.require_store(), event, thresholds)

    @broker.subscriber(
        Topic.SUPPORT_EVENTS,
        group_id=runtime.settings.consumer_group,
        title="crm.support.events:scoring",
        description="Complaints and survey answers from support: satisfaction (overall and per product, service, "
        "people) and churn risk. Invalid or contradictory records go to crm.deadletter with the reason.",
        **SUBSCRIBER_DEFAULTS,
    )
    async def on_support_event(event: TicketIngest) -> None:
        await handlers.apply_event(runtime.require_store(), event, thresholds)

    # Any catalog event is accepted: types scoring does not use (sign-ups, consent changes) are ignored,
    # not dead-lettered, so the customer service can publish more on this topic without breaking scoring.
    @broker.subscriber(
        Topic.CUSTOMER_EVENTS,
        group_id=runtime.settings.consumer_group,
        title="crm.customer.events:scoring",
        description="Logged interactions (crm.interaction.logged.v1) and referrals (crm.customer.referred.v1) "
        "from the customer service: interaction count and last interaction time, referral count, the loyalty "
        "ladder's advocate stage and the formula lifetime value's E. Other event types are ignored; invalid or "
        "contradictory records go to crm.deadletter with the reason.",
        **SUBSCRIBER_DEFAULTS,
    )
    async def on_customer_event(event: AnyEvent) -> None:
        await handlers.apply_customer_event(runtime.require_store(), event, thresholds)

    # Documents what scoring publishes (through its outbox relay) in the AsyncAPI.
    broker.publisher(
        Topic.SCORING_SEGMENTS,
        title="crm.scoring.segments",
        description="One crm.segment.changed.v1 each time a customer crosses a boundary on a dimension "
        "(value_tier, lifecycle_stage, rfm_segment, churn_risk_band), with the old and new segment, the scores "
        "behind the decision and what caused it: the id of an order, ticket, interaction or referral event, "
        "'decay:<date>' when time alone moved the lifecycle stage (at_risk, lost), or 'population:<version>' when "
        "recomputed population statistics (80/20 threshold, RFM quintiles, fitted models) moved it; never "
        "published when nothing changed. Marketing automation triggers journeys on these (welcome, high-value "
        "thank-you, service recovery). Key: customer id.",
        schema=SegmentChangedEvent,
    )
    broker.publisher(
        Topic.DEADLETTER,
        title="crm.deadletter:scoring",
        description="Records scoring rejected, with the reason and the original bytes, topic, partition and offset.",
        schema=DeadLetter,
    )
