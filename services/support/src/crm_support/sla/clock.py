"""The clock of a ticket's SLA timers, computed from the ticket's facts alone. Pure: no I/O, and `now` is given.

Three timers, each against the target of the policy in force:

- **first response** runs from the ticket's creation to the first public reply of an agent;
- **next response** runs from the oldest customer message left unanswered after that reply to the next public
  reply of an agent (one cycle per such wait; the current cycle is reported, else the last one);
- **resolution** runs from creation to resolution.

The rules of the clock, and why:

- A response timer counts while the ticket is not resolved or closed: a customer waiting on a pending ticket
  is still waiting for an answer. Resolution counts only while the ticket is `new` or `open`: `pending`
  (waiting on the customer or a third party) pauses it.
- Time spent resolved or closed never counts. A reopened ticket resumes its resolution timer where it stood at
  resolution, so it does not breach at once for the days it was closed; it is not restarted either, so
  reopening is no way to win a fresh target.
- Everything is recomputed from the facts, so a policy change mid-ticket applies its targets and calendar to
  the whole history, paused time included; only the escalations already made stay made (the ticket keeps them).
- Time is counted on the policy's business-hours calendar, or in calendar hours for a target that says so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from crm_support.sla.calendar import CALENDAR_HOURS, BusinessCalendar
from crm_support.sla.policies import SlaPolicy, Target, TimerKind

TicketStatus = Literal["new", "open", "pending", "resolved", "closed"]
TimerStatus = Literal["running", "paused", "met", "breached", "not_started"]

RESOLUTION_COUNTS: frozenset[TicketStatus] = frozenset({"new", "open"})
RESPONSE_COUNTS: frozenset[TicketStatus] = frozenset({"new", "open", "pending"})


@dataclass(frozen=True)
class Message:
    at: datetime
    author: Literal["customer", "agent"]
    public: bool = True
    """An internal note (an agent's, not public) answers nobody."""


@dataclass(frozen=True)
class TicketHistory:
    created_at: datetime
    statuses: Sequence[tuple[datetime, TicketStatus]]
    """Every status the ticket took, with when, oldest first; the first is its status at creation."""
    messages: Sequence[Message] = ()


@dataclass(frozen=True)
class Timer:
    kind: TimerKind
    status: TimerStatus
    target: timedelta
    business_hours: bool
    elapsed: timedelta
    remaining: timedelta
    """target - elapsed; negative once breached."""
    started_at: datetime | None
    stopped_at: datetime | None
    due_at: datetime | None
    """When it breaches (or breached): known unless it is paused before its target."""
    warn_at: datetime | None
    """When its warning is due (`warn_before` of counted time before the target), on the same terms."""
    cycle: int = 1
    """Next response: which wait this is (1 the first); the others, 1."""
    counting: bool = False
    """Its clock runs now: started, not stopped, and the ticket in a status that counts for it (breached or not)."""


Span = tuple[datetime, datetime | None]


def _spans(
    history: TicketHistory, counts: frozenset[TicketStatus], start: datetime, stop: datetime | None
) -> list[Span]:
    """The stretches from `start` to `stop` (None: still going) when the ticket was in a status that counts."""
    spans: list[Span] = []
    statuses = sorted(history.statuses, key=lambda s: s[0])
    for i, (at, status) in enumerate(statuses):
        if status not in counts:
            continue
        end = statuses[i + 1][0] if i + 1 < len(statuses) else None
        begin = max(at, start)
        if stop is not None:
            end = stop if end is None else min(end, stop)
        if end is None or end > begin:
            spans.append((begin, end))
    return spans


def _elapsed(spans: Sequence[Span], calendar: BusinessCalendar, now: datetime) -> timedelta:
    total = timedelta(0)
    for begin, end in spans:
        if begin >= now:
            break
        total += calendar.elapsed(begin, min(end or now, now))
    return total


def _reaching(spans: Sequence[Span], calendar: BusinessCalendar, threshold: timedelta) -> datetime | None:
    """The instant the counted time reaches `threshold`; None when the spans end before it (a pause)."""
    counted = timedelta(0)
    for begin, end in spans:
        if end is None:
            return calendar.add(begin, threshold - counted)
        length = calendar.elapsed(begin, end)
        if counted + length >= threshold:
            return calendar.add(begin, threshold - counted)
        counted += length
    return None


def _timer(
    kind: TimerKind,
    target: Target,
    spans: list[Span],
    calendar: BusinessCalendar,
    *,
    started_at: datetime | None,
    stopped_at: datetime | None,
    now: datetime,
    warn_before: timedelta,
    cycle: int = 1,
) -> Timer:
    if target.business_hours is False:
        calendar = CALENDAR_HOURS
    elapsed = _elapsed(spans, calendar, stopped_at or now)
    due = _reaching(spans, calendar, target.duration)
    warn = _reaching(spans, calendar, max(target.duration - warn_before, timedelta(0)))
    counting = bool(spans) and spans[-1][1] is None and spans[-1][0] <= now  # a stop ends the last span
    if started_at is None:
        status: TimerStatus = "not_started"
    elif elapsed > target.duration or (due is not None and due < (stopped_at or now)):
        status = "breached"
    elif stopped_at is not None:
        status = "met"
    elif counting:
        status = "running"
    else:
        status = "paused"
    if stopped_at is not None and status == "met":
        due = warn = None  # nothing more is due
    return Timer(
        kind=kind,
        status=status,
        target=target.duration,
        business_hours=target.business_hours,
        elapsed=elapsed,
        remaining=target.duration - elapsed,
        started_at=started_at,
        stopped_at=stopped_at,
        due_at=due,
        warn_at=warn,
        cycle=cycle,
        counting=counting,
    )


def next_due(found: Iterable[Timer]) -> Timer | None:
    """The timer a ticket must meet next: of those counting now, the one due first, a breached one being due in
    the past; None when none counts (none started, all met, or paused: pending pauses resolution, resolved and
    closed pause every timer, breached or not). Its due time moves only with the ticket's facts or its policy."""
    counting = [(t.due_at, t.kind, t) for t in found if t.counting and t.due_at is not None]
    return min(counting, key=lambda c: c[:2])[2] if counting else None


def _agent_replies(history: TicketHistory) -> list[datetime]:
    return sorted(m.at for m in history.messages if m.author == "agent" and m.public)


def _waits(history: TicketHistory, first_reply: datetime) -> list[tuple[datetime, datetime | None]]:
    """Each wait for a next response: from the oldest unanswered customer message after the first reply to the
    agent's next public reply (None: still waiting)."""
    waits: list[tuple[datetime, datetime | None]] = []
    waiting: datetime | None = None
    for message in sorted(history.messages, key=lambda m: (m.at, m.author != "customer")):
        if message.at < first_reply or (message.author == "agent" and not message.public):
            continue
        if message.author == "customer" and waiting is None and message.at >= first_reply:
            waiting = message.at
        elif message.author == "agent" and waiting is not None and message.at > waiting:
            waits.append((waiting, message.at))
            waiting = None
    if waiting is not None:
        waits.append((waiting, None))
    return waits


def _resolved_at(history: TicketHistory) -> datetime | None:
    """When it was resolved, if its latest status is resolved or closed (a reopen clears it)."""
    statuses = sorted(history.statuses, key=lambda s: s[0])
    resolved: datetime | None = None
    for at, status in statuses:
        resolved = (resolved or at) if status in ("resolved", "closed") else None
    return resolved


def timers(
    history: TicketHistory,
    policy: SlaPolicy,
    calendar_of: Callable[[str | None], BusinessCalendar],
    now: datetime,
) -> dict[TimerKind, Timer]:
    """Each timer the policy has a target for, as it stands at `now` (facts after `now` are not known yet)."""
    history = TicketHistory(
        history.created_at,
        [(at, status) for at, status in history.statuses if at <= now],
        [message for message in history.messages if message.at <= now],
    )
    calendar = calendar_of(policy.calendar_id)
    found: dict[TimerKind, Timer] = {}
    replies = _agent_replies(history)
    first_reply = replies[0] if replies else None
    created = history.created_at

    def build(
        kind: TimerKind, spans: list[Span], started: datetime | None, stopped: datetime | None, cycle: int = 1
    ) -> Timer:
        return _timer(
            kind,
            policy.targets[kind],
            spans,
            calendar,
            started_at=started,
            stopped_at=stopped,
            now=now,
            warn_before=policy.warn_before,
            cycle=cycle,
        )

    if "first_response" in policy.targets:
        stop = first_reply if first_reply is not None and first_reply <= now else None
        found["first_response"] = build(
            "first_response", _spans(history, RESPONSE_COUNTS, created, stop), created, stop
        )
    if "next_response" in policy.targets:
        waits = _waits(history, first_reply) if first_reply is not None else []
        if waits:
            start, stop = waits[-1]
            found["next_response"] = build(
                "next_response", _spans(history, RESPONSE_COUNTS, start, stop), start, stop, cycle=len(waits)
            )
        else:
            found["next_response"] = build("next_response", [], None, None, cycle=0)
    if "resolution" in policy.targets:
        resolved = _resolved_at(history)
        found["resolution"] = build(
            "resolution", _spans(history, RESOLUTION_COUNTS, created, resolved), created, resolved
        )
    return found
