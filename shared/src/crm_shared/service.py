"""Composition of one service process: a FastAPI app and its FastStream subscribers in one event loop.

Start-up: database indexes, then the broker (subscribers join their group), then the outbox relay.
Shutdown (SIGINT/SIGTERM through uvicorn): stop consuming and let in-flight handlers finish, flush
the outbox relay, close the broker and the database client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from faststream.kafka import KafkaBroker
from starlette.exceptions import HTTPException as StarletteHTTPException

from crm_shared.consumer import dead_letter_middleware, decode_cloudevent
from crm_shared.logging import configure_logging, get_logger
from crm_shared.outbox import OutboxRelay
from crm_shared.settings import ServiceSettings
from crm_shared.store import IndexSpec, Store, TransientFailure

log = get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
GRACEFUL_TIMEOUT_SECONDS = 15.0


class Problem(Exception):
    """An RFC 9457 problem: raise it from a route to answer with a precise 4xx."""

    def __init__(self, status: int, title: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.extra = extra


def problem_response(status: int, title: str, detail: str, instance: str, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, "instance": instance, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


@dataclass
class Runtime:
    """Everything a service holds for its lifetime."""

    settings: ServiceSettings
    broker: KafkaBroker
    store: Store | None = None
    relay: OutboxRelay | None = None
    indexes: Sequence[IndexSpec] = field(default_factory=tuple)

    def require_store(self) -> Store:
        if self.store is None:
            raise RuntimeError("the service is not started")
        return self.store


def build_broker(settings: ServiceSettings) -> KafkaBroker:
    broker: KafkaBroker | None = None

    def current() -> KafkaBroker:
        assert broker is not None
        return broker

    broker = KafkaBroker(
        settings.kafka_bootstrap,
        client_id=f"crm-{settings.service_name}",
        acks="all",
        # Tansu has no idempotent producer (InitProducerId); consumers deduplicate instead.
        enable_idempotence=False,
        graceful_timeout=GRACEFUL_TIMEOUT_SECONDS,
        decoder=decode_cloudevent,
        middlewares=[
            dead_letter_middleware(current, service=settings.service_name, consumer_group=settings.consumer_group)
        ],
        # Stdlib logger without handlers: its records reach the root JSON handler.
        logger=logging.getLogger("crm.faststream"),
        # Per-message "Received"/"Processed" lines only at DEBUG.
        log_level=logging.DEBUG,
    )
    return broker


def create_app(
    runtime: Runtime,
    *,
    title: str,
    description: str,
    routers: Iterable[APIRouter] = (),
    version: str = "0.1.0",
) -> FastAPI:
    settings = runtime.settings

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        store = Store.connect(
            settings.mongo_uri,
            settings.database_name,
            retry_attempts=settings.consumer_retry_attempts,
            retry_base_seconds=settings.consumer_retry_base_seconds,
        )
        runtime.store = store
        await store.ensure_indexes(runtime.indexes)
        relay = OutboxRelay(store, runtime.broker, poll_seconds=settings.relay_poll_seconds)
        runtime.relay = relay
        await runtime.broker.start()
        relay.start()
        log.info("service_started", port=settings.port, database=settings.database_name)
        try:
            yield
        finally:
            for subscriber in runtime.broker.subscribers:
                await subscriber.stop()
            await relay.stop()
            await runtime.broker.stop()
            await store.close()
            log.info("service_stopped")

    app = FastAPI(title=title, description=description, version=version, lifespan=lifespan)
    app.state.runtime = runtime

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.title, exc.detail, request.url.path, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"location": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
        detail = "; ".join(f"{e['location']}: {e['message']}" for e in errors[:5])
        return problem_response(422, "Invalid request", detail, request.url.path, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(exc.status_code, str(exc.detail), str(exc.detail), request.url.path)

    @app.exception_handler(TransientFailure)
    async def _unavailable(request: Request, exc: TransientFailure) -> JSONResponse:
        return problem_response(503, "Database unavailable", str(exc), request.url.path)

    @app.get("/healthz", tags=["operations"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "alive", "service": settings.service_name}

    @app.get("/readyz", tags=["operations"], summary="The broker and the database are reachable")
    async def readyz(request: Request) -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(runtime.require_store().ping(), 3)
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unreachable: {type(exc).__name__}"
        checks["broker"] = "ok" if await runtime.broker.ping(timeout=3) else "unreachable"
        ready = all(v == "ok" for v in checks.values())
        body = {"status": "ready" if ready else "not ready", "checks": checks}
        return JSONResponse(body, status_code=200 if ready else 503)

    for router in routers:
        app.include_router(router)
    return app


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


def get_store(request: Request) -> Store:
    return get_runtime(request).require_store()


StoreDep = Annotated[Store, Depends(get_store)]


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    """Run one service until SIGINT/SIGTERM."""
    configure_logging(settings.service_name, settings.log_level)
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False)
