"""API keys across services, the audit log, rate limits and refused media, on the real broker and database.

The customer and sales services run in-process with their consumers and key feeds, on a broker of
this module's own (their consumer groups must not meet the e2e platform's).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from crm_customer.app import create_service as create_customer
from crm_customer.settings import CustomerSettings
from crm_sales.app import create_service as create_sales
from crm_sales.settings import SalesSettings
from crm_shared.embedded import free_port
from crm_shared.security.keys import KeyFeed, KeyTable
from crm_shared.store import Store

from helpers import ADMIN_HEADERS, ADMIN_KEY, bearer, broker_of_its_own, eventually

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with broker_of_its_own(tmp_path_factory.mktemp("security-broker")) as broker:
        yield broker.kafka_bootstrap


@asynccontextmanager
async def running(create: Callable[[Any], FastAPI], settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = create(settings)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://x") as http:
        yield http


@pytest.fixture(scope="module")
def databases() -> dict[str, str]:
    return {"customer": f"customer_security_{free_port()}", "sales": f"sales_security_{free_port()}"}


def settings_of(name: str, backend: Any, kafka: str, databases: dict[str, str]) -> Any:
    settings_class = CustomerSettings if name == "customer" else SalesSettings
    return settings_class(CRM_KAFKA_BOOTSTRAP=kafka, CRM_MONGO_URI=backend.mongo_uri, db=databases[name])


@pytest.fixture(scope="module")
async def customer(backend: Any, kafka: str, databases: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with running(create_customer, settings_of("customer", backend, kafka, databases)) as http:
        yield http


@pytest.fixture(scope="module")
async def sales(backend: Any, kafka: str, databases: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with running(create_sales, settings_of("sales", backend, kafka, databases)) as http:
        yield http


async def issue(http: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    answer = await http.post("/v1/admin/keys", json={"name": "webshop", **body}, headers=ADMIN_HEADERS)
    assert answer.status_code == 201, answer.text
    issued: dict[str, Any] = answer.json()
    return issued


def key(value: str) -> dict[str, str]:
    return {"X-API-Key": value}


async def test_a_key_issued_on_one_service_is_known_to_the_others_and_so_is_its_revocation(
    customer: httpx.AsyncClient, sales: httpx.AsyncClient
) -> None:
    issued = await issue(customer, scopes=["orders:read"])
    webshop, key_id = issued["key"], issued["record"]["key_id"]

    async def sales_knows(expected: int) -> bool:
        return (await sales.get("/v1/orders/O-none", headers=key(webshop))).status_code == expected

    await eventually(lambda: sales_knows(404), timeout=15, what="the key to reach sales")
    wrong_scope = await customer.get("/v1/customers/C-none", headers=key(webshop))
    assert wrong_scope.status_code == 403 and wrong_scope.headers["content-type"] == PROBLEM
    assert "customers:read" in wrong_scope.json()["detail"]
    assert 'error="insufficient_scope"' in wrong_scope.headers["www-authenticate"]

    listed = (await sales.get("/v1/admin/keys", headers=ADMIN_HEADERS)).json()
    assert any(k["key_id"] == key_id and k["status"] == "active" for k in listed)
    assert webshop not in str(listed) and "sha256" not in str(listed)

    revoked = await sales.delete(f"/v1/admin/keys/{key_id}", headers=ADMIN_HEADERS)
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert await sales_knows(401)

    async def customer_refuses() -> bool:
        answer = await customer.get("/v1/customers/C-none", headers=key(webshop))
        return answer.status_code == 401 and "revoked" in answer.json()["detail"]

    await eventually(customer_refuses, timeout=15, what="the revocation to reach the customer service")


async def test_a_restarted_service_knows_its_keys_from_its_own_database_without_the_broker(
    customer: httpx.AsyncClient, sales: httpx.AsyncClient, backend: Any, databases: dict[str, str]
) -> None:
    issued = await issue(customer, scopes=["orders:read"])
    await eventually(
        lambda: _status(sales, "/v1/orders/O-none", issued["key"], 404), timeout=15, what="sales to learn the key"
    )
    # What a restarted sales process loads first, here with no broker to read at all.
    store = Store.connect(backend.mongo_uri, databases["sales"], retry_base_seconds=0.05)
    table = KeyTable()
    feed = KeyFeed(table, store, bootstrap=f"127.0.0.1:{free_port()}", client_id="restarted-sales")
    try:
        await feed.start()
        assert table.verify(issued["key"]).id == issued["record"]["key_id"]
    finally:
        await feed.stop()
        await store.close()


async def _status(http: httpx.AsyncClient, path: str, api_key: str, expected: int) -> bool:
    return (await http.get(path, headers=key(api_key))).status_code == expected


async def test_without_a_credential_the_answer_is_401_with_a_challenge(customer: httpx.AsyncClient) -> None:
    for headers in ({}, key("crm_nokey_" + "x" * 40), {"Authorization": "Bearer not.a.token"}):
        answer = await customer.get("/v1/customers/C-1", headers=headers)
        assert answer.status_code == 401, answer.text
        assert answer.headers["content-type"] == PROBLEM
        assert answer.headers["www-authenticate"].startswith('Bearer realm="crm"')
    assert (await customer.get("/healthz")).status_code == 200
    assert (await customer.get("/metrics")).status_code == 200


async def test_a_person_with_a_token_is_known_by_subject_and_scopes(customer: httpx.AsyncClient) -> None:
    answer = await customer.get("/v1/auth/whoami", headers={"X-API-Key": "", **bearer("rep-9", "customers:read")})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "kind": "token",
        "id": "rep-9",
        "scopes": ["customers:read"],
        "read_only": False,
        "sees_all_records": False,
    }
    admin_only = await customer.get("/v1/admin/keys", headers={"X-API-Key": "", **bearer("rep-9", "customers:read")})
    assert admin_only.status_code == 403
    expired = bearer("rep-9", "customers:read", expires_in=-120)
    assert (await customer.get("/v1/auth/whoami", headers={"X-API-Key": "", **expired})).status_code == 401


async def test_an_api_key_is_accepted_as_a_bearer_credential_too(customer: httpx.AsyncClient) -> None:
    answer = await customer.get("/v1/auth/whoami", headers={"X-API-Key": "", "Authorization": f"Bearer {ADMIN_KEY}"})
    assert answer.status_code == 200 and answer.json()["id"] == "bootstrap"


async def test_failures_admin_calls_and_key_changes_are_in_the_audit_log_without_secrets(
    customer: httpx.AsyncClient,
) -> None:
    issued = await issue(customer, scopes=["orders:read"], name="audited-shop")
    await customer.get("/v1/customers/C-audit", headers={"X-API-Key": ""})
    await customer.get("/v1/customers/C-audit", headers=key(issued["key"]))
    await customer.get("/v1/customers/C-audit-2", headers=key(issued["key"][:-6] + "forged"))

    async def entries() -> list[dict[str, Any]]:
        page = await customer.get("/v1/admin/audit", params={"limit": 200}, headers=ADMIN_HEADERS)
        assert page.status_code == 200, page.text
        items: list[dict[str, Any]] = page.json()["items"]
        return items

    def found(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        by_kind: dict[str, dict[str, Any]] = {}
        for item in items:
            if item["action"] == "POST /v1/admin/keys" and item["outcome"] == "allowed":
                by_kind.setdefault("issued", item)
            if item["target"] == {"customer_id": "C-audit"}:
                by_kind.setdefault(f"{item['status']}", item)
            if item["target"] == {"customer_id": "C-audit-2"}:
                by_kind.setdefault("forged", item)
        return by_kind

    async def all_three() -> dict[str, dict[str, Any]] | None:
        seen = found(await entries())
        return seen if {"issued", "401", "403", "forged"} <= seen.keys() else None

    seen = await eventually(all_three, timeout=10, what="the three audit records")
    assert seen["401"]["principal"] == "anonymous" and seen["401"]["outcome"] == "denied"
    assert seen["403"]["principal"] == f"key:{issued['record']['key_id']}"
    assert seen["forged"]["principal"] == f"key:{issued['record']['key_id']}:unverified"
    assert seen["403"]["action"] == "GET /v1/customers/{customer_id}"
    assert seen["issued"]["principal"] == "key:bootstrap"
    assert issued["key"] not in str(await entries()) and ADMIN_KEY not in str(await entries())
    denied = await customer.get("/v1/admin/audit", params={"outcome": "denied"}, headers=ADMIN_HEADERS)
    assert {item["outcome"] for item in denied.json()["items"]} == {"denied"}


async def test_a_key_over_its_rate_limit_gets_429_with_retry_after(customer: httpx.AsyncClient) -> None:
    issued = await issue(customer, scopes=["customers:read"], rate_limit="3/minute")
    answers = [await customer.get("/v1/auth/whoami", headers=key(issued["key"])) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert 1 <= int(answers[-1].headers["retry-after"]) <= 60
    assert answers[-1].headers["content-type"] == PROBLEM


async def test_keys_are_issued_only_with_known_scopes_and_event_types(customer: httpx.AsyncClient) -> None:
    for body in (
        {"scopes": ["everything"]},
        {"scopes": ["events:write"], "event_types": ["crm.order.exploded.v1"]},
        {"scopes": []},
        {"scopes": ["orders:read"], "expires_in_days": 10_000},
        {"scopes": ["orders:read"], "rate_limit": "fast"},
        {"scopes": ["orders:read"], "owner": "me"},
    ):
        answer = await customer.post("/v1/admin/keys", json={"name": "bad", **body}, headers=ADMIN_HEADERS)
        assert answer.status_code == 422, (body, answer.text)


async def test_a_body_that_is_not_json_is_refused_with_415(customer: httpx.AsyncClient) -> None:
    answer = await customer.post(
        "/v1/customers",
        content=b"name=Ada",
        headers={**ADMIN_HEADERS, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 415 and answer.headers["content-type"] == PROBLEM
    assert "application/json" in answer.json()["detail"]


async def test_a_read_only_key_cannot_write(customer: httpx.AsyncClient) -> None:
    issued = await issue(customer, scopes=["customers:read", "customers:write"], read_only=True)
    refused = await customer.post(
        "/v1/customers", json={"customer_id": "C-ro-1", "name": "Read Only"}, headers=key(issued["key"])
    )
    assert refused.status_code == 403 and "read-only" in refused.json()["detail"]
