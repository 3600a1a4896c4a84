"""Benchmark of the scoring service, each figure next to a baseline measured in the same run.

    python benchmarks/scoring_benchmark.py [--events N] [--customers N] [--latency-events N] [--rate R]

(a) throughput: N order events through the in-process scoring service (consume, validate, one MongoDB
    transaction per partition batch, outbox) vs a raw aiokafka consume of the same N records from the broker;
(b) latency from publish to score stored (the customer document's `updated_at`) for events published at a
    steady rate, vs the latency of a raw aiokafka consumer reading the same records;
(c) a full-population re-score of --customers synthetic customers (default 1,000,000): the service's own
    domain code (`crm_scoring.domain.score`) over in-memory facts vs a vectorised pandas computation of the
    same recency, frequency, monetary value and value tier; time and peak memory, and their ratio.

It starts its own embedded broker (Tansu) and database (SecantusDB) on free ports, with their data in a
temporary folder, and touches nothing else. See benchmarks/README.md for how to read the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from crm_scoring import domain, repository
from crm_scoring.app import create_service
from crm_scoring.settings import ScoringSettings
from crm_shared.embedded import EmbeddedServers, free_port
from crm_shared.events import OrderPlaced, OrderPlacedEvent
from crm_shared.logging import configure_logging
from crm_shared.money import ExchangeRates
from crm_shared.store import OUTBOX, PROCESSED, outbox_records
from crm_shared.topics import Topic

EPOCH = datetime(1997, 1, 1, tzinfo=UTC)
# The orders are in dollars (CDNOW-like amounts): scored in dollars, with no conversion.
IN_DOLLARS = ExchangeRates.of("USD", {"USD": "1"})
TIERS: dict[str, int] = {"potential": 0, "low_value": 1, "high_value": 2}


def line(label: str, value: str, baseline: str = "", note: str = "") -> None:
    print(f"  {label:<34} {value:>16}   {baseline:<30} {note}".rstrip())


def order_event(customer_id: str, order_id: str, cents: int, at: datetime) -> OrderPlacedEvent:
    data = OrderPlaced(customer_id=customer_id, order_id=order_id, currency="USD", total=Decimal(cents).scaleb(-2))
    return OrderPlacedEvent.create(data, source="/benchmarks/scoring", time=at)


# ---------------------------------------------------------------- (a) and (b): the running service


async def raw_consume(
    bootstrap: str, prefix: bytes, count: int, on_record: Callable[[Any], None] | None = None
) -> float:
    """Read the topic from the beginning, without a group, until `count` records keyed `prefix...` are seen;
    returns the seconds it took. (From the beginning: Tansu's end offsets are not reliable enough to seek to.)"""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        topic = Topic.SALES_EVENTS
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        began, seen = time.perf_counter(), 0
        while seen < count:
            batch = await consumer.getmany(timeout_ms=100)
            for records in batch.values():
                for record in records:
                    if record.key is not None and record.key.startswith(prefix):
                        seen += 1
                        if on_record is not None:
                            on_record(record)
        return time.perf_counter() - began
    finally:
        await consumer.stop()


async def acked(futures: list[Any], event_ids: list[str]) -> list[str]:
    """Await the acks of sent events; returns the id of the last event of each partition."""
    acks = await asyncio.gather(*futures)
    last: dict[int, tuple[int, str]] = {}
    for event_id, ack in zip(event_ids, acks, strict=True):
        if ack.partition not in last or ack.offset > last[ack.partition][0]:
            last[ack.partition] = (ack.offset, event_id)
    return [event_id for _, event_id in last.values()]


async def wait_applied(store: Any, last_event_ids: list[str], timeout: float) -> datetime:
    """Until the last event of each partition is applied (a partition is consumed in order, so all before it
    are too); returns when the latest of them was. Looks processed_events up by id: counting them would cost
    the embedded database a full scan per poll, and slow down what is measured."""
    deadline = time.monotonic() + timeout
    while True:
        docs = [await store.db[PROCESSED].find_one({"_id": f"scoring:{i}"}) for i in last_event_ids]
        if all(docs):
            return max(doc["applied_at"] for doc in docs if doc)
        if time.monotonic() > deadline:
            raise TimeoutError(f"scoring has not applied the events in {timeout}s")
        await asyncio.sleep(0.1)


async def wait_relayed(store: Any, timeout: float) -> None:
    """Until the outbox relay has published every segment change committed so far."""
    deadline = time.monotonic() + timeout
    while await store.db[OUTBOX].find_one({"sent_at": None}, projection={"_id": 1}):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the outbox relay has not drained after {timeout}s")
        await asyncio.sleep(0.5)


async def stream_benchmarks(servers: EmbeddedServers, args: argparse.Namespace) -> None:
    bootstrap = servers.kafka_bootstrap
    settings = ScoringSettings(
        CRM_KAFKA_BOOTSTRAP=bootstrap,
        CRM_MONGO_URI=servers.mongo_uri,
        CRM_REPORTING_CURRENCY=IN_DOLLARS.reporting_currency,
        CRM_EXCHANGE_RATES=dict(IN_DOLLARS.rates),
        db="scoring_benchmark",
        relay_poll_seconds=0.2,
        # Historical orders: the decay and population passes would re-score the base while it streams in.
        decay_interval_seconds=3600,
        population_interval_seconds=3600,
    )
    app = create_service(settings)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=512 * 1024)
    async with app.router.lifespan_context(app):
        store = app.state.runtime.require_store()
        await producer.start()
        try:
            # Warm-up: one event through, so the group has joined and the partitions are assigned.
            warm = order_event("W-0", "W-0-0", 100, EPOCH)
            await producer.send_and_wait(Topic.SALES_EVENTS, warm.to_bytes(), key=b"W-0")
            await wait_applied(store, [warm.id], 120)

            # (a) throughput ------------------------------------------------------------
            n, customers = args.events, max(1, min(args.stream_customers, args.events))
            events = [
                order_event(f"T-{i % customers}", f"T-{i}", 1_000 + i % 9_000, EPOCH + timedelta(hours=i))
                for i in range(n)
            ]
            payloads = [(e.subject.encode(), e.to_bytes()) for e in events]
            published_at = datetime.now(UTC)
            began = time.perf_counter()
            futures = [await producer.send(Topic.SALES_EVENTS, value, key=key) for key, value in payloads]
            last_ids = await acked(futures, [e.id for e in events])
            publish_seconds = time.perf_counter() - began
            done_at = await wait_applied(store, last_ids, args.timeout)
            scoring_seconds = (done_at - published_at).total_seconds()
            applied = await store.db[PROCESSED].count_documents({})
            if applied != n + 1:
                raise SystemExit(f"scoring applied {applied - 1} of {n} events (some were dead-lettered?)")

            relay_began = time.perf_counter()
            await wait_relayed(store, args.timeout)
            relay_seconds = time.perf_counter() - relay_began
            outbox = len(await outbox_records(store.db))

            raw_seconds = await raw_consume(bootstrap, b"T-", n)
            values: list[bytes] = []
            await raw_consume(bootstrap, b"T-", n, lambda r: values.append(r.value))
            began = time.perf_counter()
            for value in values:
                OrderPlacedEvent.model_validate_json(value)
            parse_seconds = time.perf_counter() - began

            print(f"\n(a) throughput: {n} order events over {customers} customers")
            line("", "scoring", "baseline")
            line(
                "events/s",
                f"{n / scoring_seconds:,.0f}",
                f"{n / raw_seconds:,.0f} raw aiokafka consume",
                f"raw consume is {scoring_seconds / raw_seconds:,.0f}x faster",
            )
            line("seconds for all", f"{scoring_seconds:.3f}", f"{raw_seconds:.3f}")
            line("(publish of the batch)", f"{publish_seconds:.2f}s", f"{n / publish_seconds:,.0f} events/s produced")
            line("(outbox drained after the last)", f"{relay_seconds:.1f}s", f"{outbox:,} segment changes published")
            line("(JSON+pydantic parse only)", f"{n / parse_seconds:,.0f}/s", "CPU bound, no I/O")

            # (b) latency: on a quiet service (the outbox of (a) drained above) -------------
            m = args.latency_events
            sent_at: dict[bytes, float] = {}
            received_at: dict[bytes, float] = {}

            def received(record: Any) -> None:
                received_at[record.key] = time.time()

            raw_task = asyncio.create_task(raw_consume(bootstrap, b"L-", m, received))
            await asyncio.sleep(1)  # let the raw consumer fetch (from an empty tail) before the first event
            began = time.perf_counter()
            futures, event_ids = [], []
            for i in range(m):
                await asyncio.sleep(max(0.0, began + i / args.rate - time.perf_counter()))
                event = order_event(f"L-{i}", f"L-{i}", 2_500, EPOCH + timedelta(days=i))
                value, key = event.to_bytes(), f"L-{i}".encode()
                sent_at[key] = time.time()
                futures.append(await producer.send(Topic.SALES_EVENTS, value, key=key))
                event_ids.append(event.id)
            await wait_applied(store, await acked(futures, event_ids), args.timeout)
            await asyncio.wait_for(raw_task, 60)
            stored = {
                doc["_id"].encode(): doc["updated_at"].timestamp()
                async for doc in store.db[repository.CUSTOMERS].find(
                    {"_id": {"$in": [k.decode() for k in sent_at]}}, projection={"updated_at": 1}
                )
            }
            scoring_ms = np.array([(stored[k] - t) * 1000 for k, t in sent_at.items()])
            raw_ms = np.array([(received_at[k] - t) * 1000 for k, t in sent_at.items()])

            print(f"\n(b) latency from publish: {m} events at {args.rate:g}/s, one new customer each")
            line("", "to score stored", "baseline: raw aiokafka consume")
            for q in (50, 90, 99):
                line(f"p{q} ms", f"{np.percentile(scoring_ms, q):.1f}", f"{np.percentile(raw_ms, q):.1f}")
            line("max ms", f"{scoring_ms.max():.1f}", f"{raw_ms.max():.1f}")
        finally:
            await producer.stop()


# ---------------------------------------------------------------- (c): full-population re-score

# The population, set before the measuring children are forked so they share it without copying.
_POPULATION: dict[str, Any] = {}


def synthetic_population(customers: int, seed: int = 7) -> dict[str, Any]:
    """Columnar order facts, ordered by customer: 1 + Poisson(1.5) orders each, over 78 weeks."""
    rng = np.random.default_rng(seed)
    per_customer = 1 + rng.poisson(1.5, customers)
    orders = int(per_customer.sum())
    customer = np.repeat(np.arange(customers, dtype=np.int64), per_customer)
    starts = np.zeros(customers + 1, dtype=np.int64)
    np.cumsum(per_customer, out=starts[1:])
    horizon = 78 * 7 * 86_400
    placed = int(EPOCH.timestamp()) + rng.integers(0, horizon, orders, dtype=np.int64)
    cents = np.maximum(1, rng.lognormal(np.log(4_000), 1.0, orders)).astype(np.int64)
    as_of = int(EPOCH.timestamp()) + horizon
    return {"customer": customer, "starts": starts, "placed": placed, "cents": cents, "as_of": as_of}


def _peak_reset() -> None:
    """Reset the peak resident set (Linux); elsewhere the peak is the process's since its start."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _memory_kib(field: str) -> int:
    """VmRSS or VmHWM from /proc, in KiB; resource.getrusage's peak where there is no /proc."""
    try:
        with open("/proc/self/status") as f:
            for row in f:
                if row.startswith(field + ":"):
                    return int(row.split()[1])
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


def domain_rescore() -> dict[str, Any]:
    """The service's path: domain facts per customer in memory, then domain.score for each."""
    data = _POPULATION
    starts, placed, cents = data["starts"].tolist(), data["placed"].tolist(), data["cents"].tolist()
    customers = len(starts) - 1
    as_of = datetime.fromtimestamp(data["as_of"], UTC)
    thresholds = domain.Thresholds(exchange_rates=IN_DOLLARS)
    _peak_reset()
    rss_before = _memory_kib("VmRSS")

    began = time.perf_counter()
    population = []
    for c in range(customers):
        orders = {}
        for i in range(starts[c], starts[c + 1]):
            order_id = f"O-{i}"
            at = datetime.fromtimestamp(placed[i], UTC)
            orders[order_id] = domain.OrderFacts(
                order_id, domain.Placed(order_id, Decimal(cents[i]).scaleb(-2), "USD", at)
            )
        population.append(domain.CustomerFacts(f"C-{c}", orders))
    load_seconds = time.perf_counter() - began
    rss_loaded = _memory_kib("VmRSS")

    began = time.perf_counter()
    recency, frequency, monetary, tier = [], [], [], []
    for facts in population:
        scores = domain.score(facts, as_of, thresholds)
        recency.append(scores.recency_days)
        frequency.append(scores.frequency)
        monetary.append(int(scores.monetary.scaleb(2)))
        tier.append(TIERS[scores.value_tier])
    score_seconds = time.perf_counter() - began
    return {
        "load_seconds": load_seconds,
        "score_seconds": score_seconds,
        "facts_kib": rss_loaded - rss_before,
        "peak_kib": _memory_kib("VmHWM") - rss_before,
        "recency": np.array(recency),
        "frequency": np.array(frequency),
        "monetary": np.array(monetary),
        "tier": np.array(tier),
    }


def vectorised_rescore() -> dict[str, Any]:
    """The same figures with pandas over the columnar facts: one group-by."""
    data = _POPULATION
    _peak_reset()
    rss_before = _memory_kib("VmRSS")
    began = time.perf_counter()
    orders = pd.DataFrame({"customer": data["customer"], "placed": data["placed"], "cents": data["cents"]})
    per = orders.groupby("customer", sort=True).agg(
        frequency=("cents", "size"), monetary=("cents", "sum"), last=("placed", "max")
    )
    recency = ((data["as_of"] - per["last"].to_numpy()) // 86_400).clip(min=0)
    frequency = per["frequency"].to_numpy()
    monetary = per["monetary"].to_numpy()
    high = monetary >= int(domain.Thresholds().high_value_monetary * 100)
    tier = np.where(frequency == 0, TIERS["potential"], np.where(high, TIERS["high_value"], TIERS["low_value"]))
    seconds = time.perf_counter() - began
    return {
        "score_seconds": seconds,
        "peak_kib": _memory_kib("VmHWM") - rss_before,
        "recency": recency,
        "frequency": frequency,
        "monetary": monetary,
        "tier": tier,
    }


def _child(job: Callable[[], dict[str, Any]], conn: Any) -> None:
    conn.send(job())
    conn.close()


def in_child(job: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run `job` in a forked process, so its peak memory is its own."""
    context = multiprocessing.get_context("fork")
    parent, child = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(job, child))
    process.start()
    result: dict[str, Any] = parent.recv()
    process.join()
    return result


def rescore_benchmark(customers: int) -> None:
    began = time.perf_counter()
    _POPULATION.update(synthetic_population(customers))
    orders = len(_POPULATION["cents"])
    generate_seconds = time.perf_counter() - began

    fast = in_child(vectorised_rescore)
    slow = in_child(domain_rescore)
    same = all(np.array_equal(slow[k], fast[k]) for k in ("recency", "frequency", "monetary", "tier"))
    mib = 1024

    print(
        f"\n(c) full re-score of {customers:,} synthetic customers ({orders:,} orders, generated in "
        f"{generate_seconds:.1f}s): recency, frequency, monetary, value tier"
    )
    line("", "domain code", "baseline: pandas group-by", "ratio")
    line(
        "score seconds",
        f"{slow['score_seconds']:.2f}",
        f"{fast['score_seconds']:.2f}",
        f"{slow['score_seconds'] / fast['score_seconds']:.0f}x",
    )
    total = slow["load_seconds"] + slow["score_seconds"]
    line(
        "load facts + score seconds",
        f"{total:.2f}",
        f"{fast['score_seconds']:.2f}",
        f"{total / fast['score_seconds']:.0f}x",
    )
    line(
        "customers/s (score only)",
        f"{customers / slow['score_seconds']:,.0f}",
        f"{customers / fast['score_seconds']:,.0f}",
    )
    line(
        "peak memory MiB",
        f"{slow['peak_kib'] / mib:,.0f}",
        f"{fast['peak_kib'] / mib:,.0f}",
        f"{slow['peak_kib'] / max(fast['peak_kib'], 1):.1f}x",
    )
    line("(of which domain facts MiB)", f"{slow['facts_kib'] / mib:,.0f}")
    line("same figures for every customer", "yes" if same else "NO")
    if not same:
        raise SystemExit("the domain code and the vectorised computation disagree")


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5_000, help="order events for the throughput run (a)")
    parser.add_argument("--stream-customers", type=int, default=1_000, help="customers those events are spread over")
    parser.add_argument("--latency-events", type=int, default=300, help="events for the latency run (b)")
    parser.add_argument("--rate", type=float, default=20.0, help="events per second published in the latency run")
    parser.add_argument("--customers", type=int, default=1_000_000, help="population of the re-score (c)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for scoring to apply a run")
    parser.add_argument("--skip-stream", action="store_true", help="only (c): no broker, no database")
    args = parser.parse_args()
    for name in ("events", "stream_customers", "latency_events", "customers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.rate <= 0:
        parser.error("--rate must be positive")

    # The service logs each segment change at INFO; WARNING keeps the output to the figures.
    configure_logging("scoring-benchmark", "WARNING")
    print(
        f"scoring benchmark: Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.platform()}",
        flush=True,
    )
    began = time.perf_counter()
    if not args.skip_stream:
        with tempfile.TemporaryDirectory(prefix="scoring-benchmark-") as folder:
            servers = EmbeddedServers(Path(folder), free_port(), free_port())
            servers.start()
            try:
                print(f"embedded broker {servers.kafka_bootstrap}, database {servers.mongo_uri}", flush=True)
                asyncio.run(stream_benchmarks(servers, args))
            finally:
                servers.stop()
    rescore_benchmark(args.customers)
    print(f"\nbenchmark done in {time.perf_counter() - began:.0f}s")


if __name__ == "__main__":
    main()
