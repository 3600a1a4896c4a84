"""Support's REST API on the real database (the app without its broker: no lifespan)."""

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from crm_shared.events import ComplaintFiled, ComplaintFiledEvent
from crm_shared.store import Store, outbox_records
from crm_support import repository
from crm_support.app import create_service

from helpers import ADMIN_HEADERS

NewStore = Callable[..., Awaitable[Store]]
PROBLEM = "application/problem+json"


def customer_id() -> str:
    return f"C-{uuid.uuid4().hex[:8]}"


def complaint(customer: str, complaint_id: str = "T-77", **changes: Any) -> dict[str, Any]:
    return {
        "complaint_id": f"{complaint_id}-{customer}",
        "customer_id": customer,
        "dimension": "service",
        "severity": "high",
        "summary": "The engineer did not come.",
        **changes,
    }


@pytest.fixture
async def store(new_store: NewStore) -> Store:
    return await new_store("support_api", repository.INDEXES)


@pytest.fixture
async def http(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    app = create_service()
    app.state.runtime.store = store
    async with httpx.AsyncClient(
        headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://support"
    ) as client:
        yield client


async def test_filing_a_complaint_answers_201_then_200_then_409(http: httpx.AsyncClient, store: Store) -> None:
    customer = customer_id()
    before = datetime.now(UTC)

    created = await http.post("/v1/complaints", json=complaint(customer))
    assert created.status_code == 201, created.text
    view = created.json()
    filed_at = datetime.fromisoformat(view["filed_at"])
    assert before - timedelta(milliseconds=1) <= filed_at <= datetime.now(UTC)
    assert datetime.fromisoformat(view["sla_due_at"]) - filed_at == timedelta(hours=4)
    assert (view["status"], view["sla_state"], view["order_id"], view["channel"]) == (
        "open",
        "within",
        None,
        "call_centre",
    )

    same = await http.post("/v1/complaints", json=complaint(customer))
    assert (same.status_code, same.json()) == (200, view)
    assert (await http.get(f"/v1/complaints/T-77-{customer}")).json() == view

    conflict = await http.post("/v1/complaints", json=complaint(customer, severity="low"))
    assert conflict.status_code == 409
    assert conflict.headers["content-type"] == PROBLEM
    assert conflict.json()["detail"] == f"complaint T-77-{customer} was already filed with different content"
    published = [r["type"] for r in await outbox_records(store.db, {"key": customer})]
    assert published == ["crm.complaint.filed.v1", "crm.ticket.opened.v1"]


async def test_an_idempotency_key_is_applied_once_and_refused_for_another_complaint(http: httpx.AsyncClient) -> None:
    customer = customer_id()
    headers = {"Idempotency-Key": f"key-{customer}"}

    first = await http.post("/v1/complaints", json=complaint(customer), headers=headers)
    repeat = await http.post("/v1/complaints", json=complaint(customer), headers=headers)
    other = await http.post("/v1/complaints", json=complaint(customer, "T-78"), headers=headers)

    assert (first.status_code, repeat.status_code) == (201, 200)
    assert repeat.json() == first.json()
    assert other.status_code == 409 and other.headers["content-type"] == PROBLEM
    assert other.json()["title"] == "Idempotency-Key reused"
    assert (await http.get(f"/v1/complaints/T-78-{customer}")).status_code == 404


async def test_surveys_follow_the_same_rules_and_an_out_of_scale_score_is_a_problem(http: httpx.AsyncClient) -> None:
    customer = customer_id()
    answer = {"survey_id": f"S-{customer}", "customer_id": customer, "kind": "csat", "score": 2}

    created = await http.post("/v1/surveys", json=answer)
    same = await http.post("/v1/surveys", json=answer)
    conflict = await http.post("/v1/surveys", json={**answer, "score": 4})
    invalid = await http.post("/v1/surveys", json={**answer, "survey_id": "S-other", "score": 9})

    assert (created.status_code, same.status_code, conflict.status_code) == (201, 200, 409)
    assert created.json()["score"] == 2 and same.json() == created.json()
    assert invalid.status_code == 422 and invalid.headers["content-type"] == PROBLEM
    assert "a csat score must be between 1 and 5, got 9" in invalid.json()["detail"]
    page = (await http.get(f"/v1/customers/{customer}/surveys")).json()
    assert [(s["survey_id"], s["score"]) for s in page["items"]] == [(f"S-{customer}", 2)]
    assert page["next_cursor"] is None


async def test_an_unknown_complaint_is_a_404_problem(http: httpx.AsyncClient) -> None:
    missing = await http.get("/v1/complaints/T-nope")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == PROBLEM
    assert missing.json()["detail"] == "no complaint T-nope"


async def test_a_ticket_event_is_applied_then_duplicate_then_conflicting(http: httpx.AsyncClient) -> None:
    customer = customer_id()
    at = datetime(2026, 1, 5, 8, tzinfo=UTC)
    data = ComplaintFiled.model_validate(complaint(customer, severity="low"))
    event = ComplaintFiledEvent.create(data, source="/channels/call-centre", time=at)
    body = event.model_dump(mode="json")

    applied = await http.post("/v1/events", json=body)
    duplicate = await http.post("/v1/events", json=body)
    other = ComplaintFiledEvent.create(data.model_copy(update={"summary": "Other."}), source="/x", time=at)
    conflicting = await http.post("/v1/events", json=other.model_dump(mode="json"))

    assert (applied.status_code, applied.json()) == (202, {"id": event.id, "status": "applied"})
    assert (duplicate.status_code, duplicate.json()["status"]) == (202, "duplicate")
    assert conflicting.status_code == 409 and conflicting.headers["content-type"] == PROBLEM
    view = (await http.get(f"/v1/complaints/T-77-{customer}")).json()
    assert datetime.fromisoformat(view["sla_due_at"]) == at + timedelta(hours=72)
    assert view["sla_state"] == "breached"


async def test_a_customers_complaints_page_newest_first_with_a_cursor(http: httpx.AsyncClient) -> None:
    customer = customer_id()
    start = datetime(2026, 3, 1, tzinfo=UTC)
    # Two complaints share a time, so the cursor must also order by id.
    times = [start, start + timedelta(hours=1), start + timedelta(hours=1), start + timedelta(hours=2)]
    for i, at in enumerate(times):
        data = ComplaintFiled.model_validate(complaint(customer, f"T-{i}"))
        event = ComplaintFiledEvent.create(data, source="/channels/call-centre", time=at)
        assert (await http.post("/v1/events", json=event.model_dump(mode="json"))).status_code == 202
    someone_else = ComplaintFiled.model_validate(complaint(customer_id()))
    await http.post("/v1/events", json=ComplaintFiledEvent.create(someone_else, source="/x").model_dump(mode="json"))

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = await http.get(f"/v1/customers/{customer}/complaints", params=params)
        assert page.status_code == 200, page.text
        seen += [c["complaint_id"] for c in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"T-{i}-{customer}" for i in (3, 2, 1, 0)]

    bad = await http.get(f"/v1/customers/{customer}/complaints", params={"cursor": "bm90LWpzb24="})
    assert bad.status_code == 400 and bad.headers["content-type"] == PROBLEM
