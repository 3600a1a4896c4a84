"""The dead-letter admin API on a running service: what its consumer parked is listed with its reason and masked
text, and a corrected record is replayed through the outbox to the letter's topic, where the service applies it.

Runs sales in-process (consumers and relay) on a broker of this module's own and the session's database.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from crm_sales.app import create_service as create_sales
from crm_sales.settings import SalesSettings
from crm_shared.embedded import free_port
from crm_shared.store import DEADLETTERS, outbox_records
from crm_shared.topics import Topic

from helpers import ADMIN_HEADERS, TopicReader, broker_of_its_own, eventually

PROBLEM = "application/problem+json"
LETTERS = "/v1/admin/deadletters"
EMAIL = "ada.lovelace@example.org"


def order(customer: str, order_id: str, **data: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"evt-{order_id}",
        "source": "/channels/test",
        "type": "crm.order.placed.v1",
        "time": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
        "subject": customer,
        "data": {"customer_id": customer, "order_id": order_id, "currency": "EUR", "total": "10.00", **data},
    }


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A broker of this module's own: no other sales of the session shares its consumer group's partitions."""
    with broker_of_its_own(tmp_path_factory.mktemp("deadletters-broker")) as broker:
        yield broker.kafka_bootstrap


@pytest.fixture(scope="module")
async def sales(backend: Any, kafka: str) -> AsyncIterator[FastAPI]:
    settings = SalesSettings(
        CRM_KAFKA_BOOTSTRAP=kafka,
        CRM_MONGO_URI=backend.mongo_uri,
        db=f"sales_deadletters_{free_port()}",
        relay_poll_seconds=0.2,
    )
    app = create_sales(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture(scope="module")
async def producer(kafka: str) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all")
    await producer.start()
    yield producer
    await producer.stop()


@pytest.fixture
async def http(sales: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=sales)
    async with httpx.AsyncClient(headers=ADMIN_HEADERS, transport=transport, base_url="http://sales") as client:
        yield client


async def parked(
    http: httpx.AsyncClient, producer: AIOKafkaProducer, topic: str, record: dict[str, Any], key: str
) -> dict[str, Any]:
    """Publish a record the consumer rejects; the letter as the API lists it, once it is parked."""
    sent = await producer.send_and_wait(topic, json.dumps(record).encode(), key=key.encode())

    async def listed() -> dict[str, Any] | None:
        page = (await http.get(LETTERS, params={"topic": topic, "limit": 500})).json()
        where = (sent.partition, sent.offset)
        return next((item for item in page["items"] if (item["partition"], item["offset"]) == where), None)

    letter: dict[str, Any] = await eventually(listed, what=f"the letter of {topic}:{sent.partition}:{sent.offset}")
    return letter


def path(letter: dict[str, Any], suffix: str = "") -> str:
    return f"{LETTERS}/{letter['letter_id']}{suffix}"


async def test_a_parked_letter_is_listed_with_its_reason_and_its_text_masked(
    http: httpx.AsyncClient, producer: AIOKafkaProducer
) -> None:
    customer = f"C-DL-{uuid.uuid4().hex[:6]}"
    record = order(customer, f"O-{customer}", email=EMAIL)  # not a field of an order: refused
    letter = await parked(http, producer, Topic.INGEST_ORDERS, record, customer)

    assert letter["letter_id"].startswith(f"{Topic.INGEST_ORDERS}:{letter['partition']}:{letter['offset']}:crm-sales:")
    assert (letter["topic"], letter["service"], letter["consumer_group"]) == (Topic.INGEST_ORDERS, "sales", "crm-sales")
    assert letter["reason"].startswith("invalid event:") and "data.email" in letter["reason"]
    assert letter["event_id"] == record["id"] and letter["status"] == "parked"
    assert (letter["replayed_at"], letter["replayed_event_id"], letter["replayed_by"]) == (None, None, None)
    assert letter["original_redacted"] is True
    assert json.loads(letter["original_text"])["data"]["email"] == "[redacted]"
    assert letter["original_size"] == len(json.dumps(record).encode())
    # The kept original holds the address in clear: no answer carries it, nor its base64 copy.
    page = await http.get(LETTERS)
    assert page.status_code == 200 and page.headers["content-type"] == "application/json"
    assert EMAIL not in page.text and "original_value_base64" not in page.text and '"original"' not in page.text

    replayed_only = (await http.get(LETTERS, params={"status": "replayed"})).json()["items"]
    assert letter["letter_id"] not in {item["letter_id"] for item in replayed_only}
    parked_only = (await http.get(LETTERS, params={"status": "parked", "limit": 500})).json()["items"]
    assert letter["letter_id"] in {item["letter_id"] for item in parked_only}
    other_topic = (await http.get(LETTERS, params={"topic": Topic.INGEST_TICKETS})).json()["items"]
    assert other_topic == []
    refused = await http.get(LETTERS, params={"status": "lost"})
    assert refused.status_code == 422 and refused.headers["content-type"] == PROBLEM


async def test_the_list_is_newest_first_in_pages(http: httpx.AsyncClient, producer: AIOKafkaProducer) -> None:
    customer = f"C-DLP-{uuid.uuid4().hex[:6]}"
    for n in range(3):
        await parked(http, producer, Topic.INGEST_ORDERS, order(customer, f"O-{n}-{customer}", total="-1"), customer)
    everything = (await http.get(LETTERS, params={"limit": 500})).json()
    assert everything["next_cursor"] is None
    times = [item["failed_at"] for item in everything["items"]]
    assert times == sorted(times, reverse=True)
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await http.get(LETTERS, params=params)).json()
        seen += [item["letter_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [item["letter_id"] for item in everything["items"]]


async def test_one_letter_by_its_id_with_its_colons_as_they_are_or_encoded(
    http: httpx.AsyncClient, producer: AIOKafkaProducer
) -> None:
    customer = f"C-DLG-{uuid.uuid4().hex[:6]}"
    letter = await parked(http, producer, Topic.INGEST_ORDERS, order(customer, f"O-{customer}", total="x"), customer)
    assert ":" in letter["letter_id"]
    plain = await http.get(path(letter))
    encoded = await http.get(f"{LETTERS}/{quote(letter['letter_id'], safe='')}")
    assert "%3A" in str(encoded.request.url)
    for answer in (plain, encoded):
        assert answer.status_code == 200, answer.text
        assert answer.json() == letter

    unknown = await http.get(f"{LETTERS}/{Topic.INGEST_ORDERS}:0:999999:crm-sales:0123456789abcdef")
    assert unknown.status_code == 404 and unknown.headers["content-type"] == PROBLEM
    assert unknown.json()["title"] == "Dead letter not found"
    malformed = await http.get(f"{LETTERS}/not-a-letter-id")
    assert malformed.status_code == 422 and malformed.headers["content-type"] == PROBLEM


async def test_an_invalid_correction_is_a_422_naming_what_is_wrong_and_publishes_nothing(
    sales: FastAPI, http: httpx.AsyncClient, producer: AIOKafkaProducer
) -> None:
    customer = f"C-DLI-{uuid.uuid4().hex[:6]}"
    record = order(customer, f"O-{customer}", total="ten")
    letter = await parked(http, producer, Topic.INGEST_ORDERS, record, customer)

    still_wrong = await http.post(path(letter, "/replay"), json={"record": record})
    assert still_wrong.status_code == 422, still_wrong.text
    assert still_wrong.headers["content-type"] == PROBLEM
    problem = still_wrong.json()
    assert problem["title"] == "Invalid record" and "data.total" in problem["detail"]
    assert any(e["location"].startswith("record.") and "total" in e["location"] for e in problem["errors"])

    subject_is_not_the_customer = {**order(customer, f"O-{customer}"), "id": record["id"], "subject": "C-other"}
    mismatch = await http.post(path(letter, "/replay"), json={"record": subject_is_not_the_customer})
    assert mismatch.status_code == 422 and "data.customer_id" in mismatch.json()["detail"]

    another_id = {**order(customer, f"O-{customer}"), "id": f"new-{customer}"}
    renamed = await http.post(path(letter, "/replay"), json={"record": another_id})
    assert renamed.status_code == 422, renamed.text
    assert renamed.json()["errors"] == [
        {"location": "record.id", "message": f"must be {record['id']!r}, the letter's event id"}
    ]
    assert (await http.post(path(letter, "/replay"), json={"record": "not an object"})).status_code == 422

    db = sales.state.runtime.require_store().db
    assert await outbox_records(db, {"topic": Topic.INGEST_ORDERS, "key": customer}) == []
    assert (await http.get(path(letter))).json()["status"] == "parked"


async def test_a_corrected_record_is_published_keyed_by_its_subject_applied_and_replayed_once(
    sales: FastAPI, http: httpx.AsyncClient, producer: AIOKafkaProducer, kafka: str
) -> None:
    customer = f"C-DLR-{uuid.uuid4().hex[:6]}"
    order_id = f"O-{customer}"
    wrong = order(customer, order_id, total="-5.00")
    letter = await parked(http, producer, Topic.INGEST_ORDERS, wrong, customer)
    assert (await http.get(f"/v1/orders/{order_id}")).status_code == 404

    corrected = {**wrong, "data": {**wrong["data"], "total": "5.00"}}
    replayed = await http.post(path(letter, "/replay"), json={"record": corrected})
    assert replayed.status_code == 202, replayed.text
    view = replayed.json()
    assert (view["letter_id"], view["status"]) == (letter["letter_id"], "replayed")
    assert (view["replayed_event_id"], view["replayed_by"]) == (wrong["id"], "key:bootstrap")
    assert datetime.fromisoformat(view["replayed_at"]) >= datetime.fromisoformat(view["failed_at"])
    assert (await http.get(path(letter))).json() == view

    async with TopicReader(kafka, Topic.INGEST_ORDERS) as reader:
        # Keyed by the customer, it lands on the partition of the customer's other records, after the rejected one.
        record = await reader.find(
            lambda r: (
                r.partition == letter["partition"]
                and r.offset > letter["offset"]
                and json.loads(r.value)["id"] == wrong["id"]
            )
        )
    assert record.key == customer.encode()
    assert json.loads(record.value)["data"]["total"] == "5.00"

    async def applied() -> bool:
        return (await http.get(f"/v1/orders/{order_id}")).status_code == 200

    await eventually(applied, what="the corrected order, consumed from crm.ingest.orders")

    again = await http.post(path(letter, "/replay"), json={"record": corrected})
    assert again.status_code == 409 and again.headers["content-type"] == PROBLEM
    assert again.json()["title"] == "Dead letter replayed already"
    db = sales.state.runtime.require_store().db
    assert len(await outbox_records(db, {"topic": Topic.INGEST_ORDERS, "key": customer})) == 1
    listed = (await http.get(LETTERS, params={"status": "replayed"})).json()["items"]
    assert letter["letter_id"] in {item["letter_id"] for item in listed}

    audit = (await http.get("/v1/admin/audit", params={"principal": "key:bootstrap", "limit": 500})).json()["items"]
    replays = [a for a in audit if a["action"] == "POST /v1/admin/deadletters/{letter_id}/replay"]
    assert {(a["target"]["letter_id"], a["status"]) for a in replays} >= {
        (letter["letter_id"], 202),
        (letter["letter_id"], 409),
    }


async def test_a_letter_of_a_topic_a_service_publishes_is_not_replayed(
    sales: FastAPI, http: httpx.AsyncClient, producer: AIOKafkaProducer
) -> None:
    customer = f"C-DLM-{uuid.uuid4().hex[:6]}"
    record = {**order(customer, f"O-{customer}"), "type": "crm.lead.qualified.v1"}  # not a lead's payload
    letter = await parked(http, producer, Topic.MARKETING_EVENTS, record, customer)
    refused = await http.post(path(letter, "/replay"), json={"record": order(customer, f"O-{customer}")})
    assert refused.status_code == 409, refused.text
    assert refused.json()["title"] == "Dead letter not replayable"
    assert Topic.MARKETING_EVENTS in refused.json()["detail"]
    db = sales.state.runtime.require_store().db
    assert await outbox_records(db, {"key": customer, "topic": {"$ne": Topic.DEADLETTER}}) == []
    stored = await db[DEADLETTERS].find_one({"_id": letter["letter_id"]})
    assert stored is not None and stored.get("replayed_at") is None


async def test_a_letter_whose_customer_was_erased_is_not_replayed(
    sales: FastAPI, http: httpx.AsyncClient, producer: AIOKafkaProducer
) -> None:
    customer = f"C-DLE-{uuid.uuid4().hex[:6]}"
    wrong = order(customer, f"O-{customer}", total="-1")
    letter = await parked(http, producer, Topic.INGEST_ORDERS, wrong, customer)
    db = sales.state.runtime.require_store().db
    # What an erasure leaves of the letter (crm_shared.identity.erase_plumbing).
    await db[DEADLETTERS].update_one(
        {"_id": letter["letter_id"]},
        {"$set": {"original": None, "original_text": None, "original_erased_at": datetime.now(UTC)}},
    )
    corrected = {**wrong, "data": {**wrong["data"], "total": "1.00"}}
    refused = await http.post(path(letter, "/replay"), json={"record": corrected})
    assert refused.status_code == 409 and "erased" in refused.json()["detail"]
    shown = (await http.get(path(letter))).json()
    assert (shown["status"], shown["original_text"]) == ("parked", None) and shown["original_erased_at"]
    assert await outbox_records(db, {"topic": Topic.INGEST_ORDERS, "key": customer}) == []
