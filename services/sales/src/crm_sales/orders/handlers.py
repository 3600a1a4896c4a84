"""Use cases of sales: apply an order fact, from the ingest topic or the API, exactly once; take, read and
assign leads, each person only the leads they see."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from crm_sales.orders import domain, repository
from crm_shared import identity
from crm_shared.consumer import Rejected
from crm_shared.events import (
    CloudEvent,
    OrderCancelled,
    OrderCancelledEvent,
    OrderFulfilled,
    OrderFulfilledEvent,
    OrderPaid,
    OrderPaidEvent,
    OrderPlaced,
    OrderPlacedEvent,
    OrderRefunded,
    OrderRefundedEvent,
    derived_event_id,
)
from crm_shared.money import ExchangeRates
from crm_shared.store import Batch, BatchOutcome, Store, UnitOfWork
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
    if isinstance(data, OrderFulfilled):
        return domain.fulfil(order, data, event.id, event.time)
    raise Rejected(f"sales does not handle events of type {event.type}")


_OUTGOING: dict[type, type[CloudEvent[Any]]] = {
    OrderPlaced: OrderPlacedEvent,
    OrderPaid: OrderPaidEvent,
    OrderRefunded: OrderRefundedEvent,
    OrderCancelled: OrderCancelledEvent,
    OrderFulfilled: OrderFulfilledEvent,
}


CONSUMER = "sales"


async def apply_order_events(store: Store, events: Sequence[CloudEvent[Any]], rates: ExchangeRates) -> BatchOutcome:
    """Store each fact and publish it on crm.sales.events, the batch in one transaction; a redelivered event
    changes nothing. A fact in a currency `rates` does not know is rejected with CurrencyNotAccepted, one the
    order contradicts with Rejected; the others are applied."""

    async def work(uow: UnitOfWork, batch: Batch[CloudEvent[Any]]) -> None:
        orders = await repository.get_orders(uow, (e.data.order_id for e in batch.events))
        changed: dict[str, domain.Order] = {}
        origins: dict[str, dict[str, str]] = {}
        for event in batch.events:
            order_id = event.data.order_id
            before = orders.get(order_id)
            try:
                _check_priced(event, rates)
                after = _apply(before, event)
            except domain.OrderRejected as exc:
                batch.reject(event, Rejected(str(exc)))
                continue
            except Rejected as exc:
                batch.reject(event, exc)
                continue
            batch.done(event, after)
            if after == before:
                continue
            if before is None:
                # Filed under a survivor for an event naming a merged id: an unmerge gives the order back.
                origins[order_id] = identity.origin_fields(event)
            orders[order_id] = changed[order_id] = after
            outgoing = _OUTGOING[type(event.data)]
            # The business time stays the channel's; the id is derived so a retry emits the same event.
            uow.emit(
                outgoing.create(
                    event.data, source=SOURCE, id=derived_event_id(SOURCE, event.id), time=event.time, cause=event
                ),
                Topic.SALES_EVENTS,
            )
        await repository.save_orders(uow, changed.values(), origins)

    return await store.apply_batch(CONSUMER, events, work)


async def place_in(
    uow: UnitOfWork,
    placed: OrderPlaced,
    *,
    at: datetime,
    event_id: str,
    attribution: domain.Attribution | None = None,
    cause: CloudEvent[Any] | None = None,
) -> domain.Order:
    """Place an order inside another use case's unit of work (a won opportunity, an accepted quote): stored,
    and published on crm.sales.events as crm.order.placed.v1 with id `event_id` (derive it from the command, so
    a retry emits the same event). Placing the same order again with the same content changes nothing and emits
    nothing; raises domain.OrderRejected when the order id is taken by other content. The caller checks the
    currency against the rate table (`check_currency`) before it writes anything."""
    before = (await repository.get_orders(uow, [placed.order_id])).get(placed.order_id)
    after = domain.place(before, placed, at, attribution)
    if after != before:
        await repository.save_orders(uow, [after])
        uow.emit(OrderPlacedEvent.create(placed, source=SOURCE, id=event_id, time=at, cause=cause), Topic.SALES_EVENTS)
    return after


def check_currency(currency: str, rates: ExchangeRates) -> None:
    """Raise CurrencyNotAccepted when scoring could not value an order in `currency`."""
    if not rates.knows(currency):
        raise CurrencyNotAccepted(rates.unknown_currency_reason(currency), rates.currencies)


async def apply_order_event(store: Store, event: CloudEvent[Any], rates: ExchangeRates) -> domain.Order:
    """One fact (the API): the order after it; raises AlreadyApplied, CurrencyNotAccepted or Rejected."""
    order: domain.Order = (await apply_order_events(store, [event], rates)).result_of(event)
    return order


async def find_order(store: Store, order_id: str) -> domain.Order | None:
    doc = await store.db[repository.ORDERS].find_one({"_id": order_id})
    return repository.from_document(doc) if doc else None
