"""Use cases of field service: define contracts and technicians, book a ticket's visit on the first free slot,
move it on (dispatch, complete, cancel); each change of a visit in one transaction with its event on
crm.support.events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from crm_shared.events import (
    PartUsedInVisit,
    VisitScheduled,
    VisitScheduledEvent,
    VisitStatusChanged,
    VisitStatusChangedEvent,
    derived_event_id,
)
from crm_shared.security import Principal, RecordAccess
from crm_shared.store import Store, UnitOfWork, as_stored
from crm_shared.topics import Topic
from crm_support.field import domain, repository
from crm_support.sla import repository as sla_store
from crm_support.tickets import handlers as tickets
from crm_support.tickets import repository as ticket_store

SOURCE = "/crm/support"
VISIT_ACCESS = RecordAccess(owner="technician_id", territory="territory", group="group")
"""A technician sees their own visits, a manager their team's, agents those of their territories and of the
groups of the tickets they are for; API keys and those who see every record see every visit."""
CLOSED_TICKET = ("resolved", "closed")


class TicketNotFound(Exception):
    """No such ticket, or not one the caller sees."""


def visits_seen_by(principal: Principal | None, query: dict[str, Any]) -> dict[str, Any]:
    return query if principal is None else VISIT_ACCESS.restrict(principal, query)


@dataclass(frozen=True)
class VisitRequest:
    skill: str
    duration: timedelta
    earliest: datetime
    territory: str | None = None
    technician_id: str | None = None
    installed_product: str | None = None


def _event_id(visit_id: str, what: str) -> str:
    return derived_event_id(SOURCE, f"visit:{visit_id}:{what}")


async def schedule_visit(
    store: Store, ticket_id: str, request: VisitRequest, visit_id: str, *, seen_by: Principal
) -> tuple[domain.Visit, bool]:
    """Book the ticket's visit on the first free slot of a technician with the skill (and territory): (visit,
    True); (visit, False) when one with this id exists. Raises TicketNotFound, or FieldRefused (a closed
    ticket, a contract without on-site visits, nobody with the skill, nobody free)."""
    earliest = as_stored(request.earliest)

    async def work(uow: UnitOfWork) -> tuple[domain.Visit, bool]:
        known = await uow.db[repository.VISITS].find_one({"_id": visit_id}, session=uow.session)
        if known is not None:
            return repository.visit_from_document(known), False
        found = await ticket_store.get_ticket(uow, tickets.tickets_seen_by(seen_by, {"_id": ticket_id}))
        if found is None:
            raise TicketNotFound(ticket_id)
        ticket, _ = found
        if ticket.status in CLOSED_TICKET:
            raise domain.FieldRefused(f"ticket {ticket_id} is {ticket.status}: reopen it to book a visit")
        if ticket.contract_id is not None:
            contract = await repository.get_contract(uow, ticket.contract_id)
            if contract is not None and not contract.on_site:
                raise domain.FieldRefused(f"contract {contract.contract_id} does not cover visits on site")
        query: dict[str, Any] = {"skills": request.skill, "active": True}
        if request.technician_id is not None:
            query["_id"] = request.technician_id
        technicians = [
            repository.technician_from_document(d)
            async for d in uow.db[repository.TECHNICIANS].find(query, session=uow.session)
        ]
        able = [t for t in technicians if t.can_do(request.skill, request.territory)]
        if not able:
            where = f" in territory {request.territory}" if request.territory else ""
            if request.technician_id is not None:
                raise domain.FieldRefused(
                    f"technician {request.technician_id} is not an active technician with the skill "
                    f"{request.skill}{where}"
                )
            raise domain.FieldRefused(f"no active technician has the skill {request.skill}{where}")
        calendars = (await sla_store.load_rules(uow.db, uow)).calendars
        horizon = earliest + timedelta(days=domain.SEARCH_DAYS + 2)
        busy = await repository.busy_spans(uow, [t.technician_id for t in able], earliest, horizon)
        slot = domain.first_slot(
            able,
            calendars,
            busy,
            skill=request.skill,
            territory=request.territory,
            duration=request.duration,
            earliest=earliest,
        )
        if slot is None:
            raise domain.FieldRefused(
                f"no technician with the skill {request.skill} has {request.duration} free within "
                f"{domain.SEARCH_DAYS} days of {earliest.isoformat()}"
            )
        visit = domain.Visit(
            visit_id=visit_id,
            ticket_id=ticket.ticket_id,
            customer_id=ticket.customer_id,
            technician_id=slot.technician_id,
            skill=request.skill,
            starts_at=slot.starts_at,
            ends_at=slot.ends_at,
            territory=request.territory or next(t.territory for t in able if t.technician_id == slot.technician_id),
            contract_id=ticket.contract_id,
            installed_product=request.installed_product,
            product=ticket.product,
        )
        document = {**repository.visit_to_document(visit), "group": ticket.group}
        await uow.db[repository.VISITS].insert_one(document, session=uow.session)
        # Two bookings of one technician at once both write this: one conflicts, is retried, and sees the other.
        await uow.db[repository.TECHNICIANS].update_one(
            {"_id": slot.technician_id}, {"$inc": {"bookings": 1}}, session=uow.session
        )
        scheduled = VisitScheduled(
            customer_id=ticket.customer_id,
            visit_id=visit_id,
            ticket_id=ticket.ticket_id,
            technician_id=slot.technician_id,
            skill=request.skill,
            starts_at=slot.starts_at,
            ends_at=slot.ends_at,
            contract_id=ticket.contract_id,
        )
        uow.emit(
            VisitScheduledEvent.create(scheduled, source=SOURCE, id=_event_id(visit_id, "scheduled")),
            Topic.SUPPORT_EVENTS,
        )
        return visit, True

    return await store.transaction_racing(work)


async def change_visit(
    store: Store,
    visit_id: str,
    to: domain.VisitStatus,
    at: datetime,
    *,
    by: Principal,
    minutes_spent: int | None = None,
    parts: tuple[domain.PartUsed, ...] = (),
    installed_product: str | None = None,
    notes: str | None = None,
) -> domain.Visit | None:
    """Dispatch, complete or cancel the visit the principal sees, with its event; the same status again is no
    change. None when there is no such visit for them; raises FieldRefused for a move not allowed."""
    at = as_stored(at)

    async def work(uow: UnitOfWork) -> domain.Visit | None:
        doc = await uow.db[repository.VISITS].find_one(visits_seen_by(by, {"_id": visit_id}), session=uow.session)
        if doc is None:
            return None
        before = repository.visit_from_document(doc)
        after = domain.change_visit(
            before,
            to,
            at,
            by.audit_name,
            minutes_spent=minutes_spent,
            parts=parts,
            installed_product=installed_product,
            notes=notes,
        )
        if after == before:
            return before
        # Set, not replaced: the visit's group and the id it was first filed under (crm_shared.identity) stay.
        document = repository.visit_to_document(after)
        del document["_id"]
        written = await uow.db[repository.VISITS].update_one(
            {"_id": visit_id, "status": before.status}, {"$set": document}, session=uow.session
        )
        if written.matched_count != 1:
            raise domain.FieldRefused(f"visit {visit_id} changed meanwhile: read it again")
        changed = VisitStatusChanged(
            customer_id=after.customer_id,
            visit_id=visit_id,
            ticket_id=after.ticket_id,
            technician_id=after.technician_id,
            status=to,
            minutes_spent=after.minutes_spent,
            parts=[PartUsedInVisit(part=p.part, quantity=p.quantity) for p in after.parts],
            installed_product=after.installed_product,
        )
        uow.emit(
            VisitStatusChangedEvent.create(changed, source=SOURCE, id=_event_id(visit_id, to), time=at),
            Topic.SUPPORT_EVENTS,
        )
        return after

    return await store.transaction(work)
