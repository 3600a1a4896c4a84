"""Support analysis over tickets: volumes by kind, SLA performance (share of timers met), repeat complainers and
the backlog by age. Pure: no I/O, and `now` is given; the API reads the tickets of the range.

A complaint filed opens a ticket of kind `complaint`, so tickets alone count every request, complaint and
question once. SLA figures come from the same clock as a ticket's own timers (crm_support.sla.clock), under the
policy the ticket is under; a ticket without a policy (none matched, or it was deleted since) has no timers and
is counted apart.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from crm_support.sla.clock import TicketStatus, Timer, timers
from crm_support.sla.policies import TIMER_KINDS, TimerKind
from crm_support.sla.repository import SlaRules
from crm_support.tickets.domain import Ticket

Grouping = Literal["period", "category", "product", "channel", "value_tier", "priority"]
OPEN_STATUSES: tuple[TicketStatus, ...] = ("new", "open", "pending")
"""A ticket in one of these is in the backlog; resolved and closed ones are not."""


def key_of(ticket: Ticket, by: Grouping) -> str | None:
    """The group a ticket falls in: the month (YYYY-MM) it was created in, or the value of the field."""
    if by == "period":
        return f"{ticket.created_at.year:04d}-{ticket.created_at.month:02d}"
    value = getattr(ticket, by)
    return str(value) if value is not None else None


def _grouped(tickets: Iterable[Ticket], by: Grouping) -> list[tuple[str | None, list[Ticket]]]:
    """The tickets per group, ordered by key with None (tickets without that field) last."""
    groups: dict[str | None, list[Ticket]] = defaultdict(list)
    for ticket in tickets:
        groups[key_of(ticket, by)].append(ticket)
    return sorted(groups.items(), key=lambda item: (item[0] is None, item[0] or ""))


@dataclass(frozen=True)
class Volume:
    key: str | None
    requests: int
    complaints: int
    questions: int
    total: int


def volume(tickets: Iterable[Ticket], by: Grouping) -> list[Volume]:
    """How many requests, complaints and questions per group, ordered by key (None last)."""
    rows = []
    for key, members in _grouped(tickets, by):
        kinds = [t.kind for t in members]
        rows.append(
            Volume(
                key=key,
                requests=kinds.count("request"),
                complaints=kinds.count("complaint"),
                questions=kinds.count("question"),
                total=len(kinds),
            )
        )
    return rows


@dataclass(frozen=True)
class TimerPerformance:
    kind: TimerKind
    met: int
    breached: int
    running: int
    """Not decided yet: running or paused, neither met nor past its target."""
    percent_met: float | None
    """met / (met + breached), in percent; None without a decided timer."""
    median_hours: float | None
    average_hours: float | None
    """Of the timers that stopped (answered, resolved): the time counted as the SLA counts it."""


@dataclass(frozen=True)
class SlaPerformance:
    key: str | None
    tickets: int
    without_policy: int
    timers: tuple[TimerPerformance, ...]


def _hours(delta: timedelta) -> float:
    return delta.total_seconds() / 3600


def _performance(kind: TimerKind, found: Sequence[Timer]) -> TimerPerformance:
    met = sum(1 for t in found if t.status == "met")
    breached = sum(1 for t in found if t.status == "breached")
    running = sum(1 for t in found if t.status in ("running", "paused"))
    stopped = [_hours(t.elapsed) for t in found if t.stopped_at is not None]
    return TimerPerformance(
        kind=kind,
        met=met,
        breached=breached,
        running=running,
        percent_met=round(100 * met / (met + breached), 1) if met + breached else None,
        median_hours=round(statistics.median(stopped), 2) if stopped else None,
        average_hours=round(statistics.fmean(stopped), 2) if stopped else None,
    )


def sla_performance(tickets: Iterable[Ticket], rules: SlaRules, now: datetime, by: Grouping) -> list[SlaPerformance]:
    """Per group and timer kind: how many timers were met, breached or are still undecided at `now`, the share
    met, and how long the stopped ones took. A next response counts the ticket's current (else last) wait; a
    timer that never started (no wait for a next response yet) counts nowhere."""
    policies = {p.policy_id: p for p in rules.policies}
    rows = []
    for key, members in _grouped(tickets, by):
        found: dict[TimerKind, list[Timer]] = defaultdict(list)
        without_policy = 0
        for ticket in members:
            policy = policies.get(ticket.policy_id) if ticket.policy_id is not None else None
            if policy is None:
                without_policy += 1
                continue
            for kind, timer in timers(ticket.sla_history, policy, rules.calendar_of, now).items():
                found[kind].append(timer)
        rows.append(
            SlaPerformance(
                key=key,
                tickets=len(members),
                without_policy=without_policy,
                timers=tuple(_performance(kind, found[kind]) for kind in TIMER_KINDS),
            )
        )
    return rows


@dataclass(frozen=True)
class RepeatComplainer:
    customer_id: str
    complaints: int
    open: int
    """Of those, how many are not resolved or closed."""
    first_at: datetime
    last_at: datetime
    categories: tuple[str, ...]
    """What the complaints were about, each once, sorted."""


def repeat_complainers(tickets: Iterable[Ticket], min_complaints: int = 2) -> list[RepeatComplainer]:
    """The customers with at least `min_complaints` complaint tickets, most complaints first, then the most
    recent last complaint first (then by customer id)."""
    complaints: dict[str, list[Ticket]] = defaultdict(list)
    for ticket in tickets:
        if ticket.kind == "complaint":
            complaints[ticket.customer_id].append(ticket)
    rows = [
        RepeatComplainer(
            customer_id=customer,
            complaints=len(filed),
            open=sum(1 for t in filed if t.status in OPEN_STATUSES),
            first_at=min(t.created_at for t in filed),
            last_at=max(t.created_at for t in filed),
            categories=tuple(sorted({t.category for t in filed if t.category is not None})),
        )
        for customer, filed in complaints.items()
        if len(filed) >= min_complaints
    ]
    rows.sort(key=lambda r: r.customer_id)
    rows.sort(key=lambda r: (r.complaints, r.last_at), reverse=True)
    return rows


@dataclass(frozen=True)
class AgeBucket:
    name: str
    from_days: int
    to_days: int | None
    """Exclusive; None: no upper bound."""


AGE_BUCKETS: tuple[AgeBucket, ...] = (
    AgeBucket("under_1_day", 0, 1),
    AgeBucket("1_to_3_days", 1, 3),
    AgeBucket("3_to_7_days", 3, 7),
    AgeBucket("7_to_30_days", 7, 30),
    AgeBucket("over_30_days", 30, None),
)


@dataclass(frozen=True)
class Backlog:
    bucket: AgeBucket
    total: int
    by_status: Mapping[TicketStatus, int]
    """new, open and pending, each present (0 for none)."""
    oldest_ticket_id: str | None
    oldest_age: timedelta | None


def _bucket_of(age: timedelta) -> AgeBucket:
    for bucket in AGE_BUCKETS:
        if bucket.to_days is None or age < timedelta(days=bucket.to_days):
            return bucket
    raise AssertionError("the last bucket has no upper bound")


def backlog(tickets: Iterable[Ticket], now: datetime) -> list[Backlog]:
    """The tickets not resolved or closed at `now`, by age since creation (calendar time): every bucket, empty
    ones too, youngest first, each with its count per status and its oldest ticket."""
    members: dict[str, list[Ticket]] = defaultdict(list)
    for ticket in tickets:
        if ticket.status in OPEN_STATUSES:
            members[_bucket_of(now - ticket.created_at).name].append(ticket)
    rows = []
    for bucket in AGE_BUCKETS:
        found = members[bucket.name]
        oldest = min(found, key=lambda t: (t.created_at, t.ticket_id)) if found else None
        rows.append(
            Backlog(
                bucket=bucket,
                total=len(found),
                by_status={status: sum(1 for t in found if t.status == status) for status in OPEN_STATUSES},
                oldest_ticket_id=oldest.ticket_id if oldest else None,
                oldest_age=now - oldest.created_at if oldest else None,
            )
        )
    return rows
