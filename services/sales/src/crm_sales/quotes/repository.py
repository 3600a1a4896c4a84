"""The sales database's `price_books` and `quotes` collections.

Days (validity) are stored as midnight UTC, since BSON has no date type. Price book entries are a list, not a
document keyed by sku: a sku may hold a '.', which a field name may not.
"""

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any, cast

from pymongo import ASCENDING, DESCENDING, IndexModel

from crm_sales.quotes.domain import Quote, QuoteLine
from crm_sales.quotes.pricing import CappedRole, PriceBook, PriceEntry, QuantityBreak
from crm_shared.store import IndexSpec, UnitOfWork

PRICE_BOOKS = "price_books"
QUOTES = "quotes"


def _newest(field: str, name: str) -> IndexSpec:
    return IndexSpec(
        QUOTES, IndexModel([(field, ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)], name=name)
    )


INDEXES: tuple[IndexSpec, ...] = (
    IndexSpec(PRICE_BOOKS, IndexModel([("currency", ASCENDING), ("valid_from", ASCENDING)], name="by_currency")),
    IndexSpec(PRICE_BOOKS, IndexModel([("parent_id", ASCENDING)], name="by_parent")),
    IndexSpec(QUOTES, IndexModel([("created_at", DESCENDING), ("_id", DESCENDING)], name="newest_first")),
    _newest("customer_id", "by_customer"),
    _newest("opportunity_id", "by_opportunity"),
    # A person's list is an $or of their owners and their territories: one index per branch.
    _newest("owner_id", "by_owner"),
    _newest("territory", "by_territory"),
)


def day_to_bson(day: date | None) -> datetime | None:
    return datetime.combine(day, time(), UTC) if day is not None else None


def day_from_bson(value: datetime | None) -> date | None:
    return value.astimezone(UTC).date() if value is not None else None


def book_to_document(book: PriceBook) -> dict[str, Any]:
    return {
        "_id": book.book_id,
        "name": book.name,
        "currency": book.currency,
        "valid_from": day_to_bson(book.valid_from),
        "valid_to": day_to_bson(book.valid_to),
        "parent_id": book.parent_id,
        "segment": book.segment,
        "value_tier": book.value_tier,
        "entries": [
            {
                "sku": e.sku,
                "unit_price": e.unit_price,
                "unit_cost": e.unit_cost,
                "breaks": [{"min_quantity": b.min_quantity, "unit_price": b.unit_price} for b in e.breaks],
            }
            for e in book.entries
        ],
        "discount_caps": dict(book.discount_caps),
    }


def book_from_document(doc: Mapping[str, Any]) -> PriceBook:
    valid_from = day_from_bson(doc["valid_from"])
    assert valid_from is not None
    return PriceBook(
        book_id=doc["_id"],
        name=doc["name"],
        currency=doc["currency"],
        valid_from=valid_from,
        valid_to=day_from_bson(doc.get("valid_to")),
        parent_id=doc.get("parent_id"),
        segment=doc.get("segment"),
        value_tier=doc.get("value_tier"),
        entries=tuple(
            PriceEntry(
                sku=e["sku"],
                unit_price=e["unit_price"],
                unit_cost=e.get("unit_cost"),
                breaks=tuple(QuantityBreak(b["min_quantity"], b["unit_price"]) for b in e.get("breaks", [])),
            )
            for e in doc.get("entries", [])
        ),
        discount_caps=cast(dict[CappedRole, Decimal], dict(doc.get("discount_caps", {}))),
    )


def quote_to_document(quote: Quote) -> dict[str, Any]:
    return {
        "_id": quote.quote_id,
        "customer_id": quote.customer_id,
        "opportunity_id": quote.opportunity_id,
        "currency": quote.currency,
        "price_book_id": quote.price_book_id,
        "price_book_reason": quote.price_book_reason,
        "segment": quote.segment,
        "value_tier": quote.value_tier,
        "channel": quote.channel,
        "lines": [
            {
                "sku": line.sku,
                "quantity": line.quantity,
                "unit_price": line.unit_price,
                "discount_percent": line.discount_percent,
                "discount": line.discount,
                "unit_cost": line.unit_cost,
                "price_book_id": line.price_book_id,
                "chain": list(line.chain),
            }
            for line in quote.lines
        ],
        "total": quote.total,
        "valid_until": day_to_bson(quote.valid_until),
        "created_at": quote.created_at,
        "owner_id": quote.owner_id,
        "territory": quote.territory,
        # Stored without expiry: a draft or sent quote past valid_until reads as expired.
        "state": quote.state,
        "sent_at": quote.sent_at,
        "accepted_at": quote.accepted_at,
        "rejected_at": quote.rejected_at,
        "reject_reason": quote.reject_reason,
        "order_id": quote.order_id,
        "request_digest": quote.request_digest,
        "tax_percent": quote.tax_percent,
    }


def quote_from_document(doc: Mapping[str, Any]) -> Quote:
    valid_until = day_from_bson(doc["valid_until"])
    assert valid_until is not None
    return Quote(
        quote_id=doc["_id"],
        customer_id=doc["customer_id"],
        opportunity_id=doc.get("opportunity_id"),
        currency=doc["currency"],
        price_book_id=doc["price_book_id"],
        price_book_reason=doc.get("price_book_reason", ""),
        segment=doc.get("segment"),
        value_tier=doc.get("value_tier"),
        channel=doc.get("channel", "face_to_face"),
        lines=tuple(
            QuoteLine(
                sku=line["sku"],
                quantity=line["quantity"],
                unit_price=line["unit_price"],
                discount_percent=line["discount_percent"],
                discount=line["discount"],
                unit_cost=line.get("unit_cost"),
                price_book_id=line["price_book_id"],
                chain=tuple(line.get("chain", [])),
            )
            for line in doc["lines"]
        ),
        valid_until=valid_until,
        created_at=doc["created_at"],
        owner_id=doc.get("owner_id"),
        territory=doc.get("territory"),
        state=doc["state"],
        sent_at=doc.get("sent_at"),
        accepted_at=doc.get("accepted_at"),
        rejected_at=doc.get("rejected_at"),
        reject_reason=doc.get("reject_reason"),
        order_id=doc.get("order_id"),
        request_digest=doc.get("request_digest", ""),
        tax_percent=doc.get("tax_percent", Decimal(0)),
    )


async def get_book(uow: UnitOfWork, book_id: str) -> PriceBook | None:
    doc = await uow.db[PRICE_BOOKS].find_one({"_id": book_id}, session=uow.session)
    return book_from_document(doc) if doc else None


async def get_chain(uow: UnitOfWork, first_id: str | None, *, limit: int) -> dict[str, PriceBook]:
    """The book `first_id` and its ancestors, by id, one read per book, stopping at a missing book, a book seen
    before (a cycle) or `limit` books."""
    found: dict[str, PriceBook] = {}
    book_id = first_id
    while book_id is not None and book_id not in found and len(found) < limit:
        book = await get_book(uow, book_id)
        if book is None:
            break
        found[book_id] = book
        book_id = book.parent_id
    return found


async def books_valid_from(uow: UnitOfWork, currency: str, day: date) -> list[PriceBook]:
    """The books in `currency` that start on or before `day` (the caller checks their end and fit)."""
    cursor = uow.db[PRICE_BOOKS].find(
        {"currency": currency, "valid_from": {"$lte": day_to_bson(day)}}, session=uow.session
    )
    return [book_from_document(doc) async for doc in cursor]


async def children_in_other_currency(uow: UnitOfWork, book_id: str, currency: str) -> list[str]:
    docs = await uow.db[PRICE_BOOKS].find({"parent_id": book_id}, {"currency": 1}, session=uow.session).to_list(None)
    return sorted(d["_id"] for d in docs if d["currency"] != currency)


async def save_book(uow: UnitOfWork, book: PriceBook) -> bool:
    """True when the book is new."""
    result = await uow.db[PRICE_BOOKS].replace_one(
        {"_id": book.book_id}, book_to_document(book), upsert=True, session=uow.session
    )
    return result.upserted_id is not None


async def get_quote(uow: UnitOfWork, quote_id: str) -> Quote | None:
    doc = await uow.db[QUOTES].find_one({"_id": quote_id}, session=uow.session)
    return quote_from_document(doc) if doc else None


async def insert_quote(uow: UnitOfWork, quote: Quote, origin: Mapping[str, str] | None = None) -> None:
    """Raises DuplicateKeyError when the id is taken (the same Idempotency-Key). `origin`: the id the quote was
    asked for when it is filed under a merge's survivor."""
    await uow.db[QUOTES].insert_one({**quote_to_document(quote), **(origin or {})}, session=uow.session)


async def save_quote(uow: UnitOfWork, quote: Quote) -> None:
    # Set, not replaced: what an identity merge noted on it (origin_customer_id) stays.
    fields = {k: v for k, v in quote_to_document(quote).items() if k != "_id"}
    await uow.db[QUOTES].update_one({"_id": quote.quote_id}, {"$set": fields}, session=uow.session)


def quotes_from(docs: Iterable[Mapping[str, Any]]) -> list[Quote]:
    return [quote_from_document(d) for d in docs]
