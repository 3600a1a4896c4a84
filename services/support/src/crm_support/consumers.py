"""Kafka subscribers of support: parse the envelope, call a handler."""

from faststream.kafka import KafkaBroker

from crm_shared.consumer import SUBSCRIBER_DEFAULTS
from crm_shared.events import DeadLetter, TicketIngest
from crm_shared.service import Runtime
from crm_shared.topics import Topic
from crm_support import handlers
from crm_support.domain import SlaTargets


def register(runtime: Runtime, targets: SlaTargets) -> None:
    broker: KafkaBroker = runtime.broker

    @broker.subscriber(
        Topic.INGEST_TICKETS,
        group_id=runtime.settings.consumer_group,
        title="crm.ingest.tickets:support",
        description="Complaints and survey answers from channel systems. "
        "Invalid or contradicting records go to crm.deadletter with the reason.",
        **SUBSCRIBER_DEFAULTS,
    )
    async def on_ticket_ingest(event: TicketIngest) -> None:
        await handlers.apply_ticket_event(runtime.require_store(), event, targets)

    # Documents what support publishes (through its outbox relay) in the AsyncAPI.
    broker.publisher(
        Topic.SUPPORT_EVENTS,
        title="crm.support.events",
        description="Every ticket fact support accepted: crm.complaint.filed.v1, crm.survey.answered.v1. "
        "Key: customer id.",
        schema=TicketIngest,
    )
    broker.publisher(
        Topic.DEADLETTER,
        title="crm.deadletter:support",
        description="Records support rejected, with the reason and the original bytes, topic, partition and offset.",
        schema=DeadLetter,
    )
