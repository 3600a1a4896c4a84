"""The five services as processes on the session's real broker and database, on free ports."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from crm_shared.embedded import free_port
from crm_shared.platform import Platform
from crm_shared.settings import SERVICES

from helpers import ADMIN_HEADERS


@pytest.fixture(scope="session")
def platform(backend: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    running = Platform(
        backend.kafka_bootstrap,
        backend.mongo_uri,
        {name: free_port() for name in SERVICES},
        tmp_path_factory.mktemp("service-logs"),
    )
    try:
        # The customers here have random ids: a holdout share would hold some of them out at random.
        running.start(env={**os.environ, "CRM_MARKETING_HOLDOUT_SHARE": "0"}, ready_timeout=120)
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10, headers=ADMIN_HEADERS) as client:
        yield client


@pytest.fixture(scope="session")
async def producer(backend: Any) -> AsyncIterator[AIOKafkaProducer]:
    kafka = AIOKafkaProducer(bootstrap_servers=backend.kafka_bootstrap, acks="all")
    await kafka.start()
    yield kafka
    await kafka.stop()


Publish = Callable[[str, Any, str], Awaitable[None]]


@pytest.fixture
def publish(producer: AIOKafkaProducer) -> Publish:
    """Publish like a channel system: a dict is sent as JSON, bytes as they are; key = customer id."""

    async def send(topic: str, value: Any, key: str) -> None:
        raw = value if isinstance(value, bytes) else json.dumps(value).encode()
        await producer.send_and_wait(topic, raw, key=key.encode())

    return send
