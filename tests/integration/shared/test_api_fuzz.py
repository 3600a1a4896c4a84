"""Schemathesis on every service's OpenAPI document, on the real database (the apps without their lifespan: no
broker, the outbox only accumulates). With the admin key no answer is a 5xx and every answer's status, content
type, headers and body are the ones the document describes; without a credential every operation answers a
described 401.

One test per operation and service (`test_<service>[<METHOD> <path>]`): schemathesis' examples, coverage and
fuzzing phases, positive and negative data, derandomized so that CI runs the same cases every time.
"""

from __future__ import annotations

import asyncio
import importlib
import io
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
import requests
import schemathesis
import urllib3
from fastapi import FastAPI
from requests.adapters import HTTPAdapter
from schemathesis.checks import not_a_server_error
from schemathesis.config import HealthCheck
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from crm_shared.service import OPEN_PATHS
from crm_shared.settings import SERVICES
from crm_shared.store import Store

from helpers import ADMIN_HEADERS

NewStore = Callable[..., Awaitable[Store]]
BASE_URL = "http://testserver"
FUZZ_EXAMPLES = int(os.environ.get("CRM_FUZZ_EXAMPLES", "12"))
"""Generated cases per operation in the fuzzing phase (the examples and coverage phases come on top): 12 keeps
the suite within its time on CI; CRM_FUZZ_EXAMPLES=100 fuzzes harder by hand."""
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
# Built at import: schemathesis turns each operation of each document into a test at collection.
APPS: dict[str, FastAPI] = {
    name: importlib.import_module(f"crm_{name}.app").create_service() for name in sorted(SERVICES)
}


class OnTheSessionLoop(HTTPAdapter):
    """Hands each request schemathesis sends to the app in-process, on the event loop its Store is bound to.

    Schemathesis' own ASGI client runs apps on an event loop thread of its own, where the session's
    AsyncMongoClient cannot go. The tests are synchronous (schemathesis drives hypothesis), so the
    session's loop is idle while they run.
    """

    def __init__(self, app: FastAPI, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.transport = httpx.ASGITransport(app=app)
        self.loop = loop

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        async def exchange() -> httpx.Response:
            async with httpx.AsyncClient(transport=self.transport) as http:
                return await http.request(
                    str(request.method), str(request.url), headers=dict(request.headers), content=request.body
                )

        answer = self.loop.run_until_complete(exchange())
        raw = urllib3.HTTPResponse(
            body=io.BytesIO(answer.content),
            headers=list(answer.headers.multi_items()),
            status=answer.status_code,
            reason=answer.reason_phrase,
            version=11,
            preload_content=False,
            decode_content=False,
        )
        return self.build_response(request, raw)


@pytest.fixture(scope="module")
async def sessions(new_store: NewStore) -> AsyncIterator[dict[str, requests.Session]]:
    """A `requests` session per service, reaching its app, which has a database of its own."""
    loop = asyncio.get_running_loop()
    opened: dict[str, requests.Session] = {}
    for name, app in APPS.items():
        app.state.runtime.store = await new_store(f"fuzz_{name}", app.state.runtime.indexes)
        opened[name] = session = requests.Session()
        session.mount("http://", OnTheSessionLoop(app, loop))
    yield opened
    for session in opened.values():
        session.close()


def load(name: str, *, max_examples: int, phases: list[str], modes: list[schemathesis.GenerationMode]) -> Any:
    schema = schemathesis.openapi.from_dict(APPS[name].openapi())
    schema.config.update(base_url=BASE_URL, suppress_health_check=[HealthCheck.all])
    schema.config.phases.update(phases=phases)
    # The credential is the suite's, never a generated one: the guard would refuse the case before any route.
    schema.config.generation.update(
        modes=modes,
        max_examples=max_examples,
        deterministic=True,
        database="none",
        with_security_parameters=False,
    )
    return schema


def fuzz(name: str) -> Callable[..., None]:
    schema = load(
        name,
        max_examples=FUZZ_EXAMPLES,
        phases=["examples", "coverage", "fuzzing"],
        modes=list(schemathesis.GenerationMode),
    )

    @schema.parametrize()
    def test(case: schemathesis.Case, sessions: dict[str, requests.Session]) -> None:
        # Not ready is /readyz's documented answer here: the app runs without its lifespan, the broker never starts.
        excluded = [not_a_server_error] if case.path == "/readyz" else []
        case.call_and_validate(session=sessions[name], headers=ADMIN_HEADERS, checks=CHECKS, excluded_checks=excluded)

    return test


def refused(name: str) -> Callable[..., None]:
    schema = load(name, max_examples=3, phases=["fuzzing"], modes=[schemathesis.GenerationMode.POSITIVE])

    @schema.exclude(path=sorted(OPEN_PATHS)).parametrize()
    def test(case: schemathesis.Case, sessions: dict[str, requests.Session]) -> None:
        response = case.call_and_validate(session=sessions[name], checks=CHECKS)
        assert response.status_code == 401, response.text

    return test


test_customer = fuzz("customer")
test_marketing = fuzz("marketing")
test_sales = fuzz("sales")
test_scoring = fuzz("scoring")
test_support = fuzz("support")
test_customer_without_a_credential = refused("customer")
test_marketing_without_a_credential = refused("marketing")
test_sales_without_a_credential = refused("sales")
test_scoring_without_a_credential = refused("scoring")
test_support_without_a_credential = refused("support")
