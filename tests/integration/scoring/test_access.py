"""Who may call scoring: every route needs a credential (401) and its own scope (403), on the real database.

Scoring has no row-level access: it knows customers by id from events and not who owns them, so a
caller's scope is all that is checked.
"""

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from crm_scoring import repository
from crm_scoring.app import create_service
from crm_shared.security import ADMIN, SCOPES
from crm_shared.service import OPEN_PATHS
from crm_shared.store import Store

from helpers import bearer

NewStore = Callable[..., Awaitable[Store]]
PROBLEM = "application/problem+json"


def scopes_of(operation: dict[str, Any]) -> frozenset[str]:
    """The scopes an operation's security requirements name: none for an open one."""
    return frozenset(
        s for requirement in operation.get("security", []) for names in requirement.values() for s in names
    )


def own_operations(app: FastAPI) -> list[tuple[str, str, frozenset[str]]]:
    """(method, path, scopes) of each operation of the service's own API; the admin API (tag security) aside."""
    return [
        (method.upper(), path, scopes_of(op))
        for path, item in app.openapi()["paths"].items()
        if path not in OPEN_PATHS
        for method, op in item.items()
        if "security" not in op.get("tags", [])
    ]


OPERATIONS = own_operations(create_service())


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "C-none", path)


def only_scope(scopes: frozenset[str]) -> str:
    assert len(scopes) == 1, f"expected one scope, found {sorted(scopes)}"
    return next(iter(scopes))


def without(scope: str) -> dict[str, str]:
    """A person's token with every scope but `scope` (and admin, which holds them all)."""
    return bearer("someone", *sorted(set(SCOPES) - {scope, ADMIN}))


@pytest.fixture(scope="module")
async def http(new_store: NewStore) -> AsyncIterator[httpx.AsyncClient]:
    store = await new_store("scoring_access", repository.INDEXES)
    app = create_service()
    app.state.runtime.store = store
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://scoring") as client:
        yield client


def test_the_routes_have_the_scopes_of_the_security_brief() -> None:
    assert {f"{m} {p}": only_scope(s) for m, p, s in OPERATIONS} == {
        "GET /v1/customers/{customer_id}/scores": "scores:read",
        "GET /v1/customers/{customer_id}/segment-changes": "scores:read",
        "GET /v1/population": "scores:read",
        "GET /v1/population/pareto": "scores:read",
        "GET /v1/population/movements": "scores:read",
        "POST /v1/population/refresh": "scores:run",
        "POST /v1/models/fit": "scores:run",
    }


@pytest.mark.parametrize(("method", "path", "scopes"), OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS])
async def test_every_route_answers_401_without_a_credential_and_403_without_its_scope(
    http: httpx.AsyncClient, method: str, path: str, scopes: frozenset[str]
) -> None:
    scope = only_scope(scopes)
    url = concrete(path)

    anonymous = await http.request(method, url)
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.headers["content-type"] == PROBLEM
    assert anonymous.headers["www-authenticate"].startswith('Bearer realm="crm"')

    lacking = await http.request(method, url, headers=without(scope))
    assert lacking.status_code == 403, lacking.text
    assert lacking.headers["content-type"] == PROBLEM
    assert scope in lacking.json()["detail"]

    # Its own scope alone gets past the guard (then 200, 404, 409 or 422: the route's own answers).
    allowed = await http.request(method, url, headers=bearer("someone", scope))
    assert allowed.status_code not in (401, 403, 429), allowed.text
