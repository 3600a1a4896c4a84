"""Tickets on the real database: opened once per Idempotency-Key under the policy their facts pick, worked
through their lifecycle by replies and status changes (each change published once), read with their SLA timers,
seen only by the agents of their group; a complaint filed opens its ticket."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from crm_shared.store import Store, outbox_records
from crm_support import repository
from crm_support.app import create_service
from crm_support.sla import repository as sla_repository
from crm_support.tickets import repository as tickets_repository

from helpers import ADMIN_HEADERS, bearer

NewStore = Callable[..., Awaitable[Store]]
PROBLEM = "application/problem+json"


@pytest.fixture
async def support(new_store: NewStore) -> AsyncIterator[tuple[Store, httpx.AsyncClient]]:
    store = await new_store(
        "support_tickets", (*repository.INDEXES, *sla_repository.INDEXES, *tickets_repository.INDEXES)
    )
    app = create_service()
    app.state.runtime.store = store
    async with httpx.AsyncClient(
        headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://support"
    ) as http:
        yield store, http


def agent(subject: str, *groups: str) -> dict[str, str]:
    return {"X-API-Key": "", **bearer(subject, "tickets:read", "tickets:write", groups=list(groups))}


async def published(store: Store, ticket_id: str) -> list[tuple[str, dict[str, Any]]]:
    records = await outbox_records(store.db, {"topic": "crm.support.events"})
    events = [(r["type"], json.loads(r["value"])["data"]) for r in records]
    return [(kind, data) for kind, data in events if data.get("ticket_id") == ticket_id]


async def test_a_ticket_is_opened_once_worked_through_its_lifecycle_and_each_change_published_once(
    support: tuple[Store, httpx.AsyncClient],
) -> None:
    store, http = support
    run = uuid.uuid4().hex[:8]
    policy = {
        "name": "Every hour counts",
        "order": 1,
        "conditions": {"channels": ["email"]},
        "targets": {
            "first_response": {"hours": 2, "business_hours": False},
            "resolution": {"hours": 24, "business_hours": False},
        },
    }
    assert (await http.put(f"/v1/sla/policies/email-{run}", json=policy)).status_code in (200, 201)
    body = {
        "customer_id": f"C-{run}",
        "subject": "Panel cracked",
        "description": "The panel arrived cracked.",
        "channel": "email",
        "category": "product",
        "group": f"returns-{run}",
    }
    key = {"Idempotency-Key": f"open-{run}"}
    first = await http.post("/v1/tickets", json=body, headers=key)
    assert first.status_code == 201, first.text
    again = await http.post("/v1/tickets", json=body, headers=key)
    assert (again.status_code, again.json()["ticket_id"]) == (200, first.json()["ticket_id"])
    other = await http.post("/v1/tickets", json={**body, "subject": "Something else"}, headers=key)
    assert other.status_code == 409
    ticket = first.json()
    ticket_id = ticket["ticket_id"]
    assert (ticket["status"], ticket["sla_policy_id"], ticket["priority"]) == ("new", f"email-{run}", "normal")

    mine, stranger = agent("agent-1", f"returns-{run}"), agent("agent-2", "billing")
    assert (await http.get(f"/v1/tickets/{ticket_id}", headers=stranger)).status_code == 404
    replied = await http.post(
        f"/v1/tickets/{ticket_id}/posts",
        json={"body": "A new panel ships today."},
        headers={**mine, "Idempotency-Key": f"reply-{run}"},
    )
    assert (replied.status_code, replied.json()["status"]) == (201, "open")
    note = await http.post(
        f"/v1/tickets/{ticket_id}/posts", json={"body": "Check the courier.", "public": False}, headers=mine
    )
    assert note.json()["status"] == "open"
    assert (await http.patch(f"/v1/tickets/{ticket_id}", json={"status": "pending"}, headers=mine)).status_code == 200

    read = (await http.get(f"/v1/tickets/{ticket_id}", headers=mine)).json()
    timers = {t["kind"]: t for t in read["timers"]}
    assert timers["first_response"]["status"] == "met"
    assert timers["resolution"]["status"] == "paused" and timers["resolution"]["due_at"] is None
    assert [p["author"] for p in read["posts"]] == ["customer", "agent", "agent"]
    assert [p["public"] for p in read["posts"]] == [True, True, False]

    assert (await http.patch(f"/v1/tickets/{ticket_id}", json={"status": "resolved"}, headers=mine)).status_code == 200
    # The customer writes back through the channel: the ticket is open again.
    back = await http.post(
        f"/v1/tickets/{ticket_id}/posts", json={"body": "Still cracked.", "from_customer": True}, headers=ADMIN_HEADERS
    )
    assert back.json()["status"] == "open"
    closed = await http.patch(f"/v1/tickets/{ticket_id}", json={"status": "closed"}, headers=mine)
    refused = await http.patch(f"/v1/tickets/{ticket_id}", json={"status": "pending"}, headers=mine)
    assert closed.status_code == 200 and refused.status_code == 409
    assert refused.headers["content-type"] == PROBLEM and refused.json()["allowed_statuses"] == ["open"]
    assigned = await http.patch(f"/v1/tickets/{ticket_id}", json={"assignee_id": "agent-1"}, headers=mine)
    assert (assigned.json()["assignee_id"], assigned.json()["group"]) == ("agent-1", f"returns-{run}")

    events = await published(store, ticket_id)
    assert [kind for kind, _ in events] == [
        "crm.ticket.opened.v1",
        "crm.ticket.replied.v1",
        "crm.ticket.status_changed.v1",
        "crm.ticket.replied.v1",
        "crm.ticket.status_changed.v1",
        "crm.ticket.status_changed.v1",
        "crm.survey.requested.v1",  # resolved: a CSAT answer about it is asked for
        "crm.ticket.replied.v1",
        "crm.ticket.status_changed.v1",
        "crm.ticket.status_changed.v1",
        "crm.ticket.assigned.v1",
    ]
    changes = [(d["old"], d["new"], d["reopened"]) for kind, d in events if kind == "crm.ticket.status_changed.v1"]
    assert changes == [
        ("new", "open", False),
        ("open", "pending", False),
        ("pending", "resolved", False),
        ("resolved", "open", True),
        ("open", "closed", False),
    ]
    assert all("cracked" not in json.dumps(data) for _, data in events)  # the conversation stays in support


async def test_a_complaint_filed_opens_its_ticket(support: tuple[Store, httpx.AsyncClient]) -> None:
    _, http = support
    customer = f"C-{uuid.uuid4().hex[:8]}"
    complaint = {
        "complaint_id": f"T-{customer}",
        "customer_id": customer,
        "dimension": "service",
        "severity": "high",
        "summary": "The engineer did not come.",
        "group": "field",
    }
    assert (await http.post("/v1/complaints", json=complaint)).status_code == 201
    ticket = (await http.get(f"/v1/tickets/T-{customer}")).json()
    assert (ticket["kind"], ticket["priority"], ticket["category"], ticket["group"], ticket["status"]) == (
        "complaint",
        "high",
        "service",
        "field",
        "new",
    )
    assert [p["body"] for p in ticket["posts"]] == ["The engineer did not come."]
    listed = (await http.get("/v1/tickets", params={"customer_id": customer})).json()["items"]
    assert [t["ticket_id"] for t in listed] == [f"T-{customer}"]
    assert (await http.get("/v1/tickets", params={"status": "closed", "customer_id": customer})).json()["items"] == []
