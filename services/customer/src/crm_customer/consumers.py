"""Kafka subscribers of the customer service: parse the envelope, call a handler."""

from typing import Annotated

from faststream.kafka import KafkaBroker
from pydantic import Field

from crm_customer import handlers
from crm_shared.consumer import SUBSCRIBER_DEFAULTS
from crm_shared.events import (
    AnyEvent,
    ConsentChangedEvent,
    CustomerIngest,
    CustomerReferredEvent,
    CustomerRegisteredEvent,
    DeadLetter,
    InteractionLoggedEvent,
)
from crm_shared.service import Runtime
from crm_shared.topics import Topic

TIMELINE_TOPICS = (
    Topic.CUSTOMER_EVENTS,
    Topic.SALES_EVENTS,
    Topic.SUPPORT_EVENTS,
    Topic.SCORING_SEGMENTS,
    Topic.MARKETING_EVENTS,
)

# Sign-ups, profile updates (consent changes) and referrals share the customers ingest topic.
CustomersIngest = Annotated[
    CustomerRegisteredEvent | ConsentChangedEvent | CustomerReferredEvent, Field(discriminator="type")
]


def register(runtime: Runtime) -> None:
    broker: KafkaBroker = runtime.broker
    group = runtime.settings.consumer_group

    @broker.subscriber(
        Topic.INGEST_CUSTOMERS,
        group_id=group,
        title="crm.ingest.customers:customer",
        description="Sign-ups (crm.customer.registered.v1), consent changes (crm.customer.consent_changed.v1) "
        "and referrals (crm.customer.referred.v1, keyed by the referrer) from channel systems. A re-registration "
        "with other details, a consent change for an unknown customer, a referral id reused with other content, "
        "or an invalid record, goes to crm.deadletter with the reason.",
        **SUBSCRIBER_DEFAULTS,
    )
    async def on_customer_ingest(event: CustomersIngest) -> None:
        await handlers.apply_ingest(runtime.require_store(), event)

    @broker.subscriber(
        Topic.INGEST_INTERACTIONS,
        group_id=group,
        title="crm.ingest.interactions:customer",
        description="Calls, visits, emails and web sessions (crm.interaction.logged.v1). An interaction id reused "
        "with other content, or an invalid record, goes to crm.deadletter with the reason.",
        **SUBSCRIBER_DEFAULTS,
    )
    async def on_interaction_ingest(event: InteractionLoggedEvent) -> None:
        await handlers.log_interaction(runtime.require_store(), event)

    # A group of its own: the timeline reads every service's topic at its own pace, and its offsets
    # never mix with those of the ingest subscribers.
    @broker.subscriber(
        *TIMELINE_TOPICS,
        group_id=f"{group}-timeline",
        title="customer-360-timeline",
        description="Every catalog event of every service, one timeline entry per event id (a redelivery "
        "changes nothing). Invalid records go to crm.deadletter with the reason.",
        **SUBSCRIBER_DEFAULTS,
    )
    async def on_any_event(event: AnyEvent) -> None:
        await handlers.record_timeline(runtime.require_store(), event)

    # Documents what the customer service publishes (through its outbox relay) in the AsyncAPI.
    broker.publisher(
        Topic.CUSTOMER_EVENTS,
        title="crm.customer.events",
        description="Sign-ups, consent changes, interactions and referrals the customer service accepted: "
        "crm.customer.registered.v1, crm.customer.consent_changed.v1, crm.interaction.logged.v1 and "
        "crm.customer.referred.v1. Key: customer id (the referrer's for a referral).",
        schema=CustomerIngest,
    )
    broker.publisher(
        Topic.DEADLETTER,
        title="crm.deadletter:customer",
        description="Records the customer service rejected, with the reason and the original bytes, topic, "
        "partition and offset.",
        schema=DeadLetter,
    )
