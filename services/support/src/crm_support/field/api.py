"""REST API of field service: service contracts and technicians (defined with `field:write`, read with
`tickets:read`), a ticket's on-site visit booked on the first free slot, dispatched, completed with the time and
parts, or cancelled, and the repair history of an installed product."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Any, Self

from fastapi import APIRouter, Body, Query, Response, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from crm_shared.api import Cursor, IdempotencyKey, IdInPath, Limit, Page, command_event_id, keyset_page
from crm_shared.events import EntityId, Line, Text, utc_now
from crm_shared.problems import Problem
from crm_shared.security import Principal, requires
from crm_shared.service import StoreDep
from crm_shared.store import as_stored
from crm_support.field import domain, repository, service
from crm_support.sla import repository as sla_store

router = APIRouter(prefix="/v1", tags=["field service"])

FieldWriter = Annotated[Principal, requires("field:write")]
Reader = Annotated[Principal, requires("tickets:read")]
READ = [requires("tickets:read")]
WRITE = [requires("field:write")]
MAX_CONTRACT_DAYS = 10 * 366


def _not_found(what: str, key: str) -> Problem:
    return Problem(404, f"{what.capitalize()} not found", f"no {what} {key}")


# ---------------------------------------------------------------- service contracts


class ContractBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: EntityId
    name: Line = Field(min_length=1, max_length=200)
    starts_on: date
    ends_on: date = Field(description="The last day covered (inclusive).")
    products: list[EntityId] = Field(
        default_factory=list, max_length=500, description="The products covered; empty: all the customer's."
    )
    sla_policy_id: EntityId | None = Field(
        default=None, description="The SLA policy of a ticket under the contract; null: the one its facts pick."
    )
    on_site: bool = Field(default=True, description="Whether visits on site are covered.")

    @model_validator(mode="after")
    def _dates(self) -> Self:
        if self.ends_on < self.starts_on:
            raise ValueError("ends_on is on or after starts_on")
        if (self.ends_on - self.starts_on).days > MAX_CONTRACT_DAYS:
            raise ValueError("a contract runs at most ten years")
        return self


class ContractView(ContractBody):
    contract_id: str

    @classmethod
    def of(cls, c: domain.ServiceContract) -> ContractView:
        return cls(
            contract_id=c.contract_id,
            customer_id=c.customer_id,
            name=c.name,
            starts_on=c.starts_on,
            ends_on=c.ends_on,
            products=sorted(c.products),
            sla_policy_id=c.sla_policy_id,
            on_site=c.on_site,
        )


CONTRACT_EXAMPLE = {
    "customer_id": "C-1001",
    "name": "Gold maintenance",
    "starts_on": "2026-01-01",
    "ends_on": "2027-12-31",
    "products": ["espresso-pro"],
    "sla_policy_id": "contract-gold",
}


@router.put(
    "/service-contracts/{contract_id}",
    response_model=ContractView,
    summary="Define or replace a customer's service contract",
    description="A ticket opened with `contract_id` must be the customer's, on a day the contract runs and for a "
    "product it covers; the contract's SLA policy, when it names one, applies to it.",
    dependencies=WRITE,
    responses={200: {"description": "Replaced"}, 201: {"description": "Defined"}, 422: {"description": "Invalid"}},
)
async def put_contract(
    store: StoreDep,
    response: Response,
    contract_id: IdInPath,
    body: Annotated[ContractBody, Body(examples=[CONTRACT_EXAMPLE])],
) -> ContractView:
    policies = store.db[sla_store.SLA_POLICIES]
    if body.sla_policy_id is not None and await policies.find_one({"_id": body.sla_policy_id}, {"_id": 1}) is None:
        raise Problem(422, "Unknown SLA policy", f"no SLA policy {body.sla_policy_id}: PUT /v1/sla/policies first")
    contract = domain.ServiceContract(
        contract_id=contract_id, **{**body.__dict__, "products": frozenset(body.products)}
    )
    document = repository.contract_to_document(contract, as_stored(utc_now()))
    del document["_id"]
    # Set, not replaced: the id a contract moved on a merge was first filed under stays (crm_shared.identity).
    result = await store.db[repository.SERVICE_CONTRACTS].update_one(
        {"_id": contract_id}, {"$set": document}, upsert=True
    )
    response.status_code = status.HTTP_201_CREATED if result.upserted_id is not None else status.HTTP_200_OK
    return ContractView.of(contract)


@router.get(
    "/service-contracts",
    response_model=Page[ContractView],
    summary="Service contracts, newest first, of one customer or all",
    dependencies=READ,
)
async def list_contracts(
    store: StoreDep,
    customer_id: Annotated[str | None, Query(max_length=128)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[ContractView]:
    query = {"customer_id": customer_id} if customer_id is not None else {}
    docs, next_cursor = await keyset_page(
        store.db[repository.SERVICE_CONTRACTS],
        query,
        time_field="updated_at",
        limit=limit,
        cursor=cursor,
        newest_first=True,
    )
    items = [ContractView.of(repository.contract_from_document(d)) for d in docs]
    return Page[ContractView](items=items, next_cursor=next_cursor)


@router.get(
    "/service-contracts/{contract_id}",
    response_model=ContractView,
    summary="One service contract",
    dependencies=READ,
    responses={404: {"description": "No such contract"}},
)
async def get_contract(store: StoreDep, contract_id: IdInPath) -> ContractView:
    doc = await store.db[repository.SERVICE_CONTRACTS].find_one({"_id": contract_id})
    if doc is None:
        raise _not_found("service contract", contract_id)
    return ContractView.of(repository.contract_from_document(doc))


# ---------------------------------------------------------------- technicians


class TechnicianBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Line = Field(min_length=1, max_length=200)
    skills: list[EntityId] = Field(min_length=1, max_length=100)
    calendar_id: EntityId = Field(description="Their working hours: a calendar of GET /v1/sla/calendars.")
    territory: EntityId | None = Field(default=None, description="Where they work; null: anywhere.")
    active: bool = True


class TechnicianView(TechnicianBody):
    technician_id: str

    @classmethod
    def of(cls, t: domain.Technician) -> TechnicianView:
        return cls(
            technician_id=t.technician_id,
            name=t.name,
            skills=sorted(t.skills),
            calendar_id=t.calendar_id,
            territory=t.territory,
            active=t.active,
        )


TECHNICIAN_EXAMPLE = {
    "name": "Ana Field",
    "skills": ["espresso-repair", "installation"],
    "calendar_id": "berlin",
    "territory": "north",
}


@router.put(
    "/technicians/{technician_id}",
    response_model=TechnicianView,
    summary="Define or replace a technician: skills, territory and working hours",
    description="The technician id is their user id (token subject): they see their own visits.",
    dependencies=WRITE,
    responses={200: {"description": "Replaced"}, 201: {"description": "Defined"}, 422: {"description": "Invalid"}},
)
async def put_technician(
    store: StoreDep,
    response: Response,
    technician_id: IdInPath,
    body: Annotated[TechnicianBody, Body(examples=[TECHNICIAN_EXAMPLE])],
) -> TechnicianView:
    if await store.db[sla_store.SLA_CALENDARS].find_one({"_id": body.calendar_id}, {"_id": 1}) is None:
        raise Problem(422, "Unknown calendar", f"no calendar {body.calendar_id}: PUT /v1/sla/calendars/{{id}} first")
    tech = domain.Technician(technician_id=technician_id, **{**body.__dict__, "skills": frozenset(body.skills)})
    fields = repository.technician_to_document(tech, as_stored(utc_now()))
    del fields["_id"]
    # $set, not a replacement: the bookings counter stays.
    result = await store.db[repository.TECHNICIANS].update_one({"_id": technician_id}, {"$set": fields}, upsert=True)
    response.status_code = status.HTTP_201_CREATED if result.upserted_id is not None else status.HTTP_200_OK
    return TechnicianView.of(tech)


@router.get(
    "/technicians",
    response_model=Page[TechnicianView],
    summary="Technicians, newest first, by skill or territory",
    dependencies=READ,
)
async def list_technicians(
    store: StoreDep,
    skill: Annotated[str | None, Query(max_length=128)] = None,
    territory: Annotated[str | None, Query(max_length=128)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[TechnicianView]:
    query: dict[str, Any] = {}
    if skill is not None:
        query["skills"] = skill
    if territory is not None:
        query["territory"] = territory
    docs, next_cursor = await keyset_page(
        store.db[repository.TECHNICIANS], query, time_field="updated_at", limit=limit, cursor=cursor, newest_first=True
    )
    items = [TechnicianView.of(repository.technician_from_document(d)) for d in docs]
    return Page[TechnicianView](items=items, next_cursor=next_cursor)


@router.get(
    "/technicians/{technician_id}",
    response_model=TechnicianView,
    summary="One technician",
    dependencies=READ,
    responses={404: {"description": "No such technician"}},
)
async def get_technician(store: StoreDep, technician_id: IdInPath) -> TechnicianView:
    doc = await store.db[repository.TECHNICIANS].find_one({"_id": technician_id})
    if doc is None:
        raise _not_found("technician", technician_id)
    return TechnicianView.of(repository.technician_from_document(doc))


# ---------------------------------------------------------------- visits


class VisitBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    skill: EntityId = Field(description="The skill the visit needs.")
    duration_minutes: int = Field(default=60, ge=5, le=12 * 60)
    earliest: AwareDatetime | None = Field(default=None, description="Not before this instant; now by default.")
    territory: EntityId | None = Field(default=None, description="Where; null: any technician's territory.")
    technician_id: EntityId | None = Field(default=None, description="Only this technician's slots.")
    installed_product: EntityId | None = Field(default=None, description="The serial number of the product.")


class PartBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    part: EntityId
    quantity: int = Field(default=1, ge=1, le=10_000)


class CompletionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    minutes_spent: int = Field(ge=0, le=24 * 60)
    parts: list[PartBody] = Field(default_factory=list, max_length=200)
    installed_product: EntityId | None = Field(default=None, description="The serial number worked on.")
    notes: Text | None = Field(default=None, max_length=5_000)


class VisitChangeView(BaseModel):
    at: datetime
    by: str
    status: domain.VisitStatus


class VisitView(BaseModel):
    visit_id: str
    ticket_id: str
    customer_id: str
    technician_id: str
    skill: str
    status: domain.VisitStatus
    starts_at: datetime
    ends_at: datetime
    territory: str | None
    contract_id: str | None
    product: str | None
    installed_product: str | None
    minutes_spent: int | None
    parts: list[PartBody]
    notes: str | None
    completed_at: datetime | None
    history: list[VisitChangeView]

    @classmethod
    def of(cls, v: domain.Visit) -> VisitView:
        return cls(
            visit_id=v.visit_id,
            ticket_id=v.ticket_id,
            customer_id=v.customer_id,
            technician_id=v.technician_id,
            skill=v.skill,
            status=v.status,
            starts_at=v.starts_at,
            ends_at=v.ends_at,
            territory=v.territory,
            contract_id=v.contract_id,
            product=v.product,
            installed_product=v.installed_product,
            minutes_spent=v.minutes_spent,
            parts=[PartBody(part=p.part, quantity=p.quantity) for p in v.parts],
            notes=v.notes,
            completed_at=v.completed_at,
            history=[VisitChangeView(at=c.at, by=c.by, status=c.status) for c in v.history],
        )


@router.post(
    "/tickets/{ticket_id}/visits",
    response_model=VisitView,
    status_code=status.HTTP_201_CREATED,
    summary="Book an on-site visit for a ticket on the first free slot of a technician with the skill",
    description="The earliest start, from `earliest` on, within one stretch of a technician's working hours and "
    "clear of their other visits; ties go to the technician id first in order. The same Idempotency-Key books "
    "once. Publishes crm.visit.scheduled.v1.",
    responses={
        200: {"description": "Booked before with this Idempotency-Key"},
        404: {"description": "No such ticket, or not one the caller sees"},
        409: {"description": "Nobody has the skill or is free, the ticket is closed, or the contract has no visits"},
    },
)
async def schedule_visit(
    principal: FieldWriter,
    store: StoreDep,
    response: Response,
    ticket_id: IdInPath,
    body: VisitBody,
    idempotency_key: IdempotencyKey = None,
) -> VisitView:
    visit_id = "V-" + command_event_id(f"support/visits/{principal.kind}:{principal.id}", idempotency_key)
    request = service.VisitRequest(
        skill=body.skill,
        duration=timedelta(minutes=body.duration_minutes),
        earliest=body.earliest or utc_now(),
        territory=body.territory,
        technician_id=body.technician_id,
        installed_product=body.installed_product,
    )
    try:
        visit, created = await service.schedule_visit(store, ticket_id, request, visit_id, seen_by=principal)
    except service.TicketNotFound as exc:
        raise Problem(404, "Ticket not found", f"no ticket {ticket_id}") from exc
    except domain.FieldRefused as exc:
        raise Problem(409, "Visit not booked", str(exc)) from exc
    if not created:
        if visit.ticket_id != ticket_id or visit.skill != body.skill:
            raise Problem(409, "Idempotency-Key reused", "this Idempotency-Key was used for a different visit")
        response.status_code = status.HTTP_200_OK
    return VisitView.of(visit)


@router.get(
    "/visits",
    response_model=Page[VisitView],
    summary="Visits the caller sees, by start time, of a technician, a ticket or in a status",
    description="A technician's schedule: `technician_id` with `from` and `to`.",
)
async def list_visits(
    principal: Reader,
    store: StoreDep,
    technician_id: Annotated[str | None, Query(max_length=128)] = None,
    ticket_id: Annotated[str | None, Query(max_length=128)] = None,
    status_: Annotated[domain.VisitStatus | None, Query(alias="status")] = None,
    start: Annotated[AwareDatetime | None, Query(alias="from", description="Starting at or after.")] = None,
    end: Annotated[AwareDatetime | None, Query(alias="to", description="Starting before.")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[VisitView]:
    query: dict[str, Any] = {}
    for name, value in (("technician_id", technician_id), ("ticket_id", ticket_id), ("status", status_)):
        if value is not None:
            query[name] = value
    window = {op: at for op, at in (("$gte", start), ("$lt", end)) if at is not None}
    if window:
        query["starts_at"] = window
    docs, next_cursor = await keyset_page(
        store.db[repository.VISITS],
        service.visits_seen_by(principal, query),
        time_field="starts_at",
        limit=limit,
        cursor=cursor,
        newest_first=False,
    )
    return Page[VisitView](
        items=[VisitView.of(repository.visit_from_document(d)) for d in docs], next_cursor=next_cursor
    )


@router.get(
    "/visits/{visit_id}",
    response_model=VisitView,
    summary="One visit",
    responses={404: {"description": "No such visit, or not one the caller sees"}},
)
async def get_visit(principal: Reader, store: StoreDep, visit_id: IdInPath) -> VisitView:
    doc = await store.db[repository.VISITS].find_one(service.visits_seen_by(principal, {"_id": visit_id}))
    if doc is None:
        raise _not_found("visit", visit_id)
    return VisitView.of(repository.visit_from_document(doc))


_MOVE_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such visit, or not one the caller sees"},
    409: {"description": "A move its status does not allow (a completed or cancelled visit is final)"},
}


async def _move(
    store: StoreDep, principal: Principal, visit_id: str, to: domain.VisitStatus, **details: Any
) -> VisitView:
    try:
        visit = await service.change_visit(store, visit_id, to, utc_now(), by=principal, **details)
    except domain.FieldRefused as exc:
        raise Problem(409, "Visit change refused", str(exc)) from exc
    if visit is None:
        raise _not_found("visit", visit_id)
    return VisitView.of(visit)


@router.post(
    "/visits/{visit_id}/dispatch",
    response_model=VisitView,
    summary="Send the technician on the way",
    responses=_MOVE_RESPONSES,
)
async def dispatch_visit(principal: FieldWriter, store: StoreDep, visit_id: IdInPath) -> VisitView:
    return await _move(store, principal, visit_id, "dispatched")


@router.post(
    "/visits/{visit_id}/complete",
    response_model=VisitView,
    summary="Record the visit done: time spent, parts used, the installed product worked on",
    description="Publishes crm.visit.status_changed.v1 with the time and parts; the visit joins the installed "
    "product's repair history.",
    responses=_MOVE_RESPONSES,
)
async def complete_visit(
    principal: FieldWriter, store: StoreDep, visit_id: IdInPath, body: CompletionBody
) -> VisitView:
    return await _move(
        store,
        principal,
        visit_id,
        "completed",
        minutes_spent=body.minutes_spent,
        parts=tuple(domain.PartUsed(p.part, p.quantity) for p in body.parts),
        installed_product=body.installed_product,
        notes=body.notes,
    )


@router.post(
    "/visits/{visit_id}/cancel",
    response_model=VisitView,
    summary="Call the visit off: its slot is free again",
    responses=_MOVE_RESPONSES,
)
async def cancel_visit(principal: FieldWriter, store: StoreDep, visit_id: IdInPath) -> VisitView:
    return await _move(store, principal, visit_id, "cancelled")


@router.get(
    "/installed-products/{serial}/repairs",
    response_model=Page[VisitView],
    summary="The repair history of an installed product: its completed visits, newest first",
)
async def repair_history(
    principal: Reader, store: StoreDep, serial: IdInPath, limit: Limit = 50, cursor: Cursor = None
) -> Page[VisitView]:
    query = service.visits_seen_by(principal, {"installed_product": serial, "status": "completed"})
    docs, next_cursor = await keyset_page(
        store.db[repository.VISITS], query, time_field="starts_at", limit=limit, cursor=cursor, newest_first=True
    )
    return Page[VisitView](
        items=[VisitView.of(repository.visit_from_document(d)) for d in docs], next_cursor=next_cursor
    )
