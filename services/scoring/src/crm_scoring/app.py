"""Composition of the scoring service: the shared app, plus two periodic jobs in its lifespan (the population
statistics, and the time-decay pass over the customers due), each in one instance at a time, under its lease."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from crm_scoring import api, consumers, handlers, repository
from crm_scoring.settings import ScoringSettings
from crm_shared.events import utc_now
from crm_shared.leases import Lease, holding, keep
from crm_shared.logging import get_logger
from crm_shared.service import Runtime, create_app

log = get_logger(__name__)

POPULATION_LEASE = "scoring-population"
DECAY_LEASE = "scoring-decay"


def background_jobs(runtime: Runtime, settings: ScoringSettings, population_lease: Lease) -> list[asyncio.Task[None]]:
    """The two periodic jobs, each running only while this instance holds its lease (renewed while a round runs:
    a population refresh takes tens of seconds on a big base)."""
    thresholds = settings.thresholds
    store = runtime.require_store()
    decay_lease = Lease(store.db, DECAY_LEASE, ttl_seconds=settings.lease_seconds)

    async def population() -> None:
        await handlers.refresh_population(store, thresholds, utc_now())

    async def decay() -> None:
        await handlers.decay_pass(store, thresholds, utc_now())

    population_interval, decay_interval = settings.population_interval_seconds, settings.decay_interval_seconds
    return [
        asyncio.create_task(
            keep(
                population_lease,
                lambda: handlers.every(population_interval, population, "population", first_after=population_interval),
            )
        ),
        asyncio.create_task(
            keep(decay_lease, lambda: handlers.every(decay_interval, decay, "decay", first_after=decay_interval))
        ),
    ]


def create_service(settings: ScoringSettings | None = None) -> FastAPI:
    settings = settings or ScoringSettings()
    runtime = Runtime.for_service(settings, indexes=repository.INDEXES)
    consumers.register(runtime, settings.thresholds)
    app = create_app(
        runtime,
        title="CRM scoring",
        description="Scores every customer from order and ticket facts; publishes crm.scoring.segments.",
        routers=[api.router, api.population_router],
    )
    shared_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: FastAPI) -> AsyncIterator[None]:
        async with shared_lifespan(application):
            # Once at start-up, awaited, so a restart does not wait an interval for its statistics. A periodic task
            # doing this first run instead raced the first events of the CDNOW replay and halved its throughput.
            # Only by the instance that takes the lease: another one holding it keeps the statistics fresh.
            store = runtime.require_store()
            population_lease = Lease(store.db, POPULATION_LEASE, ttl_seconds=settings.lease_seconds)
            try:
                if await population_lease.acquire():
                    await holding(
                        population_lease, lambda: handlers.refresh_population(store, settings.thresholds, utc_now())
                    )
            except Exception as exc:
                log.warning("population_refresh_failed", error=f"{type(exc).__name__}: {str(exc)[:300]}")
            jobs = background_jobs(runtime, settings, population_lease)
            try:
                yield
            finally:
                # Stopped before the shared shutdown closes the database client.
                for job in jobs:
                    job.cancel()
                for job in jobs:
                    with contextlib.suppress(asyncio.CancelledError):
                        await job

    app.router.lifespan_context = lifespan
    return app
