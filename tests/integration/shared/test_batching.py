"""Batched consumers on the real broker and database: exactly the good records of a batch are applied, in
order, once, whatever else the batch holds and wherever the consumer stops.

The records are published before the consumer starts, so one fetch holds them all and one partition
batch applies them together (they share a key, so a partition).
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import REGISTRY

from crm_sales.app import create_service
from crm_sales.orders import handlers as sales
from crm_sales.orders import repository
from crm_sales.settings import SalesSettings
from crm_shared.batching import BatchConsumer, Subscription
from crm_shared.events import CloudEvent, OrderIngest
from crm_shared.money import ExchangeRates
from crm_shared.store import DEADLETTERS, PROCESSED, BatchOutcome, Store, outbox_records
from crm_shared.topics import Topic

from helpers import broker_of_its_own, eventually

RATES = ExchangeRates.of("EUR", {"EUR": "1"})


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A broker of this module's own, so no other consumer in the sales group takes its partitions."""
    with broker_of_its_own(tmp_path_factory.mktemp("batching-broker")) as broker:
        yield broker.kafka_bootstrap


@pytest.fixture
async def producer(kafka: str) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all")
    await producer.start()
    yield producer
    await producer.stop()


def placed(customer: str, order_id: str, event_id: str, total: str) -> bytes:
    return json.dumps(fact("placed", customer, order_id, event_id, currency="EUR", total=total)).encode()


def fact(kind: str, customer: str, order_id: str, event_id: str, **data: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "/channels/test",
        "type": f"crm.order.{kind}.v1",
        "time": "2026-11-20T10:00:00Z",
        "subject": customer,
        "data": {"customer_id": customer, "order_id": order_id, **data},
    }


async def send_all(producer: AIOKafkaProducer, customer: str, values: Sequence[bytes]) -> tuple[int, int]:
    """Publish in order; the partition and the first offset they went to (one key: one partition)."""
    sent = [await producer.send_and_wait(Topic.INGEST_ORDERS, value, key=customer.encode()) for value in values]
    return sent[0].partition, sent[0].offset


def counter(name: str, group: str, topic: str = Topic.INGEST_ORDERS) -> float:
    return REGISTRY.get_sample_value(name, {"group": group, "topic": topic}) or 0.0


async def test_a_batch_applies_exactly_its_good_records_in_order(
    backend: Any, kafka: str, producer: AIOKafkaProducer
) -> None:
    customer = f"C-{uuid.uuid4().hex[:8]}"
    first = placed(customer, f"{customer}-O1", f"{customer}-e1", "10.00")
    values = [
        first,
        first,  # the same event again, inside the batch
        b'{"not": "an event"}',  # poison: no envelope
        # The same order id with other content: the domain rejects it.
        placed(customer, f"{customer}-O1", f"{customer}-e2", "99.00"),
        placed(customer, f"{customer}-O2", f"{customer}-e3", "5.00"),
        # Cancels the order placed earlier in the same batch: applied after it, so it finds it.
        json.dumps(fact("cancelled", customer, f"{customer}-O1", f"{customer}-e4")).encode(),
    ]
    await send_all(producer, customer, values)
    group = "crm-sales"
    before = {
        name: counter(name, group)
        for name in ("crm_records_applied_total", "crm_records_duplicate_total", "crm_records_dead_lettered_total")
    }
    settings = SalesSettings(
        CRM_KAFKA_BOOTSTRAP=kafka, CRM_MONGO_URI=backend.mongo_uri, db=f"sales_batch_{uuid.uuid4().hex[:8]}"
    )
    app = create_service(settings)
    async with app.router.lifespan_context(app):
        store: Store = app.state.runtime.require_store()

        async def letters() -> list[dict[str, Any]]:
            found = await store.db[DEADLETTERS].find({"key": customer}).sort("offset", 1).to_list(None)
            return found if len(found) == 2 else []

        parked = await eventually(letters, timeout=60, what="the two dead letters")
        orders = {o.order_id: o for o in (await repository_orders(store, customer))}
        outbox = await outbox_records(store.db, {"key": customer, "topic": Topic.SALES_EVENTS})
        markers = await store.db[PROCESSED].count_documents({"_id": {"$regex": f"^sales:{customer}-"}})

    assert sorted(orders) == [f"{customer}-O1", f"{customer}-O2"]
    assert orders[f"{customer}-O1"].cancelled_at is not None and str(orders[f"{customer}-O1"].total) == "10.00"
    assert sorted(r["type"] for r in outbox) == ["crm.order.cancelled.v1", "crm.order.placed.v1", "crm.order.placed.v1"]
    assert markers == 3
    assert parked[0]["reason"].startswith("invalid event: ") and parked[0]["offset"] == 2
    assert parked[1]["reason"] == f"rejected: order {customer}-O1 was already placed with different content"
    assert counter("crm_records_applied_total", group) - before["crm_records_applied_total"] == 3
    assert counter("crm_records_duplicate_total", group) - before["crm_records_duplicate_total"] == 1
    assert counter("crm_records_dead_lettered_total", group) - before["crm_records_dead_lettered_total"] == 2


async def repository_orders(store: Store, customer: str) -> list[Any]:
    docs = await store.db[repository.ORDERS].find({"customer_id": customer}).to_list(None)
    return [repository.from_document(d) for d in docs]


class Crash(BaseException):
    """The process dies: nothing after it runs, nothing catches it."""


async def test_a_crash_after_the_commit_and_before_the_offset_commit_reapplies_nothing(
    new_store: Any, kafka: str, producer: AIOKafkaProducer
) -> None:
    store: Store = await new_store("batch_crash")
    customer = f"C-{uuid.uuid4().hex[:8]}"
    group = f"crash-test-{customer}"
    values = [placed(customer, f"{customer}-O{i}", f"{customer}-e{i}", "1.00") for i in range(3)]
    outcomes: list[BatchOutcome] = []

    async def then_crash(events: Sequence[CloudEvent[Any]]) -> BatchOutcome:
        outcomes.append(await sales.apply_order_events(store, events, RATES))
        if any(e.subject == customer for e in events):
            raise Crash
        return outcomes[-1]

    async def applies(events: Sequence[CloudEvent[Any]]) -> BatchOutcome:
        outcomes.append(await sales.apply_order_events(store, events, RATES))
        return outcomes[-1]

    def consumer(handle: Any) -> BatchConsumer:
        subscription = Subscription((Topic.INGEST_ORDERS,), group, OrderIngest, handle, "t", "t")
        # The broker holds records of the module's other tests too: they are other customers', and fine.
        return BatchConsumer(
            subscription,
            bootstrap=kafka,
            client_id="t",
            service="sales",
            store_ref=lambda: store,
            broker=None,  # type: ignore[arg-type]
        )

    partition, first_offset = await send_all(producer, customer, values)
    first = consumer(then_crash)
    await first.start()
    await eventually(lambda: _done(first), timeout=60, what="the first consumer to crash")
    with contextlib.suppress(Crash):
        await first.stop()
    assert first._consumer is not None
    await first._consumer.stop()  # what the dead process's session timeout would do, sooner
    assert sum(1 for o in outcomes for i in o.applied if i.startswith(customer)) == 3  # the database has them
    # The crash left no offset past the customer's records behind.
    assert (await _committed(kafka, group)).get(partition, 0) <= first_offset

    outcomes.clear()
    second = consumer(applies)
    await second.start()

    async def redelivered() -> bool:
        return sum(len(o.duplicates) for o in outcomes) >= 3

    await eventually(redelivered, timeout=60, what="the batch to come back to the second consumer")
    await second.stop()

    mine = [o for o in outcomes if any(i.startswith(customer) for i in o.applied + o.duplicates)]
    assert sum(len(o.applied) for o in mine) == 0
    assert len(await outbox_records(store.db, {"key": customer})) == 3
    assert await store.db[PROCESSED].count_documents({"_id": {"$regex": f"^sales:{customer}-"}}) == 3
    assert (await _committed(kafka, group))[partition] >= first_offset + 3


async def _done(consumer: BatchConsumer) -> bool:
    task = consumer._task
    return task is not None and task.done()


async def _committed(kafka: str, group: str) -> dict[int, int]:
    reader = AIOKafkaConsumer(bootstrap_servers=kafka, group_id=group, enable_auto_commit=False)
    await reader.start()
    try:
        partitions = [TopicPartition(Topic.INGEST_ORDERS, p) for p in range(3)]
        found = {tp.partition: await reader.committed(tp) for tp in partitions}
    finally:
        await reader.stop()
    return {p: o for p, o in found.items() if o is not None}
