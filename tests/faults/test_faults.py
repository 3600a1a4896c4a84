"""Nothing lost, nothing doubled: each fault injected into a running stream, then every service against the oracle.

Each test generates the events of customers of its own, injects its fault while they flow, lets the platform
settle and compares sales, scoring, support, the customer service and marketing with what the events alone
say (tests/faults/stream.py, rig.py). It runs once with one instance of every service, once with two.
"""

from __future__ import annotations

import asyncio
import signal
import time

import httpx
import pytest

from crm_shared.settings import SERVICES

from faults.rig import Rig, Row, problems_text, rss_mb
from faults.stream import Record, generate, redelivered, with_poison
from helpers import ADMIN_HEADERS

# Each test waits for the platform to settle (up to 150 s, 240 s after the broker's loss) before it judges.
pytestmark = pytest.mark.timeout(420)

CUSTOMERS = 30
SESSION_TIMEOUT_SECONDS = 10
"""aiokafka's default session timeout: a member silent this long leaves the group."""


def stream_for(rig: Rig, fault: str, seed: int) -> tuple[str, int]:
    """Customer ids of the fault's own (F<instances><fault>-C0001, ...), and a seed of its own."""
    return f"F{rig.instances}{fault}", seed * 10 + rig.instances


def halves(records: list[Record]) -> tuple[list[Record], list[Record]]:
    middle = len(records) // 2
    return records[:middle], records[middle:]


def assert_clean(row: Row) -> None:
    assert row.clean, f"{row.fault} ({row.instances} instance(s)): {problems_text(row)}"


async def test_every_event_delivered_two_to_five_times_and_one_customer_shuffled(rig: Rig) -> None:
    prefix, seed = stream_for(rig, "D", 1)
    stream = generate(prefix, CUSTOMERS, seed)
    copies = redelivered(stream, seed)
    assert len(copies) >= 2 * len(stream.records)
    await rig.publish(copies)
    row = await rig.settle(stream, Row("every event 2-5 times, one customer shuffled", rig.instances))
    assert_clean(row)


async def test_poison_records_are_dead_lettered_with_their_reason_and_the_stream_flows(rig: Rig) -> None:
    prefix, seed = stream_for(rig, "P", 2)
    stream = generate(prefix, CUSTOMERS, seed)
    await rig.publish(with_poison(stream, seed))
    row = await rig.settle(stream, Row("poison records among good ones", rig.instances))
    assert_clean(row)
    letters = [d for d in await rig.dead_letters("sales") if (d.get("key") or "").startswith(prefix)]
    for record, word in stream.poison:
        event_id = None if record.value.startswith(b"{not") else record.value.split(b'"id": "')[1].split(b'"')[0]
        matching = [
            d
            for d in letters
            if (d.get("event_id") == (event_id.decode() if event_id else None)) and word in d["reason"].lower()
        ]
        assert matching, f"no dead letter for the {word} poison record among {[d['reason'] for d in letters]}"
    assert len(letters) == len(stream.poison), [d["reason"] for d in letters]


async def test_each_consumer_service_killed_mid_batch_and_restarted(rig: Rig) -> None:
    assert rig.platform is not None
    prefix, seed = stream_for(rig, "K", 3)
    stream = generate(prefix, CUSTOMERS, seed)
    services = list(SERVICES)
    size = len(stream.records) // (len(services) + 1) + 1
    chunks = [stream.records[i : i + size] for i in range(0, len(stream.records), size)]
    await rig.publish(chunks[0])
    for service, chunk in zip(services, [*chunks[1:], [], [], []], strict=False):
        await asyncio.sleep(0.3)
        rig.platform.kill(service, signal.SIGKILL)
        await rig.publish(chunk)
        if rig.instances == 1:
            await asyncio.to_thread(rig.platform.restart, service)
    if rig.instances > 1:
        # The partitions move to the surviving instances while the stream is applied; then the first come back.
        await asyncio.sleep(SESSION_TIMEOUT_SECONDS + 2)
        for service in services:
            await asyncio.to_thread(rig.platform.restart, service)
    row = await rig.settle(stream, Row("each consumer service SIGKILLed mid-batch", rig.instances))
    assert_clean(row)
    assert rig.platform.dead_services() == []


async def test_a_consumer_paused_past_its_session_timeout_then_resumed(rig: Rig) -> None:
    assert rig.platform is not None
    prefix, seed = stream_for(rig, "S", 4)
    stream = generate(prefix, CUSTOMERS, seed)
    first, second = halves(stream.records)
    await rig.publish(first)
    await asyncio.sleep(0.3)
    rig.platform.kill("scoring", signal.SIGSTOP)
    try:
        await rig.publish(second)
        await asyncio.sleep(SESSION_TIMEOUT_SECONDS + 3)
    finally:
        rig.platform.kill("scoring", signal.SIGCONT)
    row = await rig.settle(stream, Row("a consumer SIGSTOPped past its session timeout", rig.instances))
    assert_clean(row)


async def test_the_database_killed_mid_stream_and_restarted(rig: Rig) -> None:
    assert rig.platform is not None
    prefix, seed = stream_for(rig, "M", 5)
    stream = generate(prefix, CUSTOMERS, seed)
    first, second = halves(stream.records)
    await rig.publish(first)
    await asyncio.sleep(0.5)
    rig.kill_server("mongo")
    try:
        await rig.publish(second)
        customer = stream.customers[0]
        async with httpx.AsyncClient(headers=ADMIN_HEADERS, timeout=30) as http:
            for url in (
                f"{rig.platform.url('scoring')}/v1/customers/{customer}/scores",
                f"{rig.platform.url('sales')}/v1/orders/{next(iter(stream.orders))}",
            ):
                answer = await http.get(url)
                assert answer.status_code == 503, (url, answer.status_code, answer.text)
                assert answer.headers.get("Retry-After"), answer.headers
                assert answer.headers["content-type"].startswith("application/problem+json")
    finally:
        rig.start_database()
    row = await rig.settle(stream, Row("the database SIGKILLed mid-stream", rig.instances))
    assert_clean(row)


async def test_a_slow_database_slows_the_stream_without_unbounded_memory(rig: Rig) -> None:
    assert rig.proxy is not None
    prefix, seed = stream_for(rig, "L", 6)
    stream = generate(prefix, CUSTOMERS, seed)
    before = {name: rss_mb(pid) for name, pid in rig.service_pids().items()}
    peak = dict(before)
    rig.proxy.delay = 0.004
    try:
        await rig.publish(stream.records)
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            for name, pid in rig.service_pids().items():
                peak[name] = max(peak[name], rss_mb(pid))
            await asyncio.sleep(0.5)
        row = await rig.settle(stream, Row("a slow database (4 ms per chunk each way)", rig.instances))
    finally:
        rig.proxy.delay = 0.0
    assert_clean(row)
    grown = {name: round(peak[name] - before[name]) for name in before}
    assert max(grown.values()) < 150, f"resident memory grew by {grown} MB"


async def test_the_broker_killed_mid_stream_and_restarted_empty(rig: Rig) -> None:
    """The embedded broker keeps nothing across a restart: the channel system sends its stream again, and each
    service's relay publishes again what it had sent (crm_shared.redelivery)."""
    prefix, seed = stream_for(rig, "B", 7)
    stream = generate(prefix, CUSTOMERS, seed)
    first, _ = halves(stream.records)
    await rig.publish(first)
    await asyncio.sleep(1.5)
    rig.kill_server("kafka")
    await asyncio.sleep(1)
    rig.start_broker()
    await rig.publish_until_sent(stream.records)
    row = await rig.settle(stream, Row("the broker SIGKILLed and restarted empty", rig.instances), timeout=240)
    assert_clean(row)


async def test_a_write_through_one_instance_is_read_through_another(rig: Rig) -> None:
    assert rig.platform is not None
    urls = rig.platform.urls("sales")
    order = {
        "order_id": f"F{rig.instances}W-1",
        "customer_id": f"F{rig.instances}W-C1",
        "currency": "EUR",
        "total": "12.50",
    }
    async with httpx.AsyncClient(headers=ADMIN_HEADERS, timeout=30) as http:
        created = await http.post(f"{urls[0]}/v1/orders", json=order)
        assert created.status_code == 201, created.text
        for url in urls:
            read = await http.get(f"{url}/v1/orders/{order['order_id']}")
            assert read.status_code == 200, (url, read.text)
            assert read.json()["customer_id"] == order["customer_id"]
