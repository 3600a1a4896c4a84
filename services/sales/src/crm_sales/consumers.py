"""Kafka subscribers of sales: batches of records, each batch applied by a handler in one transaction."""

from collections.abc import Sequence
from typing import Any

from crm_sales.customers import handlers as customers
from crm_sales.identity import HOLDER
from crm_sales.leads import handlers as leads
from crm_sales.orders import handlers as orders
from crm_sales.settings import sales_settings
from crm_shared import identity
from crm_shared.events import AnyEvent, CloudEvent, CustomerRegisteredEvent, DeadLetter, OrderIngest, SalesEvent
from crm_shared.service import Runtime
from crm_shared.store import BatchOutcome
from crm_shared.topics import Topic


def register(runtime: Runtime) -> None:
    rates = sales_settings(runtime.settings).rate_table

    async def on_order_ingest(events: Sequence[CloudEvent[Any]]) -> BatchOutcome:
        return await orders.apply_order_events(runtime.require_store(), events, rates)

    runtime.subscribe(
        Topic.INGEST_ORDERS,
        schema=OrderIngest,
        handler=on_order_ingest,
        title="crm.ingest.orders:sales",
        description="Orders from channel systems (placed, paid, cancelled, refunded). "
        "Invalid records go to crm.deadletter with the reason.",
    )

    async def on_marketing_event(events: Sequence[CloudEvent[Any]]) -> BatchOutcome:
        return await leads.apply_marketing_events(runtime.require_store(), events)

    # Any catalog event is accepted: marketing's other events (enrolments, contacts, ...) are ignored.
    runtime.subscribe(
        Topic.MARKETING_EVENTS,
        schema=AnyEvent,
        handler=on_marketing_event,
        title="crm.marketing.events:sales",
        description="Qualified leads handed over by marketing (crm.lead.qualified.v1), kept once each for "
        "follow-up. Other event types are ignored.",
    )

    async def on_customer_event(events: Sequence[CloudEvent[Any]]) -> BatchOutcome:
        return await customers.apply_customer_events(runtime.require_store(), events)

    runtime.subscribe(
        Topic.CUSTOMER_EVENTS,
        schema=AnyEvent,
        handler=on_customer_event,
        title="crm.customer.events:sales",
        description="Each customer's match keys (crm.customer.match_keys_changed.v1: keyed hashes of the email "
        "and phone, none once erased), the newest kept, so a new lead who is a customer already is refused and a "
        "conversion links the customer instead of registering them again. Other event types are ignored.",
    )

    # Merges, unmerges, erasures and export requests, in a consumer group of their own.
    identity.subscribe(runtime, "sales", HOLDER)

    runtime.publishes(
        Topic.SALES_EVENTS,
        title="crm.sales.events",
        description="Every order fact sales accepted (crm.order.placed|paid|cancelled|refunded.v1, from the "
        "channels, a won opportunity or an accepted quote); lead conversions (crm.lead.converted.v1); "
        "opportunities opened, moved, won and lost (crm.opportunity.*.v1); activities with a customer planned and "
        "done (crm.activity.scheduled|completed.v1). Consumers ignore the types they do not use. Key: customer id.",
        schema=SalesEvent,
    )
    runtime.publishes(
        Topic.INGEST_CUSTOMERS,
        title="crm.ingest.customers:sales",
        description="crm.customer.registered.v1 for the customer a converted lead becomes (name, email and phone "
        "in clear, as a channel's sign-up; the customer service seals them), once per lead.",
        schema=CustomerRegisteredEvent,
    )
    runtime.publishes(
        Topic.DEADLETTER,
        title="crm.deadletter:sales",
        description="Records sales rejected, with the reason and the original bytes, topic, partition and offset.",
        schema=DeadLetter,
    )
