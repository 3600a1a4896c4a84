"""Composition of the scoring service: the shared app, plus two periodic jobs in its lifespan (the population
statistics, and the time-decay pass over the customers due)."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from crm_scoring import api, consumers, handlers, repository
from crm_scoring.settings import ScoringSettings
from crm_shared.events import utc_now
from crm_shared.logging import get_logger
from crm_shared.service import Runtime, create_app

log = get_logger(__name__)


def background_jobs(runtime: Runtime, settings: ScoringSettings) -> list[asyncio.Task[None]]:
    thresholds = settings.thresholds

    async def population() -> None:
        await handlers.refresh_population(runtime.require_store(), thresholds, utc_now())

    async def decay() -> None:
        await handlers.decay_pass(runtime.require_store(), thresholds, utc_now())

    return [
        asyncio.create_task(
            handlers.every(
                settings.population_interval_seconds,
                population,
                "population",
                first_after=settings.population_interval_seconds,
            )
        ),
        asyncio.create_task(
            handlers.every(settings.decay_interval_seconds, decay, "decay", first_after=settings.decay_interval_seconds)
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
            try:
                await handlers.refresh_population(runtime.require_store(), settings.thresholds, utc_now())
            except Exception as exc:
                log.warning("population_refresh_failed", error=f"{type(exc).__name__}: {str(exc)[:300]}")
            jobs = background_jobs(runtime, settings)
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
