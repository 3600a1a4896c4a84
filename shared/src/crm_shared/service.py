"""Composition of one service process: a FastAPI app and its FastStream subscribers in one event loop.

Start-up: database indexes, then the broker (the producer), the batched consumers (each joins its
group), then the outbox relay. Shutdown (SIGINT/SIGTERM through uvicorn): stop consuming and let the
batches in flight finish and commit, flush the outbox relay, close the broker and the database client.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from http import HTTPStatus
from typing import Annotated, Any

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from faststream.kafka import KafkaBroker
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema
from pymongo.errors import ConnectionFailure
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crm_shared import deadletters, metrics
from crm_shared.batching import BatchConsumer, BatchHandler, Subscription
from crm_shared.events import configure_time_window
from crm_shared.leases import HOLDER
from crm_shared.logging import configure_logging, get_logger
from crm_shared.outbox import OutboxRelay
from crm_shared.problems import Problem as Problem  # re-exported: routes import it from here
from crm_shared.redelivery import LogWatch
from crm_shared.security import Guard
from crm_shared.security import admin as security_admin
from crm_shared.security.audit import AUDIT_INDEXES, AuditTrail
from crm_shared.security.keys import ApiKeyRecord, KeyFeed
from crm_shared.settings import ServiceSettings
from crm_shared.store import IndexSpec, Store, TransientFailure
from crm_shared.topics import Topic
from crm_shared.transport import kafka_broker_security, kafka_client_options, mongo_client_options

log = get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
GRACEFUL_TIMEOUT_SECONDS = 15.0
DATABASE_RETRY_AFTER = "5"
"""Seconds a client is asked to wait when the database is unreachable (a restart takes a few)."""


def problem_response(
    status: int, title: str, detail: str, instance: str, *, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, "instance": instance, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _phrase(status: int, otherwise: str = "Error") -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return otherwise


class ProblemDetails(BaseModel):
    """An RFC 9457 problem: the body of every 4xx and 5xx answer."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="Always `about:blank`: the status and title say what went wrong.")
    title: str = Field(description="What went wrong, the same for every occurrence.", examples=["Invalid cursor"])
    status: int = Field(ge=400, le=599, description="The HTTP status code.")
    detail: str = Field(description="What went wrong with this request.")
    instance: str = Field(description="The path of the request.", examples=["/v1/leads"])


class InvalidField(BaseModel):
    location: str = Field(description="Where in the request, dotted.", examples=["body.total"])
    message: str = Field(description="What is wrong with it.")


class ValidationProblemDetails(ProblemDetails):
    """A 422: the request is well-formed but a value is refused; `errors` lists each refused field."""

    errors: list[InvalidField] = Field(
        default_factory=list, description="Each refused field, when the request did not match its schema."
    )


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` is refused with a 413 before anything buffers it.

    A Content-Length over the limit is refused before the app runs; a streamed (chunked) body is
    counted as it arrives and reading stops at the limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.detail = f"the request body is over {max_bytes} bytes, this service's limit"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            response = problem_response(413, _phrase(413), self.detail, scope["path"])
            await response(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # An HTTPException passes FastAPI's body parsing unchanged, to the problem handler.
                    raise StarletteHTTPException(413, self.detail)
            return message

        await self.app(scope, counted, send)


BodyMedia = list[tuple[re.Pattern[str], str, frozenset[bytes]]]


def declared_body_media(document: Mapping[str, Any]) -> BodyMedia:
    """The operations of an OpenAPI document whose request body may be another media type than JSON (a route
    declares it with `openapi_extra` requestBody content, e.g. a CSV upload): (path pattern, method, types)."""
    found: BodyMedia = []
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            content = operation.get("requestBody", {}).get("content", {}) if isinstance(operation, dict) else {}
            media = frozenset(str(m).lower().encode() for m in content if not str(m).lower().endswith("json"))
            if media:
                segments = ("[^/]+" if s.startswith("{") else re.escape(s) for s in path.split("/"))
                found.append((re.compile("^" + "/".join(segments) + "$"), method.upper(), media))
    return found


class JsonBodiesOnly:
    """ASGI middleware: a request body that is not JSON is refused with a 415 before anything parses it, unless
    the route declares that media type for its body (see `declared_body_media`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.other_media: BodyMedia | None = None

    def declared(self, scope: Scope, media: bytes) -> bool:
        """Whether the request's operation declares `media` for its body (read from the app's OpenAPI document
        once: the routes are fixed when requests arrive)."""
        if self.other_media is None:
            openapi = getattr(scope.get("app"), "openapi", None)
            self.other_media = declared_body_media(openapi()) if callable(openapi) else []
        path, method = scope["path"], scope["method"]
        return any(m == method and media in types and p.match(path) for p, m, types in self.other_media)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            headers = dict(scope["headers"])
            has_body = headers.get(b"content-length", b"0") not in (b"", b"0") or b"transfer-encoding" in headers
            media = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            json_body = media == b"application/json" or media.endswith(b"+json")
            if has_body and not json_body and not self.declared(scope, media):
                shown = media.decode("latin-1")[:100] or "none"
                detail = f"the request body must be application/json, not {shown}"
                response = problem_response(415, _phrase(415), detail, scope["path"])
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


@dataclass
class Runtime:
    """Everything a service holds for its lifetime.

    `broker` is the producer the outbox relay publishes with; `spec` is a broker that is never
    started, on which the consumers and what the service publishes are declared for the AsyncAPI.
    """

    settings: ServiceSettings
    broker: KafkaBroker
    store: Store | None = None
    relay: OutboxRelay | None = None
    indexes: Sequence[IndexSpec] = field(default_factory=tuple)
    spec: KafkaBroker = field(default_factory=lambda: KafkaBroker("documented:9092"))
    subscriptions: list[Subscription] = field(default_factory=list)
    consumers: list[BatchConsumer] = field(default_factory=list)
    guard: Guard = field(default_factory=lambda: Guard(ServiceSettings()))
    key_feed: KeyFeed | None = None
    workers: dict[str, Callable[[Store], Coroutine[Any, Any, None]]] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def run_in_background(self, name: str, worker: Callable[[Store], Coroutine[Any, Any, None]]) -> None:
        """Run `worker(store)` for the service's lifetime, from after the relay starts until shutdown, when it is
        cancelled (a worker loops until then; its durable state is in the database, so a restart resumes it)."""
        self.workers[name] = worker

    async def start_workers(self) -> None:
        store = self.require_store()
        for name, worker in self.workers.items():
            task = asyncio.create_task(worker(store), name=f"{self.settings.service_name}:{name}")
            task.add_done_callback(_log_worker_end)
            self.tasks.append(task)

    async def stop_workers(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()

    @classmethod
    def for_service(cls, settings: ServiceSettings, *, indexes: Sequence[IndexSpec] = ()) -> Runtime:
        spec = KafkaBroker(settings.kafka_bootstrap)
        runtime = cls(
            settings=settings,
            broker=build_broker(settings),
            indexes=(*indexes, *AUDIT_INDEXES, *deadletters.LETTER_INDEXES),
            spec=spec,
            guard=Guard(settings),
        )
        runtime.document_api_keys()
        return runtime

    def document_api_keys(self) -> None:
        """Every service writes key records (its admin API) and reads them all (KeyFeed, with no consumer group)."""
        self.publishes(
            Topic.SECURITY_KEYS,
            title=Topic.SECURITY_KEYS.value,
            description="An API key's record, whole, at each change (issued, rotated, revoked); keyed by key id. "
            "Never the key: its SHA-256.",
            schema=ApiKeyRecord,
        )

        async def documented(record: ApiKeyRecord) -> None:
            """Every instance reads every key record from the beginning, into memory and its own database."""

        self.spec.subscriber(
            Topic.SECURITY_KEYS,
            title=f"{Topic.SECURITY_KEYS.value}:{self.settings.service_name}",
            description="The API keys every service accepts; read without a consumer group.",
        )(documented)

    def require_store(self) -> Store:
        if self.store is None:
            raise RuntimeError("the service is not started")
        return self.store

    def subscribe(
        self,
        *topics: str,
        schema: Any,
        handler: BatchHandler,
        title: str,
        description: str,
        group_id: str | None = None,
    ) -> Subscription:
        """Consume `topics` in batches: each record validated as `schema`, each batch given to `handler`."""
        subscription = Subscription(
            topics=topics,
            group_id=group_id or self.settings.consumer_group,
            schema=schema,
            handle=handler,
            title=title,
            description=description,
        )
        self.subscriptions.append(subscription)

        async def documented(event: Any) -> None:
            """The handler as the AsyncAPI shows it: one event of `schema` per record."""

        documented.__annotations__ = {"event": schema, "return": None}
        self.spec.subscriber(*topics, group_id=subscription.group_id, title=title, description=description)(documented)
        return subscription

    def publishes(self, topic: str, *, title: str, description: str, schema: Any) -> None:
        """Declare, for the AsyncAPI, what the service publishes on `topic` (through its outbox relay)."""
        self.spec.publisher(topic, title=title, description=description, schema=schema)

    async def start_consumers(self) -> None:
        """Start every consumer at once: each waits for its group to settle, and one after another that adds up."""
        settings = self.settings
        consumers = [
            BatchConsumer(
                subscription,
                bootstrap=settings.kafka_bootstrap,
                client_id=settings.client_id,
                service=settings.service_name,
                store_ref=self.require_store,
                broker=self.broker,
                max_records=settings.consumer_batch_max_records,
                max_wait_ms=settings.consumer_batch_max_wait_ms,
                kafka_options=kafka_client_options(settings),
            )
            for subscription in self.subscriptions
        ]
        self.consumers.extend(consumers)
        await asyncio.gather(*(consumer.start() for consumer in consumers))

    async def stop_consumers(self) -> None:
        await asyncio.gather(*(consumer.stop(GRACEFUL_TIMEOUT_SECONDS) for consumer in self.consumers))
        self.consumers.clear()


def _log_worker_end(task: asyncio.Task[None]) -> None:
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        log.error("worker_failed", worker=task.get_name(), error=repr(error))


def build_broker(settings: ServiceSettings) -> KafkaBroker:
    return KafkaBroker(
        settings.kafka_bootstrap,
        client_id=settings.client_id,
        acks="all",
        # Tansu has no idempotent producer (InitProducerId); consumers deduplicate instead.
        enable_idempotence=False,
        # The relay hands a page of records at once; the producer groups them per partition.
        linger_ms=5,
        graceful_timeout=GRACEFUL_TIMEOUT_SECONDS,
        # Stdlib logger without handlers: its records reach the root JSON handler.
        logger=logging.getLogger("crm.faststream"),
        log_level=logging.DEBUG,
        security=kafka_broker_security(settings),
    )


class Readiness(BaseModel):
    status: str = Field(examples=["ready", "not ready"])
    checks: dict[str, str] = Field(description="`ok` or why not, by dependency.", examples=[{"database": "ok"}])


def create_app(
    runtime: Runtime,
    *,
    title: str,
    description: str,
    routers: Iterable[APIRouter] = (),
    version: str = "0.1.0",
) -> FastAPI:
    settings = runtime.settings
    configure_time_window(settings.time_window)
    deadletters.declare_replays(runtime)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        unprotected = open_operations(app.openapi())
        if unprotected:
            # New routes are born protected: a route without requires(<scope>) stops the service.
            raise RuntimeError(f"routes without a credential check: {', '.join(unprotected)}")
        store = Store.connect(
            settings.mongo_uri,
            settings.database_name,
            retry_attempts=settings.consumer_retry_attempts,
            retry_base_seconds=settings.consumer_retry_base_seconds,
            client_options=mongo_client_options(settings),
        )
        runtime.store = store
        await store.ensure_indexes(runtime.indexes)
        relay = OutboxRelay(
            store, runtime.broker, poll_seconds=settings.relay_poll_seconds, lease_seconds=settings.lease_seconds
        )
        if settings.outbox_redeliver_hours > 0:
            relay.watch = LogWatch(
                store,
                bootstrap=settings.kafka_bootstrap,
                client_id=settings.client_id,
                window=timedelta(hours=settings.outbox_redeliver_hours),
                kafka_options=kafka_client_options(settings),
            )
        runtime.relay = relay
        await runtime.broker.start()
        await runtime.start_consumers()
        relay.start()
        await runtime.start_workers()
        runtime.key_feed = KeyFeed(
            runtime.guard.keys,
            store,
            bootstrap=settings.kafka_bootstrap,
            client_id=settings.client_id,
            kafka_options=kafka_client_options(settings),
        )
        await runtime.key_feed.start()
        log.info("service_started", port=settings.port, database=settings.database_name, holder=HOLDER)
        try:
            yield
        finally:
            await runtime.key_feed.stop()
            await runtime.stop_workers()
            await runtime.stop_consumers()
            await relay.stop()
            if relay.watch is not None:
                await relay.watch.close()
            await runtime.broker.stop()
            await store.close()
            log.info("service_stopped")

    app = FastAPI(title=title, description=description, version=version, lifespan=lifespan)
    app.state.runtime = runtime
    app.add_middleware(JsonBodiesOnly)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    # Outermost: it sees the final status of every request, the 413s and 500s included.
    app.add_middleware(AuditTrail, service=settings.service_name)

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.title, exc.detail, request.url.path, headers=exc.headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"location": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
        detail = "; ".join(f"{e['location']}: {e['message']}" for e in errors[:5])
        return problem_response(422, "Invalid request", detail, request.url.path, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(request)
        title = _phrase(exc.status_code, str(exc.detail))
        return problem_response(exc.status_code, title, str(exc.detail), request.url.path, headers=headers)

    @app.exception_handler(TransientFailure)
    async def _unavailable(request: Request, exc: TransientFailure) -> JSONResponse:
        return problem_response(
            503, "Database unavailable", str(exc), request.url.path, headers={"Retry-After": DATABASE_RETRY_AFTER}
        )

    @app.exception_handler(ConnectionFailure)
    async def _unreachable(request: Request, exc: ConnectionFailure) -> JSONResponse:
        # A read outside the store's retries: the database is down or restarting, not the request at fault.
        log.warning("database_unreachable", path=request.url.path, error=str(exc)[:300])
        return problem_response(
            503,
            "Database unavailable",
            "the database is unreachable; try again shortly",
            request.url.path,
            headers={"Retry-After": DATABASE_RETRY_AFTER},
        )

    @app.exception_handler(Exception)
    async def _failed(request: Request, exc: Exception) -> JSONResponse:
        # Starlette raises the exception again after this answer, so the server logs its traceback.
        return problem_response(500, _phrase(500), "the service failed; the error is logged", request.url.path)

    @app.get("/healthz", tags=["operations"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "alive", "service": settings.service_name}

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics",
        description="Records consumed, applied, duplicates, ignored and dead-lettered per topic; batch sizes and "
        "apply latency; consumer lag per partition; outbox backlog and relay latency; in the Prometheus text format.",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}, "description": "The metrics"}},
    )
    async def metrics_endpoint() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="The broker and the database are reachable",
        responses={
            200: {"model": Readiness, "description": "Ready"},
            503: {"model": Readiness, "description": "Not ready: a check says what is unreachable"},
        },
    )
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

    for router in (*routers, security_admin.router, deadletters.router):
        app.include_router(router)
    build_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build_openapi()
        describe_problems(document, max_body_bytes=settings.max_body_bytes)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
    return app


OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
"""The only paths that answer without a credential: they reveal nothing personal."""


def open_operations(document: Mapping[str, Any]) -> list[str]:
    """The operations of an OpenAPI document that answer without a credential, OPEN_PATHS aside."""
    return [
        f"{method.upper()} {path}"
        for path, item in document.get("paths", {}).items()
        if path not in OPEN_PATHS
        for method, operation in item.items()
        if method in _METHODS and not operation.get("security")
    ]


_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
_ALLOW_CANDIDATES = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_PROBLEM_REF = "#/components/schemas/ProblemDetails"
_VALIDATION_PROBLEM_REF = "#/components/schemas/ValidationProblemDetails"
_FASTAPI_DEFAULTS = ("HTTPValidationError", "ValidationError")


def describe_problems(document: dict[str, Any], *, max_body_bytes: int) -> None:
    """Make an OpenAPI document say what `create_app` answers to errors, for every route at once.

    Every 4xx/5xx is problem+json, except where a route declared another body itself; an operation
    taking a cursor can answer 400, one taking a body 400 (not UTF-8) and 413.
    """
    _, definitions = models_json_schema(
        [(ProblemDetails, "validation"), (ValidationProblemDetails, "validation")],
        ref_template="#/components/schemas/{model}",
    )
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(definitions["$defs"])
    for item in document.get("paths", {}).values():
        for method, operation in item.items():
            if method not in _METHODS:
                continue
            responses = operation.setdefault("responses", {})
            parameters = operation.get("parameters", [])
            malformed: list[str] = []
            if any(p.get("in") == "query" and p.get("name") == "cursor" for p in parameters):
                malformed.append("Invalid cursor: not one this API returned")
            if "requestBody" in operation:
                # FastAPI answers 400 to a body it cannot decode; one that decodes but is not JSON is a 422.
                malformed.append("The request body is not UTF-8 text")
                responses.setdefault("413", {"description": f"The request body is over {max_body_bytes} bytes"})
                responses.setdefault("415", {"description": "The request body is not application/json"})
            if malformed:
                responses.setdefault("400", {"description": "; ".join(malformed)})
            if operation.get("security"):
                responses.setdefault(
                    "401", {"description": "No credential, or one that is not valid (see WWW-Authenticate)"}
                )
                responses.setdefault("403", {"description": "The credential lacks a scope this operation needs"})
                responses.setdefault("429", {"description": "Over the caller's rate limit (see Retry-After)"})
                # The guard sends these with every 401 and 429: how to authenticate, when to retry.
                challenge = "The schemes this API takes; what was wrong with the credential"
                responses["401"].setdefault(
                    "headers",
                    {"WWW-Authenticate": {"description": challenge, "required": True, "schema": {"type": "string"}}},
                )
                wait = "Seconds until the caller may retry"
                responses["429"].setdefault(
                    "headers", {"Retry-After": {"description": wait, "required": True, "schema": {"type": "integer"}}}
                )
            for code, response in responses.items():
                if code[:1] in ("4", "5") and not _declares_its_own_body(response):
                    ref = _VALIDATION_PROBLEM_REF if code == "422" else _PROBLEM_REF
                    response["content"] = {PROBLEM_JSON: {"schema": {"$ref": ref}}}
    # FastAPI's own 422 body ({"detail": [...]}) is never sent: drop its schemas unless a route names them.
    rest = json.dumps([document["paths"], {k: v for k, v in schemas.items() if k not in _FASTAPI_DEFAULTS}])
    if not any(f'"#/components/schemas/{name}"' in rest for name in _FASTAPI_DEFAULTS):
        for name in _FASTAPI_DEFAULTS:
            schemas.pop(name, None)


def _declares_its_own_body(response: dict[str, Any]) -> bool:
    """True when a route declared this error's body (readyz's 503), false for none or FastAPI's default 422."""
    content: dict[str, Any] = response.get("content") or {}
    refs = {str(media.get("schema", {}).get("$ref", "")) for media in content.values()}
    return bool(content) and refs != {"#/components/schemas/HTTPValidationError"}


def _allowed_methods(request: Request) -> str:
    """Every method the path takes: Starlette's 405 names only those of the first route on the path."""
    routes = request.app.router.routes
    return ", ".join(
        method
        for method in _ALLOW_CANDIDATES
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes)
    )


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


def get_store(request: Request) -> Store:
    return get_runtime(request).require_store()


StoreDep = Annotated[Store, Depends(get_store)]


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    """Run one service until SIGINT/SIGTERM."""
    configure_logging(settings.service_name, settings.log_level, instance=settings.instance)
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False)
