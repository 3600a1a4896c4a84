"""Bad input never stops intake, never overrides a customer's refusal, and is refused at the edge, never a 500.

Runs services in-process on the session's real broker and database.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm_customer.app import create_service as create_customer
from crm_customer.settings import CustomerSettings
from crm_sales.app import create_service as create_sales
from crm_sales.settings import SalesSettings
from crm_shared.embedded import free_port
from crm_shared.store import DEADLETTERS, outbox_records
from crm_shared.topics import Topic

from helpers import ADMIN_HEADERS, TopicReader, broker_of_its_own, eventually

PROBLEM = "application/problem+json"


def order(customer: str, order_id: str, total: str = "10.00", time: str = "2026-11-20T10:00:00Z") -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"evt-{order_id}",
        "source": "/channels/test",
        "type": "crm.order.placed.v1",
        "time": time,
        "subject": customer,
        "data": {"customer_id": customer, "order_id": order_id, "currency": "EUR", "total": total},
    }


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A broker of this module's own: the e2e platform's services keep consuming the session broker in
    the same consumer groups, and would take the partitions these tests read."""
    with broker_of_its_own(tmp_path_factory.mktemp("bad-input-broker")) as broker:
        yield broker.kafka_bootstrap


@asynccontextmanager
async def running(create: Callable[[Any], FastAPI], settings: Any) -> AsyncIterator[FastAPI]:
    """A service with its consumers and relay, started the way its process starts it."""
    app = create(settings)
    async with app.router.lifespan_context(app):
        yield app


def on_own_database(settings_class: Any, name: str, backend: Any, kafka: str) -> Any:
    return settings_class(
        CRM_KAFKA_BOOTSTRAP=kafka, CRM_MONGO_URI=backend.mongo_uri, db=f"{name}_{free_port()}", relay_poll_seconds=0.2
    )


@pytest.fixture(scope="module")
async def sales(backend: Any, kafka: str) -> AsyncIterator[FastAPI]:
    async with running(create_sales, on_own_database(SalesSettings, "sales_bad_input", backend, kafka)) as app:
        yield app


@pytest.fixture(scope="module")
async def customer_app(backend: Any, kafka: str) -> AsyncIterator[FastAPI]:
    async with running(create_customer, on_own_database(CustomerSettings, "customer_bad_input", backend, kafka)) as app:
        yield app


@pytest.fixture(scope="module")
async def big_producer(kafka: str) -> AsyncIterator[AIOKafkaProducer]:
    # A careless channel system: records far over the usual 1 MB.
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", max_request_size=8 * 1024 * 1024)
    await producer.start()
    yield producer
    await producer.stop()


def client(app: FastAPI, name: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url=f"http://{name}")


async def test_poison_records_of_any_size_never_stall_the_partition(
    sales: FastAPI, big_producer: AIOKafkaProducer, kafka: str
) -> None:
    customer = f"C-POISON-{uuid.uuid4().hex[:6]}"
    store = sales.state.runtime.require_store()
    offsets = []
    for size in (1024, 900 * 1024, 5 * 1024 * 1024):
        poison = order(customer, f"P-{size}-{customer}")
        poison["data"]["summary"] = "x" * size  # not a field of an order: refused
        sent = await big_producer.send_and_wait(Topic.INGEST_ORDERS, json.dumps(poison).encode(), key=customer.encode())
        offsets.append(sent.offset)
        good = order(customer, f"G-{size}-{customer}")
        await big_producer.send_and_wait(Topic.INGEST_ORDERS, json.dumps(good).encode(), key=customer.encode())
    deep = b"[" * 200_000 + b"]" * 200_000
    await big_producer.send_and_wait(Topic.INGEST_ORDERS, deep, key=customer.encode())
    last = order(customer, f"G-last-{customer}")
    await big_producer.send_and_wait(Topic.INGEST_ORDERS, json.dumps(last).encode(), key=customer.encode())

    async with client(sales, "sales") as http:

        async def all_good_orders() -> bool:
            page = (await http.get(f"/v1/customers/{customer}/orders")).json()
            return len(page["items"]) == 4

        await eventually(all_good_orders, timeout=90, what="every good order behind the poison records")

    # A batch's letters are parked right after its good records commit: wait for them too.
    async def four_letters() -> list[dict[str, Any]]:
        found = await store.db[DEADLETTERS].find({"key": customer}).to_list(None)
        return found if len(found) >= 4 else []

    parked = await eventually(four_letters, timeout=30, what="the four letters parked")
    assert len(parked) == 4
    assert {p["offset"] for p in parked} >= set(offsets)
    assert all(p["original"] is not None and len(p["original"]) == p["original_size"] for p in parked)

    async with TopicReader(kafka, Topic.DEADLETTER) as reader:
        for offset in offsets:
            record = await reader.find(
                lambda r, o=offset: r.key == customer.encode() and f'"offset":{o},' in r.value.decode()
            )
            letter = json.loads(record.value)
            assert len(record.value) < 120 * 1024
            assert letter["service"] == "sales" and "data.summary" in letter["reason"]
            assert letter["original_kept_in"].endswith(".deadletters")


async def test_a_record_keyed_other_than_its_subject_is_dead_lettered(
    sales: FastAPI, big_producer: AIOKafkaProducer
) -> None:
    customer = f"C-KEY-{uuid.uuid4().hex[:6]}"
    store = sales.state.runtime.require_store()
    wrong = order(customer, f"W-{customer}")
    await big_producer.send_and_wait(Topic.INGEST_ORDERS, json.dumps(wrong).encode(), key=b"someone-else")
    right = order(customer, f"R-{customer}")
    await big_producer.send_and_wait(Topic.INGEST_ORDERS, json.dumps(right).encode(), key=customer.encode())

    async with client(sales, "sales") as http:

        async def right_stored() -> bool:
            return (await http.get(f"/v1/orders/R-{customer}")).status_code == 200

        await eventually(right_stored, timeout=60, what="the correctly keyed order")
        assert (await http.get(f"/v1/orders/W-{customer}")).status_code == 404
    letter = await eventually(lambda: store.db[DEADLETTERS].find_one({"event_id": wrong["id"]}), what="the letter")
    assert "differs from the subject" in letter["reason"]


async def test_a_future_dated_grant_is_refused_and_a_refusal_made_now_takes_effect(customer_app: FastAPI) -> None:
    customer = f"C-CONSENT-{uuid.uuid4().hex[:6]}"
    async with client(customer_app, "customer") as http:
        created = await http.post("/v1/customers", json={"customer_id": customer, "name": "Grace Example"})
        assert created.status_code == 201, created.text

        def grant(at: datetime, event_id: str) -> dict[str, Any]:
            return {
                "specversion": "1.0",
                "id": event_id,
                "source": "/channels/test",
                "type": "crm.customer.consent_changed.v1",
                "time": at.isoformat(),
                "subject": customer,
                "data": {"customer_id": customer, "channel": "email", "granted": True},
            }

        far = await http.post("/v1/events", json=grant(datetime(9999, 12, 30, tzinfo=UTC), f"far-{customer}"))
        assert far.status_code == 422 and far.headers["content-type"].startswith(PROBLEM)
        assert "in the future" in far.json()["detail"]

        # Within the accepted clock skew a grant may be stamped a little ahead; a refusal now still wins.
        ahead = await http.post("/v1/events", json=grant(datetime.now(UTC) + timedelta(minutes=4), f"ahead-{customer}"))
        assert ahead.status_code == 202, ahead.text
        assert (await http.get(f"/v1/customers/{customer}/consents")).json()["granted"] == ["email"]
        refused = await http.put(f"/v1/customers/{customer}/consents/email", json={"granted": False})
        assert refused.status_code == 200, refused.text
        assert refused.json()["refused"] == ["email"] and refused.json()["granted"] == []
        # The refusal is published dated no earlier than the grant it answers, so every projection agrees.
        timeline_types = await outbox_records(
            customer_app.state.runtime.require_store().db,
            {"key": customer, "type": "crm.customer.consent_changed.v1"},
        )
        published = [json.loads(bytes(r["value"])) for r in timeline_types]
        refusal = next(e for e in published if not e["data"]["granted"])
        granted = next(e for e in published if e["data"]["granted"])
        assert datetime.fromisoformat(refusal["time"]) >= datetime.fromisoformat(granted["time"])


async def test_a_preferred_channel_that_is_not_granted_is_refused(customer_app: FastAPI) -> None:
    customer = f"C-PREF-{uuid.uuid4().hex[:6]}"
    async with client(customer_app, "customer") as http:
        body = {"customer_id": customer, "name": "Ada", "preferred_channel": "sms"}
        refused = await http.post("/v1/customers", json=body)
        assert refused.status_code == 422 and "must be a channel the customer granted" in refused.text
        weird = await http.post("/v1/customers", json={"customer_id": customer, "name": "Ada\u202eecalevol"})
        assert weird.status_code == 422 and "bidirectional" in weird.text
        ok = {"customer_id": customer, "name": "Ada", "consents": [{"channel": "email", "granted": True}]}
        assert (await http.post("/v1/customers", json=ok)).status_code == 201
        event = {
            "specversion": "1.0",
            "id": f"pref-{customer}",
            "source": "/channels/test",
            "type": "crm.customer.consent_changed.v1",
            "time": datetime.now(UTC).isoformat(),
            "subject": customer,
            "data": {"customer_id": customer, "channel": "email", "granted": True, "preferred_channel": "sms"},
        }
        conflict = await http.post("/v1/events", json=event)
        assert conflict.status_code == 409 and "has not granted it" in conflict.json()["detail"]


rfc3339_times = st.builds(
    lambda at, minutes: (
        at.isoformat() + ("+" if minutes >= 0 else "-") + f"{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    ),
    st.one_of(st.datetimes(min_value=datetime(1899, 12, 31), max_value=datetime(2026, 11, 30)), st.datetimes()),
    st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(time=rfc3339_times)
async def test_any_rfc3339_time_is_accepted_and_round_trips_or_refused_with_422(sales: FastAPI, time: str) -> None:
    customer = f"C-T-{uuid.uuid4().hex[:8]}"
    async with client(sales, "sales") as http:
        answer = await http.post("/v1/events", json=order(customer, f"O-{customer}", time=time))
        assert answer.status_code in (202, 422), (time, answer.status_code, answer.text)
        if answer.status_code == 422:
            assert answer.headers["content-type"].startswith(PROBLEM) and "time" in answer.json()["detail"]
            return
        stored = (await http.get(f"/v1/orders/O-{customer}")).json()
    # MongoDB keeps milliseconds.
    sent = datetime.fromisoformat(time)
    assert abs(datetime.fromisoformat(stored["placed_at"]) - sent) < timedelta(milliseconds=1)


@pytest.mark.parametrize(
    "time", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "9999-12-31T23:00:00Z", "1700000000"]
)
async def test_times_outside_the_window_get_422_on_every_event_intake(
    new_store: Any, sales: FastAPI, customer_app: FastAPI, time: str
) -> None:
    from crm_support import repository as support_repository
    from crm_support.app import create_service as create_support

    support = create_support()
    support.state.runtime.store = await new_store("support_bad_input", support_repository.INDEXES)
    customer = f"C-W-{uuid.uuid4().hex[:8]}"
    complaint = {
        **order(customer, "x", time=time),
        "type": "crm.complaint.filed.v1",
        "data": {
            "customer_id": customer,
            "complaint_id": f"T-{customer}",
            "dimension": "service",
            "severity": "high",
            "summary": "late",
        },
    }
    for app, name, body in (
        (sales, "sales", order(customer, f"O-{customer}", time=time)),
        (support, "support", complaint),
    ):
        async with client(app, name) as http:
            answer = await http.post("/v1/events", json=body)
        assert answer.status_code == 422, (name, answer.text)
        assert answer.headers["content-type"].startswith(PROBLEM) and "time" in answer.json()["detail"]
