"""Quotes: priced lines on a price book, capped discounts, a validity and a status. Pure: no I/O.

A quote is a draft until it is sent; a sent quote is accepted (it becomes an order) or rejected. A draft or
sent quote whose `valid_until` day has passed is expired: derived when read, never stored, and an expired quote
can no longer be sent, accepted or rejected. Sending, accepting or rejecting a quote that already is so changes
nothing, so a retried command answers the same.

Discounts are per line, in percent of the line's gross amount (quantity x unit price), rounded to the cent
half-to-even. The caller's role caps them (`role_of`): a caller with `admin` is unlimited, a person whose token
names a team (`crm_team`: they lead people) is a manager, everyone else (a rep, a channel's API key) a rep; the
caps are the quote's price book's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Literal

from crm_sales.quotes.pricing import PriceBook, Role, price
from crm_shared.events import Channel, OrderLine, OrderPlaced
from crm_shared.security import ADMIN, Principal

QuoteState = Literal["draft", "sent", "accepted", "rejected"]
"""What is stored; the status adds `expired`, derived from the validity."""
QuoteStatus = Literal["draft", "sent", "accepted", "rejected", "expired"]
CENT = Decimal("0.01")
HUNDRED = Decimal(100)


class QuoteRefused(Exception):
    """The quote's status does not allow the command (accepting a draft, rejecting an accepted quote)."""


class QuoteExpired(QuoteRefused):
    """The quote's validity has passed."""


class DiscountOverCap(ValueError):
    """A line's discount is above what the caller's role may give on the price book."""

    def __init__(self, *, line: int, sku: str, percent: Decimal, cap: Decimal, role: Role, book_id: str) -> None:
        super().__init__(
            f"line {line} ({sku}): a discount of {percent}% is above the {role} cap of {cap}% on price book {book_id}"
        )
        self.line, self.sku, self.percent, self.cap, self.role, self.book_id = line, sku, percent, cap, role, book_id


def role_of(principal: Principal) -> Role:
    """`admin` for a caller with the admin scope, `manager` for a person who leads a team, else `rep`."""
    if ADMIN in principal.scopes:
        return "admin"
    if principal.kind == "token" and principal.team:
        return "manager"
    return "rep"


def discount_amount(gross: Decimal, percent: Decimal) -> Decimal:
    """`percent` of `gross`, to the cent, half to even."""
    return (gross * percent / HUNDRED).quantize(CENT, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True)
class LineRequest:
    sku: str
    quantity: int
    discount_percent: Decimal = Decimal(0)


@dataclass(frozen=True)
class QuoteLine:
    """A priced line: `price_book_id` is the book that listed the product, `chain` the books looked in."""

    sku: str
    quantity: int
    unit_price: Decimal
    discount_percent: Decimal
    discount: Decimal
    unit_cost: Decimal | None
    price_book_id: str
    chain: tuple[str, ...]

    @property
    def gross(self) -> Decimal:
        return self.unit_price * self.quantity

    @property
    def net(self) -> Decimal:
        return self.gross - self.discount

    def order_line(self) -> OrderLine:
        return OrderLine(
            sku=self.sku,
            quantity=self.quantity,
            unit_price=self.unit_price,
            discount=self.discount,
            unit_cost=self.unit_cost,
        )


def price_lines(
    book: PriceBook, ancestors: Mapping[str, PriceBook], requests: Iterable[LineRequest], role: Role
) -> tuple[QuoteLine, ...]:
    """Each requested line priced on `book` (or its ancestors) with its discount; raises NoPrice or
    DiscountOverCap (the first line over the cap, numbered from 1)."""
    cap = book.cap_for(role)
    lines: list[QuoteLine] = []
    for number, request in enumerate(requests, start=1):
        if cap is not None and request.discount_percent > cap:
            raise DiscountOverCap(
                line=number,
                sku=request.sku,
                percent=request.discount_percent,
                cap=cap,
                role=role,
                book_id=book.book_id,
            )
        found = price(book, ancestors, request.sku, request.quantity)
        gross = found.unit_price * request.quantity
        lines.append(
            QuoteLine(
                sku=request.sku,
                quantity=request.quantity,
                unit_price=found.unit_price,
                discount_percent=request.discount_percent,
                discount=discount_amount(gross, request.discount_percent),
                unit_cost=found.unit_cost,
                price_book_id=found.book_id,
                chain=found.chain,
            )
        )
    return tuple(lines)


def order_id_of(quote_id: str) -> str:
    """The order an accepted quote becomes: derived, so accepting twice is one order."""
    return f"O-{quote_id}"


@dataclass(frozen=True)
class Quote:
    quote_id: str
    customer_id: str
    currency: str
    price_book_id: str
    price_book_reason: str
    lines: tuple[QuoteLine, ...]
    valid_until: date
    created_at: datetime
    opportunity_id: str | None = None
    segment: str | None = None
    value_tier: str | None = None
    channel: Channel = "face_to_face"
    owner_id: str | None = None
    territory: str | None = None
    state: QuoteState = "draft"
    sent_at: datetime | None = None
    accepted_at: datetime | None = None
    rejected_at: datetime | None = None
    reject_reason: str | None = None
    order_id: str | None = None
    request_digest: str = ""
    tax_percent: Decimal = Decimal(0)

    @property
    def total(self) -> Decimal:
        """The sum of the lines net of their discounts, as an order's total."""
        return sum((line.net for line in self.lines), Decimal(0))

    @property
    def tax(self) -> Decimal:
        """The tax on the total at `tax_percent`, rounded half-even to cents."""
        return (self.total * self.tax_percent / HUNDRED).quantize(CENT, rounding=ROUND_HALF_EVEN)

    @property
    def total_with_tax(self) -> Decimal:
        """What the customer is quoted: the total and its tax (the order keeps the total net of tax)."""
        return self.total + self.tax

    def status(self, on: date) -> QuoteStatus:
        if self.state in ("draft", "sent") and on > self.valid_until:
            return "expired"
        return self.state

    def order(self) -> OrderPlaced:
        """The order the accepted quote becomes."""
        return OrderPlaced(
            customer_id=self.customer_id,
            order_id=order_id_of(self.quote_id),
            currency=self.currency,
            total=self.total,
            lines=[line.order_line() for line in self.lines],
            channel=self.channel,
        )


def _check_not_expired(quote: Quote, at: datetime, doing: str) -> None:
    if quote.status(at.date()) == "expired":
        raise QuoteExpired(
            f"quote {quote.quote_id} expired after {quote.valid_until.isoformat()}: it can no longer be {doing}"
        )


def send(quote: Quote, at: datetime) -> Quote:
    if quote.state == "sent":
        return quote
    if quote.state != "draft":
        raise QuoteRefused(f"quote {quote.quote_id} is {quote.state}: only a draft can be sent")
    _check_not_expired(quote, at, "sent")
    return replace(quote, state="sent", sent_at=at)


def accept(quote: Quote, at: datetime) -> Quote:
    if quote.state == "accepted":
        return quote
    if quote.state != "sent":
        raise QuoteRefused(f"quote {quote.quote_id} is {quote.state}: only a sent quote can be accepted")
    _check_not_expired(quote, at, "accepted")
    return replace(quote, state="accepted", accepted_at=at, order_id=order_id_of(quote.quote_id))


def reject(quote: Quote, at: datetime, reason: str | None) -> Quote:
    if quote.state == "rejected":
        return quote
    if quote.state != "sent":
        raise QuoteRefused(f"quote {quote.quote_id} is {quote.state}: only a sent quote can be rejected")
    _check_not_expired(quote, at, "rejected")
    return replace(quote, state="rejected", rejected_at=at, reject_reason=reason)
