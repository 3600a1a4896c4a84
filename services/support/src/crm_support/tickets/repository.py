"""The support database's `tickets` collection: one document per ticket (`_id` the ticket id) holding the whole
aggregate (its statuses, posts and history as arrays), the current `status` flat for queries, and a `version`
that every write checks, so two changes of one ticket never overwrite each other. `sla_due_at` (flat, for the
queue's order) and `sla_due` hold what is due next as of the last change; a ticket stored before them has
neither, and reads as having nothing due until its next change or the start-up backfill
(crm_support.tickets.handlers.backfill_sla_due)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel

from crm_shared.store import IndexSpec, UnitOfWork
from crm_support.domain import ERASED_TEXT
from crm_support.tickets.domain import Actor, Change, Post, SlaDue, Ticket

TICKETS = "tickets"
_NEWEST = [("created_at", DESCENDING), ("_id", DESCENDING)]
_SLA_DUE_FIRST = [("sla_due_at", ASCENDING), ("_id", ASCENDING)]
INDEXES = (
    IndexSpec(TICKETS, IndexModel(_NEWEST, name="newest_first")),
    IndexSpec(TICKETS, IndexModel([("customer_id", ASCENDING), *_NEWEST], name="by_customer")),
    IndexSpec(TICKETS, IndexModel([("status", ASCENDING), *_NEWEST], name="by_status")),
    IndexSpec(TICKETS, IndexModel([("status", ASCENDING), *_SLA_DUE_FIRST], name="by_status_sla_due")),
    IndexSpec(TICKETS, IndexModel([("group", ASCENDING), *_NEWEST], name="by_group")),
    IndexSpec(TICKETS, IndexModel([("assignee_id", ASCENDING), *_NEWEST], name="by_assignee")),
)

_FIELDS = (
    "customer_id",
    "kind",
    "subject",
    "channel",
    "priority",
    "created_at",
    "category",
    "order_id",
    "product",
    "group",
    "assignee_id",
    "contract_id",
    "contract_policy_id",
    "value_tier",
    "policy_id",
)


class ConcurrentChange(Exception):
    """Another change of the ticket committed between this one's read and its write: read again and retry."""


def _actor(doc: Mapping[str, Any]) -> Actor:
    return Actor(doc["kind"], doc["id"])


def sla_due_fields(due: SlaDue | None) -> dict[str, Any]:
    if due is None:
        return {"sla_due_at": None, "sla_due": None}
    kept = {
        "kind": due.kind,
        "cycle": due.cycle,
        "warn_at": due.warn_at,
        "target_seconds": due.target.total_seconds(),
        "business_hours": due.business_hours,
        "started_at": due.started_at,
    }
    return {"sla_due_at": due.due_at, "sla_due": kept}


def _sla_due(doc: Mapping[str, Any]) -> SlaDue | None:
    kept, due_at = doc.get("sla_due"), doc.get("sla_due_at")
    if kept is None or due_at is None:
        return None
    return SlaDue(
        kind=kept["kind"],
        due_at=due_at,
        warn_at=kept.get("warn_at"),
        target=timedelta(seconds=kept["target_seconds"]),
        business_hours=kept["business_hours"],
        started_at=kept["started_at"],
        cycle=kept.get("cycle", 1),
    )


def to_document(ticket: Ticket, version: int) -> dict[str, Any]:
    return {
        "_id": ticket.ticket_id,
        **{f: getattr(ticket, f) for f in _FIELDS},
        "status": ticket.status,
        "statuses": [{"at": at, "status": status} for at, status in ticket.statuses],
        "posts": [
            {"post_id": p.post_id, "at": p.at, "author": p.author.__dict__, "body": p.body, "public": p.public}
            for p in ticket.posts
        ],
        "history": [
            {"at": c.at, "actor": c.actor.__dict__, "action": c.action, "detail": dict(c.detail)}
            for c in ticket.history
        ],
        **sla_due_fields(ticket.sla_due),
        "version": version,
    }


def from_document(doc: Mapping[str, Any]) -> Ticket:
    # A ticket kept after its customer's erasure has no subject and no post texts left (crm_support.identity).
    fields: dict[str, Any] = {f: doc.get(f) for f in _FIELDS} | {"subject": doc.get("subject", ERASED_TEXT)}
    return Ticket(
        ticket_id=doc["_id"],
        **fields,
        statuses=tuple((s["at"], s["status"]) for s in doc["statuses"]),
        posts=tuple(
            Post(p["post_id"], p["at"], _actor(p["author"]), p.get("body", ERASED_TEXT), p["public"])
            for p in doc["posts"]
        ),
        history=tuple(Change(c["at"], _actor(c["actor"]), c["action"], c.get("detail", {})) for c in doc["history"]),
        sla_due=_sla_due(doc),
    )


async def get_ticket(uow: UnitOfWork, query: dict[str, Any]) -> tuple[Ticket, int] | None:
    """The ticket the query finds and its version, read in the unit of work."""
    doc = await uow.db[TICKETS].find_one(query, session=uow.session)
    return (from_document(doc), doc.get("version", 0)) if doc else None


async def get_tickets(uow: UnitOfWork, ticket_ids: Iterable[str]) -> dict[str, Ticket]:
    return {d["_id"]: from_document(d) for d in await uow.find_ids(TICKETS, ticket_ids)}


async def insert_tickets(
    uow: UnitOfWork, tickets: Iterable[Ticket], origins: Mapping[str, Mapping[str, str]] | None = None
) -> None:
    """Insert the new tickets; `origins` holds, by ticket id, the id a ticket opened under a merge's survivor
    named (`crm_shared.identity.origin_fields`)."""
    origins = origins or {}
    documents = [{**to_document(t, 1), **origins.get(t.ticket_id, {})} for t in tickets]
    if documents:
        await uow.db[TICKETS].insert_many(documents, session=uow.session)


async def save_ticket(uow: UnitOfWork, ticket: Ticket, version: int) -> None:
    """Write the changed ticket over the version read; ConcurrentChange when another write came between. Fields
    the aggregate does not hold (the id it was first filed under, crm_shared.identity) stay as they were."""
    document = to_document(ticket, version + 1)
    del document["_id"]
    written = await uow.db[TICKETS].update_one(
        {"_id": ticket.ticket_id, "version": version}, {"$set": document}, session=uow.session
    )
    if written.matched_count != 1:
        raise ConcurrentChange(ticket.ticket_id)
