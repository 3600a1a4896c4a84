"""Leases: a periodic job, or the outbox relay, runs in one instance of a service at a time.

Instances of a service share its database, and in it the `leases` collection: one document per job (`_id` =
the job's name) says who holds it (`holder`), since when (`acquired_at`) and until when (`expires_at`). One
conditional write takes a lease that is free or expired, or renews one that is ours; an instance that does
not hold it tries again every few seconds, so it takes over once the holder released it (a clean shutdown)
or stopped renewing it (a crash: after the TTL).

The times in the document are the writer's clock (timezone-aware UTC): the instances' clocks must agree to
well within the TTL, as NTP keeps them. (The database's own clock, `$$NOW`, would spare that, but the embedded
SecantusDB cannot compare it in a query.) The holder judges its own lease by its monotonic clock, from before
it sent the write, so a clock stepped on its host does not stretch it. The lease is no fence: a holder cut off
from the database may finish a round after another instance took over. That is only waste, because the jobs
it guards write conditionally and consumers deduplicate on the event id; the lease keeps them from running
twice in the normal case.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import timedelta
from typing import Any, Final, TypeVar

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from crm_shared import metrics
from crm_shared.events import utc_now
from crm_shared.logging import get_logger
from crm_shared.store import Store, as_stored

T = TypeVar("T")
log = get_logger(__name__)

LEASES = "leases"
DEFAULT_TTL_SECONDS = 15.0
RENEWALS_PER_TTL = 3
"""A holder renews its lease this many times per TTL: a renewal or two may fail before the lease is lost."""
RELEASE_TIMEOUT_SECONDS = 2.0
"""How long a shutdown waits to release a lease; past that it expires on its own."""


def holder_id() -> str:
    """A name no other process has: host, process id and a random suffix (a pid is reused across restarts and
    containers)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


HOLDER: Final[str] = holder_id()
"""This process's holder id, for every lease it takes."""


class LeaseLost(Exception):
    """The lease was taken by another holder, or could not be renewed before it expired."""


class Lease:
    """One job's lease in a service's database, as one holder sees it."""

    def __init__(
        self,
        db: AsyncDatabase[dict[str, Any]],
        name: str,
        *,
        holder: str = HOLDER,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (math.isfinite(ttl_seconds) and ttl_seconds > 0):
            raise ValueError(f"a lease's TTL must be a positive number of seconds, got {ttl_seconds!r}")
        self._leases = db[LEASES]
        self.name = name
        self.holder = holder
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._deadline: float | None = None
        # Set from an attempt to acquire until its outcome is known: a write that timed out may have applied.
        self._maybe_ours = False
        metrics.LEASE_HELD.labels(db.name, name).set_function(lambda: 1 if self.held else 0)

    @property
    def renew_seconds(self) -> float:
        return self.ttl_seconds / RENEWALS_PER_TTL

    @property
    def held(self) -> bool:
        return self._deadline is not None and self._clock() < self._deadline

    def remaining(self) -> float:
        """Seconds until the lease expires, as this holder counts them (0 when not held)."""
        return max(self._deadline - self._clock(), 0.0) if self._deadline is not None else 0.0

    async def acquire(self) -> bool:
        """Take the lease if it is free or expired, or renew it if it is ours; whether it is ours now. A database
        error is raised, and leaves the lease held until it expires, so the caller may try again meanwhile."""
        sent = self._clock()
        now = as_stored(utc_now())
        was_held = self.held
        self._maybe_ours = True
        ours = False
        holder = {"$literal": self.holder}  # in a pipeline, a string starting with $ would be a field path
        try:
            result = await self._leases.update_one(
                {"_id": self.name, "$or": [{"holder": self.holder}, {"expires_at": {"$lt": now}}]},
                [
                    {
                        "$set": {
                            # Expressions in one stage read the document as it was: a renewal keeps acquired_at.
                            "acquired_at": {"$cond": [{"$eq": ["$holder", holder]}, "$acquired_at", now]},
                            "holder": holder,
                            "expires_at": now + timedelta(seconds=self.ttl_seconds),
                        }
                    }
                ],
                upsert=True,
            )
            ours = result.matched_count == 1 or result.upserted_id is not None
        except DuplicateKeyError:
            pass  # held by another: the filter missed and the upsert met its document
        if ours:
            self._deadline = sent + self.ttl_seconds
            if not was_held:
                log.info("lease_acquired", lease=self.name, holder=self.holder, ttl_s=self.ttl_seconds)
        else:
            self._deadline = None
            self._maybe_ours = False
            if was_held:
                log.warning("lease_lost", lease=self.name, holder=self.holder)
        return ours

    async def release(self) -> None:
        """Give the lease up if it is ours, so another instance takes over at once; a failure is logged only (the
        lease then expires on its own)."""
        if not self._maybe_ours:
            return
        was_held = self.held
        self._deadline = None
        self._maybe_ours = False
        try:
            await asyncio.wait_for(
                self._leases.delete_one({"_id": self.name, "holder": self.holder}), RELEASE_TIMEOUT_SECONDS
            )
        except Exception as exc:
            log.warning("lease_release_failed", lease=self.name, holder=self.holder, error=repr(exc)[:300])
            return
        if was_held:
            log.info("lease_released", lease=self.name, holder=self.holder)


async def _renew_until_lost(lease: Lease) -> None:
    """Renew `lease` every `renew_seconds`, sooner after a failed renewal; return once it is lost."""
    wait = lease.renew_seconds
    while True:
        await asyncio.sleep(min(wait, lease.remaining()))
        if not lease.held:
            return
        try:
            # Bounded by the time left: past it the lease is not ours any more, whatever the write does.
            if not await asyncio.wait_for(lease.acquire(), lease.remaining()):
                return
            wait = lease.renew_seconds
        except Exception as exc:
            log.warning("lease_renewal_failed", lease=lease.name, error=repr(exc)[:300])
            wait = lease.renew_seconds / 2
        if not lease.held:
            log.warning("lease_lost", lease=lease.name, holder=lease.holder)
            return


async def holding(lease: Lease, work: Callable[[], Awaitable[T]]) -> T:
    """Run `work()` under a held `lease`, renewing it from a side task as long as the work takes. If the lease is
    lost meanwhile, the work is cancelled and LeaseLost raised."""
    job = asyncio.ensure_future(work())
    renewer = asyncio.ensure_future(_renew_until_lost(lease))
    try:
        await asyncio.wait({job, renewer}, return_when=asyncio.FIRST_COMPLETED)
        if job.done():
            return job.result()
        raise LeaseLost(lease.name)
    finally:
        for task in (job, renewer):
            task.cancel()
        await asyncio.gather(job, renewer, return_exceptions=True)


async def _acquired(lease: Lease) -> bool:
    try:
        return await lease.acquire()
    except Exception as exc:  # the database is unreachable: not ours for now, try again at the next poll
        log.warning("lease_check_failed", lease=lease.name, error=repr(exc)[:300])
        return False


async def keep(
    lease: Lease,
    work: Callable[[], Awaitable[None]],
    *,
    poll_seconds: float | None = None,
    until: asyncio.Event | None = None,
) -> None:
    """Run `work()` whenever this instance holds `lease`, until cancelled: wait for the lease (a try every
    `poll_seconds`, by default its renewal interval), run the work while renewing the lease, and when the lease
    is lost, cancel the work and wait again. Returns when the work returns, or when `until` is set while the
    lease is not held. The lease is released on the way out, cancellation included."""
    poll = lease.renew_seconds if poll_seconds is None else poll_seconds
    try:
        while until is None or not until.is_set():
            if await _acquired(lease):
                with contextlib.suppress(LeaseLost):
                    await holding(lease, work)
                    return
            if until is None:
                await asyncio.sleep(poll)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(until.wait(), poll)
    finally:
        await lease.release()


def leased(
    name: str,
    worker: Callable[[Store], Coroutine[Any, Any, None]],
    *,
    ttl_seconds: float = DEFAULT_TTL_SECONDS,
    holder: str = HOLDER,
) -> Callable[[Store], Coroutine[Any, Any, None]]:
    """A `Runtime.run_in_background` worker that runs `worker` in one instance of the service at a time, under
    the lease `name`."""

    async def one_at_a_time(store: Store) -> None:
        await keep(Lease(store.db, name, holder=holder, ttl_seconds=ttl_seconds), lambda: worker(store))

    return one_at_a_time
