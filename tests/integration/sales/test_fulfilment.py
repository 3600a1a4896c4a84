"""Order fulfilment and tracking on the real database: from the API and from a channel's event, each step kept
and published once, a cancelled order refused with the reason while the rest of the batch is applied."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from crm_sales.app import INDEXES, create_service
from crm_sales.orders import handlers
from crm_sales.settings import SalesSettings
from crm_shared.events import OrderCancelled, OrderCancelledEvent, OrderFulfilled, OrderFulfilledEvent
from crm_shared.store import Store, outbox_records
from crm_shared.topics import Topic

from helpers import ADMIN_HEADERS

NewStore = Callable[..., Awaitable[Store]]
PROBLEM = "application/problem+json"


@pytest.fixture
async def sales(new_store: NewStore) -> AsyncIterator[tuple[Store, httpx.AsyncClient]]:
    store = await new_store("sales_fulfilment", INDEXES)
    app = create_service()
    app.state.runtime.store = store
    async with httpx.AsyncClient(
        headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://sales"
    ) as http:
        yield store, http


async def place(http: httpx.AsyncClient, order_id: str) -> None:
    body = {"order_id": order_id, "customer_id": "C-ship", "currency": "EUR", "total": "50.00"}
    assert (await http.post("/v1/orders", json=body)).status_code == 201


async def test_an_order_is_tracked_step_by_step_and_each_step_published_once(
    sales: tuple[Store, httpx.AsyncClient],
) -> None:
    store, http = sales
    await place(http, "O-ship-1")
    url = "/v1/orders/O-ship-1/fulfilments"
    first = {"carrier": "DHL", "tracking_number": "JD0146", "location": "Depot Leeds"}
    keyed = {"Idempotency-Key": "ship-1"}
    answers = [await http.post(url, json=first, headers=keyed) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200], answers[0].text
    step = await http.post(url, json={"location": "Out for delivery"})
    order = step.json()
    assert order["status"] == "fulfilled" and order["fulfilled_at"] == order["tracking"][0]["at"]
    assert [(t["carrier"], t["location"]) for t in order["tracking"]] == [
        ("DHL", "Depot Leeds"),
        (None, "Out for delivery"),
    ]
    assert (await http.get("/v1/orders/O-ship-1")).json()["tracking"] == order["tracking"]
    published = await outbox_records(store.db, {"topic": Topic.SALES_EVENTS, "type": "crm.order.fulfilled.v1"})
    assert len(published) == 2

    assert (await http.post("/v1/orders/O-none/fulfilments", json=first)).status_code == 404
    too_long = await http.post(url, json={"location": "x" * 201})
    assert (too_long.status_code, too_long.headers["content-type"]) == (422, PROBLEM)


async def test_a_channels_fulfilment_of_a_cancelled_order_is_rejected_alone(
    sales: tuple[Store, httpx.AsyncClient],
) -> None:
    store, http = sales
    await place(http, "O-ship-2")
    await place(http, "O-ship-3")
    cancel = OrderCancelledEvent.create(OrderCancelled(order_id="O-ship-2", customer_id="C-ship"), source="/pos")
    refused = OrderFulfilledEvent.create(
        OrderFulfilled(order_id="O-ship-2", customer_id="C-ship", location="Shop"), source="/pos"
    )
    shipped = OrderFulfilledEvent.create(
        OrderFulfilled(order_id="O-ship-3", customer_id="C-ship", carrier="UPS"), source="/pos"
    )
    rates = SalesSettings().rate_table
    outcome = await handlers.apply_order_events(store, [cancel, refused, shipped], rates)
    assert [str(reason) for reason in outcome.rejected.values()] == [
        "order O-ship-2 is cancelled: a cancelled order is not fulfilled"
    ]
    assert (await http.get("/v1/orders/O-ship-3")).json()["status"] == "fulfilled"
    assert (await http.get("/v1/orders/O-ship-2")).json()["status"] == "cancelled"
    api = await http.post("/v1/orders/O-ship-2/fulfilments", json={"location": "Shop"})
    assert (api.status_code, api.json()["detail"]) == (
        409,
        "order O-ship-2 is cancelled: a cancelled order is not fulfilled",
    )
    # The same fact by POST /v1/events, as on crm.ingest.orders.
    again = OrderFulfilledEvent.create(
        OrderFulfilled(order_id="O-ship-3", customer_id="C-ship", location="Hub"), source="/pos"
    )
    submitted = await http.post("/v1/events", content=again.to_bytes(), headers={"Content-Type": "application/json"})
    assert submitted.status_code == 202, submitted.text
    assert [t["location"] for t in (await http.get("/v1/orders/O-ship-3")).json()["tracking"]] == [None, "Hub"]
    published = await outbox_records(store.db, {"topic": Topic.SALES_EVENTS, "type": "crm.order.fulfilled.v1"})
    assert sorted(json.loads(r["value"])["data"]["order_id"] for r in published) == ["O-ship-3", "O-ship-3"]
