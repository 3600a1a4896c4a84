"""Durable SLA timers, and the warnings and escalations they fire, each exactly once, restarts included.

`sla_timers` holds one document per ticket, timer and cycle (`<ticket>:<timer>:<cycle>`): when its warning
and its breach are due (`warn_at`, `due_at`; null while nothing is due, e.g. paused or met) and whether each
fired (`warned`, `breached`: set once, never reset). Every change of a ticket reschedules its timers in the same
transaction. The worker (`run`) looks for the ones due; for each, in one transaction, it recomputes the timer
from the ticket's facts as they are now (a policy or calendar edited since, a pause, a reply: the stored times
are only a hint), and when it really is due, flips the flag with a conditional update and, only if that update
changed the document, publishes the event through the outbox. A crash before the commit fires nothing; two
instances racing make one write conflict, and the retry finds the flag set. A timer that breached before its
warning could go out (the service was down) is marked warned without a warning: the breach says more.

On a breach the policy's escalation applies: the ticket moves to `escalate_to_group` (its assignee keeps it),
`escalate_to` is named, and the ticket's history says which timer escalated.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, IndexModel, UpdateOne

from crm_shared.events import SlaBreached, SlaBreachedEvent, SlaWarned, SlaWarnedEvent, derived_event_id, utc_now
from crm_shared.logging import get_logger
from crm_shared.store import IndexSpec, Store, UnitOfWork, as_stored
from crm_shared.topics import Topic
from crm_support.sla.clock import Timer, timers
from crm_support.sla.repository import SlaRules, load_rules
from crm_support.tickets import domain
from crm_support.tickets import repository as tickets
from crm_support.tickets.publishing import published

log = get_logger(__name__)

SLA_TIMERS = "sla_timers"
SOURCE = "/crm/support"
ESCALATION = domain.Actor("system", "sla-escalation")
BATCH = 100
"""Due timers handled per pass."""

INDEXES = (
    IndexSpec(SLA_TIMERS, IndexModel([("warned", ASCENDING), ("warn_at", ASCENDING)], name="warnings_due")),
    IndexSpec(SLA_TIMERS, IndexModel([("breached", ASCENDING), ("due_at", ASCENDING)], name="breaches_due")),
    IndexSpec(SLA_TIMERS, IndexModel([("ticket_id", ASCENDING)], name="by_ticket")),
)

FIRING = ("running", "paused", "breached")


def timer_id(ticket_id: str, timer: Timer) -> str:
    return f"{ticket_id}:{timer.kind}:{timer.cycle}"


def current_timers(ticket: domain.Ticket, rules: SlaRules, now: datetime) -> list[Timer]:
    policy = next((p for p in rules.policies if p.policy_id == ticket.policy_id), None)
    if policy is None:
        return []
    return list(timers(ticket.sla_history, policy, rules.calendar_of, now).values())


def with_next_due(ticket: domain.Ticket, rules: SlaRules, now: datetime) -> domain.Ticket:
    """The ticket with what is due next as its timers stand at `now`: every write of a ticket stores it."""
    return domain.timed(ticket, current_timers(ticket, rules, now))


async def schedule(uow: UnitOfWork, changed: Iterable[domain.Ticket], rules: SlaRules, now: datetime) -> None:
    """Record when each timer of the tickets warns and breaches, as their facts say now: one bulk write. A
    timer met, not started or paused before its target has nothing due."""
    writes = []
    for ticket in changed:
        for timer in current_timers(ticket, rules, now):
            if timer.started_at is None:
                continue
            firing = timer.status in FIRING
            writes.append(
                UpdateOne(
                    {"_id": timer_id(ticket.ticket_id, timer)},
                    {
                        "$set": {
                            "ticket_id": ticket.ticket_id,
                            "customer_id": ticket.customer_id,
                            "kind": timer.kind,
                            "cycle": timer.cycle,
                            "policy_id": ticket.policy_id,
                            "warn_at": timer.warn_at if firing else None,
                            "due_at": timer.due_at if firing else None,
                        },
                        "$setOnInsert": {"warned": False, "breached": False},
                    },
                    upsert=True,
                )
            )
    if writes:
        await uow.db[SLA_TIMERS].bulk_write(writes, ordered=False, session=uow.session)


@dataclass(frozen=True)
class Fired:
    timer_id: str
    what: str  # "warned" or "breached"


async def _fire(store: Store, doc: dict[str, Any], what: str, now: datetime) -> Fired | None:
    """Recompute one stored timer and fire its warning or breach if it is really due, exactly once."""

    async def work(uow: UnitOfWork) -> Fired | None:
        found = await tickets.get_ticket(uow, {"_id": doc["ticket_id"]})
        timers_coll = uow.db[SLA_TIMERS]
        if found is None:
            await timers_coll.update_one(
                {"_id": doc["_id"]}, {"$set": {"warn_at": None, "due_at": None}}, session=uow.session
            )
            return None
        ticket, version = found
        rules = await load_rules(uow.db, uow)
        retimed = with_next_due(ticket, rules, now)
        if retimed != ticket:
            # A policy or calendar edited since moved its due times: the queue's order follows.
            await tickets.save_ticket(uow, retimed, version)
            ticket, version = retimed, version + 1
        timer = next(
            (t for t in current_timers(ticket, rules, now) if t.kind == doc["kind"] and t.cycle == doc["cycle"]),
            None,
        )
        at_field, flag = ("warn_at", "warned") if what == "warned" else ("due_at", "breached")
        due = getattr(timer, at_field) if timer is not None and timer.status in FIRING else None
        if timer is None or due is None or due > now:
            # Not due after all (met, paused, moved by a policy change): keep the new time, fire nothing.
            await timers_coll.update_one({"_id": doc["_id"]}, {"$set": {at_field: due}}, session=uow.session)
            return None
        if what == "warned" and timer.status == "breached":
            await timers_coll.update_one(
                {"_id": doc["_id"], "warned": False}, {"$set": {"warned": True}}, session=uow.session
            )
            return None
        flipped = await timers_coll.update_one(
            {"_id": doc["_id"], flag: False}, {"$set": {flag: True, f"{flag}_at": now}}, session=uow.session
        )
        if flipped.modified_count != 1:
            return None  # another pass (or instance) fired it
        policy = next(p for p in rules.policies if p.policy_id == ticket.policy_id)
        event_id = derived_event_id(SOURCE, f"sla:{doc['_id']}:{what}")
        if what == "warned":
            warned = SlaWarned(
                customer_id=ticket.customer_id,
                ticket_id=ticket.ticket_id,
                timer=timer.kind,
                cycle=timer.cycle,
                policy_id=policy.policy_id,
                due_at=timer.due_at or due,
            )
            uow.emit(SlaWarnedEvent.create(warned, source=SOURCE, id=event_id, time=now), Topic.SUPPORT_EVENTS)
            return Fired(doc["_id"], what)
        breached = SlaBreached(
            customer_id=ticket.customer_id,
            ticket_id=ticket.ticket_id,
            timer=timer.kind,
            cycle=timer.cycle,
            policy_id=policy.policy_id,
            due_at=due,
            escalated_to_group=policy.escalate_to_group,
            escalated_to=policy.escalate_to,
        )
        uow.emit(SlaBreachedEvent.create(breached, source=SOURCE, id=event_id, time=now), Topic.SUPPORT_EVENTS)
        escalated = domain.escalate(
            ticket, timer=timer.kind, group=policy.escalate_to_group, manager=policy.escalate_to, at=now, by=ESCALATION
        )
        if escalated != ticket:
            await tickets.save_ticket(uow, escalated, version)
            for event in published(ticket, escalated):
                uow.emit(event, Topic.SUPPORT_EVENTS)
        return Fired(doc["_id"], what)

    return await store.transaction(work)


async def fire_due(store: Store, now: datetime | None = None) -> list[Fired]:
    """One pass: every warning and breach due by `now` (default: now), each fired at most once ever."""
    now = as_stored(now or utc_now())
    fired: list[Fired] = []
    for what, at_field, flag in (("warned", "warn_at", "warned"), ("breached", "due_at", "breached")):
        cursor = store.db[SLA_TIMERS].find({flag: False, at_field: {"$lte": now}}).sort(at_field, 1).limit(BATCH)
        for doc in await cursor.to_list(None):
            try:
                done = await _fire(store, doc, what, now)
            except tickets.ConcurrentChange:
                continue  # the ticket changed meanwhile: its timers were rescheduled; the next pass decides
            if done is not None:
                fired.append(done)
                log.info("sla_" + what, timer=done.timer_id)
    return fired


async def run(store: Store, poll_seconds: float) -> None:
    """The escalation worker: a pass every `poll_seconds`, until cancelled."""
    while True:
        try:
            await fire_due(store)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a failed pass is retried at the next one; nothing fired is lost
            log.error("sla_pass_failed", error=repr(exc))
        await asyncio.sleep(poll_seconds)
