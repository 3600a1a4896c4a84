"""The ticket queue on the real database: `GET /v1/tickets?sort=sla_due` lists the tickets still being worked by
what is due next (stored at every change: a reply, a pause and a resume move it), those with nothing due last,
paged by its cursor across both, filtered by several statuses and priorities; a ticket stored before the field
lists as nothing due until the backfill gives it its due time."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from crm_shared.store import Store
from crm_support import repository
from crm_support.app import create_service
from crm_support.sla import repository as sla_repository
from crm_support.tickets import handlers
from crm_support.tickets import repository as tickets_repository

from helpers import ADMIN_HEADERS, bearer

NewStore = Callable[..., Awaitable[Store]]
H = timedelta(hours=1)
OPEN = [("status", "new"), ("status", "open"), ("status", "pending")]
# Calendar hours, so every due time is an exact figure from the ticket's own times.
POLICIES = {
    "queue-urgent": {
        "name": "Urgent on the web",
        "order": 0,
        "conditions": {"channels": ["web"], "priorities": ["urgent"]},
        "targets": {
            "first_response": {"hours": 1, "business_hours": False},
            "resolution": {"hours": 8, "business_hours": False},
        },
    },
    "queue-web": {
        "name": "The web",
        "order": 1,
        "conditions": {"channels": ["web"]},
        "targets": {
            "first_response": {"hours": 4, "business_hours": False},
            "resolution": {"hours": 24, "business_hours": False},
        },
    },
}


@pytest.fixture
async def support(new_store: NewStore) -> AsyncIterator[tuple[Store, httpx.AsyncClient]]:
    store = await new_store(
        "support_queue", (*repository.INDEXES, *sla_repository.INDEXES, *tickets_repository.INDEXES)
    )
    app = create_service()
    app.state.runtime.store = store
    async with httpx.AsyncClient(
        headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://support"
    ) as http:
        for policy_id, policy in POLICIES.items():
            assert (await http.put(f"/v1/sla/policies/{policy_id}", json=policy)).status_code in (200, 201)
        yield store, http


def at(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


async def listed(http: httpx.AsyncClient, *params: tuple[str, str], **headers: str) -> list[dict[str, Any]]:
    """Every page of the listing, following its cursor."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page_params = [*params, *([("cursor", cursor)] if cursor else [])]
        answer = await http.get("/v1/tickets", params=page_params, headers=headers)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


async def test_the_queue_lists_what_is_due_first_pages_across_and_follows_replies_pauses_and_resumes(
    support: tuple[Store, httpx.AsyncClient],
) -> None:
    store, http = support
    group = f"queue-{uuid.uuid4().hex[:8]}"
    tickets: dict[str, dict[str, Any]] = {}
    for name, channel, priority in (
        ("A", "web", "normal"),
        ("B", "web", "urgent"),
        ("C", "post", "normal"),  # no policy matches
        ("D", "web", "normal"),  # resolved below: not in the queue
        ("E", "web", "urgent"),  # answered below: resolution is next
        ("F", "web", "normal"),  # answered, then pending: nothing counts
    ):
        body = {"customer_id": f"C-{group}", "subject": f"Ticket {name}", "channel": channel, "priority": priority}
        opened = await http.post("/v1/tickets", json={**body, "group": group})
        assert opened.status_code == 201, opened.text
        tickets[name] = opened.json()
    ids = {name: t["ticket_id"] for name, t in tickets.items()}
    created = {name: at(t["created_at"]) for name, t in tickets.items()}
    assert tickets["B"]["sla_due_at"] is not None and at(tickets["B"]["sla_due_at"]) == created["B"] + H
    assert (await http.patch(f"/v1/tickets/{ids['D']}", json={"status": "resolved"})).status_code == 200
    for name in ("E", "F"):
        assert (await http.post(f"/v1/tickets/{ids[name]}/posts", json={"body": "On it."})).status_code == 201
    assert (await http.patch(f"/v1/tickets/{ids['F']}", json={"status": "pending"})).status_code == 200

    queue = await listed(http, *OPEN, ("group", group), ("sort", "sla_due"))
    assert [t["ticket_id"] for t in queue] == [ids[n] for n in ("B", "A", "E", "C", "F")]
    due = {t["ticket_id"]: (at(t["sla_due_at"]), t["sla_next"]) for t in queue}
    assert due[ids["B"]][0] == created["B"] + H
    assert due[ids["A"]][0] == created["A"] + 4 * H
    assert due[ids["E"]][0] == created["E"] + 8 * H
    assert due[ids["C"]] == (None, None) and due[ids["F"]] == (None, None)
    assert [(due[ids[n]][1]["kind"], due[ids[n]][1]["status"]) for n in ("B", "A", "E")] == [
        ("first_response", "running"),
        ("first_response", "running"),
        ("resolution", "running"),
    ]
    # The stored due time is the one the read of the ticket computes now.
    whole = (await http.get(f"/v1/tickets/{ids['B']}")).json()
    first = next(t for t in whole["timers"] if t["kind"] == "first_response")
    assert (at(first["due_at"]), at(whole["sla_due_at"])) == (due[ids["B"]][0], due[ids["B"]][0])

    # Pages of 2 and of 3 (one ending where the tickets with something due end) give the same queue.
    for limit in ("2", "3"):
        paged = await listed(http, *OPEN, ("group", group), ("sort", "sla_due"), ("limit", limit))
        assert [t["ticket_id"] for t in paged] == [t["ticket_id"] for t in queue]
    first_page = (
        await http.get("/v1/tickets", params=[*OPEN, ("group", group), ("sort", "sla_due"), ("limit", "3")])
    ).json()
    assert len(first_page["items"]) == 3 and first_page["next_cursor"] is not None

    urgent = await listed(http, *OPEN, ("group", group), ("sort", "sla_due"), ("priority", "urgent"))
    assert [t["ticket_id"] for t in urgent] == [ids["B"], ids["E"]]
    both = await listed(http, *OPEN, ("group", group), ("priority", "urgent"), ("priority", "normal"))
    assert [t["ticket_id"] for t in both] == [ids[n] for n in ("F", "E", "C", "B", "A")]  # newest first
    new = await listed(http, ("status", "new"), ("group", group), ("sort", "sla_due"))
    assert [t["ticket_id"] for t in new] == [ids[n] for n in ("B", "A", "C")]
    # An agent of the group sees the same queue (the group's access rule joins the filters).
    agent = {"X-API-Key": "", **bearer("agent-9", "tickets:read", groups=[group])}
    assert [t["ticket_id"] for t in await listed(http, *OPEN, ("sort", "sla_due"), **agent)] == [
        t["ticket_id"] for t in queue
    ]

    # F resumes: its resolution counts again, due later by the time it was pending; and B is answered.
    assert (await http.patch(f"/v1/tickets/{ids['F']}", json={"status": "open"})).status_code == 200
    assert (await http.post(f"/v1/tickets/{ids['B']}/posts", json={"body": "On it."})).status_code == 201
    history = (await http.get(f"/v1/tickets/{ids['F']}")).json()
    moves = {c["detail"]["to"]: at(c["at"]) for c in history["history"] if c["action"] == "status_changed"}
    paused = moves["open"] - moves["pending"]
    assert paused > timedelta(0)
    resolution = next(t for t in history["timers"] if t["kind"] == "resolution")
    expected_f = created["F"] + 24 * H + paused
    assert at(resolution["due_at"]) == expected_f == at(history["sla_due_at"])
    queue = await listed(http, *OPEN, ("group", group), ("sort", "sla_due"))
    assert [t["ticket_id"] for t in queue] == [ids[n] for n in ("A", "B", "E", "F", "C")]
    assert [at(t["sla_due_at"]) for t in queue[:4]] == [
        created["A"] + 4 * H,
        created["B"] + 8 * H,
        created["E"] + 8 * H,
        expected_f,
    ]

    # A ticket stored before the field lists with nothing due, last; the backfill gives it its due time back.
    await store.db[tickets_repository.TICKETS].update_one(
        {"_id": ids["A"]}, {"$unset": {"sla_due_at": "", "sla_due": ""}}
    )
    older = await listed(http, *OPEN, ("group", group), ("sort", "sla_due"))
    assert [t["ticket_id"] for t in older] == [ids[n] for n in ("B", "E", "F", "A", "C")]
    assert older[3]["sla_due_at"] is None and older[3]["sla_next"] is None
    assert await handlers.backfill_sla_due(store) == 1
    assert await handlers.backfill_sla_due(store) == 0
    again = await listed(http, *OPEN, ("group", group), ("sort", "sla_due"))
    assert [t["ticket_id"] for t in again] == [t["ticket_id"] for t in queue]
    assert at(again[0]["sla_due_at"]) == created["A"] + 4 * H


async def test_a_cursor_pages_only_the_order_it_came_from(support: tuple[Store, httpx.AsyncClient]) -> None:
    _, http = support
    group = f"queue-{uuid.uuid4().hex[:8]}"
    for n in range(2):
        body = {"customer_id": f"C-{group}", "subject": f"T{n}", "channel": "web", "group": group}
        assert (await http.post("/v1/tickets", json=body)).status_code == 201
    newest = (await http.get("/v1/tickets", params={"group": group, "limit": 1})).json()["next_cursor"]
    by_due = (await http.get("/v1/tickets", params={"group": group, "limit": 1, "sort": "sla_due"})).json()
    assert newest is not None and by_due["next_cursor"] is not None
    crossed = await http.get("/v1/tickets", params={"group": group, "sort": "sla_due", "cursor": newest})
    back = await http.get("/v1/tickets", params={"group": group, "cursor": by_due["next_cursor"]})
    assert (crossed.status_code, back.status_code) == (400, 400)
    assert "sla_due" in crossed.json()["detail"] and "sla_due" in back.json()["detail"]
    unknown = await http.get("/v1/tickets", params={"group": group, "sort": "due", "priority": "huge"})
    assert unknown.status_code == 422
