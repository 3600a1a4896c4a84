"""Kafka subscribers of the customer service: batches of records, each batch applied by a handler."""

from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import Field

from crm_customer import handlers
from crm_customer.identity import service as identity_service
from crm_customer.settings import CustomerSettings, match_secret_of
from crm_shared import identity
from crm_shared.events import (
    AnyEvent,
    CloudEvent,
    ConsentChangedEvent,
    CustomerEvent,
    CustomerReferredEvent,
    CustomerRegisteredEvent,
    DeadLetter,
    IdentityAnswer,
    InteractionLoggedEvent,
)
from crm_shared.service import Runtime
from crm_shared.store import BatchOutcome
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
    group = runtime.settings.consumer_group
    secret = match_secret_of(runtime.settings)
    settings = runtime.settings
    auto_merge = (
        handlers.AutoMerge(settings.auto_merge_rules, settings.survivorship_rules)
        if isinstance(settings, CustomerSettings)
        else handlers.AutoMerge()
    )

    async def on_ingest(events: Sequence[CloudEvent[Any]]) -> BatchOutcome:
        return await handlers.apply_ingest_events(
            runtime.require_store(), events, match_secret=secret, auto_merge=auto_merge
        )

    runtime.subscribe(
        Topic.INGEST_CUSTOMERS,
        schema=CustomersIngest,
        handler=on_ingest,
        title="crm.ingest.customers:customer",
        description="Sign-ups (crm.customer.registered.v1, name, email and phone in clear), consent changes "
        "(crm.customer.consent_changed.v1) and referrals (crm.customer.referred.v1, keyed by the referrer) from "
        "channel systems. A re-registration with other details, a sign-up with sealed personal fields, a consent "
        "change for an unknown customer, a referral id reused with other content, or an invalid record, goes to "
        "crm.deadletter with the reason.",
    )

    runtime.subscribe(
        Topic.INGEST_INTERACTIONS,
        schema=InteractionLoggedEvent,
        handler=on_ingest,
        title="crm.ingest.interactions:customer",
        description="Calls, visits, emails and web sessions (crm.interaction.logged.v1). An interaction id reused "
        "with other content, or an invalid record, goes to crm.deadletter with the reason.",
    )

    async def on_any_event(events: Sequence[CloudEvent[Any]]) -> BatchOutcome:
        return await handlers.record_timeline_events(runtime.require_store(), events)

    # A group of its own: the timeline reads every service's topic at its own pace, and its offsets
    # never mix with those of the ingest subscribers.
    runtime.subscribe(
        *TIMELINE_TOPICS,
        schema=AnyEvent,
        handler=on_any_event,
        group_id=f"{group}-timeline",
        title="customer-360-timeline",
        description="Every catalog event of every service, one timeline entry per event id (a redelivery "
        "changes nothing). Invalid records go to crm.deadletter with the reason.",
    )

    # The customer service follows its own merges, erasures and export requests like every service does.
    identity.subscribe(runtime, "customer", identity_service.CustomerRecords())

    async def on_answers(events: Sequence[CloudEvent[Any]]) -> BatchOutcome:
        return await identity_service.apply_answers(runtime.require_store(), events)

    runtime.subscribe(
        Topic.IDENTITY_ANSWERS,
        schema=IdentityAnswer,
        handler=on_answers,
        group_id=f"{group}-answers",
        title="crm.identity.answers:customer-answers",
        description="What every service did about a merge, an unmerge or an erasure (crm.identity.applied.v1), "
        "shown by GET /v1/merges/{merge_id} and GET /v1/erasures/{erasure_id}, and the parts of its answer to an "
        "export request (crm.identity.exported.v1), gathered for GET /v1/exports/{request_id}.",
    )

    # Documents what the customer service publishes (through its outbox relay) in the AsyncAPI.
    runtime.publishes(
        Topic.CUSTOMER_EVENTS,
        title="crm.customer.events",
        description="Sign-ups, consent changes, interactions and referrals the customer service accepted: "
        "crm.customer.registered.v1, crm.customer.consent_changed.v1, crm.interaction.logged.v1 and "
        "crm.customer.referred.v1; each customer's match keys (crm.customer.match_keys_changed.v1: keyed hashes "
        "of the email and phone when CRM_MATCH_KEY_SECRET is set, none once erased). Key: customer id (the "
        "referrer's for a referral). Merges and unmerges (crm.customer.merged|unmerged.v1, keyed by the survivor), "
        "erasures (crm.customer.erased.v1) and export requests (crm.customer.export_requested.v1) that every "
        "service follows and answers on crm.identity.answers. A sign-up's name, email "
        "and phone are sealed with the customer's key (sealed:v1:...): POST /v1/personal-data/unseal opens them "
        "(scope customers:unseal), and they become unreadable for good once the customer is erased.",
        schema=CustomerEvent,
    )
    runtime.publishes(
        Topic.DEADLETTER,
        title="crm.deadletter:customer",
        description="Records the customer service rejected, with the reason and the original bytes, topic, "
        "partition and offset.",
        schema=DeadLetter,
    )
