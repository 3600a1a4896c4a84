"""Session-wide fixtures: the real broker and database, started once on free loopback ports.

CRM_TEST_BACKEND=embedded (default) starts Tansu and SecantusDB; CRM_TEST_BACKEND=containers starts
Apache Kafka and MongoDB (a single-node replica set) with testcontainers, for anyone with Docker.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from crm_shared.embedded import EmbeddedServers, ensure_topics, free_port
from crm_shared.store import IndexSpec, Store

from helpers import ADMIN_KEY_SHA256, MATCH_KEY_SECRET, TOKEN_AUDIENCE, TOKEN_ISSUER, TOKEN_SECRET

# Every service the tests build or start (as processes, which inherit this) accepts the suite's admin
# key; the rate limit is the rate-limit tests' own business.
os.environ["CRM_AUTH_ADMIN_KEY_SHA256"] = ADMIN_KEY_SHA256
os.environ["CRM_AUTH_RATE_LIMIT"] = "100000/second"
os.environ["CRM_AUTH_JWT_SECRET"] = TOKEN_SECRET
os.environ["CRM_AUTH_JWT_ISSUER"] = TOKEN_ISSUER
os.environ["CRM_AUTH_JWT_AUDIENCE"] = TOKEN_AUDIENCE
# As under `crm run`: the customer service publishes match keys and sales checks new leads against them.
os.environ["CRM_MATCH_KEY_SECRET"] = MATCH_KEY_SECRET


@dataclass(frozen=True)
class Backend:
    kafka_bootstrap: str
    mongo_uri: str
    embedded: EmbeddedServers | None = None


def _containers() -> Iterator[Backend]:
    import asyncio

    from testcontainers.kafka import KafkaContainer
    from testcontainers.mongodb import MongoDbContainer

    with (
        KafkaContainer("confluentinc/cp-kafka:7.6.1").with_kraft() as kafka,
        MongoDbContainer("mongo:7.0").with_command("--replSet rs0 --bind_ip_all") as mongo,
    ):
        host, port = mongo.get_container_host_ip(), mongo.get_exposed_port(27017)
        mongo.exec("mongosh --quiet --eval \"rs.initiate({_id:'rs0',members:[{_id:0,host:'localhost:27017'}]})\"")
        bootstrap = kafka.get_bootstrap_server()
        asyncio.run(ensure_topics(bootstrap))
        yield Backend(bootstrap, f"mongodb://{host}:{port}/?directConnection=true")


@pytest.fixture(scope="session")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    if os.environ.get("CRM_TEST_BACKEND", "embedded") == "containers":
        yield from _containers()
        return
    # Never killed, so its commits need no fsync (tests/faults kills servers of its own, which do).
    servers = EmbeddedServers(tmp_path_factory.mktemp("servers"), free_port(), free_port(), sync_on_commit=False)
    servers.start()
    try:
        yield Backend(servers.kafka_bootstrap, servers.mongo_uri, servers)
    finally:
        servers.stop()


@pytest.fixture(scope="session")
async def new_store(backend: Backend) -> AsyncIterator[Callable[..., Awaitable[Store]]]:
    """`await new_store(prefix, indexes)`: a Store on a database of its own, indexes created."""
    stores: list[Store] = []

    async def make(prefix: str = "test", indexes: Iterable[IndexSpec] = ()) -> Store:
        store = Store.connect(backend.mongo_uri, f"{prefix}_{len(stores)}_{os.getpid()}", retry_base_seconds=0.05)
        await store.ensure_indexes(indexes)
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    root = Path(__file__).parent
    for item in items:
        parts = Path(str(item.fspath)).relative_to(root).parts
        if parts and parts[0] in ("integration", "e2e", "faults"):
            item.add_marker(getattr(pytest.mark, parts[0]))
