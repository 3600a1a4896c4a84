"""What every service's API answers at its edges, on the real database: a cursor it did not issue is a 400
(never a 500), a body over the limit a 413, a method a path does not take a 405 with `Allow`."""

from __future__ import annotations

import base64
import importlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from crm_shared.api import keyset_page
from crm_shared.settings import SERVICES
from crm_shared.store import Store

from helpers import ADMIN_HEADERS

NewStore = Callable[..., Awaitable[Store]]
PROBLEM = "application/problem+json"
LIMIT = 64 * 1024  # CRM_<SERVICE>_MAX_BODY_BYTES, set for these apps
CHUNK = 16 * 1024
SEGMENT = {
    "segment_id": "edges",
    "name": "High value",
    "definition": {"all": [{"field": "value_tier", "op": "eq", "value": "high_value"}]},
}

# (service, list endpoint, what its cursor holds: "at" for (time, id), else the one id it is keyed by)
LIST_ENDPOINTS = [
    ("customer", "/v1/customers/C-edges/timeline", "at"),
    ("customer", "/v1/customers", "at"),
    ("customer", "/v1/customers/C-edges/consents/history", "at"),
    ("marketing", "/v1/campaigns/welcome/enrolments", "at"),
    ("marketing", "/v1/customers/C-edges/enrolments", "at"),
    ("support", "/v1/customers/C-edges/complaints", "at"),
    ("support", "/v1/customers/C-edges/surveys", "at"),
    ("support", "/v1/tickets", "at"),
    ("support", "/v1/kb/articles", "at"),
    ("support", "/v1/sla/calendars", "at"),
    ("support", "/v1/sla/policies", "at"),
    ("support", "/v1/service-contracts", "at"),
    ("support", "/v1/technicians", "at"),
    ("support", "/v1/visits", "at"),
    ("support", "/v1/installed-products/SN-edges/repairs", "at"),
    ("scoring", "/v1/customers/C-edges/segment-changes", "at"),
    ("sales", "/v1/leads", "at"),
    ("sales", "/v1/customers/C-edges/leads", "at"),
    ("sales", "/v1/customers/C-edges/orders", "order_id"),
    ("sales", "/v1/opportunities", "at"),
    ("sales", "/v1/activities", "at"),
    ("sales", "/v1/accounts", "at"),
    ("marketing", "/v1/campaigns", "campaign_id"),
    ("marketing", "/v1/segments/edges/members", "customer_id"),
    ("marketing", "/v1/segments", "segment_id"),
    ("sales", "/v1/admin/deadletters", "at"),
]


def cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


def bad_cursors(key: str) -> dict[str, str]:
    """Cursors this API never issues, by what is wrong with them."""
    bad = {"not base64": "not base64!", "not an object": cursor(["at", "id"]), "empty": cursor({})}
    if key != "at":
        return {**bad, "an operator as id": cursor({key: {"$gt": ""}}), "a number as id": cursor({key: 7})}
    times = {
        "before year 1 in UTC": "0001-01-01T00:00:00+01:00",
        "after year 9999 in UTC": "9999-12-31T23:59:59-01:00",
        "year 1": "0001-01-01T00:00:00+00:00",
        "year 9999": "9999-12-31T23:59:59+00:00",
        "no offset": "2026-11-20T10:00:00",
        "not a time": "yesterday",
    }
    return {
        **bad,
        **{label: cursor({"at": at, "id": "x"}) for label, at in times.items()},
        "a number as time": cursor({"at": 20261120, "id": "x"}),
        "an operator as id": cursor({"at": "2026-11-20T10:00:00+00:00", "id": {"$gt": ""}}),
        "no id": cursor({"at": "2026-11-20T10:00:00+00:00"}),
    }


def issued_cursor(key: str) -> str:
    if key == "at":
        return cursor({"at": "2026-11-20T10:00:00.123456+00:00", "id": uuid.uuid4().hex})
    return cursor({key: "~"})


@pytest.fixture(scope="module")
async def apis(new_store: NewStore) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """Each service's app on its own database, without its broker (no lifespan), its body limit set to LIMIT."""
    apis: dict[str, httpx.AsyncClient] = {}
    for service in sorted(SERVICES):
        with pytest.MonkeyPatch.context() as env:
            env.setenv(f"CRM_{service.upper()}_MAX_BODY_BYTES", str(LIMIT))
            app = importlib.import_module(f"crm_{service}.app").create_service()
        app.state.runtime.store = await new_store(f"{service}_edges", app.state.runtime.indexes)
        # A 500 is answered, not raised, so the test sees what a client would.
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        apis[service] = httpx.AsyncClient(headers=ADMIN_HEADERS, transport=transport, base_url=f"http://{service}")
    created = await apis["marketing"].post("/v1/segments", json=SEGMENT)
    assert created.status_code == 201, created.text
    yield apis
    for http in apis.values():
        await http.aclose()


@pytest.mark.parametrize(("service", "path", "key"), LIST_ENDPOINTS)
async def test_a_cursor_this_api_did_not_issue_is_a_400(
    apis: dict[str, httpx.AsyncClient], service: str, path: str, key: str
) -> None:
    http = apis[service]
    answers = {label: await http.get(path, params={"cursor": bad}) for label, bad in bad_cursors(key).items()}
    wrong = {label: f"{a.status_code} {a.text[:100]}" for label, a in answers.items() if a.status_code != 400}
    assert not wrong, f"{service} {path}: {wrong}"
    for answer in answers.values():
        assert answer.headers["content-type"] == PROBLEM
        assert answer.json()["title"] == "Invalid cursor"


@pytest.mark.parametrize(("service", "path", "key"), LIST_ENDPOINTS)
async def test_a_cursor_like_the_api_issues_pages(
    apis: dict[str, httpx.AsyncClient], service: str, path: str, key: str
) -> None:
    http = apis[service]
    assert (await http.get(path)).status_code == 200
    answer = await http.get(path, params={"cursor": issued_cursor(key)})
    assert answer.status_code == 200, answer.text
    assert answer.json()["items"] == []


@pytest.mark.parametrize(
    ("service", "path"),
    [  # scoring takes no request body
        ("customer", "/v1/customers"),
        ("marketing", "/v1/segments"),
        ("sales", "/v1/orders"),
        ("support", "/v1/complaints"),
    ],
)
async def test_a_body_over_the_limit_is_a_413_and_is_not_read_past_it(
    apis: dict[str, httpx.AsyncClient], service: str, path: str
) -> None:
    http = apis[service]
    pulled = 0

    async def megabytes(count: int) -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(count * 1024 * 1024 // CHUNK):
            pulled += 1
            yield b" " * CHUNK

    json_body = {"Content-Type": "application/json"}
    over = await http.post(path, content=b"{" + b" " * LIMIT + b"}", headers=json_body)
    declared = await http.post(path, content=megabytes(48), headers={**json_body, "Content-Length": str(48 << 20)})
    assert pulled == 0, "a Content-Length over the limit is refused before the body is read"
    chunked = await http.post(path, content=megabytes(48), headers=json_body)
    assert "content-length" not in chunked.request.headers
    assert pulled <= LIMIT // CHUNK + 1, f"{pulled} chunks of {CHUNK} bytes read, past the limit of {LIMIT}"
    for answer in (over, declared, chunked):
        assert answer.status_code == 413, answer.text
        assert answer.headers["content-type"] == PROBLEM
        problem = answer.json()
        assert (problem["status"], problem["instance"]) == (413, path)
        assert f"over {LIMIT} bytes" in problem["detail"]

    within = await http.post(path, json={"padding": "x" * (LIMIT - 100)})
    assert within.status_code == 422, "a body within the limit reaches validation"


@pytest.mark.parametrize(
    ("service", "method", "path", "allowed"),
    [
        ("customer", "DELETE", "/healthz", {"GET"}),
        ("marketing", "PUT", "/v1/campaigns", {"GET", "POST"}),
        ("sales", "DELETE", "/v1/leads", {"GET", "POST"}),
        ("scoring", "DELETE", "/v1/population/refresh", {"POST"}),
        ("support", "PATCH", "/readyz", {"GET"}),
    ],
)
async def test_a_method_the_path_does_not_take_is_a_405_saying_which_it_takes(
    apis: dict[str, httpx.AsyncClient], service: str, method: str, path: str, allowed: set[str]
) -> None:
    answer = await apis[service].request(method, path)
    assert answer.status_code == 405
    assert {m.strip() for m in answer.headers["allow"].split(",")} == allowed
    assert answer.headers["content-type"] == PROBLEM
    assert answer.json() == {
        "type": "about:blank",
        "title": "Method Not Allowed",
        "status": 405,
        "detail": "Method Not Allowed",
        "instance": path,
    }


async def test_an_unexpected_failure_is_a_problem_too() -> None:
    app = importlib.import_module("crm_customer.app").create_service()  # never started: it has no store
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(headers=ADMIN_HEADERS, transport=transport, base_url="http://customer") as http:
        answer = await http.get("/v1/customers/C-1")
    assert answer.status_code == 500
    assert answer.headers["content-type"] == PROBLEM
    assert answer.json()["title"] == "Internal Server Error"


async def test_every_page_keeps_a_query_that_has_an_or_of_its_own(new_store: Any) -> None:
    """Row-level access narrows a list with an $or: the cursor's own $or must not replace it on page 2."""
    store = await new_store("keyset_or")
    at = datetime(2026, 11, 20, tzinfo=UTC)
    await store.db["items"].insert_many(
        [{"_id": f"i-{n:02d}", "owner": "a" if n % 2 else "b", "at": at + timedelta(minutes=n)} for n in range(10)]
    )
    query = {"$or": [{"owner": "a"}, {"owner": "nobody"}]}
    seen: list[str] = []
    cursor: str | None = None
    while True:
        docs, cursor = await keyset_page(
            store.db["items"], query, time_field="at", limit=2, cursor=cursor, newest_first=True
        )
        seen.extend(d["_id"] for d in docs)
        if cursor is None:
            break
    assert seen == ["i-09", "i-07", "i-05", "i-03", "i-01"]
