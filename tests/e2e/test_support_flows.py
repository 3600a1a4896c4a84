"""Tickets across the real services: every change of a ticket reaches the customer's 360 timeline, scoring and
marketing, which do not use tickets' lifecycle, ignore those events instead of dead-lettering them, and the CSAT
answer about a resolved ticket reaches scoring's satisfaction."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from crm_shared.platform import Platform
from crm_shared.topics import Topic

from helpers import TopicReader, eventually

Publish = Callable[[str, Any, str], Awaitable[None]]


def cloud_event(type_: str, customer_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """A CloudEvent as a channel system writes it: plain JSON."""
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/channels/survey-tool",
        "type": type_,
        "time": datetime.now(UTC).isoformat(),
        "subject": customer_id,
        "data": {"customer_id": customer_id, **data},
    }


async def test_a_tickets_changes_reach_the_timeline_and_nobody_dead_letters_them(
    platform: Platform, http: httpx.AsyncClient, backend: Any
) -> None:
    support, customer = platform.url("support"), f"C-tk-{uuid.uuid4().hex[:8]}"
    opened = await http.post(
        f"{support}/v1/tickets",
        json={"customer_id": customer, "subject": "Where is my order?", "channel": "web", "category": "service"},
    )
    assert opened.status_code == 201, opened.text
    ticket_id = opened.json()["ticket_id"]
    replied = await http.post(f"{support}/v1/tickets/{ticket_id}/posts", json={"body": "It ships tomorrow."})
    assert replied.status_code == 201, replied.text
    resolved = await http.patch(f"{support}/v1/tickets/{ticket_id}", json={"status": "resolved"})
    assert resolved.status_code == 200, resolved.text

    async def on_the_timeline() -> list[str]:
        answer = await http.get(f"{platform.url('customer')}/v1/customers/{customer}/timeline?limit=50&order=oldest")
        summaries = [e["summary"] for e in answer.json()["items"]] if answer.status_code == 200 else []
        return summaries if len(summaries) >= 5 else []

    summaries = await eventually(on_the_timeline, what="the ticket's changes on the customer's timeline")
    # The reply and the opening it caused happened at one instant: the timeline orders those two by id.
    assert summaries[0] == f"Ticket {ticket_id} opened: request, normal priority, via web"
    assert sorted(summaries[1:3]) == sorted([f"Agent replied on ticket {ticket_id}", f"Ticket {ticket_id} new → open"])
    # Resolved, and a CSAT answer about it asked for, at one instant too.
    assert sorted(summaries[3:]) == sorted(
        [f"Ticket {ticket_id} open → resolved", f"CSAT survey CSAT-{ticket_id}-1 requested about ticket {ticket_id}"]
    )
    async with TopicReader(backend.kafka_bootstrap, Topic.DEADLETTER) as reader:
        letters = [r for r in await reader.drain() if r.key == customer.encode()]
    assert letters == [], [r.value[:300] for r in letters]


async def test_a_csat_answer_about_a_resolved_ticket_reaches_scorings_satisfaction(
    platform: Platform, http: httpx.AsyncClient, publish: Publish
) -> None:
    support, scoring = platform.url("support"), platform.url("scoring")
    customer = f"C-csat-{uuid.uuid4().hex[:8]}"
    placed = {"order_id": f"O-{customer}", "currency": "EUR", "total": "120.00"}
    await publish(Topic.INGEST_ORDERS, cloud_event("crm.order.placed.v1", customer, placed), customer)

    async def scored() -> Any:
        answer = await http.get(f"{scoring}/v1/customers/{customer}/scores")
        return answer.json() if answer.status_code == 200 else None

    before = await eventually(scored, what="the customer's scores after their order")
    opened = await http.post(
        f"{support}/v1/tickets",
        json={"customer_id": customer, "subject": "Rude courier", "channel": "phone", "category": "people"},
    )
    assert opened.status_code == 201, opened.text
    ticket_id = opened.json()["ticket_id"]
    resolved = await http.patch(f"{support}/v1/tickets/{ticket_id}", json={"status": "resolved"})
    assert resolved.status_code == 200, resolved.text

    # The survey tool answers the CSAT request on the ingest topic, as a channel system does.
    answer = cloud_event(
        "crm.survey.answered.v1",
        customer,
        {
            "survey_id": f"CSAT-{ticket_id}-1",
            "kind": "csat",
            "score": 1,
            "ticket_id": ticket_id,
            "dimension": "people",
        },
    )
    await publish(Topic.INGEST_TICKETS, answer, customer)

    async def unhappy() -> Any:
        scores = await scored()
        return scores if scores and scores["satisfaction"] is not None and scores["satisfaction"] < 0.5 else None

    after = await eventually(unhappy, what="scoring's satisfaction after a CSAT of 1")
    assert before["satisfaction"] is None or after["satisfaction"] < before["satisfaction"]
    stored = await http.get(f"{support}/v1/customers/{customer}/surveys")
    assert [(s["survey_id"], s["score"]) for s in stored.json()["items"]] == [(f"CSAT-{ticket_id}-1", 1)]
