"""Satisfaction on the real database: resolving a ticket asks for a CSAT answer about it, the answer is linked to
the ticket's agent and category, and the report gives CSAT and NPS by agent, category, value tier and month."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from crm_shared.store import Store, outbox_records
from crm_support.app import INDEXES, create_service

from helpers import ADMIN_HEADERS

NewStore = Callable[..., Awaitable[Store]]


@pytest.fixture
async def support(new_store: NewStore) -> AsyncIterator[tuple[Store, httpx.AsyncClient]]:
    store = await new_store("support_satisfaction", INDEXES)
    app = create_service()
    app.state.runtime.store = store
    async with httpx.AsyncClient(
        headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://support"
    ) as http:
        yield store, http


def answer(customer: str, survey_id: str, kind: str, score: int, **more: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/channels/survey-tool",
        "type": "crm.survey.answered.v1",
        "time": datetime.now(UTC).isoformat(),
        "subject": customer,
        "data": {"customer_id": customer, "survey_id": survey_id, "kind": kind, "score": score, **more},
    }


async def test_a_resolved_ticket_asks_for_csat_and_the_report_counts_it_by_agent(
    support: tuple[Store, httpx.AsyncClient],
) -> None:
    store, http = support
    run = uuid.uuid4().hex[:8]
    customer, agent = f"C-{run}", f"agent-{run}"
    opened = await http.post(
        "/v1/tickets", json={"customer_id": customer, "subject": "Late", "channel": "web", "category": "people"}
    )
    ticket_id = opened.json()["ticket_id"]
    await http.patch(f"/v1/tickets/{ticket_id}", json={"assignee_id": agent})
    assert (await http.patch(f"/v1/tickets/{ticket_id}", json={"status": "resolved"})).status_code == 200

    requests = [
        json.loads(r["value"])["data"]
        for r in await outbox_records(store.db, {"type": "crm.survey.requested.v1", "key": customer})
    ]
    assert requests == [
        {
            "customer_id": customer,
            "survey_id": f"CSAT-{ticket_id}-1",
            "kind": "csat",
            "ticket_id": ticket_id,
            "agent_id": agent,
        }
    ]
    # The survey tool returns the answer with the survey and ticket it was asked for.
    answered = answer(customer, f"CSAT-{ticket_id}-1", "csat", 5, ticket_id=ticket_id, dimension="people")
    assert (await http.post("/v1/events", json=answered)).status_code == 202
    for score in (2, 4):
        other = answer(customer, f"S-{uuid.uuid4().hex[:6]}", "csat", score, agent_id=f"other-{run}")
        assert (await http.post("/v1/events", json=other)).status_code == 202
    for score in (10, 9, 3):
        nps = answer(customer, f"N-{uuid.uuid4().hex[:6]}", "nps", score)
        assert (await http.post("/v1/events", json=nps)).status_code == 202

    window = {
        "from": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
        "to": (datetime.now(UTC) + timedelta(minutes=1)).isoformat(),
    }
    by_agent = {
        r["key"]: r for r in (await http.get("/v1/reports/satisfaction", params={**window, "by": "agent"})).json()
    }
    assert (by_agent[agent]["csat_answers"], by_agent[agent]["csat_percent"]) == (1, 100.0)
    assert (by_agent[f"other-{run}"]["csat_answers"], by_agent[f"other-{run}"]["csat_percent"]) == (2, 50.0)
    month = datetime.now(UTC).strftime("%Y-%m")
    by_period = {r["key"]: r for r in (await http.get("/v1/reports/satisfaction", params={**window})).json()}
    assert by_period[month]["nps_answers"] >= 3
    by_category = {
        r["key"]: r for r in (await http.get("/v1/reports/satisfaction", params={**window, "by": "category"})).json()
    }
    assert by_category["people"]["csat_answers"] >= 1
    backwards = await http.get("/v1/reports/satisfaction", params={"from": window["to"], "to": window["from"]})
    assert backwards.status_code == 422


def test_csat_and_nps_arithmetic() -> None:
    from crm_support.reports import satisfaction

    at = datetime(2026, 11, 3, tzinfo=UTC)
    answers = [{"kind": "csat", "score": s, "answered_at": at, "agent_id": "a"} for s in (5, 4, 3, 1)] + [
        {"kind": "nps", "score": s, "answered_at": at, "agent_id": None} for s in (10, 9, 8, 6, 0)
    ]
    rows = satisfaction(answers, "agent")
    assert [(r.key, r.csat_answers, r.csat_percent, r.nps_answers, r.nps) for r in rows] == [
        ("a", 4, 50.0, 0, None),
        (None, 0, None, 5, 0.0),
    ]
    [month] = satisfaction(answers, "period")
    assert (month.key, month.csat_percent, month.nps) == ("2026-11", 50.0, 0.0)
