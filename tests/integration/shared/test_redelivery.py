"""What a broker lost after acknowledging it is published again: the relay notices the shorter log.

The embedded broker keeps nothing across a restart. The sales service runs in-process against a broker of
its own (so restarting it disturbs no other test) and the session's real database.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from crm_sales.app import create_service
from crm_sales.settings import SalesSettings
from crm_shared.embedded import EmbeddedServers, free_port
from crm_shared.events import utc_now
from crm_shared.redelivery import RELAY_MARKS, LogWatch
from crm_shared.store import OUTBOX, Store, unsent_records
from crm_shared.topics import Topic

from helpers import ADMIN_HEADERS, TopicReader, broker_of_its_own, eventually


def sales_on(broker: EmbeddedServers, backend: Any, db: str, **settings: Any) -> FastAPI:
    return create_service(
        SalesSettings(
            CRM_KAFKA_BOOTSTRAP=broker.kafka_bootstrap,
            CRM_MONGO_URI=backend.mongo_uri,
            db=db,
            relay_poll_seconds=0.2,
            **settings,
        )
    )


async def place(app: FastAPI, order_id: str, customer_id: str) -> None:
    async with httpx.AsyncClient(
        headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://sales"
    ) as api:
        response = await api.post(
            "/v1/orders", json={"order_id": order_id, "customer_id": customer_id, "currency": "EUR", "total": "20.00"}
        )
    assert response.status_code == 201, response.text


async def placed_orders(bootstrap: str, customer_id: str, want: int) -> list[str]:
    """The order ids of the placed events keyed `customer_id`, once `want` of them are on the topic."""
    found: list[str] = []

    async def enough() -> bool:
        nonlocal found
        async with TopicReader(bootstrap, Topic.SALES_EVENTS) as reader:
            records = await reader.drain()
        found = [
            json.loads(r.value)["data"]["order_id"]
            for r in records
            if r.key == customer_id.encode() and json.loads(r.value)["type"] == "crm.order.placed.v1"
        ]
        return len(found) >= want

    await eventually(enough, timeout=60, what=f"{want} placed orders of {customer_id} on the topic")
    return found


async def test_records_a_restarted_broker_lost_are_published_again(backend: Any, tmp_path: Path) -> None:
    with broker_of_its_own(tmp_path) as broker:
        app = sales_on(broker, backend, f"sales_redeliver_{free_port()}")
        async with app.router.lifespan_context(app):
            store = app.state.runtime.require_store()
            await place(app, "O-RD-1", "C-RD")
            await place(app, "O-RD-2", "C-RD")
            assert await placed_orders(broker.kafka_bootstrap, "C-RD", 2) == ["O-RD-1", "O-RD-2"]

            async def marked() -> int:
                return await store.db[RELAY_MARKS].count_documents({})

            await eventually(marked, what="the relay to remember the offsets it was given")

            # Everything it had is gone, as after a crash of the embedded broker.
            broker.stop_broker()
            broker.start_broker()

            # Both orders come back, in their order, once; and what is placed next follows them.
            assert await placed_orders(broker.kafka_bootstrap, "C-RD", 2) == ["O-RD-1", "O-RD-2"]
            await place(app, "O-RD-3", "C-RD")
            assert await placed_orders(broker.kafka_bootstrap, "C-RD", 3) == ["O-RD-1", "O-RD-2", "O-RD-3"]
            assert await unsent_records(store.db) == 0


async def test_a_service_restarted_with_the_broker_still_publishes_what_was_lost(backend: Any, tmp_path: Path) -> None:
    """`crm run` stopped and started again: a new broker, the same database; the marks were saved."""
    db = f"sales_redeliver_restart_{free_port()}"
    with broker_of_its_own(tmp_path) as broker:
        first = sales_on(broker, backend, db)
        async with first.router.lifespan_context(first):
            await place(first, "O-RR-1", "C-RR")
            await placed_orders(broker.kafka_bootstrap, "C-RR", 1)
        broker.stop_broker()
        broker.start_broker()
        second = sales_on(broker, backend, db)
        async with second.router.lifespan_context(second):
            assert await placed_orders(broker.kafka_bootstrap, "C-RR", 1) == ["O-RR-1"]


async def test_nothing_is_published_again_while_the_broker_keeps_its_log(backend: Any, tmp_path: Path) -> None:
    with broker_of_its_own(tmp_path) as broker:
        app = sales_on(broker, backend, f"sales_no_redeliver_{free_port()}")
        async with app.router.lifespan_context(app):
            store = app.state.runtime.require_store()
            await place(app, "O-NR-1", "C-NR")
            await placed_orders(broker.kafka_bootstrap, "C-NR", 1)
            relay = app.state.runtime.relay
            assert relay is not None and relay.watch is not None
            relay.watch._checked_at = 0.0  # the next round checks the log now
            assert await relay.watch.redeliver_if_lost() == 0
            assert await store.db[OUTBOX].count_documents({"sent_at": None}) == 0
            await place(app, "O-NR-2", "C-NR")
            assert await placed_orders(broker.kafka_bootstrap, "C-NR", 2) == ["O-NR-1", "O-NR-2"]


async def test_a_round_of_many_records_in_one_batch_is_no_loss(
    new_store: Callable[..., Awaitable[Store]], tmp_path: Path
) -> None:
    """Tansu reports a log's end as its last batch's first offset + 1: the check must not take that for a loss."""
    store = await new_store("logwatch")
    with broker_of_its_own(tmp_path) as broker:
        watch = LogWatch(store, bootstrap=broker.kafka_bootstrap, client_id="test", window=timedelta(hours=1))
        producer = AIOKafkaProducer(bootstrap_servers=broker.kafka_bootstrap, acks="all", linger_ms=20)
        await producer.start()
        try:
            for _ in range(3):
                sent = [await producer.send(Topic.SALES_EVENTS, b"{}", partition=0) for _ in range(5)]
                acks = await asyncio.gather(*sent)
                await watch.acknowledged((a.topic, a.partition, a.offset) for a in acks)
                watch._checked_at = 0.0
                assert await watch.redeliver_if_lost() == 0
            await store.db[OUTBOX].insert_one({"_id": "sent-1", "sent_at": utc_now(), "seq": "1", "records": []})
            broker.stop_broker()
            broker.start_broker()
            watch._checked_at = 0.0
            assert await eventually(watch.redeliver_if_lost, what="the lost log to be noticed") == 1
        finally:
            await producer.stop()
            await watch.close()
