"""Kafka subscribers of support: batches of records, each batch applied by a handler in one transaction."""

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from crm_shared import identity
from crm_shared.events import AnyEvent, CloudEvent, DeadLetter, SupportEvent, TicketIngest
from crm_shared.service import Runtime
from crm_shared.store import BatchOutcome
from crm_shared.topics import Topic
from crm_support import handlers
from crm_support.domain import SlaTargets
from crm_support.identity import HOLDER


def register(runtime: Runtime, targets: SlaTargets, nps_interval: timedelta | None = None) -> None:
    async def on_ticket_ingest(events: Sequence[CloudEvent[Any]]) -> BatchOutcome:
        return await handlers.apply_ticket_events(runtime.require_store(), events, targets)

    runtime.subscribe(
        Topic.INGEST_TICKETS,
        schema=TicketIngest,
        handler=on_ticket_ingest,
        title="crm.ingest.tickets:support",
        description="Complaints and survey answers from channel systems. "
        "Invalid or contradicting records go to crm.deadletter with the reason.",
    )

    async def on_segment_changes(events: Sequence[CloudEvent[Any]]) -> BatchOutcome:
        return await handlers.apply_segment_events(runtime.require_store(), events, nps_interval)

    # Any catalog event is accepted: segment changes on other dimensions are ignored.
    runtime.subscribe(
        Topic.SCORING_SEGMENTS,
        schema=AnyEvent,
        handler=on_segment_changes,
        title="crm.scoring.segments:support",
        description="Each customer's value tier (crm.segment.changed.v1 on dimension value_tier), the newest kept: "
        "SLA policies match on it, so better customers get faster service; a customer's first tier enrols them "
        "in the periodic NPS survey. Other dimensions are ignored.",
    )

    # Merges, unmerges, erasures and export requests of the customer service, in a consumer group of their own.
    identity.subscribe(runtime, "support", HOLDER)

    runtime.publishes(
        Topic.SUPPORT_EVENTS,
        title="crm.support.events",
        description="Every ticket fact support accepted: crm.complaint.filed.v1, crm.survey.answered.v1; and every "
        "change of a ticket: crm.ticket.opened|status_changed|assigned|replied.v1 (a complaint filed opens one, "
        "under its id; the subject and messages stay in support); SLA warnings and breaches "
        "(crm.sla.warned|breached.v1); CSAT requests (crm.survey.requested.v1); field visits booked and moved on "
        "(crm.visit.scheduled|status_changed.v1). Key: customer id.",
        schema=SupportEvent,
    )
    runtime.publishes(
        Topic.DEADLETTER,
        title="crm.deadletter:support",
        description="Records support rejected, with the reason and the original bytes, topic, partition and offset.",
        schema=DeadLetter,
    )
