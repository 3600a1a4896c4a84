"""The events of a ticket's changes on crm.support.events: what changed from one state of the ticket to the
next, each with an id derived from the ticket and the change, so a retried transaction publishes the same ones."""

from __future__ import annotations

from typing import Any

from crm_shared.events import (
    CloudEvent,
    SurveyRequested,
    SurveyRequestedEvent,
    TicketAssigned,
    TicketAssignedEvent,
    TicketOpened,
    TicketOpenedEvent,
    TicketReplied,
    TicketRepliedEvent,
    TicketStatusChanged,
    TicketStatusChangedEvent,
    derived_event_id,
)
from crm_support.tickets import domain

SOURCE = "/crm/support"


def _event_id(ticket_id: str, what: str) -> str:
    return derived_event_id(SOURCE, f"ticket:{ticket_id}:{what}")


def published(
    before: domain.Ticket | None, after: domain.Ticket, *, cause: CloudEvent[Any] | None = None
) -> list[CloudEvent[Any]]:
    """The events of what changed from `before` to `after` (every change of the ticket), ids derived from the
    ticket and the change, so a retried transaction publishes the same ones; `cause` is the event that changed
    it, when one did (a complaint filed: its correlation, and the id it named before a merge, carry on)."""
    events: list[CloudEvent[Any]] = []
    customer, ticket_id = after.customer_id, after.ticket_id
    if before is None:
        opened = TicketOpened(
            customer_id=customer,
            ticket_id=ticket_id,
            kind=after.kind,
            channel=after.channel,
            priority=after.priority,
            category=after.category,
            order_id=after.order_id,
            product=after.product,
            group=after.group,
            sla_policy_id=after.policy_id,
        )
        events.append(
            TicketOpenedEvent.create(
                opened, source=SOURCE, id=_event_id(ticket_id, "opened"), time=after.created_at, cause=cause
            )
        )
    # The description a ticket opens with is part of the opening, not a reply of its own.
    old_posts = {p.post_id for p in (before or after).posts}
    for post in after.posts:
        if post.post_id in old_posts:
            continue
        author = "agent" if post.author.kind == "agent" else "customer"
        data = TicketReplied(
            customer_id=customer, ticket_id=ticket_id, post_id=post.post_id, author=author, public=post.public
        )
        event_id = _event_id(ticket_id, f"post:{post.post_id}")
        events.append(TicketRepliedEvent.create(data, source=SOURCE, id=event_id, time=post.at, cause=cause))
    known = len(before.statuses) if before else 1
    for index in range(known, len(after.statuses)):
        (_, old), (at, new) = after.statuses[index - 1], after.statuses[index]
        change = next((c for c in reversed(after.history) if c.at == at and c.detail.get("to") == new), None)
        by = change.actor.kind if change else "agent"
        data_changed = TicketStatusChanged(
            customer_id=customer,
            ticket_id=ticket_id,
            old=old,
            new=new,
            reopened=old in ("resolved", "closed") and new == "open",
            by=by,
        )
        event_id = _event_id(ticket_id, f"status:{index}")
        events.append(TicketStatusChangedEvent.create(data_changed, source=SOURCE, id=event_id, time=at, cause=cause))
        if new == "resolved":
            # Each resolution asks for one CSAT answer about it (a reopened, resolved again ticket asks again).
            resolutions = sum(1 for _, status in after.statuses[: index + 1] if status == "resolved")
            request = SurveyRequested(
                customer_id=customer,
                survey_id=f"CSAT-{ticket_id}-{resolutions}",
                kind="csat",
                ticket_id=ticket_id,
                agent_id=after.assignee_id,
            )
            request_id = _event_id(ticket_id, f"csat:{resolutions}")
            events.append(SurveyRequestedEvent.create(request, source=SOURCE, id=request_id, time=at, cause=cause))
    if before is not None and (before.group, before.assignee_id) != (after.group, after.assignee_id):
        at = next(c.at for c in reversed(after.history) if c.action == "assigned")
        data_assigned = TicketAssigned(
            customer_id=customer, ticket_id=ticket_id, group=after.group, assignee_id=after.assignee_id
        )
        event_id = _event_id(ticket_id, f"assigned:{len(after.history)}")
        events.append(TicketAssignedEvent.create(data_assigned, source=SOURCE, id=event_id, time=at, cause=cause))
    return events
