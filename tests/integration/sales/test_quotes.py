"""Price books and quotes on the real database: a quote priced on the most specific book, sent and accepted,
becomes exactly one order, with its events in the outbox; an expired quote and a discount over the cap are
refused."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from crm_sales.app import INDEXES, create_service
from crm_sales.orders import repository as orders_repository
from crm_sales.quotes import handlers, repository
from crm_sales.settings import SalesSettings
from crm_shared.security import Principal
from crm_shared.store import Store, outbox_records
from crm_shared.topics import Topic

from helpers import ADMIN_HEADERS, bearer

NewStore = Callable[..., Awaitable[Store]]
REP = bearer("rep-1", "quotes:read", "quotes:write")
MANAGER = bearer("boss-1", "quotes:read", "quotes:write", team=["rep-1"])
OTHER_REP = bearer("rep-9", "quotes:read", "quotes:write")

LIST_BOOK = {
    "name": "List prices",
    "currency": "EUR",
    "valid_from": "2026-01-01",
    "entries": [
        {
            "sku": "ATM-200",
            "unit_price": "1250.00",
            "unit_cost": "800.00",
            "breaks": [{"min_quantity": 10, "unit_price": "1150.00"}],
        },
        {"sku": "KB-1", "unit_price": "19.99", "unit_cost": "7.10"},
    ],
}
WHOLESALE_BOOK = {
    "name": "Wholesale, high value",
    "currency": "EUR",
    "parent_id": "list-eur",
    "segment": "wholesale",
    "value_tier": "high_value",
    "valid_from": "2026-02-01",
    "entries": [
        {
            "sku": "ATM-200",
            "unit_price": "1200.00",
            "unit_cost": "800.00",
            "breaks": [{"min_quantity": 5, "unit_price": "1150.00"}, {"min_quantity": 10, "unit_price": "1100.00"}],
        }
    ],
    "discount_caps": {"rep": "10", "manager": "25"},
}


@pytest.fixture
async def sales(new_store: NewStore) -> AsyncIterator[tuple[Store, httpx.AsyncClient]]:
    store = await new_store("sales_quotes", INDEXES)
    app = create_service()
    app.state.runtime.store = store
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sales") as http:
        for book_id, body in (("list-eur", LIST_BOOK), ("wholesale-hv", WHOLESALE_BOOK)):
            answer = await http.put(f"/v1/price-books/{book_id}", json=body, headers=ADMIN_HEADERS)
            assert answer.status_code == 201, answer.text
        yield store, http


async def opportunity(store: Store, customer: str, owner: str = "rep-1") -> str:
    """An opportunity in the agreed shape (the opportunities package writes these)."""
    opportunity_id = f"OP-{uuid.uuid4().hex[:8]}"
    await store.db["opportunities"].insert_one(
        {
            "_id": opportunity_id,
            "customer_id": customer,
            "owner_id": owner,
            "territory": "north",
            "status": "open",
            "amount": Decimal("13000"),
            "currency": "EUR",
        }
    )
    return opportunity_id


def quote_body(customer: str, opportunity_id: str | None = None, **fields: Any) -> dict[str, Any]:
    return {
        "customer_id": customer,
        "currency": "EUR",
        "segment": "wholesale",
        "value_tier": "high_value",
        "lines": [
            {"sku": "ATM-200", "quantity": 12, "discount_percent": "5"},
            {"sku": "KB-1", "quantity": 3, "discount_percent": 10},
        ],
        **({"opportunity_id": opportunity_id} if opportunity_id else {}),
        **fields,
    }


async def records(store: Store, quote_id: str) -> list[tuple[str, dict[str, Any]]]:
    """The outbox's (type, data) of events about this quote or its order."""
    found = await outbox_records(store.db, {"topic": Topic.SALES_EVENTS})
    events = [(r["type"], json.loads(r["value"])["data"]) for r in found]
    return [(t, d) for t, d in events if quote_id in (d.get("quote_id"), d.get("order_id", "")[2:])]


async def test_a_price_book_chain_refuses_a_cycle_and_explains_a_price(
    sales: tuple[Store, httpx.AsyncClient],
) -> None:
    _, http = sales
    cyclic = await http.put("/v1/price-books/list-eur", json={**LIST_BOOK, "parent_id": "wholesale-hv"}, headers=REP)
    assert cyclic.status_code == 422, cyclic.text
    assert "cycle (list-eur > wholesale-hv > list-eur)" in cyclic.json()["detail"]
    missing = await http.put("/v1/price-books/x", json={**LIST_BOOK, "parent_id": "nope"}, headers=REP)
    assert missing.status_code == 422 and "nope, which does not exist" in missing.json()["detail"]
    dollars = await http.put("/v1/price-books/list-eur", json={**LIST_BOOK, "currency": "USD"}, headers=REP)
    assert dollars.status_code == 422 and "wholesale-hv inherit from it" in dollars.json()["detail"]
    rising = {
        **LIST_BOOK,
        "entries": [{"sku": "A", "unit_price": "1", "breaks": [{"min_quantity": 2, "unit_price": "2"}]}],
    }
    assert (await http.put("/v1/price-books/y", json=rising, headers=REP)).status_code == 422

    replaced = await http.put("/v1/price-books/list-eur", json=LIST_BOOK, headers=REP)
    assert replaced.status_code == 200 and replaced.json()["discount_caps"] == {"rep": "10", "manager": "25"}
    listed = (await http.get("/v1/price-books", params={"limit": 1}, headers=REP)).json()
    assert [b["book_id"] for b in listed["items"]] == ["list-eur"]
    rest = await http.get("/v1/price-books", params={"limit": 1, "cursor": listed["next_cursor"]}, headers=REP)
    assert [b["book_id"] for b in rest.json()["items"]] == ["wholesale-hv"] and rest.json()["next_cursor"] is None

    params: dict[str, str | int] = {
        "sku": "KB-1",
        "currency": "EUR",
        "quantity": 3,
        "segment": "wholesale",
        "value_tier": "high_value",
    }
    price = (await http.get("/v1/prices", params=params, headers=REP)).json()
    assert (price["price_book_id"], price["supplied_by"], price["chain"], price["unit_price"]) == (
        "wholesale-hv",
        "list-eur",
        ["wholesale-hv", "list-eur"],
        "19.99",
    )
    before = await http.get("/v1/prices", params={**params, "on": "2026-01-15"}, headers=REP)
    assert before.json()["price_book_id"] == "list-eur", before.text
    general = await http.get("/v1/prices", params={"sku": "ATM-200", "currency": "EUR", "quantity": 10}, headers=REP)
    assert (general.json()["price_book_id"], general.json()["unit_price"]) == ("list-eur", "1150.00")


async def test_a_sent_quote_accepted_twice_becomes_one_order_with_its_events(
    sales: tuple[Store, httpx.AsyncClient],
) -> None:
    store, http = sales
    customer = f"C-{uuid.uuid4().hex[:8]}"
    opportunity_id = await opportunity(store, customer)
    key = {"Idempotency-Key": f"quote-{customer}"}
    body = quote_body(customer, opportunity_id, tax_percent="20")

    created = await http.post("/v1/quotes", json=body, headers={**REP, **key})
    assert created.status_code == 201, created.text
    quote = created.json()
    quote_id = quote["quote_id"]
    assert (quote["status"], quote["price_book_id"], quote["owner_id"], quote["territory"]) == (
        "draft",
        "wholesale-hv",
        "rep-1",
        "north",
    )
    atm, kb = quote["lines"]
    assert (atm["unit_price"], atm["discount"], atm["net"], atm["price_chain"]) == (
        "1100.00",
        "660.00",
        "12540.00",
        ["wholesale-hv"],
    )
    # 10% of 59.97 is 5.997: 6.00 to the cent.
    assert (kb["unit_price"], kb["discount"], kb["price_book_id"], kb["price_chain"]) == (
        "19.99",
        "6.00",
        "list-eur",
        ["wholesale-hv", "list-eur"],
    )
    assert Decimal(quote["total"]) == Decimal("12593.97")
    # 20% of 12593.97 is 2518.794: the tax shows beside the total; the order keeps the total net of tax.
    assert (quote["tax_percent"], quote["tax"], quote["total_with_tax"]) == ("20", "2518.79", "15112.76")
    assert quote["valid_until"] == (datetime.now(UTC).date() + timedelta(days=30)).isoformat()

    again = await http.post("/v1/quotes", json=body, headers={**REP, **key})
    assert again.status_code == 200 and again.json()["quote_id"] == quote_id
    other = await http.post("/v1/quotes", json={**body, "lines": body["lines"][:1]}, headers={**REP, **key})
    assert other.status_code == 409, other.text
    someone_else = await http.post("/v1/quotes", json=body, headers={**MANAGER, **key})
    assert someone_else.status_code == 409, someone_else.text
    assert await store.db[repository.QUOTES].count_documents({"customer_id": customer}) == 1

    not_yet = await http.post(f"/v1/quotes/{quote_id}/accept", headers=REP)
    assert not_yet.status_code == 409 and "only a sent quote" in not_yet.json()["detail"]
    sent = await http.post(f"/v1/quotes/{quote_id}/send", headers=REP)
    assert sent.status_code == 200 and sent.json()["status"] == "sent", sent.text
    assert (await http.post(f"/v1/quotes/{quote_id}/send", headers=REP)).json()["status"] == "sent"

    # Someone else sees nothing of it; the rep's manager does.
    assert (await http.get(f"/v1/quotes/{quote_id}", headers=OTHER_REP)).status_code == 404
    assert (await http.post(f"/v1/quotes/{quote_id}/accept", headers=OTHER_REP)).status_code == 404
    assert (await http.get(f"/v1/quotes/{quote_id}", headers=MANAGER)).json()["status"] == "sent"

    accepted = await http.post(f"/v1/quotes/{quote_id}/accept", headers=REP)
    assert accepted.status_code == 200, accepted.text
    order_id = accepted.json()["order_id"]
    assert accepted.json()["status"] == "accepted" and order_id == f"O-{quote_id}"
    twice = await http.post(f"/v1/quotes/{quote_id}/accept", headers=REP)
    assert twice.status_code == 200 and twice.json()["order_id"] == order_id

    orders = await store.db[orders_repository.ORDERS].find({"customer_id": customer}).to_list(None)
    assert len(orders) == 1
    order = orders[0]
    assert (order["_id"], order["quote_id"], order["opportunity_id"], order["owner_id"], order["territory"]) == (
        order_id,
        quote_id,
        opportunity_id,
        "rep-1",
        "north",
    )
    assert order["placed"]["total"] == Decimal("12593.97") and order["status"] == "placed"
    assert [
        (li["sku"], li["quantity"], li["unit_price"], li["discount"], li["unit_cost"])
        for li in order["placed"]["lines"]
    ] == [
        ("ATM-200", 12, Decimal("1100.00"), Decimal("660.00"), Decimal("800.00")),
        ("KB-1", 3, Decimal("19.99"), Decimal("6.00"), Decimal("7.10")),
    ]

    emitted = await records(store, quote_id)
    assert [t for t, _ in emitted] == ["crm.quote.sent.v1", "crm.order.placed.v1", "crm.quote.accepted.v1"]
    accepted_data = emitted[2][1]
    assert (accepted_data["order_id"], accepted_data["total"], accepted_data["opportunity_id"]) == (
        order_id,
        "12593.97",
        opportunity_id,
    )
    assert emitted[1][1]["order_id"] == order_id and emitted[0][1]["valid_until"] == quote["valid_until"]
    assert emitted[0][1]["total"] == "15112.76"  # crm.quote.sent.v1: what the customer was quoted, tax included

    rejected = await http.post(f"/v1/quotes/{quote_id}/reject", json={"reason": "late"}, headers=REP)
    assert rejected.status_code == 409

    listed = (await http.get("/v1/quotes", params={"customer_id": customer, "status": "accepted"}, headers=REP)).json()
    assert [q["quote_id"] for q in listed["items"]] == [quote_id]
    assert (await http.get("/v1/quotes", params={"opportunity_id": opportunity_id}, headers=OTHER_REP)).json()[
        "items"
    ] == []


async def test_a_discount_over_the_role_cap_is_refused_naming_the_cap(
    sales: tuple[Store, httpx.AsyncClient],
) -> None:
    store, http = sales
    customer = f"C-{uuid.uuid4().hex[:8]}"
    generous = quote_body(customer, lines=[{"sku": "ATM-200", "quantity": 1, "discount_percent": "20"}])
    refused = await http.post("/v1/quotes", json=generous, headers=REP)
    assert refused.status_code == 422, refused.text
    problem = refused.json()
    assert (problem["title"], problem["role"], problem["cap_percent"], problem["line"], problem["sku"]) == (
        "Discount over cap",
        "rep",
        "10",
        1,
        "ATM-200",
    )
    assert "above the rep cap of 10% on price book wholesale-hv" in problem["detail"]
    by_manager = await http.post("/v1/quotes", json=generous, headers=MANAGER)
    assert by_manager.status_code == 201 and by_manager.json()["lines"][0]["discount"] == "240.00"
    too_much = quote_body(customer, lines=[{"sku": "ATM-200", "quantity": 1, "discount_percent": "30"}])
    assert (await http.post("/v1/quotes", json=too_much, headers=MANAGER)).json()["cap_percent"] == "25"
    assert (await http.post("/v1/quotes", json=too_much, headers=ADMIN_HEADERS)).status_code == 201
    assert await store.db[repository.QUOTES].count_documents({"customer_id": customer}) == 2

    for bad, why in (
        ({"lines": [{"sku": "NOPE", "quantity": 1}]}, "no price for NOPE"),
        ({"price_book_id": "gone"}, "no price book gone"),
        ({"currency": "GBP"}, "GBP"),
        ({"opportunity_id": "OP-none"}, "no opportunity OP-none"),
        ({"valid_until": "2020-01-01"}, "must be from today"),
        ({"lines": [{"sku": "ATM-200", "quantity": 1_000_000}]}, "could not become an order"),
        ({"lines": [{"sku": "KB-1", "quantity": 1, "discount_percent": 10.5}]}, None),
    ):
        answer = await http.post("/v1/quotes", json={**quote_body(customer), **bad}, headers=ADMIN_HEADERS)
        assert answer.status_code == 422, answer.text
        assert why is None or why in answer.json()["detail"], answer.text


async def test_an_expired_quote_is_refused_and_a_rejected_one_publishes_its_reason(
    sales: tuple[Store, httpx.AsyncClient],
) -> None:
    store, http = sales
    customer = f"C-{uuid.uuid4().hex[:8]}"
    ids = []
    for _ in range(3):
        created = await http.post("/v1/quotes", json=quote_body(customer), headers=REP)
        assert created.status_code == 201, created.text
        ids.append(created.json()["quote_id"])
        assert (await http.post(f"/v1/quotes/{ids[-1]}/send", headers=REP)).status_code == 200
    expired, rejected, _ = ids
    # Its last day has passed.
    yesterday = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    await store.db[repository.QUOTES].update_one({"_id": expired}, {"$set": {"valid_until": yesterday}})

    refused = await http.post(f"/v1/quotes/{expired}/accept", headers=REP)
    assert refused.status_code == 409 and refused.json()["title"] == "Quote expired", refused.text
    assert (await http.get(f"/v1/quotes/{expired}", headers=REP)).json()["status"] == "expired"
    assert await store.db[orders_repository.ORDERS].count_documents({"customer_id": customer}) == 0

    answer = await http.post(f"/v1/quotes/{rejected}/reject", json={"reason": "Budget moved"}, headers=REP)
    assert (answer.status_code, answer.json()["status"], answer.json()["reject_reason"]) == (
        200,
        "rejected",
        "Budget moved",
    )
    assert [(t, d.get("reason")) for t, d in await records(store, rejected)] == [
        ("crm.quote.sent.v1", None),
        ("crm.quote.rejected.v1", "Budget moved"),
    ]
    assert [t for t, _ in await records(store, expired)] == ["crm.quote.sent.v1"]

    by_status = {}
    for wanted in ("sent", "expired", "rejected", "draft"):
        page = (await http.get("/v1/quotes", params={"customer_id": customer, "status": wanted}, headers=REP)).json()
        by_status[wanted] = [q["quote_id"] for q in page["items"]]
    assert by_status == {"sent": [ids[2]], "expired": [expired], "rejected": [rejected], "draft": []}

    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"customer_id": customer, "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await http.get("/v1/quotes", params=params, headers=REP)).json()
        seen += [q["quote_id"] for q in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]


async def test_accepting_concurrently_places_one_order(sales: tuple[Store, httpx.AsyncClient]) -> None:
    store, http = sales
    customer = f"C-{uuid.uuid4().hex[:8]}"
    quote_id = (await http.post("/v1/quotes", json=quote_body(customer), headers=REP)).json()["quote_id"]
    await http.post(f"/v1/quotes/{quote_id}/send", headers=REP)
    principal = Principal(kind="token", id="rep-1", scopes=frozenset({"quotes:write"}))
    rates = SalesSettings().rate_table
    now = datetime.now(UTC)
    results = await asyncio.gather(
        *(handlers.accept_quote(store, quote_id, principal=principal, now=now, rates=rates) for _ in range(3))
    )
    assert {q.order_id for q in results if q is not None} == {f"O-{quote_id}"}
    assert await store.db[orders_repository.ORDERS].count_documents({"customer_id": customer}) == 1
    assert [t for t, _ in await records(store, quote_id)].count("crm.order.placed.v1") == 1


async def test_a_quote_without_lines_takes_its_opportunitys_lines_priced_on_the_book(
    sales: tuple[Store, httpx.AsyncClient],
) -> None:
    _, http = sales
    rep = bearer("rep-1", "quotes:read", "quotes:write", "opportunities:write")
    line = {"sku": "ATM-200", "quantity": 2, "unit_price": "1250.00", "discount": "125.00"}
    body = {"customer_id": "C-ql", "name": "Two ATMs", "amount": "2375.00", "currency": "EUR", "lines": [line]}
    opened = await http.post("/v1/opportunities", json=body, headers=rep)
    assert opened.status_code == 201, opened.text
    quote = await http.post(
        "/v1/quotes", json=quote_body("C-ql", opened.json()["opportunity_id"], lines=[]), headers=rep
    )
    assert quote.status_code == 201, quote.text
    [priced] = quote.json()["lines"]
    # The wholesale book's price for 2, with the opportunity's 125.00 off 2,500.00 as 5%.
    assert (priced["sku"], priced["quantity"], priced["unit_price"], priced["discount_percent"]) == (
        "ATM-200",
        2,
        "1200.00",
        "5.00",
    )
    alone = await http.post("/v1/quotes", json=quote_body("C-ql", lines=[]), headers=rep)
    assert alone.status_code == 422 and "name an opportunity" in alone.json()["detail"]
