"""REST API of sales: the same payloads as the ingest topic, plus reads; leads seen and assigned row by row."""

from collections.abc import Awaitable
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Depends, Request, Response, status
from pydantic import BaseModel, Field

from crm_sales.orders import domain, handlers, repository
from crm_sales.web import currency_not_accepted, rates_of
from crm_shared.api import (
    Accepted,
    Cursor,
    IdempotencyKey,
    IdInPath,
    Limit,
    Page,
    accept_event,
    command_event_id,
    cursor_id,
    decode_cursor,
    encode_cursor,
    record_once,
)
from crm_shared.events import (
    Line,
    OrderFulfilled,
    OrderFulfilledEvent,
    OrderIngest,
    OrderLine,
    OrderPlaced,
    OrderPlacedEvent,
)
from crm_shared.money import ExchangeRates
from crm_shared.problems import Problem
from crm_shared.security import Principal, check_event_type, requires
from crm_shared.service import StoreDep
from crm_shared.store import AlreadyApplied, Rejected

T = TypeVar("T")

router = APIRouter(prefix="/v1", tags=["orders"])


RatesDep = Annotated[ExchangeRates, Depends(rates_of)]
EventWriter = Annotated[Principal, requires("events:write")]
LeadReader = Annotated[Principal, requires("leads:read")]
LeadWriter = Annotated[Principal, requires("leads:write")]


async def priced(applying: Awaitable[T]) -> T:
    """A currency with no exchange rate is an invalid request (422), not a conflict with a known order (409)."""
    try:
        return await applying
    except handlers.CurrencyNotAccepted as exc:
        raise currency_not_accepted(exc) from exc


CURRENCY_NOT_ACCEPTED = {
    "description": "Invalid, or in a currency the platform's rate table has no rate for (CRM_EXCHANGE_RATES): "
    "the problem lists the accepted_currencies"
}


class TrackingStep(BaseModel):
    at: datetime = Field(description="When it was shipped, handed over, or seen there.")
    carrier: str | None
    tracking_number: str | None
    location: str | None = Field(description="Where the order is, in words.")


class OrderView(BaseModel):
    order_id: str
    customer_id: str
    status: domain.OrderStatus
    currency: str | None = Field(
        description="The order's currency, which its payments and refunds are in too; before the order arrives, "
        "that of the payments and refunds kept for it."
    )
    total: Decimal | None
    paid: Decimal
    refunded: Decimal
    placed_at: datetime | None
    channel: str | None
    lines: list[OrderLine]
    owner_id: str | None = Field(description="Who sold it, when sales placed it (a won opportunity, a quote).")
    opportunity_id: str | None
    quote_id: str | None
    fulfilled_at: datetime | None = Field(description="The first fulfilment; null until the order is fulfilled.")
    tracking: list[TrackingStep] = Field(description="Every fulfilment fact, oldest first: where the order is.")

    @classmethod
    def of(cls, order: domain.Order) -> "OrderView":
        placed = order.placed
        return cls(
            order_id=order.order_id,
            customer_id=order.customer_id,
            status=order.status,
            currency=order.currency,
            total=placed.total if placed else None,
            paid=order.paid,
            refunded=order.refunded,
            placed_at=order.placed_at,
            channel=placed.channel if placed else None,
            lines=list(placed.lines) if placed else [],
            owner_id=order.attribution.owner_id if order.attribution else None,
            opportunity_id=order.attribution.opportunity_id if order.attribution else None,
            quote_id=order.attribution.quote_id if order.attribution else None,
            fulfilled_at=order.shipments[0].at if order.shipments else None,
            tracking=[
                TrackingStep(at=s.at, carrier=s.carrier, tracking_number=s.tracking_number, location=s.location)
                for s in sorted(order.shipments, key=lambda s: s.at)
            ],
        )


ORDER_EXAMPLE = {
    "order_id": "O-5001",
    "customer_id": "C-1001",
    "currency": "EUR",
    "total": "1250.00",
    "lines": [{"sku": "ATM-200", "quantity": 1, "unit_price": "1250.00"}],
    "channel": "web",
}


@router.post(
    "/orders",
    response_model=OrderView,
    status_code=status.HTTP_201_CREATED,
    summary="Place an order (same payload as crm.order.placed.v1 data)",
    dependencies=[requires("orders:write")],
    responses={
        200: {"description": "Already placed with this content"},
        409: {"description": "Conflict"},
        422: CURRENCY_NOT_ACCEPTED,
    },
)
async def place_order(
    store: StoreDep,
    rates: RatesDep,
    response: Response,
    order: Annotated[OrderPlaced, Body(examples=[ORDER_EXAMPLE])],
    idempotency_key: IdempotencyKey = None,
) -> OrderView:
    event = OrderPlacedEvent.create(
        order, source="/crm/sales/api", id=command_event_id("sales/orders", idempotency_key)
    )

    async def placing() -> tuple[domain.Order, bool]:
        placed = await priced(handlers.apply_order_event(store, event, rates))
        return placed, placed.placed_at is None or placed.placed_at == event.time

    async def same_order() -> domain.Order | None:
        existing = await handlers.find_order(store, order.order_id)
        return existing if existing is not None and existing.placed == order else None

    return OrderView.of(
        await record_once(
            response, what="order", conflict="Order conflict", recording=placing(), existing_if_same=same_order
        )
    )


@router.post(
    "/events",
    response_model=Accepted,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Submit an order CloudEvent, exactly as on crm.ingest.orders",
    description="An API key limited to some event types is refused (403) the others.",
    responses={409: {"description": "The event contradicts a known order"}, 422: CURRENCY_NOT_ACCEPTED},
)
async def submit_event(
    request: Request, principal: EventWriter, store: StoreDep, rates: RatesDep, event: Annotated[OrderIngest, Body()]
) -> Accepted:
    check_event_type(request, principal, event.type)
    return await accept_event(event.id, priced(handlers.apply_order_event(store, event, rates)))


@router.get(
    "/orders/{order_id}",
    response_model=OrderView,
    summary="One order and its status",
    dependencies=[requires("orders:read")],
    responses={404: {"description": "No such order"}},
)
async def get_order(store: StoreDep, order_id: IdInPath) -> OrderView:
    order = await handlers.find_order(store, order_id)
    if order is None:
        raise Problem(404, "Order not found", f"no order {order_id}")
    return OrderView.of(order)


class FulfilmentBody(BaseModel):
    """A fulfilment, or a tracking step of one: at least one field."""

    carrier: Line | None = Field(default=None, min_length=1, max_length=100)
    tracking_number: Line | None = Field(default=None, min_length=1, max_length=100)
    location: Line | None = Field(default=None, min_length=1, max_length=200)


@router.post(
    "/orders/{order_id}/fulfilments",
    response_model=OrderView,
    summary="Record that an order was shipped or handed over, or where it is now (crm.order.fulfilled.v1)",
    description="Each call is a tracking step (an Idempotency-Key records it once); the order's status becomes "
    "`fulfilled` unless it is refunded. The same fact may come from a channel on crm.ingest.orders.",
    dependencies=[requires("orders:write")],
    responses={404: {"description": "No such order"}, 409: {"description": "The order is cancelled"}},
)
async def fulfil_order(
    store: StoreDep,
    rates: RatesDep,
    order_id: IdInPath,
    body: Annotated[
        FulfilmentBody, Body(examples=[{"carrier": "DHL", "tracking_number": "JD0146", "location": "Depot"}])
    ],
    idempotency_key: IdempotencyKey = None,
) -> OrderView:
    order = await handlers.find_order(store, order_id)
    if order is None or order.placed is None:
        raise Problem(404, "Order not found", f"no order {order_id}")
    fact = OrderFulfilled(customer_id=order.customer_id, order_id=order_id, **body.model_dump())
    event = OrderFulfilledEvent.create(
        fact, source="/crm/sales/api", id=command_event_id(f"sales/orders/{order_id}/fulfilments", idempotency_key)
    )
    try:
        return OrderView.of(await priced(handlers.apply_order_event(store, event, rates)))
    except AlreadyApplied:
        again = await handlers.find_order(store, order_id)
        assert again is not None
        return OrderView.of(again)
    except Rejected as exc:
        raise Problem(409, "Order conflict", str(exc)) from exc


@router.get(
    "/customers/{customer_id}/orders",
    response_model=Page[OrderView],
    summary="A customer's orders, newest first",
    dependencies=[requires("orders:read")],
)
async def customer_orders(
    store: StoreDep, customer_id: IdInPath, limit: Limit = 50, cursor: Cursor = None
) -> Page[OrderView]:
    query: dict[str, Any] = {"customer_id": customer_id}
    after = decode_cursor(cursor)
    if after is not None:
        query["_id"] = {"$lt": cursor_id(after, "order_id")}
    docs = await store.db[repository.ORDERS].find(query).sort("_id", -1).limit(limit + 1).to_list(limit + 1)
    orders = [OrderView.of(repository.from_document(d)) for d in docs[:limit]]
    next_cursor = encode_cursor({"order_id": orders[-1].order_id}) if len(docs) > limit else None
    return Page[OrderView](items=orders, next_cursor=next_cursor)
