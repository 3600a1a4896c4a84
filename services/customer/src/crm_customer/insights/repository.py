"""The reads behind the summary card and the customer analysis: plain finds with projections on the timeline and
the profiles, each folded in Python (crm_customer.insights.summary, .analysis)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from crm_customer.domain import TimelineEntry
from crm_customer.handlers import CUSTOMER_ACCESS
from crm_customer.insights.summary import SEGMENT_CHANGED
from crm_customer.repository import CUSTOMERS, TIMELINE, entry_from_document
from crm_shared.events import OrderCancelledEvent, OrderPlacedEvent
from crm_shared.security import Principal
from crm_shared.store import IndexSpec

Db = AsyncDatabase[dict[str, Any]]

INDEXES = (
    # A customer's entries of some types are read through the timeline's own index (customer, time, id): one
    # customer's entries are few, and every index more costs each timeline write (the slowest consumer).
    # Every customer's entries of one type (all orders, all segment changes), for the analysis.
    IndexSpec(TIMELINE, IndexModel([("type", ASCENDING), ("time", ASCENDING)], name="by_type_in_time")),
)


# ---------------------------------------------------------------- one customer


async def newest_segment_change(db: Db, customer_id: str) -> TimelineEntry | None:
    doc = await db[TIMELINE].find_one(
        {"customer_id": customer_id, "type": SEGMENT_CHANGED}, sort=[("time", DESCENDING), ("_id", DESCENDING)]
    )
    return entry_from_document(doc) if doc else None


async def entries_of(db: Db, customer_id: str, types: Collection[str]) -> list[TimelineEntry]:
    """The customer's entries of these types, in no set order."""
    found = db[TIMELINE].find({"customer_id": customer_id, "type": {"$in": sorted(types)}})
    return [entry_from_document(doc) async for doc in found]


async def owner_of(db: Db, customer_id: str) -> dict[str, Any] | None:
    """The profile's owner and territory; None before the customer signed up."""
    return await db[CUSTOMERS].find_one({"_id": customer_id}, {"owner_id": 1, "territory": 1})


# ---------------------------------------------------------------- every customer the caller sees


async def customers_seen(db: Db, principal: Principal) -> list[str] | None:
    """The ids of the registered customers a person sees; None for a caller who sees every record (and every
    customer id, registered or not, as the timeline does)."""
    if principal.sees_all_records:
        return None
    found = db[CUSTOMERS].find(CUSTOMER_ACCESS.restrict(principal, {}), {"_id": 1})
    return [doc["_id"] async for doc in found]


def _of(customers: list[str] | None, query: dict[str, Any]) -> dict[str, Any]:
    return query if customers is None else {**query, "customer_id": {"$in": customers}}


async def counted_orders(db: Db, customers: list[str] | None) -> list[tuple[str, datetime]]:
    """(customer id, time placed) of every order of these customers (None: all) that was not cancelled."""
    projection = {"customer_id": 1, "time": 1, "data.order_id": 1}
    cancelled_found = db[TIMELINE].find(_of(customers, {"type": OrderCancelledEvent.TYPE}), projection)
    cancelled = {(doc["customer_id"], doc["data"]["order_id"]) async for doc in cancelled_found}
    placed = db[TIMELINE].find(_of(customers, {"type": OrderPlacedEvent.TYPE}), projection)
    return [
        (doc["customer_id"], doc["time"])
        async for doc in placed
        if (doc["customer_id"], doc["data"]["order_id"]) not in cancelled
    ]


async def segment_scores(
    db: Db, customers: list[str] | None, fields: Collection[str]
) -> list[tuple[str, datetime, str, Mapping[str, Any]]]:
    """(customer id, time, event id, these scores) of every segment change of these customers (None: all)."""
    projection = {"customer_id": 1, "time": 1, **{f"data.scores.{f}": 1 for f in fields}}
    found = db[TIMELINE].find(_of(customers, {"type": SEGMENT_CHANGED}), projection)
    return [(doc["customer_id"], doc["time"], doc["_id"], doc["data"]["scores"]) async for doc in found]


async def profiles_seen(db: Db, principal: Principal, fields: Collection[str]) -> list[dict[str, Any]]:
    """These fields of every profile the caller sees."""
    found = db[CUSTOMERS].find(CUSTOMER_ACCESS.restrict(principal, {}), dict.fromkeys(fields, 1))
    return [doc async for doc in found]
