"""Price books: which book prices a customer on a day, and the unit price of a product in it. Pure: no I/O.

A price book lists products (by sku) with a unit price, an optional unit cost and quantity breaks; it may
inherit from a parent book, whose entries stand in for the products it does not list (recursively). A book
applies to a customer segment, a value tier, both, or everyone, from `valid_from` to `valid_to` (both days
included; no `valid_to` is open-ended). The book of a quote is the most specific one that applies: segment and
tier > tier > segment > general; among equals, the one valid from the latest day (then the greatest id, so the
choice never depends on the order books were loaded in).

Only the chosen book's window matters: a parent lends its entries to its children whatever its own window, so
a base list can be kept as one book and seasonal or segment books on top of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Literal

Role = Literal["rep", "manager", "admin"]
"""Who builds a quote, for the discount caps: `admin` is unlimited."""
CappedRole = Literal["rep", "manager"]
MAX_CHAIN = 10
"""At most this many books from a book to its farthest ancestor: a deeper chain is refused on write."""


class PriceBookRefused(ValueError):
    """The price book contradicts the others (a cycle, a missing parent, another currency)."""


class NoPrice(LookupError):
    """No book of the chain lists the product."""


@dataclass(frozen=True)
class QuantityBreak:
    """From `min_quantity` units on, each unit costs `unit_price`."""

    min_quantity: int
    unit_price: Decimal


@dataclass(frozen=True)
class PriceEntry:
    sku: str
    unit_price: Decimal
    unit_cost: Decimal | None = None
    breaks: tuple[QuantityBreak, ...] = ()

    def unit_price_for(self, quantity: int) -> Decimal:
        """The price of the highest break at or below `quantity`; the list price below every break."""
        reached = [b for b in self.breaks if b.min_quantity <= quantity]
        return max(reached, key=lambda b: b.min_quantity).unit_price if reached else self.unit_price


def check_breaks(entry: PriceEntry) -> None:
    """A quantity break is a lower price for more: each break's price is at most the list price and at most the
    price of every smaller break, and no two breaks start at the same quantity. Raises ValueError."""
    previous_price, seen = entry.unit_price, set()
    for b in sorted(entry.breaks, key=lambda b: b.min_quantity):
        if b.min_quantity in seen:
            raise ValueError(f"{entry.sku}: two quantity breaks start at {b.min_quantity}")
        seen.add(b.min_quantity)
        if b.unit_price > previous_price:
            raise ValueError(
                f"{entry.sku}: the break from {b.min_quantity} units costs {b.unit_price}, more than {previous_price} "
                "for fewer units; a quantity break never raises the unit price"
            )
        previous_price = b.unit_price


@dataclass(frozen=True)
class PriceBook:
    book_id: str
    name: str
    currency: str
    valid_from: date
    valid_to: date | None = None
    parent_id: str | None = None
    segment: str | None = None
    value_tier: str | None = None
    entries: tuple[PriceEntry, ...] = ()
    discount_caps: Mapping[CappedRole, Decimal] = field(default_factory=dict)

    def entry(self, sku: str) -> PriceEntry | None:
        return next((e for e in self.entries if e.sku == sku), None)

    def valid_on(self, day: date) -> bool:
        return self.valid_from <= day and (self.valid_to is None or day <= self.valid_to)

    def specificity(self, segment: str | None, value_tier: str | None) -> int | None:
        """How closely the book fits the customer (3: segment and tier, 2: tier, 1: segment, 0: everyone); None
        when it is for another segment or tier."""
        if self.segment is not None and self.segment != segment:
            return None
        if self.value_tier is not None and self.value_tier != value_tier:
            return None
        return (2 if self.value_tier is not None else 0) + (1 if self.segment is not None else 0)

    def cap_for(self, role: Role) -> Decimal | None:
        """The highest discount percent `role` may give on this book; None is unlimited (admin). A role the book
        names no cap for may give none."""
        if role == "admin":
            return None
        return self.discount_caps.get(role, Decimal(0))


SPECIFICITY_NAMES = {3: "segment and value tier", 2: "value tier", 1: "segment", 0: "general"}


@dataclass(frozen=True)
class Choice:
    book: PriceBook
    reason: str


def choose_book(
    books: Iterable[PriceBook], *, currency: str, day: date, segment: str | None, value_tier: str | None
) -> Choice | None:
    """The book that prices a customer of `segment` and `value_tier` in `currency` on `day`, or None."""
    fitting = [
        (fit, book)
        for book in books
        if book.currency == currency
        and book.valid_on(day)
        and (fit := book.specificity(segment, value_tier)) is not None
    ]
    if not fitting:
        return None
    fit, book = max(fitting, key=lambda pair: (pair[0], pair[1].valid_from, pair[1].book_id))
    return Choice(book, f"most specific book valid on {day.isoformat()} ({SPECIFICITY_NAMES[fit]})")


@dataclass(frozen=True)
class Price:
    """A product's price at a quantity, and where it came from: `chain` is the books looked in, from the quote's
    book to `book_id`, the one that lists the product."""

    sku: str
    quantity: int
    unit_price: Decimal
    unit_cost: Decimal | None
    book_id: str
    chain: tuple[str, ...]


def price(book: PriceBook, books: Mapping[str, PriceBook], sku: str, quantity: int) -> Price:
    """The unit price of `quantity` units of `sku` in `book`, or in its nearest ancestor that lists it
    (`books`: the ancestors by id). Raises NoPrice."""
    chain: list[str] = []
    current: PriceBook | None = book
    while current is not None and current.book_id not in chain:
        chain.append(current.book_id)
        entry = current.entry(sku)
        if entry is not None:
            return Price(sku, quantity, entry.unit_price_for(quantity), entry.unit_cost, current.book_id, tuple(chain))
        current = books.get(current.parent_id) if current.parent_id else None
    raise NoPrice(f"no price for {sku} in price book {book.book_id} nor its parents ({' > '.join(chain)})")


def check_parent(book: PriceBook, ancestors: Mapping[str, PriceBook]) -> None:
    """Refuse a book whose parent is missing, in another currency, itself a descendant of the book (a cycle) or
    more than MAX_CHAIN books up. `ancestors`: the stored books by id (at least the book's ancestors)."""
    seen = [book.book_id]
    parent_id = book.parent_id
    while parent_id is not None:
        if parent_id in seen:
            raise PriceBookRefused(
                f"price book {book.book_id} cannot inherit from {book.parent_id}: that makes a cycle "
                f"({' > '.join([*seen, parent_id])})"
            )
        parent = ancestors.get(parent_id)
        if parent is None:
            raise PriceBookRefused(f"price book {seen[-1]} inherits from {parent_id}, which does not exist")
        if parent.currency != book.currency:
            raise PriceBookRefused(
                f"price book {book.book_id} is in {book.currency} but its ancestor {parent_id} is in "
                f"{parent.currency}: a book inherits only from books in its currency"
            )
        seen.append(parent_id)
        if len(seen) > MAX_CHAIN:
            raise PriceBookRefused(f"price book {book.book_id} has more than {MAX_CHAIN} books in its chain")
        parent_id = parent.parent_id
