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
from crm_shared.money import ExchangeRates
from crm_shared.store import Store, UnitOfWork
from crm_shared.topics import Topic

SOURCE = "/crm/sales"


class CurrencyNotAccepted(Rejected):
    """The fact is in a currency the platform's rate table has no rate for: scoring could not score it."""

    def __init__(self, reason: str, accepted: tuple[str, ...]) -> None:
        super().__init__(reason)
        self.accepted = accepted


def _check_priced(event: CloudEvent[Any], rates: ExchangeRates) -> None:
    data = event.data
    if isinstance(data, OrderPlaced | OrderPaid | OrderRefunded) and not rates.knows(data.currency):
        what = {OrderPlaced: "order", OrderPaid: "payment on order", OrderRefunded: "refund on order"}[type(data)]
        raise CurrencyNotAccepted(
            f"{what} {data.order_id} refused: {rates.unknown_currency_reason(data.currency)}", rates.currencies
        )


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


async def apply_order_event(store: Store, event: CloudEvent[Any], rates: ExchangeRates) -> domain.Order:
    """Store the fact and publish it on crm.sales.events; a redelivered event changes nothing. A fact in a
    currency `rates` does not know raises CurrencyNotAccepted, one the order contradicts raises Rejected."""

    async def work(uow: UnitOfWork) -> domain.Order:
        # Inside the transaction, after the duplicate check: a redelivery stays a duplicate.
        _check_priced(event, rates)
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
