"""REST API of tickets: open, list and read them with their SLA timers, reply or note, change status and
assignment. An agent sees the tickets of their groups and those assigned to them or their team."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self

from fastapi import APIRouter, Body, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pymongo.asynchronous.collection import AsyncCollection

from crm_shared import identity
from crm_shared.api import (
    Cursor,
    IdempotencyKey,
    IdInPath,
    Limit,
    Page,
    command_event_id,
    decode_cursor,
    encode_cursor,
    invalid_cursor,
    keyset_page,
)
from crm_shared.events import Channel, CustomerId, Dimension, EntityId, Line, Text, utc_now
from crm_shared.problems import Problem
from crm_shared.security import Principal, UserId, requires
from crm_shared.service import StoreDep
from crm_shared.store import as_stored
from crm_support.sla.clock import TicketStatus, Timer, TimerStatus
from crm_support.sla.policies import TimerKind
from crm_support.tickets import domain, handlers, repository

router = APIRouter(prefix="/v1", tags=["tickets"])

TicketReader = Annotated[Principal, requires("tickets:read")]
TicketWriter = Annotated[Principal, requires("tickets:write")]
NO_SUCH_TICKET: dict[int | str, dict[str, Any]] = {404: {"description": "No such ticket, or not one the caller sees"}}


def ticket_not_found(ticket_id: str) -> Problem:
    return Problem(404, "Ticket not found", f"no ticket {ticket_id}")


class TicketBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: CustomerId
    kind: domain.TicketKind = "request"
    subject: Line = Field(min_length=1, max_length=200)
    description: Text | None = Field(default=None, max_length=10_000, description="The customer's first message.")
    channel: Channel = Field(description="Where it came in: email, phone, web, call centre, ...")
    priority: domain.Priority = "normal"
    category: Dimension | None = Field(default=None, description="What it is about: product, service or people.")
    order_id: EntityId | None = None
    product: EntityId | None = None
    group: EntityId | None = Field(default=None, description="The group (queue) that works it.")
    contract_id: EntityId | None = Field(
        default=None,
        description="The service contract it is under (PUT /v1/service-contracts/{id}): it must be the customer's, "
        "running today and cover the product; its SLA policy, if it has one, applies.",
    )

    def new(self) -> handlers.NewTicket:
        return handlers.NewTicket(**self.__dict__)


class PostBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    body: Text = Field(min_length=1, max_length=10_000)
    public: bool = Field(default=True, description="False: an internal note, which the customer never sees.")
    from_customer: bool = Field(
        default=False,
        description="The customer's own message, relayed by a channel or an agent (the caller writes otherwise).",
    )

    @model_validator(mode="after")
    def _notes_are_agents(self) -> Self:
        if self.from_customer and not self.public:
            raise ValueError("an internal note is an agent's, never the customer's")
        return self


class TicketChange(BaseModel):
    """The fields sent are changed; `assignee_id` or `group` null unassigns."""

    model_config = ConfigDict(extra="forbid")

    status: TicketStatus | None = None
    assignee_id: UserId | None = None
    group: EntityId | None = None

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("send at least one of status, assignee_id, group")
        if "status" in self.model_fields_set and self.status is None:
            raise ValueError("status cannot be null")
        return self


class TimerView(BaseModel):
    kind: TimerKind
    status: TimerStatus = Field(description="running, paused (pending, or resolved for a response), met, breached.")
    target_hours: float
    business_hours: bool
    elapsed_seconds: int
    remaining_seconds: int = Field(description="Negative once breached.")
    started_at: datetime | None
    stopped_at: datetime | None
    due_at: datetime | None = Field(description="When it breaches or breached; null while paused before it.")
    warn_at: datetime | None
    cycle: int = Field(description="Next response: which wait this is (0: none yet).")

    @classmethod
    def of(cls, timer: Timer) -> TimerView:
        return cls(
            kind=timer.kind,
            status=timer.status,
            target_hours=timer.target.total_seconds() / 3600,
            business_hours=timer.business_hours,
            elapsed_seconds=int(timer.elapsed.total_seconds()),
            remaining_seconds=int(timer.remaining.total_seconds()),
            started_at=timer.started_at,
            stopped_at=timer.stopped_at,
            due_at=timer.due_at,
            warn_at=timer.warn_at,
            cycle=timer.cycle,
        )


class DueTimerView(BaseModel):
    """The timer due at the ticket's `sla_due_at`, as kept with the ticket."""

    kind: TimerKind
    status: Literal["running", "breached"] = Field(description="Now: breached once its due time has passed.")
    target_hours: float
    business_hours: bool
    started_at: datetime
    due_at: datetime = Field(description="When it breaches or breached (the ticket's `sla_due_at`).")
    warn_at: datetime | None
    cycle: int = Field(description="Next response: which wait this is; the others, 1.")

    @classmethod
    def of(cls, due: domain.SlaDue, now: datetime) -> DueTimerView:
        return cls(
            kind=due.kind,
            status="breached" if due.due_at < now else "running",
            target_hours=due.target.total_seconds() / 3600,
            business_hours=due.business_hours,
            started_at=due.started_at,
            due_at=due.due_at,
            warn_at=due.warn_at,
            cycle=due.cycle,
        )


SLA_DUE_AT = (
    "What is due next: the earliest `due_at` of the ticket's SLA timers counting as of its last change (started, "
    "not met, and not paused: pending pauses resolution, resolved and closed pause every timer), a breached one "
    "still counting being due in the past. Null when none counts: no policy, none started, all met or paused "
    "(breached or not), or a ticket stored before the field and not changed since. Computed at every change on "
    "the policy's calendar, so a pause and a resume move it; a policy or calendar edited later moves it at the "
    "ticket's next change, or when the escalation worker reaches the timer. `sort=sla_due` orders by it."
)


class PostView(BaseModel):
    post_id: str
    at: datetime
    author: Literal["customer", "agent", "system"]
    author_id: str
    body: str
    public: bool


class ChangeView(BaseModel):
    at: datetime
    actor: str = Field(description="kind:id of who did it (customer, agent, system).")
    action: str
    detail: dict[str, str | None]


class TicketView(BaseModel):
    ticket_id: str
    customer_id: str
    kind: domain.TicketKind
    subject: str
    channel: str
    priority: domain.Priority
    category: str | None
    status: TicketStatus
    order_id: str | None
    product: str | None
    group: str | None
    assignee_id: str | None
    contract_id: str | None
    created_at: datetime
    resolved_at: datetime | None
    sla_policy_id: str | None = Field(description="The SLA policy in force; null when none matched.")
    value_tier: str | None = Field(description="The customer's value tier the policy was chosen on.")
    sla_due_at: datetime | None = Field(default=None, description=SLA_DUE_AT)
    sla_next: DueTimerView | None = Field(default=None, description="The timer due at `sla_due_at`; null with it.")
    timers: list[TimerView] | None = Field(default=None, description="Each SLA timer now (GET of one ticket).")
    posts: list[PostView] | None = Field(default=None, description="The conversation (GET of one ticket).")
    history: list[ChangeView] | None = Field(default=None, description="Who did what, when (GET of one ticket).")

    @classmethod
    def of(
        cls,
        t: domain.Ticket,
        timers: dict[TimerKind, Timer] | None = None,
        *,
        whole: bool = False,
        now: datetime | None = None,
    ) -> TicketView:
        due = t.sla_due
        return cls(
            ticket_id=t.ticket_id,
            customer_id=t.customer_id,
            kind=t.kind,
            subject=t.subject,
            channel=t.channel,
            priority=t.priority,
            category=t.category,
            status=t.status,
            order_id=t.order_id,
            product=t.product,
            group=t.group,
            assignee_id=t.assignee_id,
            contract_id=t.contract_id,
            created_at=t.created_at,
            resolved_at=t.resolved_at,
            sla_policy_id=t.policy_id,
            value_tier=t.value_tier,
            sla_due_at=due.due_at if due else None,
            sla_next=DueTimerView.of(due, now or utc_now()) if due else None,
            timers=[TimerView.of(timer) for timer in timers.values()] if timers is not None else None,
            posts=[
                PostView(
                    post_id=p.post_id,
                    at=p.at,
                    author=p.author.kind,
                    author_id=p.author.id,
                    body=p.body,
                    public=p.public,
                )
                for p in t.posts
            ]
            if whole
            else None,
            history=[
                ChangeView(at=c.at, actor=f"{c.actor.kind}:{c.actor.id}", action=c.action, detail=dict(c.detail))
                for c in t.history
            ]
            if whole
            else None,
        )


TICKET_EXAMPLE = {
    "customer_id": "C-1001",
    "kind": "request",
    "subject": "Second machine: delivery date?",
    "description": "When can the second machine be delivered?",
    "channel": "email",
    "priority": "normal",
    "category": "service",
}


@router.post(
    "/tickets",
    response_model=TicketView,
    status_code=status.HTTP_201_CREATED,
    summary="Open a ticket (a service request, complaint or question) under the SLA policy its facts pick",
    responses={
        200: {"description": "Opened before with this Idempotency-Key and this content"},
        409: {"description": "The Idempotency-Key was used for another ticket"},
        422: {"description": "Invalid content, or a service contract that does not cover the ticket"},
    },
)
async def open_ticket(
    principal: TicketWriter,
    store: StoreDep,
    response: Response,
    body: Annotated[TicketBody, Body(examples=[TICKET_EXAMPLE])],
    idempotency_key: IdempotencyKey = None,
) -> TicketView:
    ticket_id = "TK-" + command_event_id(f"support/tickets/{principal.kind}:{principal.id}", idempotency_key)
    try:
        ticket, created = await handlers.open_ticket(store, body.new(), ticket_id, utc_now(), by=principal)
    except handlers.ContractRefused as exc:
        raise Problem(422, "Contract does not cover the ticket", str(exc)) from exc
    if not created:
        # Opened for a customer merged since into another, the ticket is the survivor's.
        customer_id, _ = await identity.filed_under(store.db, body.customer_id)
        same = (ticket.customer_id, ticket.subject, ticket.kind, ticket.channel) == (
            customer_id,
            body.subject,
            body.kind,
            body.channel,
        )
        if not same:
            raise Problem(409, "Idempotency-Key reused", "this Idempotency-Key was used for a different ticket")
        response.status_code = status.HTTP_200_OK
    return TicketView.of(ticket)


TicketOrder = Literal["newest", "sla_due"]
SLA_DUE_PARTS = ("due", "rest")
"""The two runs of `sort=sla_due`, each a keyset of its own: the tickets with something due by due time, then
the others (nothing due, or stored before it was kept) oldest first. The cursor says which run it is in."""


async def _sla_due_page(
    tickets: AsyncCollection[dict[str, Any]], query: dict[str, Any], limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    after = decode_cursor(cursor)
    part = "due" if after is None else after.get("part")
    if part not in SLA_DUE_PARTS:
        raise invalid_cursor("not one of `sort=sla_due`")
    due = {**query, "sla_due_at": {"$type": "date"}}
    rest = {**query, "sla_due_at": None}  # null, or missing on a ticket stored before the field
    docs: list[dict[str, Any]] = []
    resume: str | None = None
    if part == "due":
        docs, next_due = await keyset_page(
            tickets, due, time_field="sla_due_at", limit=limit, cursor=cursor, newest_first=False
        )
        if next_due is not None:
            return docs, _in_part(next_due, "due")
        if len(docs) == limit:
            more = await tickets.find_one(rest, {"_id": 1})
            return docs, encode_cursor({"part": "rest"}) if more is not None else None
    elif after is not None and "at" in after:
        resume = cursor
    others, next_rest = await keyset_page(
        tickets, rest, time_field="created_at", limit=limit - len(docs), cursor=resume, newest_first=False
    )
    return docs + others, _in_part(next_rest, "rest") if next_rest is not None else None


def _in_part(cursor: str, part: str) -> str:
    return encode_cursor({**(decode_cursor(cursor) or {}), "part": part})


@router.get(
    "/tickets",
    response_model=Page[TicketView],
    summary="Tickets the caller sees, newest first or by SLA due time, by status, priority, group, assignee or "
    "customer",
    description="`status` and `priority` repeat for any of several. `sort=sla_due` lists the tickets with "
    "something due first, earliest `sla_due_at` first (breached ones, due in the past, on top), then those with "
    "nothing due, oldest first; its cursor pages on in that order.",
    responses={400: {"description": "A cursor this listing did not return (or one of the other order)"}},
)
async def list_tickets(
    principal: TicketReader,
    store: StoreDep,
    status_: Annotated[
        list[TicketStatus] | None, Query(alias="status", max_length=5, description="Any of these statuses.")
    ] = None,
    priority: Annotated[list[domain.Priority] | None, Query(max_length=4, description="Any of these.")] = None,
    group: Annotated[str | None, Query(max_length=128)] = None,
    assignee_id: Annotated[str | None, Query(max_length=128)] = None,
    customer_id: Annotated[str | None, Query(max_length=128)] = None,
    sort: Annotated[
        TicketOrder, Query(description="newest: newest first; sla_due: earliest `sla_due_at` first, none last.")
    ] = "newest",
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[TicketView]:
    query: dict[str, Any] = {}
    for name, values in (("status", status_), ("priority", priority)):
        if values:
            kept = sorted(set(values))
            query[name] = kept[0] if len(kept) == 1 else {"$in": kept}
    for name, value in (("group", group), ("assignee_id", assignee_id), ("customer_id", customer_id)):
        if value is not None:
            query[name] = value
    seen = handlers.tickets_seen_by(principal, query)
    tickets = store.db[repository.TICKETS]
    if sort == "sla_due":
        docs, next_cursor = await _sla_due_page(tickets, seen, limit, cursor)
    else:
        if "part" in (decode_cursor(cursor) or {}):
            raise invalid_cursor("one of `sort=sla_due`")
        docs, next_cursor = await keyset_page(
            tickets, seen, time_field="created_at", limit=limit, cursor=cursor, newest_first=True
        )
    now = utc_now()
    items = [TicketView.of(repository.from_document(d), now=now) for d in docs]
    return Page[TicketView](items=items, next_cursor=next_cursor)


@router.get(
    "/tickets/{ticket_id}",
    response_model=TicketView,
    summary="One ticket: its conversation, history, and each SLA timer now",
    responses=NO_SUCH_TICKET,
)
async def get_ticket(principal: TicketReader, store: StoreDep, ticket_id: IdInPath) -> TicketView:
    ticket = await handlers.find_ticket(store, ticket_id, seen_by=principal)
    if ticket is None:
        raise ticket_not_found(ticket_id)
    _, timers = await handlers.timers_of(store, ticket, utc_now())
    return TicketView.of(ticket, timers, whole=True)


@router.post(
    "/tickets/{ticket_id}/posts",
    response_model=TicketView,
    status_code=status.HTTP_201_CREATED,
    summary="Reply on a ticket, or add an internal note",
    description="An agent's first public reply opens a new ticket; the customer's message on a pending, resolved "
    "or closed ticket reopens it. The same Idempotency-Key adds the post once.",
    responses={**NO_SUCH_TICKET, 409: {"description": "The Idempotency-Key was used for another post"}},
)
async def add_post(
    principal: TicketWriter,
    store: StoreDep,
    ticket_id: IdInPath,
    body: PostBody,
    idempotency_key: IdempotencyKey = None,
) -> TicketView:
    post_id = "P-" + command_event_id(f"support/posts/{principal.kind}:{principal.id}", idempotency_key)
    at = utc_now()

    def change(ticket: domain.Ticket) -> domain.Ticket:
        author = domain.Actor("customer", ticket.customer_id) if body.from_customer else handlers.actor_of(principal)
        if author.kind == "system":
            author = domain.Actor("agent", author.id)  # a channel system writing, not as the customer: an agent
        return domain.post(ticket, domain.Post(post_id, as_stored(at), author, body.body, body.public))

    try:
        ticket = await handlers.change_ticket(store, ticket_id, change, seen_by=principal)
    except domain.TicketRefused as exc:
        raise Problem(409, "Post refused", str(exc)) from exc
    if ticket is None:
        raise ticket_not_found(ticket_id)
    return TicketView.of(ticket)


@router.patch(
    "/tickets/{ticket_id}",
    response_model=TicketView,
    summary="Change a ticket's status, assignee or group",
    responses={**NO_SUCH_TICKET, 409: {"description": "A status the lifecycle does not allow next"}},
)
async def change_ticket(
    principal: TicketWriter, store: StoreDep, ticket_id: IdInPath, body: TicketChange
) -> TicketView:
    at = as_stored(utc_now())
    by = handlers.actor_of(principal)
    sent = body.model_fields_set

    def change(ticket: domain.Ticket) -> domain.Ticket:
        if "assignee_id" in sent or "group" in sent:
            ticket = domain.assign(
                ticket,
                assignee_id=body.assignee_id if "assignee_id" in sent else ticket.assignee_id,
                group=body.group if "group" in sent else ticket.group,
                at=at,
                by=by,
            )
        if body.status is not None:
            ticket = domain.change_status(ticket, body.status, at, by)
        return ticket

    try:
        ticket = await handlers.change_ticket(store, ticket_id, change, seen_by=principal)
    except domain.TicketRefused as exc:
        raise Problem(409, "Status refused", str(exc), allowed_statuses=list(exc.allowed)) from exc
    if ticket is None:
        raise ticket_not_found(ticket_id)
    return TicketView.of(ticket)
