"""The support database's field service: `service_contracts` and `technicians` (one document per id, as an
operator defined them, with `updated_at`; a technician's `bookings` counts the visits booked on them, so two
bookings of one technician at the same moment conflict and one is retried) and `visits` (one document per
visit, its status and times flat for queries)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel

from crm_shared.store import IndexSpec, UnitOfWork
from crm_support.field.domain import PartUsed, ServiceContract, Technician, Visit, VisitChange

SERVICE_CONTRACTS = "service_contracts"
TECHNICIANS = "technicians"
VISITS = "visits"
_NEWEST = [("updated_at", DESCENDING), ("_id", DESCENDING)]
INDEXES = (
    IndexSpec(SERVICE_CONTRACTS, IndexModel(_NEWEST, name="newest_first")),
    IndexSpec(SERVICE_CONTRACTS, IndexModel([("customer_id", ASCENDING), *_NEWEST], name="by_customer")),
    IndexSpec(TECHNICIANS, IndexModel(_NEWEST, name="newest_first")),
    IndexSpec(TECHNICIANS, IndexModel([("skills", ASCENDING)], name="by_skill")),
    IndexSpec(VISITS, IndexModel([("technician_id", ASCENDING), ("starts_at", ASCENDING)], name="by_technician")),
    IndexSpec(VISITS, IndexModel([("ticket_id", ASCENDING), ("starts_at", ASCENDING)], name="by_ticket")),
    IndexSpec(
        VISITS,
        IndexModel([("installed_product", ASCENDING), ("starts_at", DESCENDING)], name="by_installed_product"),
    ),
    IndexSpec(VISITS, IndexModel([("starts_at", DESCENDING), ("_id", DESCENDING)], name="newest_first")),
)


def _day(value: date) -> str:
    return value.isoformat()


def contract_to_document(contract: ServiceContract, at: datetime) -> dict[str, Any]:
    return {
        "_id": contract.contract_id,
        "customer_id": contract.customer_id,
        "name": contract.name,
        "starts_on": _day(contract.starts_on),
        "ends_on": _day(contract.ends_on),
        "products": sorted(contract.products),
        "sla_policy_id": contract.sla_policy_id,
        "on_site": contract.on_site,
        "updated_at": at,
    }


def contract_from_document(doc: Mapping[str, Any]) -> ServiceContract:
    return ServiceContract(
        contract_id=doc["_id"],
        customer_id=doc["customer_id"],
        name=doc["name"],
        starts_on=date.fromisoformat(doc["starts_on"]),
        ends_on=date.fromisoformat(doc["ends_on"]),
        products=frozenset(doc.get("products", [])),
        sla_policy_id=doc.get("sla_policy_id"),
        on_site=doc.get("on_site", True),
    )


def technician_to_document(tech: Technician, at: datetime) -> dict[str, Any]:
    return {
        "_id": tech.technician_id,
        "name": tech.name,
        "skills": sorted(tech.skills),
        "calendar_id": tech.calendar_id,
        "territory": tech.territory,
        "active": tech.active,
        "updated_at": at,
    }


def technician_from_document(doc: Mapping[str, Any]) -> Technician:
    return Technician(
        technician_id=doc["_id"],
        name=doc["name"],
        skills=frozenset(doc.get("skills", [])),
        calendar_id=doc["calendar_id"],
        territory=doc.get("territory"),
        active=doc.get("active", True),
    )


def visit_to_document(visit: Visit) -> dict[str, Any]:
    return {
        "_id": visit.visit_id,
        "ticket_id": visit.ticket_id,
        "customer_id": visit.customer_id,
        "technician_id": visit.technician_id,
        "skill": visit.skill,
        "starts_at": visit.starts_at,
        "ends_at": visit.ends_at,
        "territory": visit.territory,
        "contract_id": visit.contract_id,
        "installed_product": visit.installed_product,
        "product": visit.product,
        "minutes_spent": visit.minutes_spent,
        "parts": [{"part": p.part, "quantity": p.quantity} for p in visit.parts],
        "notes": visit.notes,
        "status": visit.status,
        "history": [{"at": c.at, "by": c.by, "status": c.status} for c in visit.history],
    }


def visit_from_document(doc: Mapping[str, Any]) -> Visit:
    return Visit(
        visit_id=doc["_id"],
        ticket_id=doc["ticket_id"],
        customer_id=doc["customer_id"],
        technician_id=doc["technician_id"],
        skill=doc["skill"],
        starts_at=doc["starts_at"],
        ends_at=doc["ends_at"],
        territory=doc.get("territory"),
        contract_id=doc.get("contract_id"),
        installed_product=doc.get("installed_product"),
        product=doc.get("product"),
        minutes_spent=doc.get("minutes_spent"),
        parts=tuple(PartUsed(p["part"], p["quantity"]) for p in doc.get("parts", [])),
        notes=doc.get("notes"),
        history=tuple(VisitChange(c["at"], c["by"], c["status"]) for c in doc.get("history", [])),
    )


async def get_contract(uow: UnitOfWork, contract_id: str) -> ServiceContract | None:
    doc = await uow.db[SERVICE_CONTRACTS].find_one({"_id": contract_id}, session=uow.session)
    return contract_from_document(doc) if doc else None


async def busy_spans(
    uow: UnitOfWork, technician_ids: list[str], start: datetime, end: datetime
) -> dict[str, list[tuple[datetime, datetime]]]:
    """Each technician's visits (not cancelled) overlapping [start, end)."""
    query = {
        "technician_id": {"$in": technician_ids},
        "status": {"$ne": "cancelled"},
        "starts_at": {"$lt": end},
        "ends_at": {"$gt": start},
    }
    spans: dict[str, list[tuple[datetime, datetime]]] = {t: [] for t in technician_ids}
    async for doc in uow.db[VISITS].find(
        query, {"technician_id": 1, "starts_at": 1, "ends_at": 1}, session=uow.session
    ):
        spans[doc["technician_id"]].append((doc["starts_at"], doc["ends_at"]))
    return spans
