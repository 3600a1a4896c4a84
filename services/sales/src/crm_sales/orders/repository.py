"""The sales database's `orders` collection: one document per order, its facts inside."""

from collections.abc import Iterable, Mapping
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel, UpdateOne

from crm_sales.orders.domain import Attribution, MoneyFact, Order, Shipment
from crm_shared.events import OrderPlaced
from crm_shared.store import IndexSpec, UnitOfWork

ORDERS = "orders"

INDEXES = (
    IndexSpec(ORDERS, IndexModel([("customer_id", ASCENDING), ("placed_at", DESCENDING)], name="by_customer")),
    IndexSpec(ORDERS, IndexModel([("owner_id", ASCENDING), ("placed_at", DESCENDING)], name="by_owner")),
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
        "shipments": [s.__dict__ for s in order.shipments],
        "status": order.status,
        # Flat, so forecasts and commissions filter and index on them.
        "owner_id": order.attribution.owner_id if order.attribution else None,
        "territory": order.attribution.territory if order.attribution else None,
        "opportunity_id": order.attribution.opportunity_id if order.attribution else None,
        "quote_id": order.attribution.quote_id if order.attribution else None,
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
        attribution=_attribution_from(doc),
        shipments=tuple(Shipment(**s) for s in doc.get("shipments", [])),
    )


def _attribution_from(doc: dict[str, Any]) -> Attribution | None:
    fields = {name: doc.get(name) for name in ("owner_id", "territory", "opportunity_id", "quote_id")}
    return Attribution(**fields) if any(fields.values()) else None


async def get_order(uow: UnitOfWork, order_id: str) -> Order | None:
    doc = await uow.db[ORDERS].find_one({"_id": order_id}, session=uow.session)
    return from_document(doc) if doc else None


def _saving(order: Order, origin: Mapping[str, str] | None = None) -> UpdateOne:
    """The write of an order: its fields set, not the document replaced, so what an identity merge noted on it
    (`origin_customer_id`) stays; `origin`, the customer id the event creating it named, only on insert."""
    update: dict[str, Any] = {"$set": {k: v for k, v in to_document(order).items() if k != "_id"}}
    if origin:
        update["$setOnInsert"] = dict(origin)
    return UpdateOne({"_id": order.order_id}, update, upsert=True)


async def save_order(uow: UnitOfWork, order: Order) -> None:
    await save_orders(uow, [order])


async def get_orders(uow: UnitOfWork, order_ids: Iterable[str]) -> dict[str, Order]:
    """The stored orders among `order_ids`, by id."""
    docs = await uow.find_ids(ORDERS, order_ids)
    return {doc["_id"]: from_document(doc) for doc in docs}


async def save_orders(
    uow: UnitOfWork, orders: Iterable[Order], origins: Mapping[str, Mapping[str, str]] | None = None
) -> None:
    """Write the orders in one bulk write; `origins` by order id, for the orders the batch creates (see _saving)."""
    writes = [_saving(o, (origins or {}).get(o.order_id)) for o in orders]
    if writes:
        await uow.db[ORDERS].bulk_write(writes, ordered=False, session=uow.session)
