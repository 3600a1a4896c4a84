"""Use cases of sales: apply an order fact, from the ingest topic or the API, exactly once; take leads."""

from typing import Any

from crm_sales import domain, repository
from crm_shared.consumer import Rejected
from crm_shared.events import (
    CloudEvent,
    LeadQualifiedEvent,
    OrderCancelled,
    OrderCancelledEvent,
    OrderPaid,
    OrderPaidEvent,
    OrderPlaced,
    OrderPlacedEvent,
    OrderRefunded,
    OrderRefundedEvent,
    derived_event_id,
)
from crm_shared.store import Store, UnitOfWork
from crm_shared.topics import Topic

SOURCE = "/crm/sales"


def _apply(order: domain.Order | None, event: CloudEvent[Any]) -> domain.Order:
    data = event.data
    if isinstance(data, OrderPlaced):
        return domain.place(order, data, event.time)
    if isinstance(data, OrderPaid):
        return domain.pay(order, data, event.id, event.time)
    if isinstance(data, OrderRefunded):
        return domain.refund(order, data, event.id, event.time)
    if isinstance(data, OrderCancelled):
        return domain.cancel(order, data, event.time)
    raise Rejected(f"sales does not handle events of type {event.type}")


_OUTGOING: dict[type, type[CloudEvent[Any]]] = {
    OrderPlaced: OrderPlacedEvent,
    OrderPaid: OrderPaidEvent,
    OrderRefunded: OrderRefundedEvent,
    OrderCancelled: OrderCancelledEvent,
}


async def apply_order_event(store: Store, event: CloudEvent[Any]) -> domain.Order:
    """Store the fact and publish it on crm.sales.events; a redelivered event changes nothing."""

    async def work(uow: UnitOfWork) -> domain.Order:
        before = await repository.get_order(uow, event.data.order_id)
        try:
            after = _apply(before, event)
        except domain.OrderRejected as exc:
            raise Rejected(str(exc)) from exc
        if after == before:
            return after
        await repository.save_order(uow, after)
        outgoing = _OUTGOING[type(event.data)]
        # The business time stays the channel's; the id is derived so a retry emits the same event.
        uow.emit(
            outgoing.create(
                event.data,
                source=SOURCE,
                id=derived_event_id(SOURCE, event.id),
                time=event.time,
                cause=event,
            ),
            Topic.SALES_EVENTS,
        )
        return after

    return await store.transaction(work, applies=f"sales:{event.id}")


async def apply_marketing_event(store: Store, event: CloudEvent[Any]) -> domain.Lead | None:
    """Take a qualified lead from marketing, once; other marketing events are not sales' concern."""
    if not isinstance(event, LeadQualifiedEvent):
        return None

    async def work(uow: UnitOfWork) -> domain.Lead:
        lead = domain.take_lead(event.data, event.time)
        await repository.save_lead(uow, lead)
        return lead

    return await store.transaction(work, applies=f"sales:{event.id}")


async def find_order(store: Store, order_id: str) -> domain.Order | None:
    doc = await store.db[repository.ORDERS].find_one({"_id": order_id})
    return repository.from_document(doc) if doc else None
