"""Who may call support, and which complaints an agent sees and assigns, on the real database.

Every route's 401 and 403: tests/integration/shared/test_route_access.py. An agent sees and
assigns only the complaints of their groups and those assigned to them or their team, and any other
complaint answers as a missing one does. API keys and `records:all` see every complaint.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from crm_shared.events import ComplaintFiled, ComplaintFiledEvent
from crm_shared.security.keys import issue
from crm_shared.store import Store, outbox_records
from crm_support import repository
from crm_support.app import create_service

from helpers import ADMIN_HEADERS, bearer

NewStore = Callable[..., Awaitable[Store]]
PROBLEM = "application/problem+json"
JSON = {"Content-Type": "application/json"}
T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)


@pytest.fixture
async def store(new_store: NewStore) -> Store:
    return await new_store("support_access", repository.INDEXES)


@pytest.fixture
def app(store: Store) -> FastAPI:
    app = create_service()
    app.state.runtime.store = store
    return app


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client with no credential of its own: each request says who calls."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://support") as client:
        yield client


AGENT_A = bearer("agent-a", "tickets:read", "tickets:write", groups=["billing"])
AGENT_B = bearer("agent-b", "tickets:read", "tickets:write")
MANAGER_OF_B = bearer("lead-1", "tickets:read", "tickets:write", team=["agent-b"])
TECH = bearer("agent-t", "tickets:read", "tickets:write", groups=["tech"])
ALL_RECORDS = bearer("head-of-support", "tickets:read", "tickets:write", "records:all")


@dataclass(frozen=True)
class Complaints:
    """One customer's complaints, oldest first: the billing group's, agent B's (of the tech group), agent A's
    (of no group), and one routed to no group nor agent."""

    customer: str
    billing: str
    b: str
    a: str
    unrouted: str

    @property
    def all(self) -> list[str]:
        """Newest first, as the list gives them."""
        return [self.unrouted, self.a, self.b, self.billing]


def complaint_body(customer: str, complaint_id: str, **changes: Any) -> dict[str, Any]:
    return {
        "complaint_id": complaint_id,
        "customer_id": customer,
        "dimension": "service",
        "severity": "medium",
        "summary": "The invoice is wrong.",
        **changes,
    }


@pytest.fixture
async def complaints(http: httpx.AsyncClient) -> Complaints:
    customer = f"C-{uuid.uuid4().hex[:8]}"
    made = Complaints(customer, f"T-G-{customer}", f"T-B-{customer}", f"T-A-{customer}", f"T-U-{customer}")
    filings = [
        (made.billing, "billing", None),
        (made.b, "tech", "agent-b"),
        (made.a, None, "agent-a"),
        (made.unrouted, None, None),
    ]
    for i, (complaint_id, group, assignee) in enumerate(filings):
        data = ComplaintFiled.model_validate(complaint_body(customer, complaint_id, group=group))
        event = ComplaintFiledEvent.create(data, source="/channels/call-centre", time=T0 + timedelta(hours=i))
        filed = await http.post("/v1/events", content=event.to_bytes(), headers={**ADMIN_HEADERS, **JSON})
        assert filed.status_code == 202, filed.text
        if assignee:
            assignment = {"group": group, "assignee_id": assignee}
            put = await http.put(f"/v1/complaints/{complaint_id}/assignment", json=assignment, headers=ADMIN_HEADERS)
            assert put.status_code == 200, put.text
    return made


def not_found(complaint_id: str, path: str | None = None) -> dict[str, Any]:
    return {
        "type": "about:blank",
        "title": "Complaint not found",
        "status": 404,
        "detail": f"no complaint {complaint_id}",
        "instance": path or f"/v1/complaints/{complaint_id}",
    }


async def complaint_ids(http: httpx.AsyncClient, customer: str, headers: dict[str, str], **params: Any) -> list[str]:
    """Every complaint of the customer's list, page after page."""
    seen: list[str] = []
    cursor = None
    while True:
        answer = await http.get(
            f"/v1/customers/{customer}/complaints",
            params={**params, **({"cursor": cursor} if cursor else {})},
            headers=headers,
        )
        assert answer.status_code == 200, answer.text
        page = answer.json()
        seen += [c["complaint_id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen


async def test_a_complaint_is_filed_to_its_group_unassigned(http: httpx.AsyncClient, store: Store) -> None:
    customer = f"C-{uuid.uuid4().hex[:8]}"
    body = complaint_body(customer, f"T-1-{customer}", group="billing")

    filed = await http.post("/v1/complaints", json=body, headers=ADMIN_HEADERS)
    again = await http.post("/v1/complaints", json=body, headers=ADMIN_HEADERS)

    assert filed.status_code == 201, filed.text
    assert (filed.json()["group"], filed.json()["assignee_id"]) == ("billing", None)
    assert (again.status_code, again.json()) == (200, filed.json())
    [record, opened] = await outbox_records(store.db, {"key": customer})
    assert (record["type"], opened["type"]) == ("crm.complaint.filed.v1", "crm.ticket.opened.v1")
    assert json.loads(record["value"])["data"]["group"] == json.loads(opened["value"])["data"]["group"] == "billing"
    # A complaint filed without a group (the contract before groups) is routed to none.
    ungrouped = await http.post(
        "/v1/complaints", json=complaint_body(customer, f"T-2-{customer}"), headers=ADMIN_HEADERS
    )
    assert (ungrouped.status_code, ungrouped.json()["group"]) == (201, None)


async def test_agent_a_cannot_read_list_or_assign_agent_bs_complaint(
    http: httpx.AsyncClient, complaints: Complaints
) -> None:
    path = f"/v1/complaints/{complaints.b}/assignment"
    missing = await http.get("/v1/complaints/T-nobody-has", headers=AGENT_A)
    hidden = await http.get(f"/v1/complaints/{complaints.b}", headers=AGENT_A)
    taken = await http.put(path, json={"group": "billing", "assignee_id": "agent-a"}, headers=AGENT_A)

    assert missing.json() == not_found("T-nobody-has")
    assert (hidden.status_code, hidden.headers["content-type"], hidden.json()) == (
        404,
        PROBLEM,
        not_found(complaints.b),
    )
    assert (taken.status_code, taken.json()) == (404, not_found(complaints.b, path))
    unchanged = (await http.get(f"/v1/complaints/{complaints.b}", headers=AGENT_B)).json()
    assert (unchanged["group"], unchanged["assignee_id"]) == ("tech", "agent-b")
    # Agent A sees their group's complaint and the one assigned to them, on every page.
    assert await complaint_ids(http, complaints.customer, AGENT_A, limit=1) == [complaints.a, complaints.billing]
    assert await complaint_ids(http, complaints.customer, AGENT_B) == [complaints.b]


async def test_an_agent_takes_a_complaint_of_their_group_and_hands_it_to_another(
    http: httpx.AsyncClient, complaints: Complaints
) -> None:
    path = f"/v1/complaints/{complaints.billing}/assignment"

    taken = await http.put(path, json={"group": "billing", "assignee_id": "agent-a"}, headers=AGENT_A)
    assert taken.status_code == 200, taken.text
    assert (taken.json()["group"], taken.json()["assignee_id"]) == ("billing", "agent-a")
    assert (await http.get(f"/v1/complaints/{complaints.billing}", headers=AGENT_A)).json() == taken.json()

    handed = await http.put(path, json={"group": "tech", "assignee_id": None}, headers=AGENT_A)
    assert (handed.status_code, handed.json()["group"], handed.json()["assignee_id"]) == (200, "tech", None)
    assert (await http.get(f"/v1/complaints/{complaints.billing}", headers=AGENT_A)).status_code == 404
    assert await complaint_ids(http, complaints.customer, TECH) == [complaints.b, complaints.billing]


async def test_a_manager_sees_and_assigns_the_complaints_of_their_team(
    http: httpx.AsyncClient, complaints: Complaints
) -> None:
    assert await complaint_ids(http, complaints.customer, MANAGER_OF_B) == [complaints.b]
    assert (await http.get(f"/v1/complaints/{complaints.a}", headers=MANAGER_OF_B)).json() == not_found(complaints.a)
    moved = await http.put(
        f"/v1/complaints/{complaints.b}/assignment",
        json={"group": "tech", "assignee_id": "lead-1"},
        headers=MANAGER_OF_B,
    )
    assert (moved.status_code, moved.json()["assignee_id"]) == (200, "lead-1")
    refused = await http.put(
        f"/v1/complaints/{complaints.a}/assignment", json={"group": None, "assignee_id": "lead-1"}, headers=MANAGER_OF_B
    )
    assert refused.status_code == 404


async def test_a_group_member_sees_the_groups_complaints(http: httpx.AsyncClient, complaints: Complaints) -> None:
    assert await complaint_ids(http, complaints.customer, TECH, limit=1) == [complaints.b]
    assert (await http.get(f"/v1/complaints/{complaints.b}", headers=TECH)).status_code == 200
    for hidden in (complaints.billing, complaints.a, complaints.unrouted):
        assert (await http.get(f"/v1/complaints/{hidden}", headers=TECH)).json() == not_found(hidden)


async def test_an_api_key_and_records_all_see_every_complaint(
    app: FastAPI, http: httpx.AsyncClient, complaints: Complaints
) -> None:
    key, record = issue(
        name="crm-ui", scopes=["tickets:read"], event_types=None, read_only=True, rate_limit=None, expires_at=None
    )
    app.state.runtime.guard.keys.apply(record)
    reader = {"X-API-Key": key}

    for headers in (reader, ADMIN_HEADERS, ALL_RECORDS):
        assert await complaint_ids(http, complaints.customer, headers, limit=1) == complaints.all
        assert (await http.get(f"/v1/complaints/{complaints.unrouted}", headers=headers)).status_code == 200
    path = f"/v1/complaints/{complaints.unrouted}/assignment"
    assignment = {"group": "billing", "assignee_id": None}
    assert (await http.put(path, json=assignment, headers=reader)).status_code == 403
    assert (await http.put(path, json=assignment, headers=ALL_RECORDS)).status_code == 200
    assert await complaint_ids(http, complaints.customer, AGENT_A) == [
        complaints.unrouted,
        complaints.a,
        complaints.billing,
    ]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({}, "body.group"),
        ({"group": "billing"}, "body.assignee_id"),
        ({"group": "billing", "assignee_id": None, "severity": "low"}, "body.severity"),
        ({"group": 7, "assignee_id": None}, "body.group"),
        ({"group": "billing desk", "assignee_id": None}, "body.group"),
        ({"group": "g" * 129, "assignee_id": None}, "body.group"),
        ({"group": None, "assignee_id": "agent a"}, "body.assignee_id"),
        ({"group": {"$ne": None}, "assignee_id": None}, "body.group"),
    ],
)
async def test_an_assignment_is_strict(
    http: httpx.AsyncClient, complaints: Complaints, body: dict[str, Any], where: str
) -> None:
    refused = await http.put(f"/v1/complaints/{complaints.billing}/assignment", json=body, headers=AGENT_A)

    assert (refused.status_code, refused.headers["content-type"]) == (422, PROBLEM)
    assert where in refused.json()["detail"]
    complaint = (await http.get(f"/v1/complaints/{complaints.billing}", headers=AGENT_A)).json()
    assert (complaint["group"], complaint["assignee_id"]) == ("billing", None)


async def test_survey_answers_need_their_scope_only(http: httpx.AsyncClient) -> None:
    customer = f"C-{uuid.uuid4().hex[:8]}"
    answer = {"survey_id": f"S-{customer}", "customer_id": customer, "kind": "csat", "score": 4}

    recorded = await http.post("/v1/surveys", json=answer, headers=bearer("agent-a", "surveys:write"))
    page = await http.get(f"/v1/customers/{customer}/surveys", headers=bearer("analyst", "surveys:read"))

    assert recorded.status_code == 201, recorded.text
    assert [s["survey_id"] for s in page.json()["items"]] == [f"S-{customer}"]
