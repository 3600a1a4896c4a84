"""The fault rig: a platform of its own on embedded servers this suite may kill, a slow-down proxy in front
of the database, and the comparison of every service's state with the oracle (tests/faults/stream.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from bson import Decimal128
from pymongo import AsyncMongoClient

from crm_scoring import handlers as scoring_handlers
from crm_scoring.settings import ScoringSettings
from crm_shared.embedded import EmbeddedServers, ManagedProcess, free_port
from crm_shared.platform import Platform
from crm_shared.settings import SERVICES, ServiceSettings
from crm_shared.store import DEADLETTERS, Store, find_any

from faults.stream import Record, Stream

PUBLISH_CHUNK = 200


def database(service: str) -> str:
    return ServiceSettings(service_name=service).database_name


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class SlowProxy:
    """A TCP proxy on loopback whose added latency per chunk can be set while it runs (its own thread and loop)."""

    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.target_port = target_port
        self.port = free_port()
        self.delay = 0.0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="slow-proxy", daemon=True)
        self._server: asyncio.Server | None = None

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def stop(self) -> None:
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def open_server() -> None:
            self._server = await asyncio.start_server(self._connection, self.host, self.port)
            self._ready.set()

        self._loop.run_until_complete(open_server())
        self._loop.run_forever()

    async def _connection(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            client_writer.close()
            return

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while chunk := await reader.read(65536):
                    if self.delay:
                        await asyncio.sleep(self.delay)
                    writer.write(chunk)
                    await writer.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    writer.close()

        await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))


@dataclass
class Row:
    """One line of the summary table."""

    fault: str
    instances: int
    sent: int = 0
    applied: int = 0
    duplicates: int = 0
    lost: int = 0
    mismatches: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.duplicates or self.lost or self.mismatches)


SUMMARY: list[Row] = []


def one_path(crossings: Sequence[tuple[Any, Any]], current: Any, *, may_vanish: bool = False) -> bool:
    """Whether the (old, new) crossings of one dimension, in any order, make one walk ending at `current`: each
    value entered as often as it is left, but where the walk starts (left once more) and where it ends (entered
    once more). A crossing published twice breaks that, unless the walk really went back and forth.

    A dimension that `may_vanish` (rfm_segment, while a customer has no counted order) leaves a value for None
    without a crossing (scoring announces no disappearance), so a value may be entered more often than left."""
    balance: Counter[Any] = Counter()
    for old, new in crossings:
        balance[old] += 1
        balance[new] -= 1
    if may_vanish:
        slack = {v: -n - (v == current) for v, n in balance.items() if v is not None}
        if current is not None and current not in slack:
            return not crossings
        return all(n >= -1 for n in slack.values()) and sum(1 for n in slack.values() if n == -1) <= 1
    starts = [v for v, n in balance.items() if n == 1]
    ends = [v for v, n in balance.items() if n == -1]
    if any(n not in (-1, 0, 1) for n in balance.values()):
        return False
    if not starts and not ends:
        return not crossings or any(current in pair for pair in crossings)
    return ends == [current] and len(starts) == 1


VANISHING = {"rfm_segment"}
"""Segments that disappear without a crossing (crm_scoring.domain.segment_changes)."""


def _number(value: Any) -> Decimal:
    if isinstance(value, Decimal128):
        return value.to_decimal()
    return Decimal(str(value))


class Rig:
    def __init__(self, folder: Path, instances: int) -> None:
        self.folder = folder
        self.instances = instances
        self.servers = EmbeddedServers(folder / "servers", free_port(), free_port())
        self.proxy: SlowProxy | None = None
        self.platform: Platform | None = None
        self.producer: AIOKafkaProducer | None = None
        self.mongo: AsyncMongoClient[dict[str, Any]] | None = None
        self.scoring: Store | None = None

    # ---------------------------------------------------------------- starting and stopping

    def start(self) -> None:
        self.servers.start()
        self.proxy = SlowProxy(self.servers.mongo_port)
        self.proxy.start()
        # Through the proxy, to the one server directly (the server advertises its own port as the primary).
        mongo_uri = f"mongodb://127.0.0.1:{self.proxy.port}/?directConnection=true"
        self.platform = Platform(
            self.servers.kafka_bootstrap,
            mongo_uri,
            {name: free_port() for name in SERVICES},
            self.folder / "logs",
            instances=self.instances,
            further_ports="free",
        )
        env = {
            **os.environ,
            "CRM_MARKETING_HOLDOUT_SHARE": "0",
            # A killed instance's leases (its relay, its periodic jobs) pass to another within seconds.
            "CRM_LEASE_SECONDS": "5",
        }
        self.platform.start(env=env, ready_timeout=180)

    async def connect(self) -> None:
        self.mongo = AsyncMongoClient(self.servers.mongo_uri, tz_aware=True, serverSelectionTimeoutMS=5000)
        # The scoring store as the service opens it (its codecs), for the rebuild.
        self.scoring = Store.connect(self.servers.mongo_uri, database("scoring"))
        await self._new_producer()

    async def _new_producer(self) -> None:
        if self.producer is not None:
            with contextlib.suppress(Exception):
                await self.producer.stop()
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.servers.kafka_bootstrap, acks="all", max_request_size=2_000_000, linger_ms=5
        )
        await self.producer.start()

    async def close(self) -> None:
        if self.producer is not None:
            with contextlib.suppress(Exception):
                await self.producer.stop()
        if self.mongo is not None:
            await self.mongo.close()
        if self.scoring is not None:
            await self.scoring.close()

    def stop(self) -> None:
        if self.platform is not None:
            self.platform.stop()
        if self.proxy is not None:
            self.proxy.stop()
        self.servers.stop()

    # ---------------------------------------------------------------- the channel system

    async def publish(self, records: Sequence[Record]) -> None:
        """Send like a channel system: keyed by customer, every acknowledgement awaited."""
        assert self.producer is not None
        for start in range(0, len(records), PUBLISH_CHUNK):
            futures = [
                await self.producer.send(r.topic, r.value, key=r.key) for r in records[start : start + PUBLISH_CHUNK]
            ]
            await asyncio.gather(*futures)

    async def publish_until_sent(self, records: Sequence[Record], timeout: float = 90) -> None:
        """Publish, starting again with a new producer while the broker is away (a channel system's retries)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                await self.publish(records)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(1)
                with contextlib.suppress(Exception):
                    await self._new_producer()

    # ---------------------------------------------------------------- faults

    def _server(self, name: str) -> ManagedProcess:
        return next(p for p in self.servers.processes if p.name == name)

    def kill_server(self, name: str, sig: int = signal.SIGKILL) -> None:
        process = self._server(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.process.pid, sig)
        process.process.wait(30)
        self.servers.processes.remove(process)

    def start_database(self) -> None:
        self.servers.start_database()

    def start_broker(self) -> None:
        self.servers.start_broker()

    def service_pids(self) -> dict[str, int]:
        assert self.platform is not None
        return {name: self.platform.process(name).pid for name in self.all_instances()}

    def all_instances(self) -> list[str]:
        assert self.platform is not None
        return [name for service in SERVICES for name in self.platform.instance_names(service)]

    # ---------------------------------------------------------------- the oracle's comparison

    def _db(self, service: str) -> Any:
        assert self.mongo is not None
        return self.mongo[database(service)]

    async def _of(
        self, service: str, collection: str, customers: Iterable[str], field_name: str = "customer_id"
    ) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await find_any(
            self._db(service)[collection], [{field_name: {"$in": sorted(customers)}}]
        )
        return found

    async def compare(self, stream: Stream, row: Row) -> None:
        """Fill `row` with what differs between every service's state and the oracle."""
        customers = stream.customers
        row.applied = row.duplicates = row.lost = row.mismatches = 0
        row.problems = []

        def problem(kind: str, text: str) -> None:
            setattr(row, kind, getattr(row, kind) + 1)
            if len(row.problems) < 12:
                row.problems.append(f"{kind}: {text}")

        # sales: every order once, with its payment, cancellation and refund
        orders = {d["_id"]: d for d in await self._of("sales", "orders", customers)}
        for order_id, want in stream.orders.items():
            got = orders.get(order_id)
            if got is None:
                problem("lost", f"sales has no order {order_id}")
                continue
            row.applied += 1
            payments, refunds = got.get("payments") or [], got.get("refunds") or []
            if len(payments) > int(want.paid) or len(refunds) > int(want.refunded > 0):
                problem("duplicates", f"sales order {order_id}: {len(payments)} payments, {len(refunds)} refunds")
            elif len(payments) < int(want.paid) or len(refunds) < int(want.refunded > 0):
                problem("lost", f"sales order {order_id}: {len(payments)} payments, {len(refunds)} refunds")
            if (got.get("cancelled_at") is not None) != want.cancelled:
                problem(
                    "lost" if want.cancelled else "mismatches",
                    f"sales order {order_id} cancelled={got.get('cancelled_at')}",
                )
        for order_id in set(orders) - set(stream.orders):
            problem("mismatches", f"sales has an order nobody placed: {order_id}")

        # scoring: frequency and net revenue from the facts, every fact once, and the scores a rebuild gives
        scored = {d["_id"]: d for d in await self._of("scoring", "customers", customers, "_id")}
        for customer in customers:
            doc = scored.get(customer)
            if doc is None:
                problem("lost", f"scoring has no customer {customer}")
                continue
            scores, facts = doc.get("scores") or {}, doc.get("facts") or {}
            if scores.get("frequency") != stream.frequency(customer):
                problem("mismatches", f"{customer} frequency {scores.get('frequency')} != {stream.frequency(customer)}")
            if _number(scores.get("monetary", 0)) != stream.monetary(customer):
                problem("mismatches", f"{customer} monetary {scores.get('monetary')} != {stream.monetary(customer)}")
            for kind, want_count in (
                ("orders", len(stream.orders_of(customer))),
                ("complaints", stream.complaints[customer]),
                ("surveys", stream.surveys[customer]),
                ("interactions", stream.interactions[customer]),
            ):
                have = len(facts.get(kind) or [])
                if have != want_count:
                    problem(
                        "lost" if have < want_count else "duplicates",
                        f"scoring {customer} {kind} {have} != {want_count}",
                    )

        # support: each complaint and survey once; the customer service: each interaction once
        for service, collection, want_counts in (
            ("support", "complaints", stream.complaints),
            ("support", "surveys", stream.surveys),
            ("customer", "interactions", stream.interactions),
        ):
            have_counts = Counter(d["customer_id"] for d in await self._of(service, collection, customers))
            for customer in customers:
                have, want_count = have_counts[customer], want_counts[customer]
                if have != want_count:
                    problem(
                        "lost" if have < want_count else "duplicates",
                        f"{service} {collection} {customer} {have} != {want_count}",
                    )

        # the timeline: each order once (by the ingest event that caused it), each segment change once
        timeline = await self._of("customer", "timeline", customers)
        placed = Counter(d.get("cause") for d in timeline if d["type"] == "crm.order.placed.v1")
        for order_id in stream.orders:
            n = placed[f"{order_id}-placed"]
            if n != 1:
                problem("lost" if n == 0 else "duplicates", f"timeline has {n} entries for order {order_id}")

        # segment changes: per customer and dimension, the crossings form one path ending at the current value
        changes = await self._of("scoring", "segment_changes", customers)
        shown = {d["_id"] for d in timeline if d["type"] == "crm.segment.changed.v1"}
        by_dimension: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for change in changes:
            by_dimension[(change["customer_id"], change["dimension"])].append(change)
            if change["_id"] not in shown:
                problem("lost", f"timeline lacks segment change {change['_id']} of {change['customer_id']}")
        for (customer, dimension), crossings in by_dimension.items():
            crossings.sort(key=lambda c: (c["changed_at"], c["_id"]))
            current = ((scored.get(customer) or {}).get("segments") or {}).get(dimension)
            moves = [f"{c['old']}->{c['new']} ({c['caused_by']})" for c in crossings]
            if not one_path([(c["old"], c["new"]) for c in crossings], current, may_vanish=dimension in VANISHING):
                problem("duplicates", f"{customer} {dimension} crossings {moves} do not end at {current}")
            # One event applied twice would cross twice for the same cause.
            causes = Counter((c["old"], c["new"], c["caused_by"]) for c in crossings)
            if any(n > 1 for n in causes.values()):
                problem("duplicates", f"{customer} {dimension} crossings {moves}: one cause twice")

        # marketing: each journey enrolment at most once per customer and episode
        enrolments = Counter(
            (d["customer_id"], d["journey"], d["episode"]) for d in await self._of("marketing", "enrolments", customers)
        )
        for (customer, journey, _), n in enrolments.items():
            if n > 1:
                problem("duplicates", f"{customer} enrolled {n} times in {journey}")

        # scores equal to a rebuild from the stored facts
        assert self.scoring is not None
        rebuilt = await scoring_handlers.rebuild(self.scoring, ScoringSettings().thresholds)
        for customer in sorted(set(rebuilt.different) & set(customers)):
            problem("mismatches", f"{customer}: live scores differ from a rebuild")

    async def dead_letters(self, service: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self._db(service)[DEADLETTERS].find({}).to_list(None)
        return found

    async def settle(self, stream: Stream, row: Row, timeout: float = 150) -> Row:
        """Compare until the platform matches the oracle, or `timeout` passes; the last comparison stands."""
        started = time.monotonic()
        deadline = started + timeout
        while True:
            try:
                await self.compare(stream, row)
            except Exception as exc:  # the database coming back, say
                row.lost, row.problems = row.lost or 1, [f"comparison failed: {exc!r}"[:300]]
            if row.clean or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        row.seconds = round(time.monotonic() - started, 1)
        row.sent = len(stream.event_ids)
        SUMMARY.append(row)
        return row


def summary_table(rows: Sequence[Row]) -> list[str]:
    header = ("fault", "instances", "events sent", "applied orders", "duplicates", "lost", "mismatches", "settled in s")
    lines = [header] + [
        (
            r.fault,
            str(r.instances),
            str(r.sent),
            str(r.applied),
            str(r.duplicates),
            str(r.lost),
            str(r.mismatches),
            str(r.seconds),
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)) for line in lines]
    return [text[0], "-" * len(text[0]), *text[1:]]


def problems_text(row: Row) -> str:
    return json.dumps(row.problems, indent=1)
