"""An order accepted while the broker is down is published once the broker is back.

Runs the sales service in-process against a broker of its own (so stopping it disturbs no other
test) and the session's real database.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from crm_sales.app import create_service
from crm_sales.settings import SalesSettings
from crm_shared.embedded import free_port
from crm_shared.store import unsent_records
from crm_shared.topics import Topic

from helpers import ADMIN_HEADERS, TopicReader, broker_of_its_own, eventually


async def test_an_event_committed_while_the_broker_is_down_is_delivered_after_it_returns(
    backend: Any, tmp_path: Path
) -> None:
    with broker_of_its_own(tmp_path) as broker:
        settings = SalesSettings(
            CRM_KAFKA_BOOTSTRAP=broker.kafka_bootstrap,
            CRM_MONGO_URI=backend.mongo_uri,
            db=f"sales_outage_{free_port()}",
            relay_poll_seconds=0.2,
        )
        app = create_service(settings)
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
