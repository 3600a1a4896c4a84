"""The sales database: the `orders` collection (one document per order, its facts inside)."""

from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel

from crm_sales.domain import MoneyFact, Order
from crm_shared.events import OrderPlaced
from crm_shared.store import IndexSpec, UnitOfWork

ORDERS = "orders"

INDEXES = (IndexSpec(ORDERS, IndexModel([("customer_id", ASCENDING), ("placed_at", DESCENDING)], name="by_customer")),)


def _money_facts(facts: tuple[MoneyFact, ...]) -> list[dict[str, Any]]:
    return [{"event_id": f.event_id, "amount": f.amount, "at": f.at} for f in facts]


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
    return Order(
        order_id=doc["_id"],
        customer_id=doc["customer_id"],
        placed=OrderPlaced.model_validate(doc["placed"]) if doc.get("placed") else None,
        placed_at=doc.get("placed_at"),
        payments=tuple(MoneyFact(**f) for f in doc.get("payments", [])),
        refunds=tuple(MoneyFact(**f) for f in doc.get("refunds", [])),
        cancelled_at=doc.get("cancelled_at"),
        cancel_reason=doc.get("cancel_reason"),
    )


async def get_order(uow: UnitOfWork, order_id: str) -> Order | None:
    doc = await uow.db[ORDERS].find_one({"_id": order_id}, session=uow.session)
    return from_document(doc) if doc else None


async def save_order(uow: UnitOfWork, order: Order) -> None:
    await uow.db[ORDERS].replace_one({"_id": order.order_id}, to_document(order), upsert=True, session=uow.session)
