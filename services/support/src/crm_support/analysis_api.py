"""REST API of support analysis: ticket volumes, SLA performance, repeat complainers and the backlog by age, over
the tickets the caller sees (an agent: those of their groups and those assigned to them or their team)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from crm_shared.events import utc_now
from crm_shared.problems import Problem
from crm_shared.security import Principal, requires
from crm_shared.service import StoreDep
from crm_shared.store import Store
from crm_support import analysis
from crm_support.api import REPORT_DAYS
from crm_support.sla import repository as sla_repository
from crm_support.sla.policies import TimerKind
from crm_support.tickets import repository
from crm_support.tickets.domain import Ticket
from crm_support.tickets.handlers import tickets_seen_by

router = APIRouter(prefix="/v1", tags=["support analysis"])

TicketReader = Annotated[Principal, requires("tickets:read")]
DEFAULT_DAYS = 90
INVALID_RANGE: dict[int | str, dict[str, Any]] = {
    422: {"description": f"An invalid range (to before from, longer than {REPORT_DAYS} days, no offset) or query"}
}
_FACTS = {
    f: 1
    for f in (
        "customer_id",
        "kind",
        "channel",
        "priority",
        "created_at",
        "category",
        "product",
        "value_tier",
        "group",
        "policy_id",
        "statuses",
    )
}
"""What every report reads of a ticket: its facts and statuses, never its subject, conversation or history."""
_CONVERSATION = {"posts.post_id": 1, "posts.at": 1, "posts.author": 1, "posts.public": 1}
"""What the SLA clock reads of the conversation besides: who wrote when, and whether in public (not the text)."""


def report_range(
    start: Annotated[
        datetime | None, Query(alias="from", description=f"Inclusive; {DEFAULT_DAYS} days before `to` by default.")
    ] = None,
    end: Annotated[datetime | None, Query(alias="to", description="Exclusive; now by default.")] = None,
) -> tuple[datetime, datetime]:
    """The range of creation times a report covers, as the satisfaction report takes it."""
    for given in (start, end):
        if given is not None and given.tzinfo is None:
            raise Problem(422, "Invalid range", "from and to are RFC 3339 times with an offset (e.g. Z)")
    try:
        finish = (end or utc_now()).astimezone(UTC)
        begin = (start or finish - timedelta(days=DEFAULT_DAYS)).astimezone(UTC)
    except OverflowError as exc:
        raise Problem(422, "Invalid range", "from and to are times between the years 1 and 9999, in UTC") from exc
    if finish <= begin or finish - begin > timedelta(days=REPORT_DAYS):
        raise Problem(422, "Invalid range", f"to must be after from, at most {REPORT_DAYS} days")
    return begin, finish


Range = Annotated[tuple[datetime, datetime], Depends(report_range)]
By = Annotated[analysis.Grouping, Query(description="How to group the tickets: the month created, or a field.")]
Group = Annotated[
    str | None,
    Query(max_length=128, description="Only the tickets of this support group (queue).", examples=["returns"]),
]


def _ticket(doc: dict[str, Any]) -> Ticket:
    # The fields not read are filled in blank: no report looks at a subject, a post's text or the history.
    posts = [{"body": "", **post} for post in doc.get("posts", [])]
    return repository.from_document({"subject": "", "history": [], **doc, "posts": posts})


async def _tickets(
    store: Store, principal: Principal, query: dict[str, Any], projection: dict[str, int]
) -> list[Ticket]:
    cursor = store.db[repository.TICKETS].find(tickets_seen_by(principal, query), projection)
    return [_ticket(doc) async for doc in cursor]


def _created(window: tuple[datetime, datetime], group: str | None) -> dict[str, Any]:
    query: dict[str, Any] = {"created_at": {"$gte": window[0], "$lt": window[1]}}
    if group is not None:
        query["group"] = group
    return query


KEY = Field(
    description="The month created (YYYY-MM, UTC) or the field's value; null: tickets without it.",
    examples=["2026-11"],
)


class VolumeRow(BaseModel):
    key: str | None = KEY
    requests: int = Field(description="Service requests.")
    complaints: int = Field(description="Complaints (a complaint filed is a ticket of this kind).")
    questions: int = Field(description="Questions.")
    total: int

    @classmethod
    def of(cls, row: analysis.Volume) -> VolumeRow:
        return cls(**row.__dict__)


class TimerPerformanceView(BaseModel):
    met: int = Field(description="Timers stopped within their target.")
    breached: int = Field(description="Timers past their target, stopped or not.")
    running: int = Field(description="Not decided yet: running or paused, within their target.")
    percent_met: float | None = Field(description="met / (met + breached), in percent; null without either.")
    median_hours: float | None = Field(
        description="Median time of the timers that stopped (answered; resolved), counted as the SLA counts it: "
        "business hours on the policy's calendar (calendar hours for a target so set), paused time not counted; "
        "null when none stopped."
    )
    average_hours: float | None = Field(description="Mean of the same; null when none stopped.")

    @classmethod
    def of(cls, figures: analysis.TimerPerformance) -> TimerPerformanceView:
        return cls(
            met=figures.met,
            breached=figures.breached,
            running=figures.running,
            percent_met=figures.percent_met,
            median_hours=figures.median_hours,
            average_hours=figures.average_hours,
        )


class SlaRow(BaseModel):
    key: str | None = KEY
    tickets: int = Field(description="Tickets in the group, with a policy or not.")
    without_policy: int = Field(
        description="Tickets under no SLA policy (none matched, or it was deleted since): in no timer figure."
    )
    first_response: TimerPerformanceView = Field(description="From creation to the first public reply of an agent.")
    next_response: TimerPerformanceView = Field(
        description="From a customer's message after that to the agent's next reply: each ticket's current wait, "
        "else its last (a ticket with no such wait counts nowhere)."
    )
    resolution: TimerPerformanceView = Field(description="From creation to resolution, pending time paused.")

    @classmethod
    def of(cls, row: analysis.SlaPerformance) -> SlaRow:
        kinds: dict[TimerKind, TimerPerformanceView] = {t.kind: TimerPerformanceView.of(t) for t in row.timers}
        return cls(
            key=row.key,
            tickets=row.tickets,
            without_policy=row.without_policy,
            first_response=kinds["first_response"],
            next_response=kinds["next_response"],
            resolution=kinds["resolution"],
        )


class RepeatComplainerRow(BaseModel):
    customer_id: str
    complaints: int = Field(description="Complaint tickets created in the range.")
    open: int = Field(description="Of those, how many are not resolved or closed.")
    first_at: datetime = Field(description="When the first of them was created.")
    last_at: datetime = Field(description="When the last of them was created.")
    categories: list[str] = Field(description="What they were about (product, service, people), each once.")

    @classmethod
    def of(cls, row: analysis.RepeatComplainer) -> RepeatComplainerRow:
        return cls(**{**row.__dict__, "categories": list(row.categories)})


class BacklogBucketView(BaseModel):
    bucket: str = Field(description="The age since creation, in calendar time.", examples=["1_to_3_days"])
    from_days: int = Field(description="Inclusive lower bound of the age, in days.")
    to_days: int | None = Field(description="Exclusive upper bound of the age, in days; null: none.")
    total: int
    new: int
    open: int
    pending: int
    oldest_ticket_id: str | None = Field(description="The oldest ticket of the bucket; null when it is empty.")
    oldest_age_hours: float | None = Field(description="Its age, in calendar hours; null when it is empty.")

    @classmethod
    def of(cls, row: analysis.Backlog) -> BacklogBucketView:
        age = row.oldest_age
        return cls(
            bucket=row.bucket.name,
            from_days=row.bucket.from_days,
            to_days=row.bucket.to_days,
            total=row.total,
            new=row.by_status["new"],
            open=row.by_status["open"],
            pending=row.by_status["pending"],
            oldest_ticket_id=row.oldest_ticket_id,
            oldest_age_hours=round(age.total_seconds() / 3600, 1) if age is not None else None,
        )


class BacklogView(BaseModel):
    as_of: datetime
    group: str | None = Field(description="The group it covers; null: every group the caller sees.")
    open_tickets: int = Field(description="Tickets new, open or pending.")
    buckets: list[BacklogBucketView] = Field(description="Every age bucket, youngest first, empty ones too.")


@router.get(
    "/reports/tickets",
    response_model=list[VolumeRow],
    summary="Requests, complaints and questions created in a range, by month, category, product, channel, value "
    "tier or priority",
    responses=INVALID_RANGE,
)
async def ticket_volumes(
    principal: TicketReader, store: StoreDep, window: Range, by: By = "period", group: Group = None
) -> list[VolumeRow]:
    tickets = await _tickets(store, principal, _created(window, group), _FACTS)
    return [VolumeRow.of(row) for row in analysis.volume(tickets, by)]


@router.get(
    "/reports/sla",
    response_model=list[SlaRow],
    summary="First response, next response and resolution against SLA (percent met) of the tickets created in a "
    "range, by month, category, product, channel, value tier or priority",
    description="Each ticket's timers as they stand now, under the policy it is under, as GET /v1/tickets/{id} "
    "shows them.",
    responses=INVALID_RANGE,
)
async def sla_report(
    principal: TicketReader, store: StoreDep, window: Range, by: By = "period", group: Group = None
) -> list[SlaRow]:
    tickets = await _tickets(store, principal, _created(window, group), {**_FACTS, **_CONVERSATION})
    rules = await sla_repository.load_rules(store.db)
    return [SlaRow.of(row) for row in analysis.sla_performance(tickets, rules, utc_now(), by)]


@router.get(
    "/reports/repeat-complainers",
    response_model=list[RepeatComplainerRow],
    summary="Customers with at least `min` complaints created in a range, most complaints first",
    description="Ties go to the customer whose last complaint is the most recent.",
    responses=INVALID_RANGE,
)
async def repeat_complainers(
    principal: TicketReader,
    store: StoreDep,
    window: Range,
    min_complaints: Annotated[int, Query(alias="min", ge=2, le=100, description="At least this many.")] = 2,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many customers.")] = 100,
) -> list[RepeatComplainerRow]:
    query = {**_created(window, None), "kind": "complaint"}
    tickets = await _tickets(store, principal, query, _FACTS)
    rows = analysis.repeat_complainers(tickets, min_complaints)
    return [RepeatComplainerRow.of(row) for row in rows[:limit]]


@router.get(
    "/reports/backlog",
    response_model=BacklogView,
    summary="Tickets not resolved or closed, by age since creation, with their status and the oldest of each age",
)
async def backlog_report(principal: TicketReader, store: StoreDep, group: Group = None) -> BacklogView:
    query: dict[str, Any] = {"status": {"$in": list(analysis.OPEN_STATUSES)}}
    if group is not None:
        query["group"] = group
    now = utc_now()
    rows = analysis.backlog(await _tickets(store, principal, query, _FACTS), now)
    return BacklogView(
        as_of=now,
        group=group,
        open_tickets=sum(row.total for row in rows),
        buckets=[BacklogBucketView.of(row) for row in rows],
    )
