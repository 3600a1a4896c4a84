"""A lease's own logic on a fake collection: when it counts as held, renewal while a round runs, what a failing
or refused renewal does, and the setting that sizes it. The real database's side is in
tests/integration/shared/test_leases.py."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import ValidationError
from pymongo.errors import DuplicateKeyError, ServerSelectionTimeoutError

from crm_shared.leases import HOLDER, LEASES, Lease, LeaseLost, holder_id, holding, keep
from crm_shared.settings import ServiceSettings

from helpers import eventually


@dataclass
class Written:
    matched_count: int
    upserted_id: Any = None


@dataclass
class FakeLeases:
    """The `leases` collection as one holder meets it: each write answers the next scripted outcome ("ours",
    "taken": a duplicate key, "down": unreachable), then `otherwise`."""

    script: list[str] = field(default_factory=list)
    otherwise: str = "ours"
    before_answer: Callable[[], None] = lambda: None
    writes: int = 0
    deletes: list[dict[str, Any]] = field(default_factory=list)

    async def update_one(self, query: dict[str, Any], update: Any, *, upsert: bool) -> Written:
        assert upsert
        self.writes += 1
        self.before_answer()
        outcome = self.script.pop(0) if self.script else self.otherwise
        if outcome == "down":
            raise ServerSelectionTimeoutError("no server")
        if outcome == "taken":
            raise DuplicateKeyError("E11000 duplicate key", 11000)
        return Written(matched_count=1)

    async def delete_one(self, query: dict[str, Any]) -> None:
        self.deletes.append(query)


@dataclass
class FakeDatabase:
    leases: FakeLeases
    name: str = "crm_test"

    def __getitem__(self, collection: str) -> FakeLeases:
        assert collection == LEASES
        return self.leases


def lease_on(leases: FakeLeases, ttl_seconds: float = 0.3, **options: Any) -> Lease:
    return Lease(FakeDatabase(leases), "job", holder="me", ttl_seconds=ttl_seconds, **options)


def test_a_holder_id_names_the_host_and_the_process_and_is_unique() -> None:
    host, pid, suffix = HOLDER.rsplit(":", 2)
    assert host == socket.gethostname() and pid == str(os.getpid()) and len(suffix) == 8
    assert holder_id() != holder_id()


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf")])
def test_a_lease_refuses_a_ttl_that_is_not_a_positive_number(ttl: float) -> None:
    with pytest.raises(ValueError, match="positive number of seconds"):
        lease_on(FakeLeases(), ttl_seconds=ttl)


async def test_held_counts_from_before_the_write_by_the_monotonic_clock() -> None:
    now = [100.0]
    leases = FakeLeases()
    lease = lease_on(leases, ttl_seconds=15, clock=lambda: now[0])

    def slow_write() -> None:
        now[0] += 2  # the write took 2 s: the database's expiry is later still than ours

    leases.before_answer = slow_write
    assert not lease.held
    assert await lease.acquire()
    assert lease.held and lease.remaining() == 13
    assert lease.renew_seconds == 5
    now[0] = 114.9
    assert lease.held
    now[0] = 115.0
    assert not lease.held and lease.remaining() == 0


async def test_an_unreachable_database_leaves_the_lease_held_until_it_runs_out() -> None:
    now = [0.0]
    lease = lease_on(FakeLeases(script=["ours", "down"]), ttl_seconds=15, clock=lambda: now[0])
    assert await lease.acquire()
    now[0] = 5
    with pytest.raises(ServerSelectionTimeoutError):
        await lease.acquire()
    assert lease.held
    now[0] = 15
    assert not lease.held


async def test_a_duplicate_key_means_another_holder_has_it_and_nothing_is_released() -> None:
    leases = FakeLeases(otherwise="taken")
    lease = lease_on(leases)
    assert not await lease.acquire()
    assert not lease.held
    await lease.release()
    assert leases.deletes == []


async def test_a_release_deletes_the_lease_only_where_this_holder_has_it() -> None:
    leases = FakeLeases()
    lease = lease_on(leases)
    assert await lease.acquire()
    await lease.release()
    assert leases.deletes == [{"_id": "job", "holder": "me"}]
    assert not lease.held


async def test_a_round_longer_than_the_ttl_renews_the_lease_as_it_runs() -> None:
    leases = FakeLeases()
    lease = lease_on(leases, ttl_seconds=0.9)
    assert await lease.acquire()

    async def long_round() -> str:
        # Runs until four renewals (one every 0.3 s) came in meanwhile, however slow the machine is; a holder that
        # did not renew during the round would leave it waiting out the deadline.
        async def renewed() -> bool:
            return leases.writes >= 1 + 4

        await eventually(renewed, timeout=10, what="four renewals during the round")
        return "done"

    assert await holding(lease, long_round) == "done"
    assert leases.writes >= 1 + 4
    assert lease.held


async def test_a_failed_renewal_is_tried_again_before_the_lease_runs_out() -> None:
    lease = lease_on(FakeLeases(script=["ours", "down", "ours", "down"]))
    assert await lease.acquire()

    async def long_round() -> str:
        await asyncio.sleep(0.6)
        return "done"

    assert await holding(lease, long_round) == "done"


async def test_renewals_failing_until_the_lease_runs_out_cancel_the_round() -> None:
    lease = lease_on(FakeLeases(script=["ours"], otherwise="down"))
    assert await lease.acquire()
    started = time.monotonic()
    cancelled = asyncio.Event()

    async def endless_round() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(LeaseLost):
        await holding(lease, endless_round)
    assert cancelled.is_set() and not lease.held
    assert 0.25 <= time.monotonic() - started < 0.6  # at the TTL, not before


async def test_a_renewal_refused_cancels_the_round_at_once() -> None:
    lease = lease_on(FakeLeases(script=["ours"], otherwise="taken"))
    assert await lease.acquire()
    started = time.monotonic()
    with pytest.raises(LeaseLost):
        await holding(lease, lambda: asyncio.sleep(60))
    assert time.monotonic() - started < 0.2  # at the first renewal


async def test_keep_runs_the_work_once_the_lease_is_free_and_releases_it_when_cancelled() -> None:
    leases = FakeLeases(script=["taken", "down", "taken"])
    lease = lease_on(leases)
    running = asyncio.Event()

    async def work() -> None:
        running.set()
        await asyncio.sleep(60)

    task = asyncio.create_task(keep(lease, work, poll_seconds=0.05))
    await asyncio.wait_for(running.wait(), 2)
    assert leases.script == [] and leases.writes >= 4
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert leases.deletes == [{"_id": "job", "holder": "me"}]


async def test_keep_stops_waiting_for_a_lease_another_holds_when_told_to() -> None:
    leases = FakeLeases(otherwise="taken")
    until = asyncio.Event()
    ran = False

    async def work() -> None:
        nonlocal ran
        ran = True

    task = asyncio.create_task(keep(lease_on(leases), work, poll_seconds=0.05, until=until))

    async def tried() -> bool:  # it keeps trying, however slow the machine
        return leases.writes >= 3

    await eventually(tried, timeout=10, what="three attempts at the lease")
    until.set()
    await asyncio.wait_for(task, 1)
    assert not ran and leases.writes >= 3 and leases.deletes == []


async def test_keep_returns_when_its_work_does_and_releases_the_lease() -> None:
    leases = FakeLeases()
    done: list[str] = []

    async def work() -> None:
        done.append("round")

    await asyncio.wait_for(keep(lease_on(leases), work), 1)
    assert done == ["round"] and leases.deletes == [{"_id": "job", "holder": "me"}]


def test_the_lease_ttl_is_a_shared_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ServiceSettings().lease_seconds == 15
    monkeypatch.setenv("CRM_LEASE_SECONDS", "30")
    assert ServiceSettings().lease_seconds == 30


@pytest.mark.parametrize("value", ["0", "2", "601", "nan", "inf", "soon"])
def test_a_lease_ttl_out_of_bounds_is_refused_at_start_up(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CRM_LEASE_SECONDS", value)
    with pytest.raises(ValidationError, match="CRM_LEASE_SECONDS"):
        ServiceSettings()
