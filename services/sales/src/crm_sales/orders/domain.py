"""Orders as the facts sales has seen about them. Pure: no I/O, no framework.

An order is kept as the facts that arrived (placed, payments, refunds, cancellation), so the facts
can arrive in any order: a payment that comes before its order is kept and counts once the order
is there. The status is derived from the facts, never stored on its own.

An order and its payments and refunds share one currency: sales never adds amounts of two currencies.
A payment or refund in another currency than its order's is refused; one kept before its order fixes the
currency the order must be in, so an order placed later in another currency is refused (like an order
whose total is below the refunds already kept for it), and the payment or refund stays awaiting its order.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Literal

from crm_shared.events import OrderCancelled, OrderFulfilled, OrderPaid, OrderPlaced, OrderRefunded

OrderStatus = Literal["awaiting_order", "placed", "paid", "fulfilled", "partially_refunded", "refunded", "cancelled"]


class OrderRejected(Exception):
    """The fact contradicts what sales already knows about the order."""


@dataclass(frozen=True)
class MoneyFact:
    """A payment or a refund. `currency` is None only for one recorded before sales kept currencies: it is in
    its order's currency, whatever that is."""

    event_id: str
    amount: Decimal
    at: datetime
    currency: str | None


@dataclass(frozen=True)
class Shipment:
    """A fulfilment fact: the order (or part of it) shipped or handed over, and where to track it. Later facts
    of the same order are the tracking steps (a new location, a second parcel)."""

    event_id: str
    at: datetime
    carrier: str | None = None
    tracking_number: str | None = None
    location: str | None = None


@dataclass(frozen=True)
class Attribution:
    """Who sold the order and what it came from, for forecasts and commissions: set when sales itself places
    the order (a won opportunity, an accepted quote); a channel's order has none."""

    owner_id: str | None = None
    territory: str | None = None
    opportunity_id: str | None = None
    quote_id: str | None = None


@dataclass(frozen=True)
class Order:
    order_id: str
    customer_id: str
    placed: OrderPlaced | None = None
    placed_at: datetime | None = None
    payments: tuple[MoneyFact, ...] = field(default_factory=tuple)
    refunds: tuple[MoneyFact, ...] = field(default_factory=tuple)
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None
    attribution: Attribution | None = None
    shipments: tuple[Shipment, ...] = field(default_factory=tuple)

    @property
    def currency(self) -> str | None:
        """The order's currency; before the order arrives, that of the payments and refunds kept for it."""
        if self.placed is not None:
            return self.placed.currency
        return next((f.currency for _, f in self.money_facts if f.currency is not None), None)

    @property
    def money_facts(self) -> tuple[tuple[str, MoneyFact], ...]:
        """The payments and refunds, each with what it is ("payment" or "refund")."""
        return (*(("payment", p) for p in self.payments), *(("refund", r) for r in self.refunds))

    @property
    def total(self) -> Decimal | None:
        return self.placed.total if self.placed else None

    @property
    def paid(self) -> Decimal:
        return sum((p.amount for p in self.payments), Decimal(0))

    @property
    def refunded(self) -> Decimal:
        return sum((r.amount for r in self.refunds), Decimal(0))

    @property
    def status(self) -> OrderStatus:
        if self.cancelled_at is not None:
            return "cancelled"
        if self.placed is None:
            return "awaiting_order"
        if self.refunds and self.refunded >= self.placed.total:
            return "refunded"
        if self.refunded > 0:
            return "partially_refunded"
        if self.shipments:
            return "fulfilled"
        if self.payments and self.paid >= self.placed.total:
            return "paid"
        return "placed"


def _check_customer(order: Order, customer_id: str) -> None:
    if order.customer_id != customer_id:
        raise OrderRejected(f"order {order.order_id} belongs to customer {order.customer_id}, not {customer_id}")


def place(order: Order | None, fact: OrderPlaced, at: datetime, attribution: Attribution | None = None) -> Order:
    """Record the order. Placing the same order again with the same content is a no-op."""
    if order is None:
        order = Order(order_id=fact.order_id, customer_id=fact.customer_id)
    if attribution is not None and order.placed is None:
        order = replace(order, attribution=attribution)
    _check_customer(order, fact.customer_id)
    if order.placed is not None:
        if order.placed != fact:
            raise OrderRejected(f"order {fact.order_id} was already placed with different content")
        return order
    for what, kept in order.money_facts:
        if kept.currency is not None and kept.currency != fact.currency:
            raise OrderRejected(
                f"order {fact.order_id} in {fact.currency} refused: a {what} of {kept.amount} {kept.currency} "
                f"(event {kept.event_id}) was kept for it before it arrived, and an order and its payments and "
                "refunds must be in one currency"
            )
    if order.refunds and sum((r.amount for r in order.refunds), Decimal(0)) > fact.total:
        raise OrderRejected(f"order {fact.order_id}: refunds already recorded exceed its total {fact.total}")
    return replace(
        order,
        placed=fact,
        placed_at=at,
        payments=_in_currency(order.payments, fact.currency),
        refunds=_in_currency(order.refunds, fact.currency),
    )


def _in_currency(facts: tuple[MoneyFact, ...], currency: str) -> tuple[MoneyFact, ...]:
    """The facts recorded without a currency are in their order's: once it is known, they say so."""
    return tuple(f if f.currency is not None else replace(f, currency=currency) for f in facts)


def _check_currency(order: Order, what: str, amount: Decimal, currency: str) -> None:
    if order.placed is not None:
        if currency != order.placed.currency:
            raise OrderRejected(
                f"{what} of {amount} {currency} on order {order.order_id} refused: the order is in "
                f"{order.placed.currency}, and a {what} must be in its order's currency"
            )
        return
    kept = order.currency
    if kept is not None and currency != kept:
        raise OrderRejected(
            f"{what} of {amount} {currency} on order {order.order_id} refused: the payments and refunds kept for "
            f"it until the order arrives are in {kept}, and a {what} must be in its order's currency"
        )


def pay(order: Order | None, fact: OrderPaid, event_id: str, at: datetime) -> Order:
    if order is None:
        order = Order(order_id=fact.order_id, customer_id=fact.customer_id)
    _check_customer(order, fact.customer_id)
    _check_currency(order, "payment", fact.amount, fact.currency)
    return replace(order, payments=(*order.payments, MoneyFact(event_id, fact.amount, at, fact.currency)))


def refund(order: Order | None, fact: OrderRefunded, event_id: str, at: datetime) -> Order:
    if order is None:
        order = Order(order_id=fact.order_id, customer_id=fact.customer_id)
    _check_customer(order, fact.customer_id)
    _check_currency(order, "refund", fact.amount, fact.currency)
    if order.placed is not None and order.refunded + fact.amount > order.placed.total:
        raise OrderRejected(
            f"refund of {fact.amount} {fact.currency} on order {fact.order_id} would exceed its total "
            f"{order.placed.total} {order.placed.currency} (already refunded {order.refunded})"
        )
    return replace(order, refunds=(*order.refunds, MoneyFact(event_id, fact.amount, at, fact.currency)))


def cancel(order: Order | None, fact: OrderCancelled, at: datetime) -> Order:
    if order is None:
        order = Order(order_id=fact.order_id, customer_id=fact.customer_id)
    _check_customer(order, fact.customer_id)
    if order.cancelled_at is not None:
        return order
    return replace(order, cancelled_at=at, cancel_reason=fact.reason)


def fulfil(order: Order | None, fact: OrderFulfilled, event_id: str, at: datetime) -> Order:
    """Record a fulfilment (or a tracking step of one). Like a payment it may arrive before its order; a cancelled
    order is not fulfilled."""
    if order is None:
        order = Order(order_id=fact.order_id, customer_id=fact.customer_id)
    _check_customer(order, fact.customer_id)
    if order.cancelled_at is not None:
        raise OrderRejected(f"order {fact.order_id} is cancelled: a cancelled order is not fulfilled")
    shipment = Shipment(event_id, at, fact.carrier, fact.tracking_number, fact.location)
    return replace(order, shipments=(*order.shipments, shipment))
