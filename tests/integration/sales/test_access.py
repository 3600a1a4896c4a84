"""Who may call sales, and which leads a person sees and changes, on the real database.

Every route's 401 and 403: tests/integration/shared/test_route_access.py. A person sees and
changes only the leads they or their team own and those of their territories, and any other lead
answers as a missing one does. API keys and `records:all` see every lead.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from crm_sales.app import INDEXES, create_service
from crm_sales.leads import handlers
from crm_shared.events import LeadQualified, LeadQualifiedEvent
from crm_shared.security.keys import issue
from crm_shared.store import Store

from helpers import ADMIN_HEADERS, bearer

NewStore = Callable[..., Awaitable[Store]]
PROBLEM = "application/problem+json"
JSON = {"Content-Type": "application/json"}
T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)


@pytest.fixture
async def store(new_store: NewStore) -> Store:
    return await new_store("sales_access", INDEXES)


@pytest.fixture
def app(store: Store) -> FastAPI:
    app = create_service()
    app.state.runtime.store = store
    return app


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client with no credential of its own: each request says who calls."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sales") as client:
        yield client


@dataclass(frozen=True)
class Leads:
    """Four customers' leads (one lead per customer: a second one would be a duplicate): rep A's, rep B's (in
    the south), rep C's (in the north), and one not assigned."""

    customer: str
    a: str
    b: str
    north: str
    unassigned: str

    def customer_of(self, lead_id: str) -> str:
        return f"{self.customer}-{lead_id[2]}"

    @property
    def all(self) -> list[str]:
        """Newest first, as the lists give them."""
        return [self.unassigned, self.north, self.b, self.a]


def person(subject: str, *scopes: str, **claims: Any) -> dict[str, str]:
    return bearer(subject, *(scopes or ("leads:read", "leads:write")), **claims)


REP_A = person("rep-a")
REP_B = person("rep-b")
MANAGER_OF_A = person("manager-1", team=["rep-a"])
SOUTH = person("rep-s", territories=["south"])
ALL_RECORDS = person("director", "leads:read", "leads:write", "records:all")


async def lead_ids(http: httpx.AsyncClient, path: str, headers: dict[str, str], **params: Any) -> list[str]:
    """Every lead of a list, page after page."""
    seen: list[str] = []
    cursor = None
    while True:
        answer = await http.get(path, params={**params, **({"cursor": cursor} if cursor else {})}, headers=headers)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        seen += [lead["lead_id"] for lead in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen


@pytest.fixture
async def leads(store: Store, http: httpx.AsyncClient) -> Leads:
    customer = f"C-{uuid.uuid4().hex[:8]}"
    made = Leads(customer, f"L-A-{customer}", f"L-B-{customer}", f"L-N-{customer}", f"L-U-{customer}")
    assignments = [
        (made.a, {"owner_id": "rep-a"}),
        (made.b, {"owner_id": "rep-b", "territory": "south"}),
        (made.north, {"owner_id": "rep-c", "territory": "north"}),
        (made.unassigned, None),
    ]
    for i, (lead_id, assignment) in enumerate(assignments):
        lead = LeadQualified(
            customer_id=made.customer_of(lead_id), lead_id=lead_id, segment_id="hot", reason="Hot prospects"
        )
        await handlers.apply_marketing_event(
            store, LeadQualifiedEvent.create(lead, source="/m", time=T0 + timedelta(i))
        )
        if assignment:
            assigned = await http.patch(f"/v1/leads/{lead_id}", json=assignment, headers=ADMIN_HEADERS)
            assert assigned.status_code == 200, assigned.text
    return made


def not_found(lead_id: str) -> dict[str, Any]:
    return {
        "type": "about:blank",
        "title": "Lead not found",
        "status": 404,
        "detail": f"no lead {lead_id}",
        "instance": f"/v1/leads/{lead_id}",
    }


async def test_a_lead_from_marketing_is_unassigned_and_only_those_who_see_every_lead_see_it(
    http: httpx.AsyncClient, leads: Leads
) -> None:
    lead = (await http.get(f"/v1/leads/{leads.unassigned}", headers=ADMIN_HEADERS)).json()
    assert (lead["owner_id"], lead["territory"], lead["status"]) == (None, None, "new")
    for headers in (REP_A, MANAGER_OF_A, SOUTH):
        assert (await http.get(f"/v1/leads/{leads.unassigned}", headers=headers)).status_code == 404


async def test_rep_a_cannot_read_list_or_change_rep_bs_lead(http: httpx.AsyncClient, leads: Leads) -> None:
    missing = await http.get("/v1/leads/L-nobody-has", headers=REP_A)
    hidden = await http.get(f"/v1/leads/{leads.b}", headers=REP_A)
    changed = await http.patch(f"/v1/leads/{leads.b}", json={"owner_id": "rep-a"}, headers=REP_A)

    assert missing.json() == not_found("L-nobody-has")
    for answer in (hidden, changed):
        assert (answer.status_code, answer.headers["content-type"]) == (404, PROBLEM)
        assert answer.json() == not_found(leads.b)
    assert (await http.get(f"/v1/leads/{leads.b}", headers=REP_B)).json()["owner_id"] == "rep-b"
    assert await lead_ids(http, "/v1/leads", REP_A) == [leads.a]
    assert await lead_ids(http, f"/v1/customers/{leads.customer_of(leads.a)}/leads", REP_A, limit=1) == [leads.a]
    assert await lead_ids(http, f"/v1/customers/{leads.customer_of(leads.b)}/leads", REP_A) == []
    assert await lead_ids(http, "/v1/leads", REP_B, limit=1) == [leads.b]


async def test_a_rep_assigns_and_progresses_their_own_lead(http: httpx.AsyncClient, leads: Leads) -> None:
    changed = await http.patch(f"/v1/leads/{leads.a}", json={"territory": "north", "status": "new"}, headers=REP_A)

    assert changed.status_code == 200, changed.text
    assert (changed.json()["owner_id"], changed.json()["territory"], changed.json()["status"]) == (
        "rep-a",
        "north",
        "new",
    )
    assert (await http.get(f"/v1/leads/{leads.a}", headers=REP_A)).json() == changed.json()
    # Handed to rep B, the lead leaves rep A's sight.
    handed = await http.patch(f"/v1/leads/{leads.a}", json={"owner_id": "rep-b", "territory": None}, headers=REP_A)
    assert (handed.status_code, handed.json()["owner_id"], handed.json()["territory"]) == (200, "rep-b", None)
    assert (await http.get(f"/v1/leads/{leads.a}", headers=REP_A)).status_code == 404
    assert await lead_ids(http, "/v1/leads", REP_B) == [leads.b, leads.a]


async def test_a_manager_sees_and_changes_the_leads_of_their_team(http: httpx.AsyncClient, leads: Leads) -> None:
    assert await lead_ids(http, "/v1/leads", MANAGER_OF_A) == [leads.a]
    assert await lead_ids(http, f"/v1/customers/{leads.customer_of(leads.a)}/leads", MANAGER_OF_A) == [leads.a]
    assert (await http.get(f"/v1/leads/{leads.a}", headers=MANAGER_OF_A)).status_code == 200
    assert (await http.get(f"/v1/leads/{leads.b}", headers=MANAGER_OF_A)).json() == not_found(leads.b)
    moved = await http.patch(f"/v1/leads/{leads.a}", json={"owner_id": "manager-1"}, headers=MANAGER_OF_A)
    assert (moved.status_code, moved.json()["owner_id"]) == (200, "manager-1")
    refused = await http.patch(f"/v1/leads/{leads.b}", json={"owner_id": "manager-1"}, headers=MANAGER_OF_A)
    assert refused.json() == not_found(leads.b)


async def test_a_territory_member_sees_the_territorys_leads_on_every_page(
    http: httpx.AsyncClient, leads: Leads
) -> None:
    # rep-s owns a lead of their own too; the hidden ones (north, A's) lie between the visible ones.
    mine = await http.patch(f"/v1/leads/{leads.unassigned}", json={"owner_id": "rep-s"}, headers=ADMIN_HEADERS)
    assert mine.status_code == 200

    assert await lead_ids(http, "/v1/leads", SOUTH, limit=1) == [leads.unassigned, leads.b]
    assert await lead_ids(http, f"/v1/customers/{leads.customer_of(leads.b)}/leads", SOUTH) == [leads.b]
    assert await lead_ids(http, f"/v1/customers/{leads.customer_of(leads.north)}/leads", SOUTH) == []
    assert (await http.get(f"/v1/leads/{leads.b}", headers=SOUTH)).status_code == 200
    assert (await http.get(f"/v1/leads/{leads.north}", headers=SOUTH)).json() == not_found(leads.north)
    changed = await http.patch(f"/v1/leads/{leads.b}", json={"owner_id": "rep-s"}, headers=SOUTH)
    assert (changed.status_code, changed.json()["territory"]) == (200, "south")


async def test_an_api_key_and_records_all_see_every_lead(app: FastAPI, http: httpx.AsyncClient, leads: Leads) -> None:
    key, record = issue(
        name="crm-ui", scopes=["leads:read"], event_types=None, read_only=True, rate_limit=None, expires_at=None
    )
    app.state.runtime.guard.keys.apply(record)
    reader = {"X-API-Key": key}

    for headers in (reader, ADMIN_HEADERS, ALL_RECORDS):
        assert await lead_ids(http, "/v1/leads", headers, limit=1) == leads.all
        for lead_id in leads.all:
            assert await lead_ids(http, f"/v1/customers/{leads.customer_of(lead_id)}/leads", headers) == [lead_id]
        assert (await http.get(f"/v1/leads/{leads.b}", headers=headers)).status_code == 200
    # A read-only key reads, and changes nothing.
    refused = await http.patch(f"/v1/leads/{leads.b}", json={"owner_id": "rep-a"}, headers=reader)
    assert refused.status_code == 403
    assert (await http.patch(f"/v1/leads/{leads.b}", json={"status": "new"}, headers=ALL_RECORDS)).status_code == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "send at least one of owner_id, territory, status"),
        ({"status": None}, "status cannot be null"),
        ({"status": "won"}, "body.status"),
        ({"owner_id": "rep-a", "segment_id": "vip"}, "body.segment_id"),
        ({"owner_id": "rep a"}, "body.owner_id"),
        ({"owner_id": "r" * 256}, "body.owner_id"),
        ({"territory": "north/east"}, "body.territory"),
        ({"territory": 7}, "body.territory"),
        ({"owner_id": {"$ne": None}}, "body.owner_id"),
    ],
)
async def test_a_lead_change_is_strict(
    http: httpx.AsyncClient, leads: Leads, body: dict[str, Any], message: str
) -> None:
    refused = await http.patch(f"/v1/leads/{leads.a}", json=body, headers=REP_A)

    assert (refused.status_code, refused.headers["content-type"]) == (422, PROBLEM)
    assert message in refused.json()["detail"]
    lead = (await http.get(f"/v1/leads/{leads.a}", headers=REP_A)).json()
    assert (lead["owner_id"], lead["territory"]) == ("rep-a", None)


async def test_a_subject_shaped_like_an_address_can_own_a_lead(http: httpx.AsyncClient, leads: Leads) -> None:
    owner = "ada@example.com"
    assert (await http.patch(f"/v1/leads/{leads.a}", json={"owner_id": owner}, headers=REP_A)).status_code == 200
    assert await lead_ids(http, "/v1/leads", person(owner)) == [leads.a]
