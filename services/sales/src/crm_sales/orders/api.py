"""REST API of sales: the same payloads as the ingest topic, plus reads; leads seen and assigned row by row."""

from collections.abc import Awaitable
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Depends, Request, Response, status
from pydantic import BaseModel, Field

from crm_sales.orders import domain, handlers, repository
from crm_sales.settings import sales_settings
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
from crm_shared.events import OrderIngest, OrderLine, OrderPlaced, OrderPlacedEvent
from crm_shared.money import ExchangeRates
from crm_shared.problems import Problem
from crm_shared.security import Principal, check_event_type, requires
from crm_shared.service import StoreDep, get_runtime

T = TypeVar("T")

router = APIRouter(prefix="/v1", tags=["orders"])


def get_rates(request: Request) -> ExchangeRates:
    return sales_settings(get_runtime(request).settings).rate_table


RatesDep = Annotated[ExchangeRates, Depends(get_rates)]
EventWriter = Annotated[Principal, requires("events:write")]
LeadReader = Annotated[Principal, requires("leads:read")]
LeadWriter = Annotated[Principal, requires("leads:write")]


async def priced(applying: Awaitable[T]) -> T:
    """A currency with no exchange rate is an invalid request (422), not a conflict with a known order (409)."""
    try:
        return await applying
    except handlers.CurrencyNotAccepted as exc:
        raise Problem(422, "Currency not accepted", str(exc), accepted_currencies=list(exc.accepted)) from exc


CURRENCY_NOT_ACCEPTED = {
    "description": "Invalid, or in a currency the platform's rate table has no rate for (CRM_EXCHANGE_RATES): "
    "the problem lists the accepted_currencies"
}


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
