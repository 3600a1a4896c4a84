"""End-to-end benchmark of the whole platform: the CDNOW purchase log replayed through the five services.

    make bench                                          # the full file (69,659 orders)
    make bench BENCH_ARGS="--orders 1500"               # a quick look: the first 1,500 orders of the file
    .venv/bin/python benchmarks/platform_benchmark.py --orders 300 --skip-latency --skip-baselines

It starts the platform as `crm run` does (embedded broker and database on free loopback ports, data in a
temporary folder that is removed afterwards, the topics, the five services as processes, no demo data), in US
dollars, and publishes the orders to crm.ingest.orders, plus a complaint for 5% and a survey answer for 10% of
the customers to crm.ingest.tickets, as a channel system would (keyed by customer id, in event-time order). Then:

- throughput: orders/s from the first send until the pipeline is done (every consumer group has no lag on
  its topics and no service has an unsent outbox record, for 3 samples in a row, 1 s apart); per service, from
  its first to its last record applied (`processed_events.applied_at`; the customer timeline keeps no such
  record, so its figure comes from the group's committed offsets, sampled each second);
- baselines on the same servers: a raw aiokafka produce+consume of the same order records, and the four
  documents per order the pipeline cannot do without (sales order, scoring customer, timeline entry,
  marketing order) written with bulk writes of 500 in one transaction each; the pipeline's rate is given as a
  ratio to the slower of the two;
- latency: a second run on the same platform, open loop at half the measured capacity: the replay's orders again
  under new customer ids, customer after customer as in the log, so any stretch of them has the mix of first and
  repeat orders whose capacity was measured. From the send time (kept by the publisher, and in the event id) to
  score stored (the customer document's `updated_at`, for each customer's last order) and to the marketing outbox
  record of each enrolment an order caused (enrolment -> segment change -> the sales event it names -> the
  ingest event that one names);
- peak RSS of every service, broker and database process (with their children), sampled every 0.5 s;
- GET scores and GET timeline at 200 requests/s, open loop, from another process: latency from each
  request's scheduled time, so a slow answer also delays the ones queued behind it (no coordinated omission);
- correctness: customers whose frequency, monetary value, first or last order in scoring differ from a batch
  computation over the same lines, and enrolments doubled per (customer, journey, episode): both must be 0.

The figures are printed as one table, with the targets and PASS/MISS, appended to benchmarks/RESULTS.md (newest
first) and the consumer lag over time is drawn next to it as a PNG. The benchmark exits non-zero when a
correctness figure is not 0; a missed performance target is reported, not an error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import multiprocessing
import os
import platform
import random
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from pymongo import AsyncMongoClient, InsertOne, ReplaceOne
from pymongo.asynchronous.client_session import AsyncClientSession

import crm_shared
from crm_customer import domain as customer_domain
from crm_customer import repository as customer_repository
from crm_sales.orders import domain as sales_domain
from crm_sales.orders import repository as sales_repository
from crm_scoring import domain as scoring_domain
from crm_scoring import repository as scoring_repository
from crm_shared.embedded import EmbeddedServers, ensure_topics, free_port
from crm_shared.events import (
    CampaignEnrolledEvent,
    CloudEvent,
    ComplaintFiled,
    ComplaintFiledEvent,
    OrderPlaced,
    OrderPlacedEvent,
    SurveyAnswered,
    SurveyAnsweredEvent,
    utc_now,
)
from crm_shared.money import ExchangeRates
from crm_shared.platform import Platform
from crm_shared.security.keys import key_sha256, new_key
from crm_shared.settings import SERVICES, ServiceSettings
from crm_shared.store import DEADLETTERS, MONEY_TYPES, PROCESSED, find_any, outbox_records, unsent_records
from crm_shared.topics import Topic

REPO = Path(__file__).resolve().parents[1]
DEFAULT_LOG = REPO.parent / "shared" / "data" / "cdnow" / "CDNOW_master.txt"
DEFAULT_RESULTS = REPO / "benchmarks" / "RESULTS.md"
FULL_REPLAY_ORDERS = 69_659
CENT = Decimal("0.01")
IN_DOLLARS = ExchangeRates.of("USD", {"USD": "1"})
SEED = 20261202
COMPLAINT_SHARE = 0.05
SURVEY_SHARE = 0.10

TARGET_ORDERS_PER_SECOND = 300.0
TARGET_FULL_REPLAY_SECONDS = 240.0
TARGET_BASELINE_RATIO = 0.5
TARGET_P99_SCORE_MS = 250.0
TARGET_SERVICE_RSS_MB = 300.0
TARGET_GET_P99_MS = 50.0
GET_RATE = 200.0

SAMPLE_SECONDS = 1.0
RSS_SAMPLE_SECONDS = 0.5
QUIET_SAMPLES = 3
PUBLISH_CHUNK = 2_000
MONGO_BATCH = 500
MB = 1_000_000


def consumer_group(service: str) -> str:
    return ServiceSettings(service_name=service).consumer_group


def database(service: str) -> str:
    return ServiceSettings(service_name=service).database_name


TIMELINE_GROUP = f"{consumer_group('customer')}-timeline"
# What each group consumes (services/*/consumers.py). Written out because the broker cannot say: Tansu answers
# an OffsetFetch for all of a group's partitions with a response aiokafka cannot decode.
GROUP_TOPICS: dict[str, tuple[str, ...]] = {
    consumer_group("customer"): (Topic.INGEST_CUSTOMERS, Topic.INGEST_INTERACTIONS),
    TIMELINE_GROUP: (
        Topic.CUSTOMER_EVENTS,
        Topic.SALES_EVENTS,
        Topic.SUPPORT_EVENTS,
        Topic.SCORING_SEGMENTS,
        Topic.MARKETING_EVENTS,
    ),
    consumer_group("sales"): (Topic.INGEST_ORDERS, Topic.MARKETING_EVENTS),
    consumer_group("support"): (Topic.INGEST_TICKETS,),
    consumer_group("scoring"): (Topic.SALES_EVENTS, Topic.SUPPORT_EVENTS, Topic.CUSTOMER_EVENTS),
    consumer_group("marketing"): (
        Topic.SCORING_SEGMENTS,
        Topic.CUSTOMER_EVENTS,
        Topic.SUPPORT_EVENTS,
        Topic.SALES_EVENTS,
    ),
}


def say(message: str) -> None:
    print(message, flush=True)


# ---------------------------------------------------------------- the purchase log and its events


@dataclass(frozen=True)
class Order:
    line: int
    customer_id: str
    at: datetime
    total: Decimal


@dataclass(frozen=True)
class Record:
    topic: str
    key: bytes
    value: bytes
    at: datetime


@dataclass
class Replay:
    orders: list[Order]
    records: list[Record]
    complaints: int
    surveys: int

    @property
    def customers(self) -> list[str]:
        return sorted({o.customer_id for o in self.orders})


def read_orders(path: Path, limit: int | None) -> list[Order]:
    """CDNOW master lines (id, YYYYMMDD, CDs, dollars; a header line) as orders at noon UTC of their day."""
    orders: list[Order] = []
    with path.open() as lines:
        for number, text in enumerate(lines):
            fields = text.split()
            if len(fields) != 4 or not fields[0].isdigit():
                continue
            source_id, day, _cds, dollars = fields
            at = datetime.strptime(day, "%Y%m%d").replace(hour=12, tzinfo=UTC)
            orders.append(Order(number, f"CD-{source_id}", at, Decimal(dollars).quantize(CENT)))
            if limit is not None and len(orders) == limit:
                break
    return orders


def order_event(order: Order, customer_id: str, order_id: str, event_id: str) -> OrderPlacedEvent:
    data = OrderPlaced(customer_id=customer_id, order_id=order_id, currency="USD", total=order.total)
    return OrderPlacedEvent.create(data, source="/channels/cdnow", id=event_id, time=order.at)


def record_of(event: CloudEvent[Any], topic: str) -> Record:
    return Record(topic, event.subject.encode(), event.to_bytes(), event.time)


def plan_replay(orders: list[Order], seed: int = SEED) -> Replay:
    """The orders, plus complaints and surveys of a fixed random share of their customers (each after the
    customer's first order), in event-time order as the channel systems would publish them."""
    rng = random.Random(seed)
    records = [
        record_of(order_event(o, o.customer_id, f"O-{o.line}", f"cdnow-order-{o.line}"), Topic.INGEST_ORDERS)
        for o in orders
    ]
    first_order: dict[str, datetime] = {}
    for o in orders:
        first_order[o.customer_id] = min(o.at, first_order.get(o.customer_id, o.at))
    customers = sorted(first_order)

    def later(customer_id: str) -> datetime:
        return first_order[customer_id] + timedelta(days=rng.randint(1, 60), hours=rng.randint(0, 8))

    complained = rng.sample(customers, round(len(customers) * COMPLAINT_SHARE))
    for customer_id in complained:
        complaint = ComplaintFiled(
            customer_id=customer_id,
            complaint_id=f"T-{customer_id}",
            dimension=rng.choice(("product", "service", "people")),
            severity=rng.choice(("low", "medium", "high")),
            summary="The parcel arrived late and one CD was cracked.",
        )
        event = ComplaintFiledEvent.create(
            complaint, source="/channels/call-centre", id=f"cdnow-complaint-{customer_id}", time=later(customer_id)
        )
        records.append(record_of(event, Topic.INGEST_TICKETS))
    surveyed = rng.sample(customers, round(len(customers) * SURVEY_SHARE))
    for customer_id in surveyed:
        kind = rng.choice(("csat", "nps"))
        answer = SurveyAnswered(
            customer_id=customer_id,
            survey_id=f"S-{customer_id}",
            kind=kind,
            score=rng.randint(1, 5) if kind == "csat" else rng.randint(0, 10),
            dimension=rng.choice(("product", "service", "people")),
        )
        answered = SurveyAnsweredEvent.create(
            answer, source="/channels/surveys", id=f"cdnow-survey-{customer_id}", time=later(customer_id)
        )
        records.append(record_of(answered, Topic.INGEST_TICKETS))
    records.sort(key=lambda r: r.at)
    return Replay(orders, records, len(complained), len(surveyed))


@dataclass
class Expected:
    frequency: int = 0
    monetary: Decimal = Decimal(0)
    first: datetime | None = None
    last: datetime | None = None


def batch_scores(orders: list[Order]) -> dict[str, Expected]:
    """What scoring must end with, computed in one pass over the lines: every line is an order."""
    expected: dict[str, Expected] = {}
    for o in orders:
        e = expected.setdefault(o.customer_id, Expected())
        e.frequency += 1
        e.monetary += o.total
        e.first = o.at if e.first is None else min(e.first, o.at)
        e.last = o.at if e.last is None else max(e.last, o.at)
    return expected


async def publish(producer: AIOKafkaProducer, records: Sequence[Record]) -> None:
    """Send without awaiting each ack; a chunk's acks are awaited only once the next chunk is sent, so the
    producer always has a full chunk to batch while the broker acknowledges the one before."""
    pending: list[asyncio.Future[Any]] = []
    for start in range(0, len(records), PUBLISH_CHUNK):
        previous = pending
        pending = [await producer.send(r.topic, r.value, key=r.key) for r in records[start : start + PUBLISH_CHUNK]]
        await asyncio.gather(*previous)
    await asyncio.gather(*pending)


# ---------------------------------------------------------------- watching the pipeline


@dataclass(frozen=True)
class Sample:
    at: float
    lag: dict[str, int]
    committed: dict[str, int]
    unsent: dict[str, int]
    highwater: dict[str, int]

    @property
    def quiet(self) -> bool:
        return not any(self.lag.values()) and not any(self.unsent.values())


class PipelineWatch:
    """Consumer lag per group and unsent outbox records per service.

    The end offsets are the high watermarks a consumer of every partition gets with each fetch: Tansu answers
    ListOffsets(latest) with an offset inside the last record batch, not after it, so end_offsets() would show
    a lag of zero with records still to consume.
    """

    def __init__(self, bootstrap: str, mongo: AsyncMongoClient[dict[str, Any]]) -> None:
        self._bootstrap = bootstrap
        self._mongo = mongo
        self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
        self._tail = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100, check_crcs=False
        )
        self._partitions: dict[str, list[TopicPartition]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._sampled = asyncio.Event()
        self.failure: BaseException | None = None
        self.samples: list[Sample] = []

    async def start(self, started: float) -> None:
        """Follow the high watermarks and sample once a second from now on, `started` being time zero."""
        await self._admin.start()
        await self._tail.start()
        await self._tail.topics()
        topics = sorted({t for ts in GROUP_TOPICS.values() for t in ts})
        for topic in topics:
            partitions = sorted(self._tail.partitions_for_topic(topic) or ())
            self._partitions[topic] = [TopicPartition(topic, p) for p in partitions]
        every = [tp for tps in self._partitions.values() for tp in tps]
        self._tail.assign(every)
        await self._tail.seek_to_beginning(*every)
        self._tasks = [
            asyncio.create_task(self._follow(), name="high-watermarks"),
            asyncio.create_task(self._sample_every_second(started), name="lag-samples"),
        ]

    async def _follow(self) -> None:
        while True:
            await self._tail.getmany(timeout_ms=100, max_records=20_000)

    async def _sample_every_second(self, started: float) -> None:
        while True:
            began = time.monotonic()
            try:
                await self.sample(started)
            except Exception as exc:  # a slow or refused request: the next second tries again
                self.failure = exc
            self._sampled.set()
            await asyncio.sleep(max(0.0, SAMPLE_SECONDS - (time.monotonic() - began)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._tail.stop()
        await self._admin.close()

    async def next_sample(self, seen: int, timeout: float = 60) -> Sample:
        """The first sample after the `seen` first ones, waiting for the sampler to take it."""
        deadline = time.monotonic() + timeout
        while len(self.samples) <= seen:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no lag sample for {timeout:.0f}s; the last attempt failed with {self.failure!r}")
            self._sampled.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._sampled.wait(), timeout)
        return self.samples[seen]

    async def sample(self, started: float) -> Sample:
        highwater = {
            f"{tp.topic}:{tp.partition}": self._tail.highwater(tp) for tps in self._partitions.values() for tp in tps
        }
        lag: dict[str, int] = {}
        committed: dict[str, int] = {}
        for group, topics in GROUP_TOPICS.items():
            partitions = [tp for t in topics for tp in self._partitions[t]]
            offsets = await self._admin.list_consumer_group_offsets(group, partitions=partitions)
            # -1: nothing committed yet; the group starts from the beginning (offset 0 on a fresh broker).
            done = {tp: max(0, offsets[tp].offset) if tp in offsets else 0 for tp in partitions}
            committed[group] = sum(done.values())
            lag[group] = sum(max(0, (highwater[f"{tp.topic}:{tp.partition}"] or 0) - done[tp]) for tp in partitions)
        unsent = {name: await unsent_records(self._mongo[database(name)]) for name in SERVICES}
        topic_ends = {
            topic: sum(highwater[f"{tp.topic}:{tp.partition}"] or 0 for tp in tps)
            for topic, tps in self._partitions.items()
        }
        sample = Sample(time.time() - started, lag, committed, unsent, topic_ends)
        self.samples.append(sample)
        return sample

    async def wait_done(
        self,
        *,
        expected_ends: dict[str, int],
        platform_: Platform,
        timeout: float,
        stall_seconds: float,
        what: str,
    ) -> float:
        """Until the pipeline is quiet for QUIET_SAMPLES samples in a row after every published record reached the
        broker; returns the time of the first quiet sample (seconds since the watch's time zero)."""
        deadline = time.monotonic() + timeout
        quiet_since: float | None = None
        quiet = 0
        last_progress, last_state = time.monotonic(), None
        next_report = time.monotonic()
        seen = len(self.samples)
        while True:
            s = await self.next_sample(seen)
            seen += 1
            dead = platform_.dead_services()
            if dead:
                raise RuntimeError(f"service(s) stopped during {what}: {', '.join(dead)}")
            arrived = all(s.highwater.get(t, 0) >= n for t, n in expected_ends.items())
            if arrived and s.quiet:
                quiet += 1
                quiet_since = s.at if quiet_since is None else quiet_since
                if quiet >= QUIET_SAMPLES:
                    return quiet_since
            else:
                quiet, quiet_since = 0, None
            state = (tuple(s.committed.values()), tuple(s.unsent.values()), tuple(s.highwater.values()))
            if state != last_state:
                last_state, last_progress = state, time.monotonic()
            elif time.monotonic() - last_progress > stall_seconds:
                raise RuntimeError(f"{what}: nothing moved for {stall_seconds:.0f}s; lag {s.lag}, unsent {s.unsent}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not done after {timeout:.0f}s; lag {s.lag}, unsent {s.unsent}")
            if time.monotonic() >= next_report:
                next_report += 10
                lags = ", ".join(f"{g.removeprefix('crm-')} {n:,}" for g, n in s.lag.items() if n)
                say(f"  {s.at:7.1f}s  lag: {lags or 'none'}; unsent outbox: {sum(s.unsent.values()):,}")


# ---------------------------------------------------------------- memory


class RssSampler:
    """Peak resident set of each process (with its children: a launcher may start the real server), every 0.5 s."""

    def __init__(self) -> None:
        self.peak: dict[str, int] = {}
        self._processes: dict[str, psutil.Process] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def watch(self, name: str, pid: int) -> None:
        self._processes[name] = psutil.Process(pid)
        self.peak.setdefault(name, 0)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(RSS_SAMPLE_SECONDS):
            for name, process in list(self._processes.items()):
                with contextlib.suppress(psutil.Error):
                    tree = [process, *process.children(recursive=True)]
                    rss = sum(p.memory_info().rss for p in tree if p.is_running())
                    self.peak[name] = max(self.peak[name], rss)


# ---------------------------------------------------------------- phases


@dataclass
class ServiceRate:
    service: str
    records: int
    seconds: float
    how: str
    # What the rate counts: the orders, except for support, which sees only the tickets.
    unit: str
    count: int


@dataclass
class Throughput:
    orders: int
    tickets: int
    customers: int
    publish_seconds: float
    done_seconds: float
    services: list[ServiceRate]

    @property
    def orders_per_second(self) -> float:
        return self.orders / self.done_seconds


@dataclass
class Latency:
    rate: float
    orders: int
    customers: int
    score_ms: list[float]
    enrolment_ms: list[float]
    missing_scores: int
    done_seconds: float


@dataclass
class Baselines:
    kafka_per_second: float
    mongo_per_second: float


@dataclass
class GetLoad:
    what: str
    rate: float
    requests: int
    latencies_ms: list[float]
    statuses: dict[int, int]
    errors: int


@dataclass
class Correctness:
    customers: int
    differing: int
    missing: int
    doubled_enrolments: int
    dead_letters: dict[str, int]
    examples: list[str] = field(default_factory=list)


@dataclass
class Results:
    throughput: Throughput | None = None
    latency: Latency | None = None
    baselines: Baselines | None = None
    gets: list[GetLoad] = field(default_factory=list)
    correctness: Correctness | None = None
    rss: dict[str, int] = field(default_factory=dict)
    plot: Path | None = None
    phases: list[tuple[str, float, float]] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)


async def applied_span(mongo: AsyncMongoClient[dict[str, Any]], service: str) -> tuple[int, float] | None:
    """How many events the service applied, and the seconds from its first to its last."""
    rows = await (
        await mongo[database(service)][PROCESSED].aggregate(
            [
                {
                    "$group": {
                        "_id": None,
                        "n": {"$sum": 1},
                        "first": {"$min": "$applied_at"},
                        "last": {"$max": "$applied_at"},
                    }
                }
            ]
        )
    ).to_list(None)
    if not rows or not rows[0]["n"]:
        return None
    return int(rows[0]["n"]), (rows[0]["last"] - rows[0]["first"]).total_seconds()


def consumed_span(samples: Sequence[Sample], group: str) -> tuple[int, float] | None:
    """Records the group committed, and the seconds from the first sample that saw its offsets move to the first
    that saw them at their final value (one sample period of resolution)."""
    if not samples:
        return None
    initial, final = samples[0].committed[group], samples[-1].committed[group]
    if final == initial:
        return None
    first = next(s.at for s in samples if s.committed[group] > initial)
    last = next(s.at for s in samples if s.committed[group] == final)
    return final - initial, max(last - first, SAMPLE_SECONDS)


async def throughput_run(bench: Bench, replay: Replay, producer: AIOKafkaProducer, watch: PipelineWatch) -> Throughput:
    orders = len(replay.orders)
    tickets = len(replay.records) - orders
    say(
        f"publishing {orders:,} orders of {len(replay.customers):,} customers, {replay.complaints:,} complaints and "
        f"{replay.surveys:,} survey answers ..."
    )
    first = len(watch.samples)
    began = time.time()
    await publish(producer, replay.records)
    published = time.time()
    say(f"  published in {published - began:.1f}s ({len(replay.records) / (published - began):,.0f} records/s)")
    done = await watch.wait_done(
        expected_ends={Topic.INGEST_ORDERS: orders, Topic.INGEST_TICKETS: tickets},
        platform_=bench.platform,
        timeout=bench.args.timeout,
        stall_seconds=bench.args.stall_seconds,
        what="the replay",
    )
    done_seconds = done - (began - bench.started)
    bench.results.phases.append(("replay", began - bench.started, done))
    say(f"  pipeline done {done_seconds:.1f}s after the first send ({orders / done_seconds:,.1f} orders/s)")
    rates: list[ServiceRate] = []
    for name in SERVICES:
        span = await applied_span(bench.mongo, name)
        if span is not None:
            unit, count = ("tickets", tickets) if name == "support" else ("orders", orders)
            rates.append(ServiceRate(name, span[0], span[1], "processed_events applied_at, first to last", unit, count))
    timeline = consumed_span(watch.samples[first:], TIMELINE_GROUP)
    if timeline is not None:
        how = "group offsets, sampled each second"
        rates.append(ServiceRate("customer timeline", timeline[0], timeline[1], how, "orders", orders))
    return Throughput(orders, tickets, len(replay.customers), published - began, done_seconds, rates)


async def latency_run(
    bench: Bench, replay: Replay, rate: float, producer: AIOKafkaProducer, watch: PipelineWatch
) -> Latency:
    """The replay's orders again under new customer ids (LAT-<round>-<id>), open loop at `rate` without waiting for
    acks. In the log's order, customer after customer: any stretch of it has the replay's mix of first and repeat
    orders, the mix whose capacity was measured (in time order the first orders would all come first)."""
    count = max(1, round(rate * bench.args.latency_seconds))
    say(f"latency run: {count:,} orders at {rate:,.2f}/s open loop, the replay's orders under new customer ids ...")
    sent: dict[str, float] = {}
    last_of: dict[str, str] = {}
    futures: list[asyncio.Future[Any]] = []
    began = time.time()
    schedule = time.perf_counter()
    for i in range(count):
        await asyncio.sleep(max(0.0, schedule + i / rate - time.perf_counter()))
        row = replay.orders[i % len(replay.orders)]
        customer_id = f"LAT-{i // len(replay.orders)}-{row.customer_id.removeprefix('CD-')}"
        sent_at = time.time()
        # The send time travels in the id too, so a reader of the topic can measure without the publisher.
        event_id = f"latency-{i}-{int(sent_at * 1e6)}"
        event = order_event(row, customer_id, f"LAT-O-{i}", event_id)
        sent[event_id] = sent_at
        last_of[customer_id] = event_id
        futures.append(await producer.send(Topic.INGEST_ORDERS, event.to_bytes(), key=customer_id.encode()))
    await asyncio.gather(*futures)
    done = await watch.wait_done(
        expected_ends={
            Topic.INGEST_ORDERS: len(replay.orders) + count,
            Topic.INGEST_TICKETS: len(replay.records) - len(replay.orders),
        },
        platform_=bench.platform,
        timeout=bench.args.timeout,
        stall_seconds=bench.args.stall_seconds,
        what="the latency run",
    )
    bench.results.phases.append(("latency", began - bench.started, done))
    customers = list(last_of)
    ours = set(customers)
    scoring_db = bench.mongo[database("scoring")]
    # A customer's document is rewritten by each of its orders, in order (one key, one partition): its updated_at
    # is when the customer's last order was scored. Read in short $in queries (find_any): SecantusDB compares
    # each document it finds with the whole list, so one $in of thousands of ids takes minutes.
    customer_ids = [{"_id": {"$in": customers}}]
    stored = {
        d["_id"]: d["updated_at"].timestamp()
        for d in await find_any(scoring_db[scoring_repository.CUSTOMERS], customer_ids, {"updated_at": 1})
    }
    score_ms = [(stored[c] - sent[last_of[c]]) * 1000 for c in customers if c in stored]
    # Segment changes name the sales event that caused them; sales' events name the ingest event they came from.
    # Only the outbox documents committed since this run began, and its customers picked here, not by a $in.
    since = datetime.fromtimestamp(began, UTC) - timedelta(seconds=5)
    ingest_of = {
        r["_id"]: json.loads(bytes(r["value"])).get("causationid")
        for r in await outbox_records(bench.mongo[database("sales")], {"type": OrderPlacedEvent.TYPE}, since=since)
        if r["key"] in ours
    }
    enrolled = [
        r
        for r in await outbox_records(
            bench.mongo[database("marketing")], {"type": CampaignEnrolledEvent.TYPE}, since=since
        )
        if r["key"] in ours
    ]
    triggers = {r["_id"]: json.loads(bytes(r["value"]))["data"]["trigger_event_id"] for r in enrolled}
    segment_changes = [{"_id": {"$in": sorted(set(triggers.values()))}}]
    causes = {
        d["_id"]: d["caused_by"]
        for d in await find_any(scoring_db[scoring_repository.SEGMENT_CHANGES], segment_changes, {"caused_by": 1})
    }
    first_enrolment: dict[str, float] = {}
    for r in enrolled:
        # Only enrolments one of these orders caused (not a time decay or population pass).
        order = ingest_of.get(causes.get(triggers[r["_id"]], ""))
        if order in sent:
            at = r["created_at"].timestamp()
            first_enrolment[order] = min(at, first_enrolment.get(order, at))
    enrolment_ms = [(at - sent[order]) * 1000 for order, at in first_enrolment.items()]
    return Latency(
        rate,
        count,
        len(customers),
        score_ms,
        enrolment_ms,
        len(customers) - len(score_ms),
        done - (began - bench.started),
    )


async def kafka_baseline(bootstrap: str, records: Sequence[Record]) -> float:
    """Records/s of a raw aiokafka producer and consumer (no group, no parsing) moving the same order records."""
    topic = "bench.baseline.orders"
    await ensure_topics(bootstrap, [topic])
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=512 * 1024)
    await consumer.start()
    await producer.start()
    try:
        await consumer.topics()
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)

        async def consume() -> float:
            seen = 0
            while seen < len(records):
                batch = await consumer.getmany(timeout_ms=100, max_records=10_000)
                seen += sum(len(rs) for rs in batch.values())
            return time.perf_counter()

        reader = asyncio.create_task(consume())
        began = time.perf_counter()
        await publish(producer, [Record(topic, r.key, r.value, r.at) for r in records])
        finished = await asyncio.wait_for(reader, 300)
        return len(records) / (finished - began)
    finally:
        await producer.stop()
        await consumer.stop()


def minimal_documents(orders: Sequence[Order]) -> dict[str, list[Any]]:
    """Per order, the documents the pipeline must write at the least, built by the services' own code: the sales
    order, the scoring customer (replaced as each order comes), the timeline entry, marketing's order."""
    thresholds = scoring_domain.Thresholds(exchange_rates=IN_DOLLARS)
    facts: dict[str, scoring_domain.CustomerFacts] = {}
    docs: dict[str, list[Any]] = {"sales": [], "scoring": [], "customer": [], "marketing": []}
    now = utc_now()
    for o in orders:
        event = order_event(o, o.customer_id, f"O-{o.line}", f"cdnow-order-{o.line}")
        data = event.data
        docs["sales"].append(InsertOne(sales_repository.to_document(sales_domain.place(None, data, o.at))))
        known = facts.get(o.customer_id) or scoring_domain.CustomerFacts(o.customer_id)
        known = scoring_domain.record(known, scoring_domain.Placed(data.order_id, data.total, "USD", o.at))
        facts[o.customer_id] = known
        as_of = known.latest_at or o.at
        scores = scoring_domain.score(known, as_of, thresholds)
        customer = scoring_repository.CustomerScores(known, scores, scores.segments, as_of, now)
        docs["scoring"].append(
            ReplaceOne({"_id": o.customer_id}, scoring_repository.to_document(customer), upsert=True)
        )
        entry = customer_repository.entry_to_document(customer_domain.timeline_entry(event))
        docs["customer"].append(InsertOne(entry))
        # The fields crm_marketing.repository.record_order sets.
        marketing = {"customer_id": o.customer_id, "currency": "USD", "total": o.total, "ordered_at": o.at}
        docs["marketing"].append(InsertOne({"_id": data.order_id, **marketing}))
    return docs


async def mongo_baseline(mongo: AsyncMongoClient[dict[str, Any]], orders: Sequence[Order]) -> float:
    """Orders/s of the four kinds of documents written side by side (as the services would), each kind in its own
    database, in bulk writes of 500 inside one transaction each, with no framework."""
    docs = minimal_documents(orders)
    names = {kind: f"bench_baseline_{kind}" for kind in docs}

    async def write(kind: str) -> None:
        collection = mongo[names[kind]]["documents"]
        await collection.insert_one({"_id": "warm-up"})
        await collection.delete_one({"_id": "warm-up"})
        ops = docs[kind]
        for start in range(0, len(ops), MONGO_BATCH):
            batch = ops[start : start + MONGO_BATCH]

            async def work(session: AsyncClientSession, batch: list[Any] = batch) -> None:
                await collection.bulk_write(batch, ordered=True, session=session)

            async with mongo.start_session() as session:
                await session.with_transaction(work)

    try:
        for kind in docs:
            await mongo.drop_database(names[kind])
        began = time.perf_counter()
        await asyncio.gather(*(write(kind) for kind in docs))
        return len(orders) / (time.perf_counter() - began)
    finally:
        for kind in docs:
            await mongo.drop_database(names[kind])


def _get_worker(host: str, port: int, api_key: str, paths: list[str], rate: float, seconds: float, conn: Any) -> None:
    """In its own process: GET the paths round robin, open loop at `rate`; latency from each scheduled time."""
    local = threading.local()
    headers = {"X-API-Key": api_key}

    def fetch(path: str, scheduled: float) -> tuple[float, int]:
        connection: http.client.HTTPConnection | None = getattr(local, "connection", None)
        if connection is None:
            connection = local.connection = http.client.HTTPConnection(host, port, timeout=10)
        try:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            connection.close()
            local.connection = None
            status = -1
        return (time.perf_counter() - scheduled) * 1000, status

    def run(count: int) -> list[tuple[float, int]]:
        with ThreadPoolExecutor(max_workers=64) as pool:
            futures = []
            start = time.perf_counter() + 0.05
            for i in range(count):
                scheduled = start + i / rate
                time.sleep(max(0.0, scheduled - time.perf_counter()))
                futures.append(pool.submit(fetch, paths[i % len(paths)], scheduled))
            return [f.result() for f in futures]

    run(max(1, int(rate)))  # one second to open the connections, not measured
    conn.send(run(max(1, int(rate * seconds))))
    conn.close()


def get_load(what: str, url: str, api_key: str, paths: list[str], seconds: float) -> GetLoad:
    host, port = url.removeprefix("http://").split(":")
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe(duplex=False)
    process = context.Process(target=_get_worker, args=(host, int(port), api_key, paths, GET_RATE, seconds, child))
    process.start()
    try:
        child.close()
        if not parent.poll(seconds + 120):
            raise TimeoutError(f"GET {what}: no answer from the load process")
        results: list[tuple[float, int]] = parent.recv()
    finally:
        process.join(10)
        if process.is_alive():
            process.terminate()
    statuses = Counter(status for _, status in results)
    return GetLoad(
        what,
        GET_RATE,
        len(results),
        [ms for ms, status in results if status == 200],
        dict(statuses),
        sum(n for s, n in statuses.items() if s != 200),
    )


async def correctness(mongo: AsyncMongoClient[dict[str, Any]], replay: Replay) -> Correctness:
    expected = batch_scores(replay.orders)
    found: dict[str, tuple[Any, ...]] = {}
    # Short $in queries (find_any): one $in of 23,570 ids would keep SecantusDB busy for many minutes.
    docs = await find_any(
        mongo[database("scoring")][scoring_repository.CUSTOMERS],
        [{"_id": {"$in": list(expected)}}],
        {"scores.frequency": 1, "scores.monetary": 1, "scores.first_order_at": 1, "scores.last_order_at": 1},
    )
    for doc in docs:
        s = doc["scores"]
        found[doc["_id"]] = (s["frequency"], s["monetary"], s["first_order_at"], s["last_order_at"])
    differing, examples = 0, list[str]()
    for customer_id, want in expected.items():
        got = found.get(customer_id)
        if got is not None and got != (want.frequency, want.monetary, want.first, want.last):
            differing += 1
            if len(examples) < 3:
                examples.append(f"{customer_id}: {got} != {(want.frequency, want.monetary, want.first, want.last)}")
    doubled = await (
        await mongo[database("marketing")]["enrolments"].aggregate(
            [
                {"$group": {"_id": {"c": "$customer_id", "j": "$journey", "e": "$episode"}, "n": {"$sum": 1}}},
                {"$match": {"n": {"$gt": 1}}},
            ]
        )
    ).to_list(None)
    letters = {name: await mongo[database(name)][DEADLETTERS].count_documents({}) for name in SERVICES}
    return Correctness(
        len(expected),
        differing,
        len(expected) - len(found),
        sum(d["n"] - 1 for d in doubled),
        letters,
        examples,
    )


# ---------------------------------------------------------------- the run


@dataclass
class Bench:
    args: argparse.Namespace
    servers: EmbeddedServers
    platform: Platform
    mongo: AsyncMongoClient[dict[str, Any]]
    started: float
    results: Results


async def run(
    args: argparse.Namespace, servers: EmbeddedServers, platform_: Platform, api_key: str, results: Results
) -> None:
    replay = plan_replay(read_orders(args.log, args.orders))
    if not replay.orders:
        raise SystemExit(f"no orders in {args.log}")
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        servers.mongo_uri, tz_aware=True, type_registry=MONEY_TYPES
    )
    bench = Bench(args, servers, platform_, mongo, time.time(), results)
    watch = PipelineWatch(servers.kafka_bootstrap, mongo)
    # Batching for the replay; none for the latency run, where lingering would add to every figure.
    bulk = AIOKafkaProducer(
        bootstrap_servers=servers.kafka_bootstrap, acks="all", linger_ms=20, max_batch_size=512 * 1024
    )
    paced = AIOKafkaProducer(bootstrap_servers=servers.kafka_bootstrap, acks="all", linger_ms=0)
    try:
        await watch.start(bench.started)
        await bulk.start()
        await paced.start()
        results.throughput = await throughput_run(bench, replay, bulk, watch)
        if not args.skip_latency:
            rate = results.throughput.orders_per_second / 2
            results.latency = await latency_run(bench, replay, rate, paced, watch)
        sample = random.Random(SEED).sample(replay.customers, min(len(replay.customers), 1_000))
        for what, service, template in (
            ("scores", "scoring", "/v1/customers/{}/scores"),
            ("timeline", "customer", "/v1/customers/{}/timeline"),
        ):
            say(f"GET {what}: {GET_RATE:.0f} requests/s for {args.get_seconds:g}s from another process ...")
            paths = [template.format(c) for c in sample]
            results.gets.append(
                await asyncio.to_thread(get_load, what, platform_.url(service), api_key, paths, args.get_seconds)
            )
        results.correctness = await correctness(mongo, replay)
        if not args.skip_baselines:
            say("baselines: raw aiokafka produce+consume, then MongoDB bulk writes ...")
            order_records = [r for r in replay.records if r.topic == Topic.INGEST_ORDERS]
            kafka = await kafka_baseline(servers.kafka_bootstrap, order_records)
            results.baselines = Baselines(kafka, await mongo_baseline(mongo, replay.orders))
    finally:
        for closing in (paced.stop, bulk.stop, watch.stop, mongo.close):
            with contextlib.suppress(Exception):
                await closing()
        results.samples = watch.samples


# ---------------------------------------------------------------- the report


def percentiles(values: Sequence[float], qs: Sequence[int] = (50, 95, 99)) -> str:
    if not values:
        return "n/a"
    return " / ".join(f"{np.percentile(values, q):,.1f}" for q in qs)


def verdict(ok: bool, miss: str = "MISS") -> str:
    return "PASS" if ok else miss


def table_rows(results: Results) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [("figure", "value", "measured how / on what", "target", "")]
    t = results.throughput
    if t is not None:
        rate = t.orders_per_second
        rows.append(("throughput",))
        rows.append(
            (
                "end to end, orders/s",
                f"{rate:,.1f}",
                f"{t.orders:,} orders + {t.tickets:,} tickets of {t.customers:,} customers, "
                f"first send to done {t.done_seconds:,.1f}s",
                f">= {TARGET_ORDERS_PER_SECOND:,.0f}",
                verdict(rate >= TARGET_ORDERS_PER_SECOND),
            )
        )
        full = FULL_REPLAY_ORDERS / rate
        what = (
            "measured" if t.orders >= FULL_REPLAY_ORDERS else f"projected: {FULL_REPLAY_ORDERS:,} orders at this rate"
        )
        rows.append(
            (
                "full replay, s",
                f"{full:,.0f}",
                what,
                f"< {TARGET_FULL_REPLAY_SECONDS:,.0f}",
                verdict(full < TARGET_FULL_REPLAY_SECONDS),
            )
        )
        records = t.orders + t.tickets
        rows.append(
            (
                "  publish, records/s",
                f"{records / t.publish_seconds:,.0f}",
                f"aiokafka, acks=all, no await per record ({t.publish_seconds:.2f}s)",
            )
        )
        for s in t.services:
            rows.append(
                (
                    f"  {s.service}, {s.unit}/s",
                    f"{s.count / s.seconds:,.1f}",
                    f"{s.records:,} records in {s.seconds:,.1f}s ({s.records / s.seconds:,.1f}/s): {s.how}",
                )
            )
        b = results.baselines
        if b is None:
            rows.append(("  baselines", "", "skipped (--skip-baselines)"))
        else:
            rows.append(
                (
                    "  baseline: Kafka, records/s",
                    f"{b.kafka_per_second:,.0f}",
                    "raw aiokafka produce+consume of the same order records, a topic of its own",
                )
            )
            rows.append(
                (
                    "  baseline: MongoDB, orders/s",
                    f"{b.mongo_per_second:,.0f}",
                    "sales order, scoring customer, timeline entry, marketing order; 500 per transaction",
                )
            )
            slower = min(b.kafka_per_second, b.mongo_per_second)
            which = "MongoDB" if b.mongo_per_second <= b.kafka_per_second else "Kafka"
            rows.append(
                (
                    "  end to end / slower baseline",
                    f"{rate / slower:.3f}",
                    f"the slower is {which}",
                    f">= {TARGET_BASELINE_RATIO}",
                    verdict(rate / slower >= TARGET_BASELINE_RATIO),
                )
            )
    lat = results.latency
    if lat is None:
        rows.append(("latency", "", "skipped (--skip-latency)"))
    else:
        rows.append(("latency",))
        p99 = float(np.percentile(lat.score_ms, 99)) if lat.score_ms else float("inf")
        rows.append(
            (
                "publish to score p50/p95/p99 ms",
                percentiles(lat.score_ms),
                f"{lat.orders:,} orders at {lat.rate:,.2f}/s open loop (half capacity); last order of each of "
                f"{lat.customers:,} customers, customers.updated_at"
                + (f"; {lat.missing_scores} not scored" if lat.missing_scores else ""),
                f"p99 <= {TARGET_P99_SCORE_MS:,.0f}",
                verdict(p99 <= TARGET_P99_SCORE_MS),
            )
        )
        rows.append(
            (
                "publish to enrolment p50/p95/p99",
                percentiles(lat.enrolment_ms),
                f"{len(lat.enrolment_ms):,} orders that caused one; marketing outbox created_at, via the "
                "segment change and the sales event it names",
            )
        )
    if results.rss:
        rows.append(("memory",))
        for name, peak in results.rss.items():
            service = name in SERVICES
            rows.append(
                (
                    f"peak RSS {name}, MB",
                    f"{peak / MB:,.0f}",
                    "process and its children, sampled every 0.5 s",
                    f"<= {TARGET_SERVICE_RSS_MB:,.0f}" if service else "",
                    verdict(peak / MB <= TARGET_SERVICE_RSS_MB) if service else "",
                )
            )
    if results.gets:
        rows.append(("reads",))
        for g in results.gets:
            p99 = float(np.percentile(g.latencies_ms, 99)) if g.latencies_ms else float("inf")
            rows.append(
                (
                    f"GET {g.what} p50/p99 ms",
                    percentiles(g.latencies_ms, (50, 99)),
                    f"{g.requests:,} requests at {g.rate:.0f}/s open loop, from the scheduled time; {g.errors} not 200",
                    f"p99 < {TARGET_GET_P99_MS:,.0f}",
                    verdict(p99 < TARGET_GET_P99_MS and not g.errors),
                )
            )
    c = results.correctness
    if c is not None:
        rows.append(("correctness",))
        rows.append(
            (
                "customers differing from batch",
                f"{c.differing + c.missing:,}",
                f"frequency, monetary, first and last order of {c.customers:,} customers"
                + (f" ({c.missing:,} not scored at all)" if c.missing else ""),
                "0",
                verdict(c.differing + c.missing == 0, "FAIL"),
            )
        )
        rows.append(
            (
                "enrolments doubled",
                f"{c.doubled_enrolments:,}",
                "per customer, journey and episode",
                "0",
                verdict(c.doubled_enrolments == 0, "FAIL"),
            )
        )
        letters = ", ".join(f"{n} {s}" for s, n in c.dead_letters.items() if n) or "none"
        rows.append(("dead letters", f"{sum(c.dead_letters.values()):,}", letters))
    if results.plot is not None:
        rows.append(("consumer lag plot", "", str(results.plot)))
    return rows


def format_table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows if len(r) > i) for i in range(5)]
    lines = []
    for r in rows:
        if len(r) == 1:
            lines.append(r[0])
            continue
        cells = [*r, *[""] * (5 - len(r))]
        lines.append(
            f"  {cells[0]:<{widths[0]}}  {cells[1]:>{widths[1]}}  {cells[2]:<{widths[2]}}  "
            f"{cells[3]:<{widths[3]}}  {cells[4]}".rstrip()
        )
        if r is rows[0]:
            lines.append("  " + "-" * (sum(widths) + 8 + 4))
    return lines


def draw_lag(samples: Sequence[Sample], phases: Sequence[tuple[str, float, float]], path: Path, title: str) -> None:
    figure = Figure(figsize=(11, 7), dpi=100)
    FigureCanvasAgg(figure)
    lag_axes, outbox_axes = figure.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    at = [s.at for s in samples]
    for group in GROUP_TOPICS:
        lag_axes.plot(at, [s.lag[group] for s in samples], label=group, linewidth=1.2)
    for name in SERVICES:
        outbox_axes.plot(at, [s.unsent[name] for s in samples], label=name, linewidth=1.0)
    for axes in (lag_axes, outbox_axes):
        for (label, start, end), colour in zip(phases, ("#e8f0fe", "#fde8e8"), strict=False):
            axes.axvspan(start, end, color=colour, zorder=0, label=label if axes is lag_axes else None)
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8, loc="upper right")
    lag_axes.set_ylabel("records not yet consumed")
    lag_axes.set_title(title, fontsize=10)
    outbox_axes.set_ylabel("unsent outbox")
    outbox_axes.set_xlabel("seconds since the benchmark started")
    figure.tight_layout()
    figure.savefig(path)


def append_results(path: Path, heading: str, context: str, lines: list[str]) -> None:
    """A section per run, newest first, under the title and its introduction."""
    section = f"## {heading}\n\n{context}\n\n```text\n" + "\n".join(lines) + "\n```\n\n"
    text = path.read_text() if path.exists() else "# Benchmark results\n\n"
    first = text.find("\n## ")
    text = text + section if first < 0 else text[: first + 1] + section + text[first + 1 :]
    path.write_text(text)


# ---------------------------------------------------------------- main


def git_state() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "--no-optional-locks", "status", "--porcelain"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if changes else "")


def command_line() -> str:
    def shown(path: str) -> str:
        relative = os.path.relpath(path)
        return path if relative.startswith("..") else relative

    return shlex.join([shown(sys.executable), shown(sys.argv[0]), *sys.argv[1:]])


def service_environment(admin_key: str) -> dict[str, str]:
    return {
        **os.environ,
        # Every call needs a credential: the services accept this run's own admin key. The GET loads send 200
        # requests/s with that one key, over the default limit of 100/s per caller: the limit is lifted.
        "CRM_AUTH_ADMIN_KEY_SHA256": key_sha256(admin_key),
        "CRM_AUTH_RATE_LIMIT": "100000/second",
        # The purchase log is in dollars: scored in dollars, with no conversion (sales refuses unrated currencies).
        "CRM_REPORTING_CURRENCY": IN_DOLLARS.reporting_currency,
        "CRM_EXCHANGE_RATES": json.dumps({c: str(r) for c, r in IN_DOLLARS.rates}),
        # The orders are from 1997-98, so every customer is due for time decay the moment it is scored: the
        # decay pass (every 60 s) and the population refresh (every 300 s) would re-score the whole base over and
        # over while the replay streams in, which orders placed today would not cause. Both wait a day here.
        "CRM_SCORING_DECAY_INTERVAL_SECONDS": "86400",
        "CRM_SCORING_POPULATION_INTERVAL_SECONDS": "86400",
    }


def code_under_test(env: dict[str, str]) -> str:
    """Where the services will import the shared package from; refuses to measure other code than this process's."""
    here = str(Path(crm_shared.__file__).resolve().parent)
    probe = "import pathlib, crm_shared; print(pathlib.Path(crm_shared.__file__).resolve().parent)"
    there = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    if there.stdout.strip() != here:
        raise SystemExit(f"the services would import crm_shared from {there.stdout.strip()}, this script from {here}")
    return here


def tail_logs(log_dir: Path, lines: int = 15) -> None:
    for log in sorted(log_dir.glob("*.log")):
        text = log.read_text(errors="replace").splitlines()[-lines:]
        if text:
            say(f"--- last lines of {log.name}")
            for row in text:
                say(f"    {row[:300]}")


def _interrupted(*_: object) -> None:
    raise KeyboardInterrupt


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, help="only the first N orders of the log (default: all)")
    parser.add_argument("--skip-latency", action="store_true", help="no second, open-loop run")
    parser.add_argument("--skip-baselines", action="store_true", help="no raw Kafka and MongoDB baselines")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="markdown file the figures go to")
    parser.add_argument("--log", type=Path, default=DEFAULT_LOG, help="the CDNOW master file")
    parser.add_argument("--latency-seconds", type=float, default=60, help="length of the open-loop run")
    parser.add_argument("--get-seconds", type=float, default=10, help="length of each GET load")
    parser.add_argument("--timeout", type=float, default=6 * 3600, help="seconds a run may take to go through")
    parser.add_argument("--stall-seconds", type=float, default=300, help="give up when nothing moves this long")
    args = parser.parse_args(argv)
    if args.orders is not None and args.orders < 1:
        parser.error("--orders must be at least 1")
    for name in ("latency_seconds", "get_seconds", "timeout", "stall_seconds"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if not args.log.exists():
        parser.error(f"no purchase log at {args.log}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupted)
    commit, command, began = git_state(), command_line(), datetime.now(UTC)
    # A bootstrap admin key of this run's own, never printed: the platform lives as long as the run.
    admin_key, _ = new_key("bootstrap")
    env = service_environment(admin_key)
    code = code_under_test(env)
    say(f"platform benchmark at {commit}: Python {platform.python_version()}, {os.cpu_count()} CPUs; code: {code}")
    results = Results()
    sampler = RssSampler()
    platform_: Platform | None = None
    with tempfile.TemporaryDirectory(prefix="platform-benchmark-") as folder:
        root = Path(folder)
        servers = EmbeddedServers(root / "servers", free_port(), free_port())
        try:
            servers.data_dir.mkdir(parents=True, exist_ok=True)
            say("starting the embedded database (SecantusDB) and broker (Tansu), creating the topics ...")
            sampler.watch("database", servers.start_database().process.pid)
            sampler.watch("broker", servers.start_broker().process.pid)
            sampler.start()
            ports = {name: free_port() for name in SERVICES}
            platform_ = Platform(servers.kafka_bootstrap, servers.mongo_uri, ports, root / "logs")
            say("starting the five services ...")
            platform_.start(env)
            for name, process in platform_.processes.items():
                sampler.watch(name, process.process.pid)
            asyncio.run(run(args, servers, platform_, admin_key, results))
        except BaseException:
            if platform_ is not None:
                tail_logs(platform_.log_dir)
            raise
        finally:
            sampler.stop()
            results.rss = {
                name: sampler.peak[name] for name in [*SERVICES, "broker", "database"] if name in sampler.peak
            }
            say("stopping the services, the broker and the database ...")
            if platform_ is not None:
                platform_.stop()
            servers.stop()

    stamp = began.strftime("%Y%m%d-%H%M%S")
    orders = results.throughput.orders if results.throughput else 0
    title = f"platform_benchmark.py, {orders:,} orders"
    results.plot = args.results.resolve().parent / f"platform-lag-{stamp}.png"
    draw_lag(results.samples, results.phases, results.plot, f"{title} at {commit}: consumer lag and unsent outbox")
    lines = format_table(table_rows(results))
    say("")
    say(f"{title} at {commit} ({command})")
    for row in lines:
        say(row)
    context = (
        f"`{command}` at `{commit}`, Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{began:%Y-%m-%d %H:%M} UTC. Consumer lag: `{results.plot.name}`."
    )
    append_results(args.results, f"{began:%Y-%m-%d}: {title}", context, lines)
    say(f"\nlag plot: {results.plot}\nfigures appended to {args.results}")
    c = results.correctness
    return 0 if c is not None and c.differing + c.missing == 0 and c.doubled_enrolments == 0 else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        say("interrupted: the services, the broker and the database are stopped, the temporary folder removed")
        sys.exit(130)
