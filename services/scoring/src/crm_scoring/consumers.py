"""Kafka subscribers of scoring: batches of records, each batch applied by a handler in one transaction."""

from collections.abc import Sequence
from typing import Any

from crm_scoring import domain, handlers
from crm_scoring.identity import ScoringHolder
from crm_shared import identity
from crm_shared.events import AnyEvent, CloudEvent, DeadLetter, SegmentChangedEvent
from crm_shared.service import Runtime
from crm_shared.store import BatchOutcome
from crm_shared.topics import Topic


def register(runtime: Runtime, thresholds: domain.Thresholds) -> None:
    async def on_sales_event(events: Sequence[CloudEvent[Any]]) -> BatchOutcome:
        return await handlers.apply_sales_events(runtime.require_store(), events, thresholds)

    # Any catalog event is accepted: sales' opportunities, quotes and leads are ignored, not dead-lettered.
    runtime.subscribe(
        Topic.SALES_EVENTS,
        schema=AnyEvent,
        handler=on_sales_event,
        title="crm.sales.events:scoring",
        description="Order facts accepted by sales (placed, paid, cancelled, refunded): recency, frequency, "
        "monetary value, value tier and lifecycle stage; completed activities that are interactions (call, "
        "meeting, visit, email: crm.activity.completed.v1) count as interactions. Other event types are ignored; "
        "invalid or contradictory records go to crm.deadletter with the reason.",
    )

    async def on_support_event(events: Sequence[CloudEvent[Any]]) -> BatchOutcome:
        return await handlers.apply_support_events(runtime.require_store(), events, thresholds)

    # Any catalog event is accepted: tickets' lifecycle events are ignored, not dead-lettered.
    runtime.subscribe(
        Topic.SUPPORT_EVENTS,
        schema=AnyEvent,
        handler=on_support_event,
        title="crm.support.events:scoring",
        description="Complaints and survey answers from support: satisfaction (overall and per product, service, "
        "people) and churn risk. Other event types are ignored; invalid or contradictory records go to "
        "crm.deadletter with the reason.",
    )

    async def on_customer_event(events: Sequence[CloudEvent[Any]]) -> BatchOutcome:
        return await handlers.apply_customer_events(runtime.require_store(), events, thresholds)

    # Any catalog event is accepted: types scoring does not use (sign-ups, consent changes) are ignored,
    # not dead-lettered, so the customer service can publish more on this topic without breaking scoring.
    runtime.subscribe(
        Topic.CUSTOMER_EVENTS,
        schema=AnyEvent,
        handler=on_customer_event,
        title="crm.customer.events:scoring",
        description="Logged interactions (crm.interaction.logged.v1) and referrals (crm.customer.referred.v1) "
        "from the customer service: interaction count and last interaction time, referral count, the loyalty "
        "ladder's advocate stage and the formula lifetime value's E. Other event types are ignored; invalid or "
        "contradictory records go to crm.deadletter with the reason.",
    )

    # Merges, unmerges, erasures and exports, in a consumer group of their own; a merge rescores the survivor
    # with the same thresholds as the events do.
    identity.subscribe(runtime, "scoring", ScoringHolder(thresholds))

    runtime.publishes(
        Topic.SCORING_SEGMENTS,
        title="crm.scoring.segments",
        description="One crm.segment.changed.v1 each time a customer crosses a boundary on a dimension "
        "(value_tier, lifecycle_stage, rfm_segment, churn_risk_band), with the old and new segment, the scores "
        "behind the decision and what caused it: the id of an order, ticket, interaction or referral event, "
        "'decay:<date>' when time alone moved the lifecycle stage (at_risk, lost), 'population:<version>' when "
        "recomputed population statistics (80/20 threshold, RFM quintiles, fitted models) moved it, or the id of "
        "the merge or unmerge of customers (crm.customer.merged|unmerged.v1) that moved the survivor's or the "
        "restored customer's segments; never published when nothing changed. Marketing automation triggers "
        "journeys on these (welcome, high-value thank-you, service recovery). Key: customer id.",
        schema=SegmentChangedEvent,
    )
    runtime.publishes(
        Topic.DEADLETTER,
        title="crm.deadletter:scoring",
        description="Records scoring rejected, with the reason and the original bytes, topic, partition and offset.",
        schema=DeadLetter,
    )
