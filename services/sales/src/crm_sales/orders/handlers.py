"""Use cases of sales: apply an order fact, from the ingest topic or the API, exactly once; take, read and
assign leads, each person only the leads they see."""

from collections.abc import Mapping, Sequence
from typing import Any

from pymongo import ReturnDocument

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
from crm_shared.security import OWNED, Principal
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
    raise Rejected(f"sales does not handle events of type {event.type}")


_OUTGOING: dict[type, type[CloudEvent[Any]]] = {
    OrderPlaced: OrderPlacedEvent,
    OrderPaid: OrderPaidEvent,
    OrderRefunded: OrderRefundedEvent,
    OrderCancelled: OrderCancelledEvent,
}


CONSUMER = "sales"


async def apply_order_events(store: Store, events: Sequence[CloudEvent[Any]], rates: ExchangeRates) -> BatchOutcome:
    """Store each fact and publish it on crm.sales.events, the batch in one transaction; a redelivered event
    changes nothing. A fact in a currency `rates` does not know is rejected with CurrencyNotAccepted, one the
    order contradicts with Rejected; the others are applied."""

    async def work(uow: UnitOfWork, batch: Batch[CloudEvent[Any]]) -> None:
        orders = await repository.get_orders(uow, (e.data.order_id for e in batch.events))
        changed: dict[str, domain.Order] = {}
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
            orders[order_id] = changed[order_id] = after
            outgoing = _OUTGOING[type(event.data)]
            # The business time stays the channel's; the id is derived so a retry emits the same event.
            uow.emit(
                outgoing.create(
                    event.data, source=SOURCE, id=derived_event_id(SOURCE, event.id), time=event.time, cause=event
                ),
                Topic.SALES_EVENTS,
            )
        await repository.save_orders(uow, changed.values())

    return await store.apply_batch(CONSUMER, events, work)


async def apply_order_event(store: Store, event: CloudEvent[Any], rates: ExchangeRates) -> domain.Order:
    """One fact (the API): the order after it; raises AlreadyApplied, CurrencyNotAccepted or Rejected."""
    order: domain.Order = (await apply_order_events(store, [event], rates)).result_of(event)
    return order


async def apply_marketing_events(store: Store, events: Sequence[CloudEvent[Any]]) -> BatchOutcome:
    """Take the qualified leads from marketing, once each; other marketing events are not sales' concern."""

    async def work(uow: UnitOfWork, batch: Batch[CloudEvent[Any]]) -> None:
        leads = [domain.take_lead(event.data, event.time) for event in batch.events]
        for event, lead in zip(batch.events, leads, strict=True):
            batch.done(event, lead)
        await repository.save_leads(uow, leads)

    return await store.apply_batch(CONSUMER, events, work, relevant=lambda event: isinstance(event, LeadQualifiedEvent))


async def apply_marketing_event(store: Store, event: CloudEvent[Any]) -> domain.Lead | None:
    """One marketing event: the lead taken, None for another event type; raises AlreadyApplied."""
    lead: domain.Lead | None = (await apply_marketing_events(store, [event])).result_of(event)
    return lead


async def find_order(store: Store, order_id: str) -> domain.Order | None:
    doc = await store.db[repository.ORDERS].find_one({"_id": order_id})
    return repository.from_document(doc) if doc else None


LEAD_ACCESS = OWNED
"""A person sees the leads they own, those their team owns and those of their territories; API keys and those
who see every record see every lead (the unassigned ones marketing hands over included)."""

LEAD_CHANGES = frozenset({"owner_id", "territory", "status"})
"""What a person may change on a lead."""


def leads_seen_by(principal: Principal, query: dict[str, Any]) -> dict[str, Any]:
    """`query` narrowed to the leads `principal` sees."""
    return LEAD_ACCESS.restrict(principal, query)


async def find_lead(store: Store, lead_id: str, *, seen_by: Principal) -> domain.Lead | None:
    """The lead, or None when there is none the principal sees (missing and hidden look the same)."""
    doc = await store.db[repository.LEADS].find_one(leads_seen_by(seen_by, {"_id": lead_id}))
    return repository.lead_from_document(doc) if doc else None


async def change_lead(
    store: Store, lead_id: str, changes: Mapping[str, str | None], *, seen_by: Principal
) -> domain.Lead | None:
    """Set `changes` (owner_id, territory, status) on a lead the principal sees, checked and written in one
    atomic update; None when there is no such lead for them. A lead has one status yet ("new"), so there is no
    transition to check."""
    unknown = set(changes) - LEAD_CHANGES
    if unknown or not changes:
        raise ValueError(f"a lead change sets some of {sorted(LEAD_CHANGES)}, got {sorted(changes)}")
    doc = await store.db[repository.LEADS].find_one_and_update(
        leads_seen_by(seen_by, {"_id": lead_id}), {"$set": dict(changes)}, return_document=ReturnDocument.AFTER
    )
    return repository.lead_from_document(doc) if doc else None
