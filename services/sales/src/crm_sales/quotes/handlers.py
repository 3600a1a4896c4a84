"""Use cases of price books and quotes: define a book, build a quote on the book that applies, send it, and
accept it (it becomes the order, in the same transaction) or reject it; each person only the quotes they see."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from pydantic import ValidationError
from pymongo.errors import DuplicateKeyError

from crm_sales.opportunities.repository import OPPORTUNITIES
from crm_sales.orders import domain as orders_domain
from crm_sales.orders import handlers as orders
from crm_sales.quotes import domain, pricing, repository
from crm_shared import identity
from crm_shared.events import (
    Channel,
    QuoteAccepted,
    QuoteAcceptedEvent,
    QuoteRejected,
    QuoteRejectedEvent,
    QuoteSent,
    QuoteSentEvent,
    derived_event_id,
)
from crm_shared.money import ExchangeRates
from crm_shared.security import OWNED, Principal
from crm_shared.store import Store, UnitOfWork
from crm_shared.topics import Topic

SOURCE = orders.SOURCE
DEFAULT_VALIDITY = timedelta(days=30)
MAX_VALIDITY = timedelta(days=366)

QUOTE_ACCESS = OWNED
"""A person sees the quotes they own, their team's and their territories'; API keys, `admin` and `records:all`
see every quote."""


class QuoteInvalid(ValueError):
    """The quote cannot be built: no book applies, a product has no price, an unknown opportunity."""


class IdempotencyKeyReused(Exception):
    """The Idempotency-Key built another quote."""


@dataclass(frozen=True)
class NewQuote:
    quote_id: str
    customer_id: str
    currency: str
    lines: tuple[domain.LineRequest, ...]
    request_digest: str
    opportunity_id: str | None = None
    price_book_id: str | None = None
    segment: str | None = None
    value_tier: str | None = None
    valid_until: date | None = None
    channel: Channel = "face_to_face"
    tax_percent: Decimal = Decimal(0)


# ---------------------------------------------------------------- price books


async def put_price_book(store: Store, book: pricing.PriceBook) -> bool:
    """Create or replace the book; True when new. Raises PriceBookRefused for a missing or cyclic parent, or a
    currency its parent or children are not in."""

    async def work(uow: UnitOfWork) -> bool:
        ancestors = await repository.get_chain(uow, book.parent_id, limit=pricing.MAX_CHAIN + 1)
        pricing.check_parent(book, ancestors)
        others = await repository.children_in_other_currency(uow, book.book_id, book.currency)
        if others:
            raise pricing.PriceBookRefused(
                f"price book {book.book_id} cannot be in {book.currency}: books {', '.join(others)} inherit from it "
                "in another currency"
            )
        return await repository.save_book(uow, book)

    return await store.transaction(work)


async def find_price_book(store: Store, book_id: str) -> pricing.PriceBook | None:
    doc = await store.db[repository.PRICE_BOOKS].find_one({"_id": book_id})
    return repository.book_from_document(doc) if doc else None


# ---------------------------------------------------------------- quotes


async def resolve_price(
    store: Store,
    *,
    sku: str,
    quantity: int,
    currency: str,
    day: date,
    segment: str | None,
    value_tier: str | None,
    price_book_id: str | None,
) -> tuple[pricing.Choice, pricing.Price]:
    """The book a quote of these would be priced on and the product's price in it; raises QuoteInvalid."""

    async def work(uow: UnitOfWork) -> tuple[pricing.Choice, pricing.Price]:
        choice = await _book_for(
            uow, currency=currency, day=day, segment=segment, value_tier=value_tier, price_book_id=price_book_id
        )
        ancestors = await repository.get_chain(uow, choice.book.parent_id, limit=pricing.MAX_CHAIN)
        try:
            return choice, pricing.price(choice.book, ancestors, sku, quantity)
        except pricing.NoPrice as exc:
            raise QuoteInvalid(str(exc)) from exc

    return await store.transaction(work)


def quotes_seen_by(principal: Principal, query: dict[str, Any]) -> dict[str, Any]:
    return QUOTE_ACCESS.restrict(principal, query)


async def _book_for(
    uow: UnitOfWork,
    *,
    currency: str,
    day: date,
    segment: str | None,
    value_tier: str | None,
    price_book_id: str | None,
) -> pricing.Choice:
    """The book given (it must be in `currency` and valid on `day`), else the most specific one that applies."""
    if price_book_id is not None:
        book = await repository.get_book(uow, price_book_id)
        if book is None:
            raise QuoteInvalid(f"no price book {price_book_id}")
        if book.currency != currency:
            raise QuoteInvalid(f"price book {book.book_id} is in {book.currency}, the quote in {currency}")
        if not book.valid_on(day):
            until = book.valid_to.isoformat() if book.valid_to else "open-ended"
            raise QuoteInvalid(
                f"price book {book.book_id} is valid from {book.valid_from.isoformat()} to {until}, "
                f"not on {day.isoformat()}"
            )
        return pricing.Choice(book, "given in the request")
    choice = pricing.choose_book(
        await repository.books_valid_from(uow, currency, day),
        currency=currency,
        day=day,
        segment=segment,
        value_tier=value_tier,
    )
    if choice is None:
        raise QuoteInvalid(
            f"no price book in {currency} valid on {day.isoformat()} applies to segment {segment!r} and "
            f"value tier {value_tier!r}"
        )
    return choice


async def _owner_of(uow: UnitOfWork, new: NewQuote, principal: Principal) -> tuple[str | None, str | None]:
    """The quote's owner and territory: its opportunity's, else the caller (a person) and none."""
    if new.opportunity_id is None:
        return (principal.id if principal.kind == "token" else None), None
    doc = await uow.db[OPPORTUNITIES].find_one({"_id": new.opportunity_id}, session=uow.session)
    if doc is None or not QUOTE_ACCESS.allows(principal, doc):
        raise QuoteInvalid(f"no opportunity {new.opportunity_id}")
    if doc.get("customer_id") != new.customer_id:
        raise QuoteInvalid(
            f"opportunity {new.opportunity_id} is customer {doc.get('customer_id')}'s, not {new.customer_id}'s"
        )
    return doc.get("owner_id"), doc.get("territory")


async def _opportunity_lines(uow: UnitOfWork, new: NewQuote, principal: Principal) -> tuple[domain.LineRequest, ...]:
    """The products and quantities of the quoted opportunity's lines, each discount as its percent of the line:
    the quote prices them on its book."""
    doc = None
    if new.opportunity_id is not None:
        doc = await uow.db[OPPORTUNITIES].find_one(
            {"_id": new.opportunity_id}, {"lines": 1, "owner_id": 1, "territory": 1}, session=uow.session
        )
    if doc is None or not QUOTE_ACCESS.allows(principal, doc):
        raise QuoteInvalid("a quote without lines takes its opportunity's: name an opportunity the caller sees")
    lines = []
    for line in doc.get("lines", []):
        gross = line["unit_price"] * line["quantity"]
        percent = (line.get("discount", Decimal(0)) / gross * 100) if gross else Decimal(0)
        lines.append(
            domain.LineRequest(line["sku"], line["quantity"], percent.quantize(Decimal("0.01"), ROUND_HALF_EVEN))
        )
    if not lines:
        raise QuoteInvalid(f"opportunity {new.opportunity_id} has no lines: send the quote's lines")
    return tuple(lines)


async def create_quote(
    store: Store, new: NewQuote, *, principal: Principal, now: datetime, rates: ExchangeRates
) -> tuple[domain.Quote, bool]:
    """Price and keep a draft quote; True when new. The same id (Idempotency-Key) with the same request answers
    the quote already built. Raises CurrencyNotAccepted, QuoteInvalid, DiscountOverCap, IdempotencyKeyReused."""
    orders.check_currency(new.currency, rates)
    day = now.date()

    async def work(uow: UnitOfWork) -> tuple[domain.Quote, bool]:
        existing = await repository.get_quote(uow, new.quote_id)
        if existing is not None:
            return _same(existing, new), False
        # A quote for a customer merged into another is the survivor's; an unmerge gives it back.
        customer_id, origin = await identity.filed_under(uow.db, new.customer_id, session=uow.session)
        request = new if new.lines else replace(new, lines=await _opportunity_lines(uow, new, principal))
        choice = await _book_for(
            uow,
            currency=new.currency,
            day=day,
            segment=new.segment,
            value_tier=new.value_tier,
            price_book_id=new.price_book_id,
        )
        ancestors = await repository.get_chain(uow, choice.book.parent_id, limit=pricing.MAX_CHAIN)
        try:
            lines = domain.price_lines(choice.book, ancestors, request.lines, domain.role_of(principal))
        except pricing.NoPrice as exc:
            raise QuoteInvalid(str(exc)) from exc
        valid_until = new.valid_until or day + DEFAULT_VALIDITY
        if not day <= valid_until <= day + MAX_VALIDITY:
            raise QuoteInvalid(
                f"valid_until {valid_until.isoformat()} must be from today ({day.isoformat()}) to "
                f"{(day + MAX_VALIDITY).isoformat()}"
            )
        owner_id, territory = await _owner_of(uow, new, principal)
        quote = domain.Quote(
            quote_id=new.quote_id,
            customer_id=customer_id,
            currency=new.currency,
            price_book_id=choice.book.book_id,
            price_book_reason=choice.reason,
            lines=lines,
            valid_until=valid_until,
            created_at=now,
            opportunity_id=new.opportunity_id,
            segment=new.segment,
            value_tier=new.value_tier,
            channel=new.channel,
            owner_id=owner_id,
            territory=territory,
            request_digest=new.request_digest,
            tax_percent=new.tax_percent,
        )
        try:
            # What accepting will place: refused now rather than when the customer accepts.
            quote.order()
        except ValidationError as exc:
            reasons = "; ".join(e["msg"] for e in exc.errors())
            raise QuoteInvalid(f"the quote could not become an order: {reasons}") from exc
        await repository.insert_quote(uow, quote, origin)
        return quote, True

    try:
        return await store.transaction(work)
    except DuplicateKeyError:
        # The same Idempotency-Key, concurrently: the other request built it.
        doc = await store.db[repository.QUOTES].find_one({"_id": new.quote_id})
        if doc is None:
            raise
        return _same(repository.quote_from_document(doc), new), False


def _same(existing: domain.Quote, new: NewQuote) -> domain.Quote:
    if existing.request_digest != new.request_digest:
        raise IdempotencyKeyReused("this Idempotency-Key was used for a different quote")
    return existing


async def find_quote(store: Store, quote_id: str, *, seen_by: Principal) -> domain.Quote | None:
    doc = await store.db[repository.QUOTES].find_one(quotes_seen_by(seen_by, {"_id": quote_id}))
    return repository.quote_from_document(doc) if doc else None


async def _seen(uow: UnitOfWork, quote_id: str, principal: Principal) -> domain.Quote | None:
    doc = await uow.db[repository.QUOTES].find_one(quotes_seen_by(principal, {"_id": quote_id}), session=uow.session)
    return repository.quote_from_document(doc) if doc else None


def _event_id(what: str, quote_id: str) -> str:
    return derived_event_id(SOURCE, what, quote_id)


async def send_quote(store: Store, quote_id: str, *, principal: Principal, now: datetime) -> domain.Quote | None:
    """Send the quote (crm.quote.sent.v1); None when the caller sees no such quote. Raises QuoteRefused."""

    async def work(uow: UnitOfWork) -> domain.Quote | None:
        quote = await _seen(uow, quote_id, principal)
        if quote is None:
            return None
        sent = domain.send(quote, now)
        if sent != quote:
            await repository.save_quote(uow, sent)
            data = QuoteSent(
                customer_id=sent.customer_id,
                quote_id=sent.quote_id,
                opportunity_id=sent.opportunity_id,
                currency=sent.currency,
                total=sent.total_with_tax,
                valid_until=sent.valid_until,
            )
            event = QuoteSentEvent.create(data, source=SOURCE, id=_event_id("quote.sent", quote_id), time=now)
            uow.emit(event, Topic.SALES_EVENTS)
        return sent

    return await store.transaction(work)


async def accept_quote(
    store: Store, quote_id: str, *, principal: Principal, now: datetime, rates: ExchangeRates
) -> domain.Quote | None:
    """Accept the quote: it becomes its order (crm.order.placed.v1) and crm.quote.accepted.v1 is published, in one
    transaction; accepting again answers the same order. None when the caller sees no such quote. Raises
    QuoteRefused (expired, not sent, or its order id taken by another order) and CurrencyNotAccepted."""

    async def work(uow: UnitOfWork) -> domain.Quote | None:
        quote = await _seen(uow, quote_id, principal)
        if quote is None:
            return None
        accepted = domain.accept(quote, now)
        if accepted == quote:
            return quote
        orders.check_currency(quote.currency, rates)
        placed = quote.order()
        attribution = orders_domain.Attribution(
            owner_id=quote.owner_id, territory=quote.territory, opportunity_id=quote.opportunity_id, quote_id=quote_id
        )
        try:
            await orders.place_in(
                uow, placed, at=now, event_id=_event_id("quote.accepted.order", quote_id), attribution=attribution
            )
        except orders_domain.OrderRejected as exc:
            raise domain.QuoteRefused(f"quote {quote_id} cannot become order {placed.order_id}: {exc}") from exc
        await repository.save_quote(uow, accepted)
        data = QuoteAccepted(
            customer_id=quote.customer_id,
            quote_id=quote_id,
            opportunity_id=quote.opportunity_id,
            order_id=placed.order_id,
            currency=quote.currency,
            total=placed.total,
        )
        uow.emit(
            QuoteAcceptedEvent.create(data, source=SOURCE, id=_event_id("quote.accepted", quote_id), time=now),
            Topic.SALES_EVENTS,
        )
        return accepted

    return await store.transaction(work)


async def reject_quote(
    store: Store, quote_id: str, reason: str | None, *, principal: Principal, now: datetime
) -> domain.Quote | None:
    """Reject the quote (crm.quote.rejected.v1); None when the caller sees no such quote. Raises QuoteRefused."""

    async def work(uow: UnitOfWork) -> domain.Quote | None:
        quote = await _seen(uow, quote_id, principal)
        if quote is None:
            return None
        rejected = domain.reject(quote, now, reason)
        if rejected != quote:
            await repository.save_quote(uow, rejected)
            data = QuoteRejected(
                customer_id=quote.customer_id, quote_id=quote_id, opportunity_id=quote.opportunity_id, reason=reason
            )
            uow.emit(
                QuoteRejectedEvent.create(data, source=SOURCE, id=_event_id("quote.rejected", quote_id), time=now),
                Topic.SALES_EVENTS,
            )
        return rejected

    return await store.transaction(work)


def status_query(status: domain.QuoteStatus, today: date) -> dict[str, Any]:
    """The stored fields of quotes whose derived status is `status` on `today`."""
    start = repository.day_to_bson(today)
    if status == "expired":
        return {"state": {"$in": ["draft", "sent"]}, "valid_until": {"$lt": start}}
    if status in ("draft", "sent"):
        return {"state": status, "valid_until": {"$gte": start}}
    return {"state": status}
