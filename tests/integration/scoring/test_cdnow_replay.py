"""Replays the CDNOW sample (6,919 real orders of 2,357 customers) through the scoring service and checks
every customer's frequency, monetary value and first and last order dates against a batch computation
over the same file.

The service runs in-process on the session's database (a database of its own) but on a broker of its own:
on the session broker the e2e platform's scoring would consume these orders too (and its marketing the
segment changes they cause). Its consumer group is its own as well (service_name drives the group).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from crm_scoring.app import create_service
from crm_scoring.settings import ScoringSettings
from crm_shared.embedded import EmbeddedServers, free_port
from crm_shared.events import OrderPlaced, OrderPlacedEvent
from crm_shared.store import PROCESSED
from crm_shared.topics import Topic

from helpers import ADMIN_HEADERS, eventually

SAMPLE = Path(os.environ.get("CRM_CDNOW_SAMPLE", "/work/shared/data/cdnow/CDNOW_sample.txt"))
SAMPLE_ROWS = 6_919
SAMPLE_CUSTOMERS = 2_357
CENT = Decimal("0.01")
APPLY_TIMEOUT_SECONDS = 180

pytestmark = [
    pytest.mark.skipif(not SAMPLE.exists(), reason=f"the CDNOW sample is not at {SAMPLE}"),
    # Above the apply timeout, so a slow run fails with what it was waiting for (the project default is 240 s).
    pytest.mark.timeout(APPLY_TIMEOUT_SECONDS + 120),
]


@dataclass(frozen=True)
class Row:
    order_id: str
    sample_id: str
    placed_at: datetime
    total: Decimal


@dataclass
class Expected:
    frequency: int = 0
    monetary: Decimal = Decimal(0)
    first: datetime | None = None
    last: datetime | None = None


def read_sample(path: Path = SAMPLE) -> Iterator[Row]:
    """master id, sample id, YYYYMMDD, CDs, dollars; each row is an order, at noon UTC of its day."""
    with path.open() as lines:
        for index, line in enumerate(lines):
            fields = line.split()
            if not fields:
                continue
            _master, sample_id, day, _cds, dollars = fields
            at = datetime.strptime(day, "%Y%m%d").replace(hour=12, tzinfo=UTC)
            yield Row(f"{sample_id}-{index}", sample_id, at, Decimal(dollars).quantize(CENT))


def batch_scores(rows: list[Row]) -> dict[str, Expected]:
    """What scoring should end with, per sample id: every row is an order (several on one day included)."""
    expected: dict[str, Expected] = {}
    for row in rows:
        e = expected.setdefault(row.sample_id, Expected())
        e.frequency += 1
        e.monetary += row.total
        e.first = row.placed_at if e.first is None else min(e.first, row.placed_at)
        e.last = row.placed_at if e.last is None else max(e.last, row.placed_at)
    return expected


def event_bytes(row: Row, customer_id: str) -> bytes:
    data = OrderPlaced(customer_id=customer_id, order_id=row.order_id, currency="USD", total=row.total)
    return OrderPlacedEvent.create(data, source="/channels/cdnow-replay", time=row.placed_at).to_bytes()


async def publish_all(bootstrap: str, records: list[tuple[str, bytes]]) -> dict[int, str]:
    """Send every record without waiting for each (the producer batches them), then await them all.
    Returns the key of the last record of each partition."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=512 * 1024)
    await producer.start()
    try:
        futures = [await producer.send(Topic.SALES_EVENTS, value, key=key.encode()) for key, value in records]
        acks = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    last: dict[int, tuple[int, str]] = {}
    for (key, _), ack in zip(records, acks, strict=True):
        if ack.partition not in last or ack.offset > last[ack.partition][0]:
            last[ack.partition] = (ack.offset, key)
    return {partition: key for partition, (_, key) in last.items()}


def parse_time(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


async def test_the_cdnow_sample_replayed_gives_the_batch_frequency_monetary_and_dates(
    backend: Any, tmp_path: Path
) -> None:
    started = time.monotonic()
    rows = list(read_sample())
    assert len(rows) == SAMPLE_ROWS
    expected = batch_scores(rows)
    assert len(expected) == SAMPLE_CUSTOMERS

    run = f"{free_port()}"
    customer_of = {sample_id: f"CD-{run}-{sample_id}" for sample_id in expected}
    records = [(customer_of[r.sample_id], event_bytes(r, customer_of[r.sample_id])) for r in rows]

    broker = EmbeddedServers(tmp_path, kafka_port=free_port(), mongo_port=0)
    broker.start_broker()
    try:
        settings = ScoringSettings(
            CRM_KAFKA_BOOTSTRAP=broker.kafka_bootstrap,
            CRM_MONGO_URI=backend.mongo_uri,
            # The sample is in dollars: scored in dollars, with no conversion.
            CRM_REPORTING_CURRENCY="USD",
            CRM_EXCHANGE_RATES={"USD": "1"},
            service_name=f"scoring-cdnow-{run}",
            db=f"scoring_cdnow_{run}",
            relay_poll_seconds=0.2,
            # Historical orders: the decay and population passes would re-score the base while it streams in.
            decay_interval_seconds=3600,
            population_interval_seconds=3600,
        )
        assert settings.consumer_group == f"crm-scoring-cdnow-{run}"
        app = create_service(settings)
        async with app.router.lifespan_context(app):
            store = app.state.runtime.require_store()

            publish_started = time.monotonic()
            last_of_partition = await publish_all(broker.kafka_bootstrap, records)
            published = time.monotonic()
            frequency_of = {customer_of[s]: e.frequency for s, e in expected.items()}

            async with httpx.AsyncClient(
                headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://scoring"
            ) as api:

                async def all_applied() -> bool:
                    # A partition is consumed in order: once the customer of its last record has all their
                    # orders, the whole partition is applied. (Counting processed_events instead would cost
                    # the embedded database a full scan per poll, slowing what is measured.)
                    seen = {}
                    for customer_id in last_of_partition.values():
                        response = await api.get(f"/v1/customers/{customer_id}/scores")
                        seen[customer_id] = response.json()["frequency"] if response.status_code == 200 else 0
                    return all(seen[c] == frequency_of[c] for c in seen)

                await eventually(
                    all_applied, timeout=APPLY_TIMEOUT_SECONDS, what=f"scoring to apply {SAMPLE_ROWS} orders"
                )
                applied = time.monotonic()

                async def processed() -> bool:
                    return await store.db[PROCESSED].count_documents({}) == SAMPLE_ROWS

                await eventually(processed, timeout=30, what=f"{SAMPLE_ROWS} processed_events")
                first_applied = await store.db[PROCESSED].find_one({}, sort=[("applied_at", 1)])
                last_applied = await store.db[PROCESSED].find_one({}, sort=[("applied_at", -1)])
                assert first_applied is not None and last_applied is not None
                applying = (last_applied["applied_at"] - first_applied["applied_at"]).total_seconds()

                limit = asyncio.Semaphore(16)

                async def scores(customer_id: str) -> dict[str, Any]:
                    async with limit:
                        response = await api.get(f"/v1/customers/{customer_id}/scores")
                    assert response.status_code == 200, response.text
                    body: dict[str, Any] = response.json()
                    return body

                views = await asyncio.gather(*(scores(customer_of[s]) for s in expected))
            checked = time.monotonic()

        mismatches = []
        for sample_id, view in zip(expected, views, strict=True):
            want = expected[sample_id]
            got = (
                view["frequency"],
                Decimal(view["monetary"]),
                parse_time(view["first_order_at"]),
                parse_time(view["last_order_at"]),
            )
            if got != (want.frequency, want.monetary, want.first, want.last):
                mismatches.append((sample_id, got, want))
        assert not mismatches, f"{len(mismatches)} customers differ from the batch, e.g. {mismatches[:3]}"

        file_total = sum((r.total for r in rows), Decimal(0))
        assert sum(v["frequency"] for v in views) == SAMPLE_ROWS
        assert sum((Decimal(v["monetary"]) for v in views), Decimal(0)) == file_total

        print(
            f"\nCDNOW replay: {SAMPLE_ROWS} orders of {SAMPLE_CUSTOMERS} customers; "
            f"published in {published - publish_started:.1f}s, all applied {applied - publish_started:.1f}s after "
            f"the first send ({SAMPLE_ROWS / (applied - publish_started):.0f} events/s end to end, "
            f"{SAMPLE_ROWS / applying:.0f} events/s from the first event applied to the last); "
            f"{SAMPLE_CUSTOMERS} score reads in {checked - applied:.1f}s; test {time.monotonic() - started:.1f}s"
        )
    finally:
        broker.stop()
