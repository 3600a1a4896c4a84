"""Tickets: service requests, complaints and questions, with their lifecycle, conversation and history. Pure: no
I/O, no framework.

A ticket moves new → open → pending (waiting on the customer or a third party) → resolved → closed, and a
resolved or closed ticket can be reopened. Replies keep it moving the way a service desk expects: an agent's
first public reply opens a new ticket; the customer writing on a pending or resolved ticket puts it back to
open (they answered, or it was not solved). The conversation holds public replies and internal notes; the
history says who did what, and when. A complaint filed on `crm.ingest.tickets` is a ticket of kind `complaint`.

Every change returns the new ticket; a change that does nothing (the same status, the same assignee) returns
the ticket as it was, so a retried command changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal, get_args

from crm_support.sla.clock import Message, TicketHistory, TicketStatus, Timer, next_due
from crm_support.sla.policies import TicketFacts, TimerKind

TicketKind = Literal["request", "complaint", "question"]
Priority = Literal["low", "normal", "high", "urgent"]
PRIORITIES: tuple[Priority, ...] = get_args(Priority)
STATUSES: tuple[TicketStatus, ...] = get_args(TicketStatus)
ActorKind = Literal["customer", "agent", "system"]

NEXT_STATUSES: Mapping[TicketStatus, tuple[TicketStatus, ...]] = {
    "new": ("open", "pending", "resolved", "closed"),
    "open": ("pending", "resolved", "closed"),
    "pending": ("open", "resolved", "closed"),
    "resolved": ("open", "closed"),
    "closed": ("open",),
}
"""What may follow each status; `open` after resolved or closed is a reopen."""

SEVERITY_PRIORITY: Mapping[str, Priority] = {"low": "low", "medium": "normal", "high": "high"}
"""A complaint's severity as a ticket priority."""


class TicketRefused(Exception):
    """A change the lifecycle does not allow; `allowed` lists the statuses that may come next."""

    def __init__(self, message: str, allowed: tuple[TicketStatus, ...] = ()) -> None:
        super().__init__(message)
        self.allowed = allowed


@dataclass(frozen=True)
class Actor:
    kind: ActorKind
    id: str


@dataclass(frozen=True)
class Post:
    post_id: str
    at: datetime
    author: Actor
    body: str
    public: bool = True
    """False: an internal note, which the customer never sees and which answers nobody."""


@dataclass(frozen=True)
class Change:
    """One line of the ticket's history."""

    at: datetime
    actor: Actor
    action: str
    detail: Mapping[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class SlaDue:
    """The SLA target a ticket must meet next (crm_support.sla.clock.next_due) as its timers stood at its last
    change: kept with the ticket, so a queue sorts by it without computing timers on business-hours calendars."""

    kind: TimerKind
    due_at: datetime
    warn_at: datetime | None
    target: timedelta
    business_hours: bool
    started_at: datetime
    cycle: int = 1

    @classmethod
    def of(cls, timer: Timer) -> SlaDue:
        assert timer.due_at is not None and timer.started_at is not None, "a timer counting is started and due"
        return cls(
            kind=timer.kind,
            due_at=timer.due_at,
            warn_at=timer.warn_at,
            target=timer.target,
            business_hours=timer.business_hours,
            started_at=timer.started_at,
            cycle=timer.cycle,
        )


@dataclass(frozen=True)
class Ticket:
    ticket_id: str
    customer_id: str
    kind: TicketKind
    subject: str
    channel: str
    priority: Priority
    created_at: datetime
    category: str | None = None
    order_id: str | None = None
    product: str | None = None
    group: str | None = None
    assignee_id: str | None = None
    contract_id: str | None = None
    contract_policy_id: str | None = None
    """The SLA policy of the service contract the ticket is under, which applies whatever its other facts."""
    value_tier: str | None = None
    """The customer's value tier when the ticket was last matched to a policy (from scoring's segment changes)."""
    policy_id: str | None = None
    statuses: tuple[tuple[datetime, TicketStatus], ...] = ()
    posts: tuple[Post, ...] = ()
    history: tuple[Change, ...] = ()
    sla_due: SlaDue | None = None
    """What is due next, as of the last change (`timed`); None when no timer counts, or for a ticket stored
    before it was kept."""

    @property
    def status(self) -> TicketStatus:
        return self.statuses[-1][1]

    @property
    def facts(self) -> TicketFacts:
        """What SLA policies look at."""
        return TicketFacts(
            priority=self.priority,
            category=self.category,
            channel=self.channel,
            value_tier=self.value_tier,
            contract_id=self.contract_id,
        )

    @property
    def sla_history(self) -> TicketHistory:
        """What the SLA clock counts from."""
        return TicketHistory(
            created_at=self.created_at,
            statuses=self.statuses,
            messages=[Message(p.at, "agent" if p.author.kind == "agent" else "customer", p.public) for p in self.posts],
        )

    @property
    def resolved_at(self) -> datetime | None:
        for at, status in reversed(self.statuses):
            if status not in ("resolved", "closed"):
                return None
            if status == "resolved":
                return at
        return None


def timed(ticket: Ticket, timers: Iterable[Timer]) -> Ticket:
    """The ticket with what is due next as its timers now (`timers`, under the policy in force) say: set at every
    change, since a reply, a pause or a resume moves the due times."""
    due = next_due(timers)
    return replace(ticket, sla_due=SlaDue.of(due) if due is not None else None)


def open_ticket(
    *,
    ticket_id: str,
    customer_id: str,
    kind: TicketKind,
    subject: str,
    channel: str,
    at: datetime,
    by: Actor,
    priority: Priority = "normal",
    category: str | None = None,
    order_id: str | None = None,
    product: str | None = None,
    group: str | None = None,
    contract_id: str | None = None,
    description: str | None = None,
) -> Ticket:
    """A new ticket; its description, when given, is the first post (the customer's, or the agent's who took it)."""
    if priority not in PRIORITIES:
        raise TicketRefused(f"priority {priority!r} is not one of {', '.join(PRIORITIES)}")
    ticket = Ticket(
        ticket_id=ticket_id,
        customer_id=customer_id,
        kind=kind,
        subject=subject,
        channel=channel,
        priority=priority,
        created_at=at,
        category=category,
        order_id=order_id,
        product=product,
        group=group,
        contract_id=contract_id,
        statuses=((at, "new"),),
        history=(Change(at, by, "created", {"channel": channel, "priority": priority}),),
    )
    if description:
        ticket = replace(ticket, posts=(Post(f"{ticket_id}-1", at, by, description, public=True),))
    return ticket


def change_status(ticket: Ticket, to: TicketStatus, at: datetime, by: Actor) -> Ticket:
    """Move the ticket to `to`; the same status again is no change. Raises TicketRefused for a move the
    lifecycle does not allow (listing those it does)."""
    if to not in STATUSES:
        raise TicketRefused(f"{to!r} is not a ticket status; the statuses are {', '.join(STATUSES)}")
    if to == ticket.status:
        return ticket
    allowed = NEXT_STATUSES[ticket.status]
    if to not in allowed:
        raise TicketRefused(f"a {ticket.status} ticket cannot become {to}", allowed)
    action = "reopened" if ticket.status in ("resolved", "closed") and to == "open" else "status_changed"
    return replace(
        ticket,
        statuses=(*ticket.statuses, (at, to)),
        history=(*ticket.history, Change(at, by, action, {"from": ticket.status, "to": to})),
    )


def post(ticket: Ticket, new: Post) -> Ticket:
    """Add a reply or an internal note; a post id already there is no change (the same post again). An agent's
    public reply opens a new ticket; the customer writing on a pending, resolved or closed ticket reopens it
    (to open). Only agents write internal notes."""
    known = next((p for p in ticket.posts if p.post_id == new.post_id), None)
    if known is not None:
        if known != new:
            raise TicketRefused(f"post {new.post_id} was already written with other content")
        return ticket
    if not new.public and new.author.kind != "agent":
        raise TicketRefused("only agents write internal notes")
    action = "replied" if new.public else "noted"
    changed = replace(
        ticket,
        posts=(*ticket.posts, new),
        history=(*ticket.history, Change(new.at, new.author, action, {"post_id": new.post_id})),
    )
    if new.author.kind == "agent" and new.public and ticket.status == "new":
        return change_status(changed, "open", new.at, new.author)
    if new.author.kind == "customer" and ticket.status in ("pending", "resolved", "closed"):
        return change_status(changed, "open", new.at, Actor("system", "customer-replied"))
    return changed


def assign(ticket: Ticket, *, assignee_id: str | None, group: str | None, at: datetime, by: Actor) -> Ticket:
    """Give the ticket to an agent and/or a group; the same assignment again is no change."""
    if (assignee_id, group) == (ticket.assignee_id, ticket.group):
        return ticket
    detail = {"assignee_id": assignee_id, "group": group}
    return replace(
        ticket,
        assignee_id=assignee_id,
        group=group,
        history=(*ticket.history, Change(at, by, "assigned", detail)),
    )


def set_policy(ticket: Ticket, policy_id: str | None, value_tier: str | None, at: datetime, by: Actor) -> Ticket:
    """Record the SLA policy now in force (and the value tier it was chosen on); the same again is no change."""
    if (policy_id, value_tier) == (ticket.policy_id, ticket.value_tier):
        return ticket
    detail = {"from": ticket.policy_id, "to": policy_id, "value_tier": value_tier}
    return replace(
        ticket,
        policy_id=policy_id,
        value_tier=value_tier,
        history=(*ticket.history, Change(at, by, "policy_changed", detail)),
    )


def escalate(ticket: Ticket, *, timer: str, group: str | None, manager: str | None, at: datetime, by: Actor) -> Ticket:
    """A breached timer escalated: the ticket moves to `group` when one is given (its assignee keeps it), and the
    history says which timer escalated and to whom."""
    if group is not None:
        ticket = assign(ticket, assignee_id=ticket.assignee_id, group=group, at=at, by=by)
    detail = {"timer": timer, "group": group, "manager": manager}
    return replace(ticket, history=(*ticket.history, Change(at, by, "escalated", detail)))
