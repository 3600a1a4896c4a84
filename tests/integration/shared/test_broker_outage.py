"""An order accepted while the broker is down is published once the broker is back.

Runs the sales service in-process against a broker of its own (so stopping it disturbs no other
test) and the session's real database.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from crm_sales.app import create_service
from crm_sales.settings import SalesSettings
from crm_shared.embedded import free_port
from crm_shared.events import utc_now
from crm_shared.store import OUTBOX, unsent_records
from crm_shared.topics import Topic

from helpers import ADMIN_HEADERS, TopicReader, broker_of_its_own, eventually


def sales_on(broker: Any, backend: Any, name: str) -> FastAPI:
    """The sales service on this broker and the session's database, a database of its own, relaying fast."""
    settings = SalesSettings(
        CRM_KAFKA_BOOTSTRAP=broker.kafka_bootstrap,
        CRM_MONGO_URI=backend.mongo_uri,
        db=f"{name}_{free_port()}",
        relay_poll_seconds=0.2,
    )
    return create_service(settings)


async def test_an_event_committed_while_the_broker_is_down_is_delivered_after_it_returns(
    backend: Any, tmp_path: Path
) -> None:
    with broker_of_its_own(tmp_path) as broker:
        app = sales_on(broker, backend, "sales_outage")
        async with app.router.lifespan_context(app):
            store = app.state.runtime.require_store()
            broker.stop_broker()

            async with httpx.AsyncClient(
                headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://sales"
            ) as api:
                response = await api.post(
                    "/v1/orders",
                    json={"order_id": "O-OUT-1", "customer_id": "C-OUT", "currency": "EUR", "total": "75.00"},
                )
            assert response.status_code == 201, response.text
            assert await unsent_records(store.db) == 1

            # Back with its topics, as a real Kafka restarts (Tansu keeps them in memory only).
            broker.start_broker()

            async def relayed() -> bool:
                return await unsent_records(store.db) == 0

            await eventually(relayed, timeout=60, what="the outbox relay to publish after the broker returned")

        async with TopicReader(broker.kafka_bootstrap, Topic.SALES_EVENTS) as reader:
            record = await reader.find(lambda r: r.key == b"C-OUT")
        event = json.loads(record.value)
        assert event["type"] == "crm.order.placed.v1"
        assert event["data"]["order_id"] == "O-OUT-1"


async def test_an_outbox_record_of_the_shape_before_grouping_is_still_published(backend: Any, tmp_path: Path) -> None:
    """A database written by a version with one outbox document per record, upgraded with records unsent."""
    with broker_of_its_own(tmp_path) as broker:
        app = sales_on(broker, backend, "sales_old_outbox")
        async with app.router.lifespan_context(app):
            store = app.state.runtime.require_store()
            value = json.dumps({"id": "old-shape-1", "subject": "C-OLD", "type": "crm.old.v1"}).encode()
            await store.db[OUTBOX].insert_one(
                {
                    "_id": "old-shape-1",
                    "topic": Topic.SALES_EVENTS,
                    "key": "C-OLD",
                    "value": value,
                    "type": "crm.old.v1",
                    "content_type": "application/cloudevents+json; charset=UTF-8",
                    "created_at": utc_now(),
                    "sent_at": None,
                    "seq": "00000000000000000001-000000",
                }
            )
            assert await unsent_records(store.db) == 1
            store.outbox_written.set()

            async def relayed() -> bool:
                return await unsent_records(store.db) == 0

            await eventually(relayed, timeout=30, what="the relay to publish the old-shape record")

        async with TopicReader(broker.kafka_bootstrap, Topic.SALES_EVENTS) as reader:
            record = await reader.find(lambda r: r.key == b"C-OLD")
        assert record.value == value
