"""Leases on the real database: one holder at a time, renewed, taken over after expiry or release; a job gated by
its lease runs in one instance at a time; two outbox relays on one database publish each record once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from crm_shared.leases import LEASES, Lease, LeaseLost, holding, leased
from crm_shared.outbox import LEASE as RELAY_LEASE
from crm_shared.outbox import OutboxRelay
from crm_shared.service import build_broker
from crm_shared.settings import ServiceSettings
from crm_shared.store import Store, UnitOfWork, unsent_records
from crm_shared.topics import Topic

from helpers import TopicReader, broker_of_its_own, eventually

NewStore = Callable[..., Awaitable[Store]]


async def lease_document(store: Store, name: str) -> dict[str, Any] | None:
    document: dict[str, Any] | None = await store.db[LEASES].find_one({"_id": name})
    return document


async def test_of_two_holders_only_one_acquires(new_store: NewStore) -> None:
    store = await new_store("leases")
    a = Lease(store.db, "job", holder="a", ttl_seconds=30)
    b = Lease(store.db, "job", holder="b", ttl_seconds=30)
    assert await a.acquire()
    assert not await b.acquire()
    assert a.held and not b.held
    document = await lease_document(store, "job")
    assert document is not None and document["holder"] == "a"
    assert document["expires_at"].tzinfo is not None and document["acquired_at"] < document["expires_at"]


async def test_holders_racing_for_a_free_lease_get_it_once(new_store: NewStore) -> None:
    store = await new_store("leases")
    for round_ in range(10):
        contenders = [Lease(store.db, f"race-{round_}", holder=h, ttl_seconds=30) for h in "abc"]
        won = await asyncio.gather(*(lease.acquire() for lease in contenders))
        assert won.count(True) == 1, won
        document = await lease_document(store, f"race-{round_}")
        assert document is not None and document["holder"] == "abc"[won.index(True)]


async def test_the_holder_renews_its_lease(new_store: NewStore) -> None:
    store = await new_store("leases")
    a = Lease(store.db, "job", holder="a", ttl_seconds=1)
    b = Lease(store.db, "job", holder="b", ttl_seconds=1)
    assert await a.acquire()
    first = await lease_document(store, "job")
    await asyncio.sleep(0.6)
    assert await a.acquire()
    renewed = await lease_document(store, "job")
    assert first is not None and renewed is not None
    assert renewed["expires_at"] > first["expires_at"]
    assert renewed["acquired_at"] == first["acquired_at"]
    await asyncio.sleep(0.6)  # past the first expiry, within the renewed one
    assert not await b.acquire()
    assert a.held


async def test_after_expiry_another_holder_takes_over(new_store: NewStore) -> None:
    store = await new_store("leases")
    a = Lease(store.db, "job", holder="a", ttl_seconds=1)
    b = Lease(store.db, "job", holder="b", ttl_seconds=1)
    assert await a.acquire()
    first = await lease_document(store, "job")
    await asyncio.sleep(1.1)
    assert not a.held
    assert await b.acquire()
    assert not await a.acquire()
    taken = await lease_document(store, "job")
    assert first is not None and taken is not None
    assert taken["holder"] == "b" and taken["acquired_at"] > first["acquired_at"]


async def test_a_release_hands_the_lease_over_at_once(new_store: NewStore) -> None:
    store = await new_store("leases")
    a = Lease(store.db, "job", holder="a", ttl_seconds=30)
    b = Lease(store.db, "job", holder="b", ttl_seconds=30)
    assert await a.acquire()
    await a.release()
    assert not a.held
    assert await b.acquire()
    # A release by one who is not the holder changes nothing.
    assert not await a.acquire()
    await a.release()
    document = await lease_document(store, "job")
    assert document is not None and document["holder"] == "b"


async def test_a_round_longer_than_the_ttl_keeps_the_lease(new_store: NewStore) -> None:
    store = await new_store("leases")
    a = Lease(store.db, "job", holder="a", ttl_seconds=1)
    b = Lease(store.db, "job", holder="b", ttl_seconds=1)
    assert await a.acquire()
    rival_won: list[bool] = []

    async def long_round() -> str:
        for _ in range(10):
            await asyncio.sleep(0.25)
            rival_won.append(await b.acquire())
        return "done"

    assert await holding(a, long_round) == "done"
    assert rival_won == [False] * 10
    assert a.held


async def test_a_lease_taken_meanwhile_cancels_the_round(new_store: NewStore) -> None:
    store = await new_store("leases")
    a = Lease(store.db, "job", holder="a", ttl_seconds=1)
    assert await a.acquire()
    cancelled = asyncio.Event()

    async def endless_round() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def steal() -> None:
        await asyncio.sleep(0.1)  # as a holder that found the lease expired while `a` was cut off
        await store.db[LEASES].update_one({"_id": "job"}, {"$set": {"holder": "b"}})

    started = time.monotonic()
    stealing = asyncio.create_task(steal())
    with pytest.raises(LeaseLost):
        await holding(a, endless_round)
    await stealing
    assert cancelled.is_set() and not a.held
    assert time.monotonic() - started < 1.5  # at the next renewal


class Instance:
    """One "instance" of a service: its own client on the shared database, and its gated job's rounds."""

    def __init__(self, store: Store, holder: str, rounds: list[str]) -> None:
        self.store = store
        self.holder = holder
        self.rounds = rounds
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        async def job(_: Store) -> None:
            while True:
                self.rounds.append(self.holder)
                await asyncio.sleep(0.05)

        worker = leased("periodic", job, ttl_seconds=1, holder=self.holder)
        self.task = asyncio.create_task(worker(self.store))

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def instances(new_store: NewStore, backend: Any) -> tuple[Instance, Instance, list[str], Store]:
    store = await new_store("leases")
    other = Store.connect(backend.mongo_uri, store.db.name)
    rounds: list[str] = []
    return Instance(store, "a", rounds), Instance(other, "b", rounds), rounds, other


async def test_a_gated_job_runs_in_one_instance_then_in_the_other_once_it_stops(
    new_store: NewStore, backend: Any
) -> None:
    a, b, rounds, other = await instances(new_store, backend)
    try:
        a.start()
        await eventually(lambda: asyncio.sleep(0, rounds), timeout=5, what="the first instance's rounds")
        b.start()
        await asyncio.sleep(1.5)  # longer than the TTL: the holder renews
        assert set(rounds) == {"a"} and len(rounds) > 20
        await a.stop()  # a clean stop releases the lease
        stopped_at = len(rounds)

        async def b_took_over() -> bool:
            return "b" in rounds

        started = time.monotonic()
        await eventually(b_took_over, timeout=5, what="the second instance to take over")
        assert time.monotonic() - started < 1  # at its next poll, not after the TTL
        await asyncio.sleep(0.5)
        assert set(rounds[:stopped_at]) == {"a"} and set(rounds[stopped_at:]) == {"b"}
        assert rounds[stopped_at:].count("b") > 5
    finally:
        await a.stop()
        await b.stop()
        await other.close()


async def test_a_gated_job_is_taken_over_after_the_ttl_when_its_instance_dies(
    new_store: NewStore, backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, rounds, other = await instances(new_store, backend)

    async def no_release(self: Lease) -> None:
        """A process killed: it never gives its lease up."""

    try:
        a.start()
        b.start()
        await eventually(lambda: asyncio.sleep(0, rounds), timeout=5, what="the first instance's rounds")
        await asyncio.sleep(0.5)
        assert set(rounds) == {"a"}
        monkeypatch.setattr(Lease, "release", no_release)
        await a.stop()
        monkeypatch.undo()
        died_at, stopped_at = time.monotonic(), len(rounds)

        async def b_took_over() -> bool:
            return "b" in rounds

        await eventually(b_took_over, timeout=5, what="the second instance to take over after the TTL")
        assert time.monotonic() - died_at > 0.3  # not before a's lease ran out (renewed a third of a TTL ago at most)
        assert set(rounds[stopped_at:]) == {"b"}
    finally:
        await a.stop()
        await b.stop()
        await other.close()


async def commit_records(store: Store, prefix: str, count: int) -> list[str]:
    """`count` transactions, each with one outbox record; their ids."""
    ids = [f"{prefix}-{n}" for n in range(count)]
    for record_id in ids:

        async def work(uow: UnitOfWork, record_id: str = record_id) -> None:
            value = json.dumps({"id": record_id}).encode()
            uow.emit_record(Topic.SALES_EVENTS, key=f"C-{record_id}", value=value, record_id=record_id)

        await store.transaction(work)
    return ids


async def test_two_relays_on_one_database_publish_each_record_once(
    new_store: NewStore, backend: Any, tmp_path: Path
) -> None:
    first_store = await new_store("relays")
    second_store = Store.connect(backend.mongo_uri, first_store.db.name)
    with broker_of_its_own(tmp_path) as broker:
        settings = ServiceSettings(CRM_KAFKA_BOOTSTRAP=broker.kafka_bootstrap, service_name="leases")
        producers = [build_broker(settings), build_broker(settings)]
        relays = [
            OutboxRelay(store, producer, poll_seconds=0.1, lease_seconds=3, holder=holder)
            for store, producer, holder in ((first_store, producers[0], "a"), (second_store, producers[1], "b"))
        ]
        try:
            for producer in producers:
                await producer.start()
            for relay in relays:
                relay.start()
            expected = await commit_records(first_store, "first", 10) + await commit_records(second_store, "also", 10)

            async def relayed() -> bool:
                return await unsent_records(first_store.db) == 0

            await eventually(relayed, timeout=30, what="the relay holding the lease to publish")
            [holder] = [r for r in relays if r.lease.held]
            [standby] = [r for r in relays if r is not holder]
            await holder.stop()  # flushes, and releases the lease

            async def standby_holds() -> bool:
                return standby.lease.held

            await eventually(standby_holds, timeout=5, what="the other relay to take the lease")
            document = await lease_document(first_store, RELAY_LEASE)
            assert document is not None and document["holder"] == standby.lease.holder
            expected += await commit_records(first_store, "after", 5) + await commit_records(second_store, "later", 5)
            await eventually(relayed, timeout=30, what="the other relay to publish what came after")
        finally:
            for relay in relays:
                await relay.stop()
            for producer in producers:
                await producer.stop()
            await second_store.close()
        assert await lease_document(first_store, RELAY_LEASE) is None  # released by both on stop

        async with TopicReader(broker.kafka_bootstrap, Topic.SALES_EVENTS) as reader:
            records = await reader.drain()
    published = Counter(json.loads(r.value)["id"] for r in records)
    assert published == Counter(expected)
