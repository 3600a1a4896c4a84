"""Kafka subscribers of sales: parse the envelope, call a handler."""

from faststream.kafka import KafkaBroker

from crm_sales import handlers
from crm_sales.settings import sales_settings
from crm_shared.consumer import SUBSCRIBER_DEFAULTS
from crm_shared.events import AnyEvent, DeadLetter, OrderIngest
from crm_shared.service import Runtime
from crm_shared.topics import Topic


def register(runtime: Runtime) -> None:
    broker: KafkaBroker = runtime.broker
    rates = sales_settings(runtime.settings).rate_table

    @broker.subscriber(
        Topic.INGEST_ORDERS,
        group_id=runtime.settings.consumer_group,
        title="crm.ingest.orders:sales",
        description="Orders from channel systems (placed, paid, cancelled, refunded). "
        "Invalid records go to crm.deadletter with the reason.",
        **SUBSCRIBER_DEFAULTS,
    )
    async def on_order_ingest(event: OrderIngest) -> None:
        await handlers.apply_order_event(runtime.require_store(), event, rates)

    # Any catalog event is accepted: marketing's other events (enrolments, contacts, ...) are ignored.
    @broker.subscriber(
        Topic.MARKETING_EVENTS,
        group_id=runtime.settings.consumer_group,
        title="crm.marketing.events:sales",
        description="Qualified leads handed over by marketing (crm.lead.qualified.v1), kept once each for "
        "follow-up. Other event types are ignored.",
        **SUBSCRIBER_DEFAULTS,
    )
    async def on_marketing_event(event: AnyEvent) -> None:
        await handlers.apply_marketing_event(runtime.require_store(), event)

    # Documents what sales publishes (through its outbox relay) in the AsyncAPI.
    broker.publisher(
        Topic.SALES_EVENTS,
        title="crm.sales.events",
        description="Every order fact sales accepted: crm.order.placed|paid|cancelled|refunded.v1. Key: customer id.",
        schema=OrderIngest,
    )
    broker.publisher(
        Topic.DEADLETTER,
        title="crm.deadletter:sales",
        description="Records sales rejected, with the reason and the original bytes, topic, partition and offset.",
        schema=DeadLetter,
    )
