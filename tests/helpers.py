"""Helpers the tests share: poll until a condition holds, read a topic from the beginning."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import jwt
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from crm_shared.embedded import EmbeddedServers, free_port
from crm_shared.events import ScoreSnapshot, SegmentChanged, SegmentChangedEvent
from crm_shared.security.keys import key_sha256

ADMIN_KEY = "crm_bootstrap_test-admin-key-of-the-test-suite-0123456789"
"""The bootstrap admin key every service of the tests accepts (tests/conftest.py sets its hash)."""
ADMIN_HEADERS = {"X-API-Key": ADMIN_KEY}
ADMIN_KEY_SHA256 = key_sha256(ADMIN_KEY)

TOKEN_SECRET = "the-test-suite-signs-its-tokens-with-this-secret"
TOKEN_ISSUER = "https://idp.test"
TOKEN_AUDIENCE = "crm"
"""Every service of the tests accepts HS256 tokens signed with this (tests/conftest.py sets it)."""
MATCH_KEY_SECRET = "the-test-suite-hashes-emails-and-phones-with-this"
"""The customer service and sales of the tests share this match-key secret (tests/conftest.py sets it)."""


def bearer(
    subject: str,
    *scopes: str,
    team: Iterable[str] = (),
    territories: Iterable[str] = (),
    groups: Iterable[str] = (),
    expires_in: int = 6 * 3600,
    **claims: Any,
) -> dict[str, str]:
    """Headers with a token for `subject` holding `scopes` and the row-level claims. Modules make their tokens
    at import, so by default a token outlives the whole suite."""
    now = int(time.time())
    payload = {
        "iss": TOKEN_ISSUER,
        "aud": TOKEN_AUDIENCE,
        "sub": subject,
        "iat": now,
        "exp": now + expires_in,
        "scope": " ".join(scopes),
        "crm_team": list(team),
        "crm_territories": list(territories),
        "crm_groups": list(groups),
        **claims,
    }
    return {"Authorization": f"Bearer {jwt.encode(payload, TOKEN_SECRET, algorithm='HS256')}"}


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 30, what: str = "condition") -> Any:
    """Poll `check` until it returns something truthy; fail with `what` and the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


@contextmanager
def broker_of_its_own(folder: Path) -> Iterator[EmbeddedServers]:
    """A broker (with the contract's topics) for one test or module: one it may stop, or whose consumer
    groups no service of the session's platform shares."""
    broker = EmbeddedServers(folder, kafka_port=free_port(), mongo_port=0)
    broker.start_broker()
    try:
        yield broker
    finally:
        broker.stop()


class TopicReader:
    """Reads a topic from the beginning, so a test can find what a service published."""

    def __init__(self, bootstrap: str, *topics: str) -> None:
        self._topics = topics
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
        )
        self.records: list[Any] = []

    async def __aenter__(self) -> TopicReader:
        # Explicit assignment from offset 0: no consumer group, no rebalance to wait for.
        await self._consumer.start()
        await self._consumer.topics()
        partitions = [
            TopicPartition(topic, p)
            for topic in self._topics
            for p in sorted(self._consumer.partitions_for_topic(topic) or ())
        ]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._consumer.stop()

    async def find(self, predicate: Callable[[Any], bool], timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in self.records:
                if predicate(record):
                    return record
            batch = await self._consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                self.records.extend(messages)
        raise AssertionError(f"no matching record after {timeout}s among {len(self.records)} read")

    async def drain(self, timeout: float = 10) -> list[Any]:
        """Every record the topics hold now: read until a poll finds nothing new (or `timeout` passes)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = await self._consumer.getmany(timeout_ms=1000)
            if not batch:
                break
            for messages in batch.values():
                self.records.extend(messages)
        return self.records


def tier_changed(customer: str, tier: str, at: datetime) -> SegmentChangedEvent:
    """Scoring's segment change giving the customer its first value tier `tier` at `at`."""
    scores = ScoreSnapshot(
        recency_days=1,
        frequency=1,
        monetary=Decimal("100.00"),
        average_order_value=Decimal("100.00"),
        value_tier=tier,
        lifecycle_stage="new",
        churn_risk=0.1,
        churn_risk_band="low",
        satisfaction=None,
    )
    change = SegmentChanged(
        customer_id=customer,
        dimension="value_tier",
        old=None,
        new=tier,
        scores=scores,
        model_version="v1",
        changed_at=at,
        caused_by="e-order",
    )
    return SegmentChangedEvent.create(change, source="/crm/scoring", time=at)
