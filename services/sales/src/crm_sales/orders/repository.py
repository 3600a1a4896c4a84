"""The sales database: `orders` (one document per order, its facts inside) and `leads` (from marketing).

A lead document carries `owner_id` and `territory`, the fields row-level access filters on; documents written
before leads had them read as unassigned.
"""

from collections.abc import Iterable
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel, ReplaceOne, UpdateOne

from crm_sales.domain import Lead, MoneyFact, Order
from crm_shared.events import OrderPlaced
from crm_shared.store import IndexSpec, UnitOfWork

ORDERS = "orders"
LEADS = "leads"

INDEXES = (
    IndexSpec(ORDERS, IndexModel([("customer_id", ASCENDING), ("placed_at", DESCENDING)], name="by_customer")),
    IndexSpec(LEADS, IndexModel([("qualified_at", DESCENDING), ("_id", DESCENDING)], name="newest_first")),
    IndexSpec(
        LEADS,
        IndexModel([("customer_id", ASCENDING), ("qualified_at", DESCENDING), ("_id", DESCENDING)], name="by_customer"),
    ),
    # A person's lead list is an $or of their owners and their territories: one index per branch, in list order.
    IndexSpec(
        LEADS,
        IndexModel([("owner_id", ASCENDING), ("qualified_at", DESCENDING), ("_id", DESCENDING)], name="by_owner"),
    ),
    IndexSpec(
        LEADS,
        IndexModel([("territory", ASCENDING), ("qualified_at", DESCENDING), ("_id", DESCENDING)], name="by_territory"),
    ),
)


def _money_facts(facts: tuple[MoneyFact, ...]) -> list[dict[str, Any]]:
    return [{"event_id": f.event_id, "amount": f.amount, "at": f.at, "currency": f.currency} for f in facts]


def _money_facts_from(docs: list[dict[str, Any]], order_currency: str | None) -> tuple[MoneyFact, ...]:
    """Documents written before sales kept the currency of payments and refunds have none: it is the order's
    (None while the order has not arrived)."""
    return tuple(MoneyFact(d["event_id"], d["amount"], d["at"], d.get("currency") or order_currency) for d in docs)


def to_document(order: Order) -> dict[str, Any]:
    return {
        "_id": order.order_id,
        "customer_id": order.customer_id,
        "placed": order.placed.model_dump(mode="python") if order.placed else None,
        "placed_at": order.placed_at,
        "payments": _money_facts(order.payments),
        "refunds": _money_facts(order.refunds),
        "cancelled_at": order.cancelled_at,
        "cancel_reason": order.cancel_reason,
        "status": order.status,
    }


def from_document(doc: dict[str, Any]) -> Order:
    placed = OrderPlaced.model_validate(doc["placed"]) if doc.get("placed") else None
    currency = placed.currency if placed else None
    return Order(
        order_id=doc["_id"],
        customer_id=doc["customer_id"],
        placed=placed,
        placed_at=doc.get("placed_at"),
        payments=_money_facts_from(doc.get("payments", []), currency),
        refunds=_money_facts_from(doc.get("refunds", []), currency),
        cancelled_at=doc.get("cancelled_at"),
        cancel_reason=doc.get("cancel_reason"),
    )


async def get_order(uow: UnitOfWork, order_id: str) -> Order | None:
    doc = await uow.db[ORDERS].find_one({"_id": order_id}, session=uow.session)
    return from_document(doc) if doc else None


async def save_order(uow: UnitOfWork, order: Order) -> None:
    await uow.db[ORDERS].replace_one({"_id": order.order_id}, to_document(order), upsert=True, session=uow.session)


async def get_orders(uow: UnitOfWork, order_ids: Iterable[str]) -> dict[str, Order]:
    """The stored orders among `order_ids`, by id."""
    docs = await uow.find_ids(ORDERS, order_ids)
    return {doc["_id"]: from_document(doc) for doc in docs}


async def save_orders(uow: UnitOfWork, orders: Iterable[Order]) -> None:
    """Write the orders in one bulk write."""
    writes = [ReplaceOne({"_id": o.order_id}, to_document(o), upsert=True) for o in orders]
    if writes:
        await uow.db[ORDERS].bulk_write(writes, ordered=False, session=uow.session)


def lead_to_document(lead: Lead) -> dict[str, Any]:
    return {
        "_id": lead.lead_id,
        "customer_id": lead.customer_id,
        "segment_id": lead.segment_id,
        "reason": lead.reason,
        "value_tier": lead.value_tier,
        "lifecycle_stage": lead.lifecycle_stage,
        "qualified_at": lead.qualified_at,
        "status": lead.status,
        "owner_id": lead.owner_id,
        "territory": lead.territory,
    }


def lead_from_document(doc: dict[str, Any]) -> Lead:
    return Lead(
        lead_id=doc["_id"],
        customer_id=doc["customer_id"],
        segment_id=doc["segment_id"],
        reason=doc["reason"],
        value_tier=doc.get("value_tier"),
        lifecycle_stage=doc.get("lifecycle_stage"),
        qualified_at=doc["qualified_at"],
        status=doc.get("status", "new"),
        owner_id=doc.get("owner_id"),
        territory=doc.get("territory"),
    )


async def save_lead(uow: UnitOfWork, lead: Lead) -> bool:
    """True when the lead is new; the same lead handed over again is kept once."""
    result = await uow.db[LEADS].update_one(
        {"_id": lead.lead_id},
        {"$setOnInsert": {k: v for k, v in lead_to_document(lead).items() if k != "_id"}},
        upsert=True,
        session=uow.session,
    )
    return result.upserted_id is not None


async def save_leads(uow: UnitOfWork, leads: Iterable[Lead]) -> None:
    """Keep each lead once (the same lead handed over again changes nothing), in one bulk write."""
    writes = [
        UpdateOne(
            {"_id": lead.lead_id},
            {"$setOnInsert": {k: v for k, v in lead_to_document(lead).items() if k != "_id"}},
            upsert=True,
        )
        for lead in leads
    ]
    if writes:
        await uow.db[LEADS].bulk_write(writes, ordered=False, session=uow.session)
