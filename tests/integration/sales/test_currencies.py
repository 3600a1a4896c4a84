"""One currency per order, and only currencies the platform can score, on the real database and broker.

The REST checks run the app without its lifespan on the session database (as test_leads does). The ingest
check runs the service in-process on a broker of its own, so the e2e platform's sales, on the session broker,
does not consume (and dead-letter) these records too.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from crm_sales.app import create_service
from crm_sales.orders import repository
from crm_sales.settings import SalesSettings
from crm_shared.embedded import free_port
from crm_shared.events import (
    CloudEvent,
    OrderPaid,
    OrderPaidEvent,
    OrderPlaced,
    OrderPlacedEvent,
    OrderRefunded,
    OrderRefundedEvent,
    utc_now,
)
from crm_shared.store import Store
from crm_shared.topics import Topic

from helpers import ADMIN_HEADERS, TopicReader, broker_of_its_own, eventually

NewStore = Callable[..., Awaitable[Store]]
PROBLEM_JSON = "application/problem+json"


def ids() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    return f"C-FX-{tag}", f"O-FX-{tag}"


def refund_event(customer: str, order_id: str, currency: str, amount: str) -> OrderRefundedEvent:
    data = OrderRefunded(customer_id=customer, order_id=order_id, currency=currency, amount=amount)
    return OrderRefundedEvent.create(data, source="/channels/web", time=utc_now() - timedelta(minutes=1))


def payment_event(customer: str, order_id: str, currency: str, amount: str) -> OrderPaidEvent:
    data = OrderPaid(customer_id=customer, order_id=order_id, currency=currency, amount=amount)
    return OrderPaidEvent.create(data, source="/channels/web", time=utc_now() - timedelta(minutes=1))


def body(event: CloudEvent[Any]) -> dict[str, Any]:
    envelope: dict[str, Any] = json.loads(event.to_bytes())
    return envelope


async def sales_api(store: Store, settings: SalesSettings | None = None) -> httpx.AsyncClient:
    app = create_service(settings or SalesSettings())
    app.state.runtime.store = store
    return httpx.AsyncClient(headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://sales")


async def test_a_usd_refund_of_a_eur_order_is_refused_with_both_currencies(new_store: NewStore) -> None:
    store = await new_store("sales_fx", repository.INDEXES)
    customer, order_id = ids()
    # USD has a rate here: the refund is refused for its order's currency, not for the rate table.
    settings = SalesSettings(CRM_EXCHANGE_RATES={"EUR": "1", "USD": "0.92"})
    async with await sales_api(store, settings) as http:
        placed = await http.post(
            "/v1/orders", json={"order_id": order_id, "customer_id": customer, "currency": "EUR", "total": "100.00"}
        )
        assert placed.status_code == 201, placed.text

        refused = await http.post("/v1/events", json=body(refund_event(customer, order_id, "USD", "5")))
        assert refused.status_code == 409, refused.text
        assert refused.headers["content-type"].startswith(PROBLEM_JSON)
        assert refused.json()["detail"] == (
            f"refund of 5 USD on order {order_id} refused: the order is in EUR, and a refund must be in its order's "
            "currency"
        )

        accepted = await http.post("/v1/events", json=body(refund_event(customer, order_id, "EUR", "5")))
        assert accepted.status_code == 202, accepted.text
        order = (await http.get(f"/v1/orders/{order_id}")).json()
        assert (order["currency"], order["refunded"], order["status"]) == ("EUR", "5", "partially_refunded")


async def test_an_order_after_a_payment_in_another_currency_is_refused(new_store: NewStore) -> None:
    store = await new_store("sales_fx", repository.INDEXES)
    customer, order_id = ids()
    settings = SalesSettings(CRM_EXCHANGE_RATES={"EUR": "1", "USD": "0.92"})
    async with await sales_api(store, settings) as http:
        early = await http.post("/v1/events", json=body(payment_event(customer, order_id, "USD", "100.00")))
        assert early.status_code == 202, early.text
        awaiting = (await http.get(f"/v1/orders/{order_id}")).json()
        assert (awaiting["status"], awaiting["currency"]) == ("awaiting_order", "USD")

        refused = await http.post(
            "/v1/orders", json={"order_id": order_id, "customer_id": customer, "currency": "EUR", "total": "100.00"}
        )
        assert refused.status_code == 409, refused.text
        assert f"order {order_id} in EUR refused: a payment of 100.00 USD" in refused.json()["detail"]
    doc = await store.db[repository.ORDERS].find_one({"_id": order_id})
    assert doc is not None and doc["placed"] is None
    assert [p["currency"] for p in doc["payments"]] == ["USD"]


async def test_an_order_or_payment_in_a_currency_without_a_rate_is_a_422(new_store: NewStore) -> None:
    store = await new_store("sales_fx", repository.INDEXES)
    customer, order_id = ids()
    async with await sales_api(store) as http:
        refused = await http.post(
            "/v1/orders", json={"order_id": order_id, "customer_id": customer, "currency": "XXX", "total": "10.00"}
        )
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"].startswith(PROBLEM_JSON)
        problem = refused.json()
        assert problem["title"] == "Currency not accepted"
        assert problem["detail"] == (
            f"order {order_id} refused: currency XXX has no exchange rate into the reporting currency EUR, "
            "so the platform cannot score it; the accepted currencies are EUR (CRM_EXCHANGE_RATES)"
        )
        assert problem["accepted_currencies"] == ["EUR"]

        payment = await http.post("/v1/events", json=body(payment_event(customer, order_id, "USD", "1.00")))
        assert payment.status_code == 422, payment.text
        assert "currency USD has no exchange rate" in payment.json()["detail"]
        assert (await http.get(f"/v1/orders/{order_id}")).status_code == 404
    assert await store.db[repository.ORDERS].count_documents({"_id": order_id}) == 0


async def test_on_the_ingest_topic_an_unscorable_currency_is_dead_lettered_with_the_reason(
    backend: Any, tmp_path: Path
) -> None:
    with broker_of_its_own(tmp_path) as broker:
        settings = SalesSettings(
            CRM_KAFKA_BOOTSTRAP=broker.kafka_bootstrap,
            CRM_MONGO_URI=backend.mongo_uri,
            CRM_EXCHANGE_RATES={"EUR": "1", "GBP": "1.17"},
            db=f"sales_fx_ingest_{free_port()}",
            relay_poll_seconds=0.2,
        )
        app = create_service(settings)
        customer, order_id = ids()
        at = utc_now() - timedelta(minutes=1)
        unscorable = OrderPlacedEvent.create(
            OrderPlaced(customer_id=customer, order_id=f"{order_id}-X", currency="XXX", total="10.00"),
            source="/channels/web",
            time=at,
        )
        good = OrderPlacedEvent.create(
            OrderPlaced(customer_id=customer, order_id=order_id, currency="EUR", total="10.00"),
            source="/channels/web",
            time=at,
        )
        wrong_currency = refund_event(customer, order_id, "GBP", "1.00")
        async with app.router.lifespan_context(app):
            producer = AIOKafkaProducer(bootstrap_servers=broker.kafka_bootstrap, acks="all")
            await producer.start()
            try:
                for event in (unscorable, good, wrong_currency):
                    await producer.send_and_wait(Topic.INGEST_ORDERS, event.to_bytes(), key=customer.encode())
            finally:
                await producer.stop()

            async with TopicReader(broker.kafka_bootstrap, Topic.DEADLETTER) as reader:
                letters = []
                for event in (unscorable, wrong_currency):
                    record = await reader.find(lambda r, e=event: json.loads(r.value).get("event_id") == e.id, 60)
                    letters.append(json.loads(record.value))

            async with httpx.AsyncClient(
                headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://sales"
            ) as http:

                async def placed() -> bool:
                    return (await http.get(f"/v1/orders/{order_id}")).status_code == 200

                await eventually(placed, timeout=60, what="the good order behind the unscorable one")
                order = (await http.get(f"/v1/orders/{order_id}")).json()
                assert (order["currency"], order["refunded"]) == ("EUR", "0")
                assert (await http.get(f"/v1/orders/{order_id}-X")).status_code == 404

        assert letters[0]["reason"] == (
            f"rejected: order {order_id}-X refused: currency XXX has no exchange rate into the reporting "
            "currency EUR, so the platform cannot score it; the accepted currencies are EUR, GBP (CRM_EXCHANGE_RATES)"
        )
        assert letters[1]["reason"] == (
            f"rejected: refund of 1.00 GBP on order {order_id} refused: the order is in EUR, and a refund must be in "
            "its order's currency"
        )
        assert all(letter["service"] == "sales" for letter in letters)
