"""REST API of price books and quotes."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Self, TypeVar

from fastapi import APIRouter, Body, Query, Request, Response, status
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator

from crm_sales.orders import handlers as orders
from crm_sales.quotes import domain, handlers, pricing, repository
from crm_sales.web import currency_not_accepted, rates_of
from crm_shared.api import (
    Cursor,
    IdempotencyKey,
    IdInPath,
    Limit,
    Page,
    command_event_id,
    cursor_id,
    decode_cursor,
    encode_cursor,
    keyset_page,
)
from crm_shared.events import Channel, Currency, CustomerId, EntityId, Line, Money, Text, utc_now
from crm_shared.problems import Problem
from crm_shared.security import Principal, requires
from crm_shared.service import StoreDep

T = TypeVar("T")

router = APIRouter(prefix="/v1", tags=["quotes"])

QuoteReader = Annotated[Principal, requires("quotes:read")]
QuoteWriter = Annotated[Principal, requires("quotes:write")]


def _percent(value: Any) -> Decimal:
    """A percent as a decimal string ("12.5") or a whole JSON number (12): a fraction in a JSON number has already
    been rounded by the parser."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise ValueError('a percent is a decimal string such as "12.5", or a whole number')
    try:
        percent = Decimal(str(value).strip() if isinstance(value, str) else value)
    except ArithmeticError as exc:
        raise ValueError(f"not a percent: {str(value)[:40]!r}") from exc
    if not percent.is_finite() or not 0 <= percent <= 100 or percent != percent.quantize(Decimal("0.01")):
        raise ValueError(f"a percent is from 0 to 100 with at most 2 decimal places, got {str(value)[:40]}")
    return percent


Percent = Annotated[
    Decimal,
    BeforeValidator(_percent),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^[0-9]{1,3}(\.[0-9]{1,2})?$"},
                {"type": "integer", "minimum": 0, "maximum": 100},
            ],
            "description": "A percent from 0 to 100, at most 2 decimal places.",
            "examples": ["10"],
        }
    ),
]
Label = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]*$")]
"""A segment or value tier name."""


# ---------------------------------------------------------------- price books


class QuantityBreakBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_quantity: int = Field(ge=2, le=1_000_000, description="From this many units on (the list price is for 1).")
    unit_price: Money


class PriceEntryBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: EntityId
    unit_price: Money
    unit_cost: Money | None = None
    breaks: list[QuantityBreakBody] = Field(
        default_factory=list,
        max_length=20,
        description="The highest break at or below the quantity applies; a break never raises the unit price.",
    )

    def entry(self) -> pricing.PriceEntry:
        return pricing.PriceEntry(
            sku=self.sku,
            unit_price=self.unit_price,
            unit_cost=self.unit_cost,
            breaks=tuple(
                pricing.QuantityBreak(b.min_quantity, b.unit_price) for b in sorted(self.breaks, key=_by_quantity)
            ),
        )

    @model_validator(mode="after")
    def _breaks_lower_the_price(self) -> Self:
        pricing.check_breaks(self.entry())
        return self


def _by_quantity(b: QuantityBreakBody) -> int:
    return b.min_quantity


class DiscountCaps(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rep: Percent = Field(default=Decimal(10), description="The highest discount a rep may give, in percent.")
    manager: Percent = Field(
        default=Decimal(25), description="The highest discount a manager (a token naming a team) may give."
    )


class PriceBookBody(BaseModel):
    """A price book. A product it does not list is priced by its parent (recursively)."""

    model_config = ConfigDict(extra="forbid")

    name: Line = Field(min_length=1, max_length=200)
    currency: Currency
    parent_id: EntityId | None = Field(default=None, description="The book it inherits from, in the same currency.")
    segment: Label | None = Field(default=None, description="The customer segment it is for; null for any.")
    value_tier: Label | None = Field(default=None, description="The value tier it is for; null for any.")
    valid_from: date
    valid_to: date | None = Field(default=None, description="The last day it applies; null for open-ended.")
    entries: list[PriceEntryBody] = Field(default_factory=list, max_length=5000)
    discount_caps: DiscountCaps = Field(default_factory=DiscountCaps, description="Per role; admin is unlimited.")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.valid_to is not None and self.valid_to < self.valid_from:
            raise ValueError(f"valid_to {self.valid_to} is before valid_from {self.valid_from}")
        skus = [e.sku for e in self.entries]
        repeated = sorted({s for s in skus if skus.count(s) > 1})
        if repeated:
            raise ValueError(f"each sku is listed once; repeated: {', '.join(repeated)}")
        return self

    def book(self, book_id: str) -> pricing.PriceBook:
        return pricing.PriceBook(
            book_id=book_id,
            name=self.name,
            currency=self.currency,
            valid_from=self.valid_from,
            valid_to=self.valid_to,
            parent_id=self.parent_id,
            segment=self.segment,
            value_tier=self.value_tier,
            entries=tuple(e.entry() for e in self.entries),
            discount_caps={"rep": self.discount_caps.rep, "manager": self.discount_caps.manager},
        )


class PriceBookView(PriceBookBody):
    book_id: str

    @classmethod
    def of(cls, book: pricing.PriceBook) -> PriceBookView:
        return cls(
            book_id=book.book_id,
            name=book.name,
            currency=book.currency,
            parent_id=book.parent_id,
            segment=book.segment,
            value_tier=book.value_tier,
            valid_from=book.valid_from,
            valid_to=book.valid_to,
            entries=[
                PriceEntryBody(
                    sku=e.sku,
                    unit_price=e.unit_price,
                    unit_cost=e.unit_cost,
                    breaks=[QuantityBreakBody(min_quantity=b.min_quantity, unit_price=b.unit_price) for b in e.breaks],
                )
                for e in book.entries
            ],
            discount_caps=DiscountCaps(
                rep=book.discount_caps.get("rep", Decimal(0)), manager=book.discount_caps.get("manager", Decimal(0))
            ),
        )


PRICE_BOOK_EXAMPLE = {
    "name": "Wholesale, high value",
    "currency": "EUR",
    "parent_id": "list-eur",
    "segment": "wholesale",
    "value_tier": "high_value",
    "valid_from": "2026-01-01",
    "valid_to": "2026-12-31",
    "entries": [
        {
            "sku": "ATM-200",
            "unit_price": "1200.00",
            "unit_cost": "800.00",
            "breaks": [{"min_quantity": 10, "unit_price": "1100.00"}],
        }
    ],
    "discount_caps": {"rep": "10", "manager": "25"},
}


def _refused(exc: pricing.PriceBookRefused) -> Problem:
    return Problem(422, "Price book refused", str(exc))


@router.put(
    "/price-books/{book_id}",
    response_model=PriceBookView,
    status_code=status.HTTP_201_CREATED,
    summary="Create or replace a price book",
    description="A parent must exist, be in the same currency and not make a cycle.",
    responses={200: {"description": "Replaced"}, 422: {"description": "Invalid, or a missing or cyclic parent"}},
)
async def put_price_book(
    principal: QuoteWriter,
    store: StoreDep,
    response: Response,
    book_id: IdInPath,
    body: Annotated[PriceBookBody, Body(examples=[PRICE_BOOK_EXAMPLE])],
) -> PriceBookView:
    book = body.book(book_id)
    try:
        created = await handlers.put_price_book(store, book)
    except pricing.PriceBookRefused as exc:
        raise _refused(exc) from exc
    if not created:
        response.status_code = status.HTTP_200_OK
    return PriceBookView.of(book)


@router.get(
    "/price-books/{book_id}",
    response_model=PriceBookView,
    summary="One price book",
    responses={404: {"description": "No such price book"}},
)
async def get_price_book(principal: QuoteReader, store: StoreDep, book_id: IdInPath) -> PriceBookView:
    book = await handlers.find_price_book(store, book_id)
    if book is None:
        raise Problem(404, "Price book not found", f"no price book {book_id}")
    return PriceBookView.of(book)


@router.get("/price-books", response_model=Page[PriceBookView], summary="Price books, by id")
async def price_books(
    principal: QuoteReader,
    store: StoreDep,
    currency: Annotated[Currency | None, Query()] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[PriceBookView]:
    query: dict[str, Any] = {"currency": currency} if currency else {}
    after = decode_cursor(cursor)
    if after is not None:
        query["_id"] = {"$gt": cursor_id(after)}
    docs = await store.db[repository.PRICE_BOOKS].find(query).sort("_id", 1).limit(limit + 1).to_list(limit + 1)
    books = [PriceBookView.of(repository.book_from_document(d)) for d in docs[:limit]]
    next_cursor = encode_cursor({"id": books[-1].book_id}) if len(docs) > limit else None
    return Page[PriceBookView](items=books, next_cursor=next_cursor)


class PriceView(BaseModel):
    sku: str
    quantity: int
    currency: str
    unit_price: Decimal
    unit_cost: Decimal | None
    price_book_id: str = Field(description="The book the quote would be priced on.")
    reason: str = Field(description="Why that book: given, or the most specific one that applies.")
    supplied_by: str = Field(description="The book that lists the product: that book or one of its ancestors.")
    chain: list[str] = Field(description="The books looked in, from price_book_id to supplied_by.")


@router.get(
    "/prices",
    response_model=PriceView,
    summary="The unit price of a product for a customer, and the price books it came from",
    responses={422: {"description": "No book applies, or none of its chain lists the product"}},
)
async def resolve_price(
    principal: QuoteReader,
    store: StoreDep,
    sku: Annotated[EntityId, Query()],
    currency: Annotated[Currency, Query()],
    quantity: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    on: Annotated[date | None, Query(description="The day; today by default.")] = None,
    segment: Annotated[Label | None, Query()] = None,
    value_tier: Annotated[Label | None, Query()] = None,
    price_book_id: Annotated[EntityId | None, Query()] = None,
) -> PriceView:
    day = on or utc_now().date()
    try:
        choice, found = await handlers.resolve_price(
            store,
            sku=sku,
            quantity=quantity,
            currency=currency,
            day=day,
            segment=segment,
            value_tier=value_tier,
            price_book_id=price_book_id,
        )
    except handlers.QuoteInvalid as exc:
        raise Problem(422, "No price", str(exc)) from exc
    return PriceView(
        sku=sku,
        quantity=quantity,
        currency=currency,
        unit_price=found.unit_price,
        unit_cost=found.unit_cost,
        price_book_id=choice.book.book_id,
        reason=choice.reason,
        supplied_by=found.book_id,
        chain=list(found.chain),
    )


# ---------------------------------------------------------------- quotes


class QuoteLineBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: EntityId
    quantity: int = Field(gt=0, le=1_000_000)
    discount_percent: Percent = Field(default=Decimal(0), description="Off the line's gross amount.")


class QuoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: CustomerId
    opportunity_id: EntityId | None = Field(
        default=None, description="The opportunity quoted: the quote takes its owner and territory."
    )
    currency: Currency
    price_book_id: EntityId | None = Field(
        default=None, description="The book to price on; by default the most specific one that applies."
    )
    segment: Label | None = Field(default=None, description="The customer's segment, to choose the book.")
    value_tier: Label | None = Field(default=None, description="The customer's value tier, to choose the book.")
    lines: list[QuoteLineBody] = Field(
        default_factory=list,
        max_length=1000,
        description="Empty: the quoted opportunity's lines (products, quantities, discounts as percents).",
    )
    valid_until: date | None = Field(default=None, description="The last day it can be accepted; today + 30 days.")
    channel: Channel = Field(default="face_to_face", description="The channel of the order it becomes.")
    tax_percent: Percent = Field(
        default=Decimal(0), description="The tax on the total (VAT, sales tax) the quote shows; 0 by default."
    )

    def new_quote(self, quote_id: str, caller: Principal) -> handlers.NewQuote:
        """The command; its digest names the caller too, so another caller's retry with the same key is refused
        rather than shown a quote it may not see."""
        return handlers.NewQuote(
            quote_id=quote_id,
            customer_id=self.customer_id,
            currency=self.currency,
            lines=tuple(domain.LineRequest(li.sku, li.quantity, li.discount_percent) for li in self.lines),
            request_digest=hashlib.sha256(f"{caller.audit_name}\n{self.model_dump_json()}".encode()).hexdigest(),
            opportunity_id=self.opportunity_id,
            price_book_id=self.price_book_id,
            segment=self.segment,
            value_tier=self.value_tier,
            valid_until=self.valid_until,
            channel=self.channel,
            tax_percent=self.tax_percent,
        )


QUOTE_EXAMPLE = {
    "customer_id": "C-1001",
    "opportunity_id": "OP-77",
    "currency": "EUR",
    "segment": "wholesale",
    "value_tier": "high_value",
    "lines": [{"sku": "ATM-200", "quantity": 12, "discount_percent": "5"}],
}


class QuoteLineView(BaseModel):
    sku: str
    quantity: int
    unit_price: Decimal
    discount_percent: Decimal
    discount: Decimal = Field(description="The amount off the line, rounded to the cent half to even.")
    gross: Decimal
    net: Decimal
    unit_cost: Decimal | None
    price_book_id: str = Field(description="The book that listed the product.")
    price_chain: list[str] = Field(description="The books looked in, from the quote's book to price_book_id.")


class QuoteView(BaseModel):
    quote_id: str
    customer_id: str
    opportunity_id: str | None
    status: domain.QuoteStatus = Field(description="`expired` once valid_until has passed on a draft or sent quote.")
    currency: str
    price_book_id: str
    price_book_reason: str
    segment: str | None
    value_tier: str | None
    channel: str
    lines: list[QuoteLineView]
    total: Decimal = Field(description="The sum of the lines net of their discounts: the order's total.")
    tax_percent: Decimal
    tax: Decimal = Field(description="total x tax_percent / 100, rounded half-even to cents.")
    total_with_tax: Decimal = Field(description="What the customer is quoted (crm.quote.sent.v1's total).")
    valid_until: date
    created_at: datetime
    owner_id: str | None
    territory: str | None
    sent_at: datetime | None
    accepted_at: datetime | None
    rejected_at: datetime | None
    reject_reason: str | None
    order_id: str | None = Field(description="The order the accepted quote became.")

    @classmethod
    def of(cls, quote: domain.Quote, today: date | None = None) -> QuoteView:
        return cls(
            quote_id=quote.quote_id,
            customer_id=quote.customer_id,
            opportunity_id=quote.opportunity_id,
            status=quote.status(today or utc_now().date()),
            currency=quote.currency,
            price_book_id=quote.price_book_id,
            price_book_reason=quote.price_book_reason,
            segment=quote.segment,
            value_tier=quote.value_tier,
            channel=quote.channel,
            lines=[
                QuoteLineView(
                    sku=li.sku,
                    quantity=li.quantity,
                    unit_price=li.unit_price,
                    discount_percent=li.discount_percent,
                    discount=li.discount,
                    gross=li.gross,
                    net=li.net,
                    unit_cost=li.unit_cost,
                    price_book_id=li.price_book_id,
                    price_chain=list(li.chain),
                )
                for li in quote.lines
            ],
            total=quote.total,
            tax_percent=quote.tax_percent,
            tax=quote.tax,
            total_with_tax=quote.total_with_tax,
            valid_until=quote.valid_until,
            created_at=quote.created_at,
            owner_id=quote.owner_id,
            territory=quote.territory,
            sent_at=quote.sent_at,
            accepted_at=quote.accepted_at,
            rejected_at=quote.rejected_at,
            reject_reason=quote.reject_reason,
            order_id=quote.order_id,
        )


class RejectBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Text | None = Field(default=None, max_length=500)


NO_SUCH_QUOTE: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such quote, or not one the caller sees"},
    409: {"description": "The quote's status does not allow it (expired, not sent, already rejected...)"},
}


def quote_not_found(quote_id: str) -> Problem:
    return Problem(404, "Quote not found", f"no quote {quote_id}")


async def _commanded(quote_id: str, running: Awaitable[domain.Quote | None]) -> QuoteView:
    try:
        quote = await running
    except domain.QuoteExpired as exc:
        raise Problem(409, "Quote expired", str(exc)) from exc
    except domain.QuoteRefused as exc:
        raise Problem(409, "Quote status conflict", str(exc)) from exc
    except orders.CurrencyNotAccepted as exc:
        raise currency_not_accepted(exc) from exc
    if quote is None:
        raise quote_not_found(quote_id)
    return QuoteView.of(quote)


@router.post(
    "/quotes",
    response_model=QuoteView,
    status_code=status.HTTP_201_CREATED,
    summary="Build a draft quote, priced on the price book that applies",
    description="Each line's discount is capped by the caller's role on the quote's book: `admin` unlimited, a "
    "person whose token names a team (`crm_team`) a manager, anyone else a rep.",
    responses={
        200: {"description": "Already built with this Idempotency-Key and request"},
        409: {"description": "The Idempotency-Key built another quote"},
        422: {"description": "Invalid, no book or price, a discount over the cap (the problem names the cap)"},
    },
)
async def create_quote(
    request: Request,
    principal: QuoteWriter,
    store: StoreDep,
    response: Response,
    body: Annotated[QuoteBody, Body(examples=[QUOTE_EXAMPLE])],
    idempotency_key: IdempotencyKey = None,
) -> QuoteView:
    quote_id = f"Q-{command_event_id('sales/quotes', idempotency_key)}"
    try:
        quote, new = await handlers.create_quote(
            store, body.new_quote(quote_id, principal), principal=principal, now=utc_now(), rates=rates_of(request)
        )
    except domain.DiscountOverCap as exc:
        raise Problem(
            422,
            "Discount over cap",
            str(exc),
            line=exc.line,
            sku=exc.sku,
            role=exc.role,
            cap_percent=str(exc.cap),
            price_book_id=exc.book_id,
        ) from exc
    except handlers.QuoteInvalid as exc:
        raise Problem(422, "Quote invalid", str(exc)) from exc
    except orders.CurrencyNotAccepted as exc:
        raise currency_not_accepted(exc) from exc
    except handlers.IdempotencyKeyReused as exc:
        raise Problem(409, "Idempotency-Key reused", str(exc)) from exc
    if not new:
        response.status_code = status.HTTP_200_OK
    return QuoteView.of(quote)


@router.get(
    "/quotes",
    response_model=Page[QuoteView],
    summary="Quotes the caller sees, newest first",
    description="A person sees the quotes they or their team own and those of their territories.",
)
async def quotes(
    principal: QuoteReader,
    store: StoreDep,
    customer_id: Annotated[CustomerId | None, Query()] = None,
    opportunity_id: Annotated[EntityId | None, Query()] = None,
    state: Annotated[domain.QuoteStatus | None, Query(alias="status")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[QuoteView]:
    today = utc_now().date()
    query: dict[str, Any] = {}
    if customer_id is not None:
        query["customer_id"] = customer_id
    if opportunity_id is not None:
        query["opportunity_id"] = opportunity_id
    if state is not None:
        query.update(handlers.status_query(state, today))
    docs, next_cursor = await keyset_page(
        store.db[repository.QUOTES],
        handlers.quotes_seen_by(principal, query),
        time_field="created_at",
        limit=limit,
        cursor=cursor,
        newest_first=True,
    )
    return Page[QuoteView](
        items=[QuoteView.of(q, today) for q in repository.quotes_from(docs)], next_cursor=next_cursor
    )


@router.get("/quotes/{quote_id}", response_model=QuoteView, summary="One quote", responses=NO_SUCH_QUOTE)
async def get_quote(principal: QuoteReader, store: StoreDep, quote_id: IdInPath) -> QuoteView:
    quote = await handlers.find_quote(store, quote_id, seen_by=principal)
    if quote is None:
        raise quote_not_found(quote_id)
    return QuoteView.of(quote)


@router.post(
    "/quotes/{quote_id}/send",
    response_model=QuoteView,
    summary="Send a draft quote (crm.quote.sent.v1); sending again changes nothing",
    responses=NO_SUCH_QUOTE,
)
async def send_quote(principal: QuoteWriter, store: StoreDep, quote_id: IdInPath) -> QuoteView:
    return await _commanded(quote_id, handlers.send_quote(store, quote_id, principal=principal, now=utc_now()))


@router.post(
    "/quotes/{quote_id}/accept",
    response_model=QuoteView,
    summary="Accept a sent quote: it becomes its order",
    description="In one transaction the order is placed (crm.order.placed.v1, order id `O-<quote id>`) and "
    "crm.quote.accepted.v1 published; accepting again answers the same order. An expired quote is refused (409).",
    responses=NO_SUCH_QUOTE,
)
async def accept_quote(request: Request, principal: QuoteWriter, store: StoreDep, quote_id: IdInPath) -> QuoteView:
    accepting = handlers.accept_quote(store, quote_id, principal=principal, now=utc_now(), rates=rates_of(request))
    return await _commanded(quote_id, accepting)


@router.post(
    "/quotes/{quote_id}/reject",
    response_model=QuoteView,
    summary="Reject a sent quote (crm.quote.rejected.v1)",
    responses=NO_SUCH_QUOTE,
)
async def reject_quote(
    principal: QuoteWriter,
    store: StoreDep,
    quote_id: IdInPath,
    body: Annotated[RejectBody | None, Body(examples=[{"reason": "Budget moved to next year"}])] = None,
) -> QuoteView:
    reason = body.reason if body else None
    rejecting = handlers.reject_quote(store, quote_id, reason, principal=principal, now=utc_now())
    return await _commanded(quote_id, rejecting)
