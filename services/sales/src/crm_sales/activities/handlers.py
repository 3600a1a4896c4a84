"""Use cases of activities: plan one (tied to a lead, an opportunity, an account or a customer), complete or
cancel it, read an owner's calendar and overdue list; each activity with a customer published on
crm.sales.events (crm.activity.scheduled.v1, crm.activity.completed.v1), so it reaches the customer's timeline
and, for a call, meeting, visit or email, scoring's interactions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crm_sales.accounts.repository import ACCOUNTS
from crm_sales.activities import domain, repository
from crm_sales.leads.repository import LEADS
from crm_sales.opportunities.repository import OPPORTUNITIES
from crm_sales.orders.handlers import SOURCE
from crm_shared import identity
from crm_shared.events import (
    ActivityCompleted,
    ActivityCompletedEvent,
    ActivityKind,
    ActivityScheduled,
    ActivityScheduledEvent,
    derived_event_id,
)
from crm_shared.security import OWNED, Principal
from crm_shared.store import Store, UnitOfWork, as_stored
from crm_shared.topics import Topic

ACTIVITY_ACCESS = OWNED
"""A person sees the activities they own, their team's and their territories'; API keys and those who see every
record see every activity."""


class UnknownLink(LookupError):
    """The activity names a lead, opportunity or account there is none of (or one the caller does not see)."""


class ActivityIdTaken(Exception):
    """The Idempotency-Key (the activity id) planned another activity."""


def event_id(kind: str, activity_id: str) -> str:
    return derived_event_id(SOURCE, f"activity.{kind}", activity_id)


def seen_by(principal: Principal, query: dict[str, Any]) -> dict[str, Any]:
    return ACTIVITY_ACCESS.restrict(principal, query)


def may_see_calendar(principal: Principal, owner_id: str) -> bool:
    """A person reads their own calendar and their team's; API keys and those who see every record, anyone's."""
    return principal.sees_all_records or owner_id == principal.id or owner_id in principal.team


@dataclass(frozen=True)
class NewActivity:
    kind: ActivityKind
    title: str
    due_at: datetime
    duration_minutes: int | None = None
    owner_id: str | None = None
    customer_id: str | None = None
    lead_id: str | None = None
    opportunity_id: str | None = None
    account_id: str | None = None
    notes: str | None = None


@dataclass(frozen=True)
class Linked:
    customer_id: str | None
    territory: str | None
    owner_id: str | None


async def _linked(uow: UnitOfWork, new: NewActivity, principal: Principal) -> Linked:
    """The customer, territory and owner the activity gets from what it is tied to (the customer named first,
    then the opportunity's, then the lead's; the owner of the opportunity, lead or account when none is given);
    UnknownLink for a lead, opportunity or account the caller does not see."""
    customer_id, territory, owner_id = new.customer_id, None, new.owner_id
    links = (
        ("account", ACCOUNTS, new.account_id),
        ("lead", LEADS, new.lead_id),
        ("opportunity", OPPORTUNITIES, new.opportunity_id),
    )
    for what, collection, key in links:
        if key is None:
            continue
        doc = await uow.db[collection].find_one(
            ACTIVITY_ACCESS.restrict(principal, {"_id": key}),
            {"customer_id": 1, "territory": 1, "owner_id": 1},
            session=uow.session,
        )
        if doc is None:
            raise UnknownLink(f"no {what} {key}")
        customer_id = customer_id or doc.get("customer_id")
        territory = territory or doc.get("territory")
        owner_id = owner_id or doc.get("owner_id")
    return Linked(customer_id, territory, owner_id)


def _same_request(found: domain.Activity, new: NewActivity) -> bool:
    return (found.kind, found.title, found.due_at) == (new.kind, new.title, as_stored(new.due_at))


async def schedule(
    store: Store, new: NewActivity, activity_id: str, at: datetime, *, principal: Principal
) -> tuple[domain.Activity, bool]:
    """Plan the activity; (the one planned before with this id, False) when it is the same request. Published as
    crm.activity.scheduled.v1 when it has a customer. Raises ActivityRefused, UnknownLink or ActivityIdTaken."""
    at = as_stored(at)

    async def work(uow: UnitOfWork) -> tuple[domain.Activity, bool]:
        found = await repository.get_activity(uow, {"_id": activity_id})
        if found is not None:
            if not _same_request(found, new):
                raise ActivityIdTaken(f"activity {activity_id} exists with other content")
            return found, False
        linked = await _linked(uow, new, principal)
        # An activity with a customer merged into another is the survivor's; an unmerge gives it back.
        customer_id, origin = (
            await identity.filed_under(uow.db, linked.customer_id, session=uow.session)
            if linked.customer_id is not None
            else (None, {})
        )
        activity = domain.plan(
            activity_id=activity_id,
            kind=new.kind,
            title=new.title,
            due_at=as_stored(new.due_at),
            at=at,
            duration_minutes=new.duration_minutes,
            owner_id=linked.owner_id,
            territory=linked.territory,
            customer_id=customer_id,
            lead_id=new.lead_id,
            opportunity_id=new.opportunity_id,
            account_id=new.account_id,
            notes=new.notes,
        )
        await repository.insert_activity(uow, activity, origin)
        if activity.customer_id is not None:
            data = ActivityScheduled(
                customer_id=activity.customer_id,
                activity_id=activity_id,
                kind=activity.kind,
                title=activity.title,
                due_at=activity.due_at,
                owner_id=activity.owner_id,
                lead_id=activity.lead_id,
                opportunity_id=activity.opportunity_id,
                account_id=activity.account_id,
            )
            scheduled = ActivityScheduledEvent.create(
                data, source=SOURCE, id=event_id("scheduled", activity_id), time=at
            )
            uow.emit(
                scheduled.model_copy(update={"originalsubject": linked.customer_id}) if origin else scheduled,
                Topic.SALES_EVENTS,
            )
        return activity, True

    return await store.transaction_racing(work)


async def find_activity(store: Store, activity_id: str, *, principal: Principal) -> domain.Activity | None:
    doc = await store.db[repository.ACTIVITIES].find_one(seen_by(principal, {"_id": activity_id}))
    return repository.from_document(doc) if doc else None


async def complete(
    store: Store, activity_id: str, at: datetime, outcome: str | None, *, principal: Principal
) -> domain.Activity | None:
    """Mark the activity done with its outcome, published as crm.activity.completed.v1 when it has a customer
    (the time of the event is when it was done). None when the caller sees no such activity. Raises
    ActivityRefused."""
    at = as_stored(at)

    async def work(uow: UnitOfWork) -> domain.Activity | None:
        activity = await repository.get_activity(uow, seen_by(principal, {"_id": activity_id}))
        if activity is None:
            return None
        done = domain.complete(activity, at, outcome)
        if done == activity:
            return done
        await repository.save_activity(uow, done)
        if done.customer_id is not None:
            data = ActivityCompleted(
                customer_id=done.customer_id,
                activity_id=activity_id,
                kind=done.kind,
                title=done.title,
                outcome=done.outcome,
                owner_id=done.owner_id,
                opportunity_id=done.opportunity_id,
            )
            uow.emit(
                ActivityCompletedEvent.create(data, source=SOURCE, id=event_id("completed", activity_id), time=at),
                Topic.SALES_EVENTS,
            )
        return done

    return await store.transaction(work)


async def cancel(store: Store, activity_id: str, at: datetime, *, principal: Principal) -> domain.Activity | None:
    """Cancel the planned activity (nothing is published: it did not happen). None when the caller sees no such
    activity. Raises ActivityRefused for a done one."""
    at = as_stored(at)

    async def work(uow: UnitOfWork) -> domain.Activity | None:
        activity = await repository.get_activity(uow, seen_by(principal, {"_id": activity_id}))
        if activity is None:
            return None
        cancelled = domain.cancel(activity, at)
        if cancelled != activity:
            await repository.save_activity(uow, cancelled)
        return cancelled

    return await store.transaction(work)


CALENDAR_LIMIT = 5000
"""The most activities one calendar answer holds: a range wider than this is refused, not cut short."""


class CalendarTooLarge(Exception):
    pass


async def calendar(store: Store, owner_id: str, start: datetime, end: datetime) -> list[domain.Activity]:
    """The owner's activities due from `start` (inclusive) to `end` (exclusive), the cancelled ones included
    (a subscribed calendar removes them), by due time. Raises CalendarTooLarge beyond CALENDAR_LIMIT."""
    query = {"owner_id": owner_id, "due_at": {"$gte": start, "$lt": end}}
    cursor = store.db[repository.ACTIVITIES].find(query).sort([("due_at", 1), ("_id", 1)]).limit(CALENDAR_LIMIT + 1)
    found = [repository.from_document(d) async for d in cursor]
    if len(found) > CALENDAR_LIMIT:
        raise CalendarTooLarge(f"more than {CALENDAR_LIMIT} activities in the range: ask for a shorter one")
    return found


def listing_query(
    *,
    now: datetime,
    owner_id: str | None = None,
    customer_id: str | None = None,
    lead_id: str | None = None,
    opportunity_id: str | None = None,
    account_id: str | None = None,
    kind: ActivityKind | None = None,
    status: domain.ActivityStatus | None = None,
    overdue: bool = False,
) -> dict[str, Any]:
    """The filters of the activity list as a query; `overdue` keeps the planned ones due before `now`."""
    given: dict[str, Any] = {
        "owner_id": owner_id,
        "customer_id": customer_id,
        "lead_id": lead_id,
        "opportunity_id": opportunity_id,
        "account_id": account_id,
        "kind": kind,
        "status": status,
    }
    query = {k: v for k, v in given.items() if v is not None}
    if overdue:
        if status not in (None, "planned"):
            raise ValueError("overdue activities are planned ones: drop status or ask for planned")
        query |= {"status": "planned", "due_at": {"$lt": now}}
    return query
