"""Activities on the real database: planned against an opportunity (taking its customer), completed once,
published with their customer, listed overdue, and an owner's calendar as JSON and as an iCalendar feed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import icalendar
import pytest

from crm_sales.app import INDEXES, create_service
from crm_shared.store import Store, outbox_records
from crm_shared.topics import Topic

from helpers import ADMIN_HEADERS, bearer

NewStore = Callable[..., Awaitable[Store]]
PROBLEM = "application/problem+json"
REP = bearer("rep-1", "activities:read", "activities:write", "opportunities:read", "opportunities:write")
OTHER_REP = bearer("rep-9", "activities:read", "activities:write")
MANAGER = bearer("boss-1", "activities:read", team=["rep-1"])


@pytest.fixture
async def sales(new_store: NewStore) -> AsyncIterator[tuple[Store, httpx.AsyncClient]]:
    store = await new_store("sales_activities", INDEXES)
    app = create_service()
    app.state.runtime.store = store
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sales") as http:
        yield store, http


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


async def sales_events(store: Store) -> list[dict[str, Any]]:
    return [json.loads(r["value"]) for r in await outbox_records(store.db, {"topic": Topic.SALES_EVENTS})]


async def test_an_activity_on_an_opportunity_is_the_customers_published_and_done_once(
    sales: tuple[Store, httpx.AsyncClient],
) -> None:
    store, http = sales
    body = {"customer_id": "C-act-1", "name": "Machines", "amount": "100.00", "currency": "EUR"}
    opportunity = (await http.post("/v1/opportunities", json=body, headers=REP)).json()
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    planned = await http.post(
        "/v1/activities",
        json={"kind": "visit", "title": "Demo", "due_at": iso(due), "opportunity_id": opportunity["opportunity_id"]},
        headers={**REP, "Idempotency-Key": "visit-1"},
    )
    assert planned.status_code == 201, planned.text
    visit = planned.json()
    assert (visit["customer_id"], visit["owner_id"], visit["duration_minutes"], visit["overdue"]) == (
        "C-act-1",
        "rep-1",
        60,
        False,
    )
    again = await http.post(
        "/v1/activities",
        json={"kind": "visit", "title": "Demo", "due_at": iso(due), "opportunity_id": opportunity["opportunity_id"]},
        headers={**REP, "Idempotency-Key": "visit-1"},
    )
    assert (again.status_code, again.json()["activity_id"]) == (200, visit["activity_id"])

    # A channel system (an API key) planning on the opportunity gives it to the opportunity's owner.
    by_key = await http.post(
        "/v1/activities",
        json={
            "kind": "email",
            "title": "Brochure",
            "due_at": iso(due),
            "opportunity_id": opportunity["opportunity_id"],
        },
        headers=ADMIN_HEADERS,
    )
    assert (by_key.status_code, by_key.json()["owner_id"]) == (201, "rep-1"), by_key.text

    url = f"/v1/activities/{visit['activity_id']}"
    assert (await http.get(url, headers=OTHER_REP)).status_code == 404
    assert (await http.post(f"{url}/complete", json={}, headers=OTHER_REP)).status_code == 404
    done = [await http.post(f"{url}/complete", json={"outcome": "Wants two"}, headers=REP) for _ in range(2)]
    assert [d.status_code for d in done] == [200, 200] and done[0].json()["status"] == "done"
    other = await http.post(f"{url}/complete", json={"outcome": "No"}, headers=REP)
    assert (other.status_code, other.headers["content-type"]) == (409, PROBLEM)
    assert (await http.post(f"{url}/cancel", headers=REP)).status_code == 409

    published = [e for e in await sales_events(store) if e["type"].startswith("crm.activity.")]
    assert [(e["type"], e["subject"], e["data"]["kind"]) for e in published] == [
        ("crm.activity.scheduled.v1", "C-act-1", "visit"),
        ("crm.activity.scheduled.v1", "C-act-1", "email"),
        ("crm.activity.completed.v1", "C-act-1", "visit"),
    ]
    assert published[2]["data"]["outcome"] == "Wants two"


async def test_bad_activities_are_refused_with_the_reason(sales: tuple[Store, httpx.AsyncClient]) -> None:
    _, http = sales
    due = iso(datetime.now(UTC) + timedelta(days=1))
    for bad, status, words in (
        ({}, 422, "tied to a lead, an opportunity, an account or a customer"),
        ({"opportunity_id": "O-none"}, 422, "no opportunity O-none"),
        ({"customer_id": "C-1", "duration_minutes": 5000}, 422, "duration_minutes"),
        ({"customer_id": "C-1", "kind": "party"}, 422, "kind"),
        ({"customer_id": "C-1", "owner_id": "rep-2"}, 403, "for themselves or their team"),
    ):
        answer = await http.post(
            "/v1/activities", json={"kind": "call", "title": "x", "due_at": due} | bad, headers=REP
        )
        assert (answer.status_code, answer.headers["content-type"]) == (status, PROBLEM), (bad, answer.text)
        assert words in answer.text, (bad, answer.text)
    task_without_customer = await http.post(
        "/v1/activities", json={"kind": "task", "title": "x", "due_at": due, "lead_id": "L-x"}, headers=ADMIN_HEADERS
    )
    assert task_without_customer.status_code == 422  # the lead does not exist


async def test_an_owners_calendar_and_overdue_list_as_json_and_ics(sales: tuple[Store, httpx.AsyncClient]) -> None:
    _, http = sales
    now = datetime.now(UTC).replace(microsecond=0)
    plans = [
        ("task", "Send the brochure", now - timedelta(days=1)),
        ("call", "Call back", now + timedelta(days=1)),
        ("meeting", "Quarterly review", now + timedelta(days=3)),
        ("meeting", "Far away", now + timedelta(days=200)),
    ]
    ids = []
    for kind, title, due in plans:
        answer = await http.post(
            "/v1/activities",
            json={"kind": kind, "title": title, "due_at": iso(due), "customer_id": "C-cal"},
            headers=REP,
        )
        assert answer.status_code == 201, answer.text
        ids.append(answer.json()["activity_id"])
    overdue = (await http.get("/v1/activities", params={"overdue": "true"}, headers=REP)).json()
    assert [(a["title"], a["overdue"]) for a in overdue["items"]] == [("Send the brochure", True)]
    assert (
        await http.get("/v1/activities", params={"overdue": "true", "status": "done"}, headers=REP)
    ).status_code == 422
    page = (await http.get("/v1/activities", params={"limit": 2}, headers=REP)).json()
    rest = (await http.get("/v1/activities", params={"cursor": page["next_cursor"]}, headers=REP)).json()
    assert [a["title"] for a in page["items"] + rest["items"]] == [p[1] for p in plans]

    week = {"from": iso(now - timedelta(days=2)), "to": iso(now + timedelta(days=7))}
    calendar = (await http.get("/v1/calendars/rep-1", params=week, headers=REP)).json()
    assert [a["title"] for a in calendar] == ["Send the brochure", "Call back", "Quarterly review"]
    assert len((await http.get("/v1/calendars/rep-1", headers=MANAGER)).json()) == 3  # the default 67 days
    assert (await http.get("/v1/calendars/rep-1", headers=OTHER_REP)).status_code == 404
    backwards = await http.get("/v1/calendars/rep-1", params={"from": week["to"], "to": week["from"]}, headers=REP)
    assert backwards.status_code == 422 and "to must be after from" in backwards.text
    assert (
        await http.get("/v1/calendars/rep-1", params={"from": "2026-01-01T00:00:00"}, headers=REP)
    ).status_code == 422

    feed = await http.get("/v1/calendars/rep-1/feed.ics", params=week, headers=REP)
    assert feed.status_code == 200 and feed.headers["content-type"].startswith("text/calendar")
    events = icalendar.Calendar.from_ical(feed.content).walk("VEVENT")
    assert sorted(str(e["summary"]) for e in events) == ["Call back", "Quarterly review", "Send the brochure"]
    assert {str(e["uid"]).split("@")[0] for e in events} == set(ids[:3])
    assert (await http.get("/v1/calendars/rep-1/feed.ics", headers=OTHER_REP)).status_code == 404


async def test_a_secret_calendar_address_reads_that_feed_without_a_credential_until_replaced_or_revoked(
    sales: tuple[Store, httpx.AsyncClient],
) -> None:
    store, http = sales
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    for owner, headers in (("rep-1", REP), ("rep-9", OTHER_REP)):
        answer = await http.post(
            "/v1/activities",
            json={"kind": "call", "title": f"Call of {owner}", "due_at": iso(due), "customer_id": "C-feed"},
            headers=headers,
        )
        assert answer.status_code == 201, answer.text
    assert (await http.get("/v1/calendars/rep-1/feed-address", headers=REP)).status_code == 404
    # Only the owner (or an admin) makes one: the manager sees the calendar but may not hand it out.
    manager_writes = bearer("boss-1", "activities:read", "activities:write", team=["rep-1"])
    refused = await http.post("/v1/calendars/rep-1/feed-address", headers=manager_writes)
    assert refused.status_code == 403 and "only rep-1 or an admin" in refused.json()["detail"]
    assert (await http.post("/v1/calendars/rep-1/feed-address", headers=OTHER_REP)).status_code == 404

    made = await http.post("/v1/calendars/rep-1/feed-address", headers=REP)
    assert made.status_code == 201, made.text
    address = made.json()
    assert address["token"].startswith("calfeed_") and address["created_by"] == "token:rep-1"
    assert address["url"].startswith("http://sales/v1/calendars/rep-1/feed.ics?token=calfeed_")
    stored = await store.db["calendar_feeds"].find_one({"_id": "rep-1"})
    assert stored is not None and address["token"].split("_", 2)[2] not in json.dumps(stored, default=str)

    feed = await http.get(address["url"])  # no header: the address is the credential
    assert feed.status_code == 200, feed.text
    events = icalendar.Calendar.from_ical(feed.content).walk("VEVENT")
    assert [str(e["summary"]) for e in events] == ["Call of rep-1"]
    # It opens that calendar only, and a forged or mangled token opens nothing.
    token = address["token"]
    other = await http.get("/v1/calendars/rep-9/feed.ics", params={"token": token})
    assert other.status_code == 401 and other.headers["content-type"] == PROBLEM
    assert other.headers["www-authenticate"].startswith('Bearer realm="crm"')
    for bad in (token[:-1] + ("A" if token[-1] != "A" else "B"), "calfeed_x", token.replace("calfeed_", "crm_")):
        assert (await http.get("/v1/calendars/rep-1/feed.ics", params={"token": bad})).status_code == 401
    # The token is no credential for anything else.
    assert (await http.get("/v1/calendars/rep-1", params={"token": token})).status_code == 401
    shown = (await http.get("/v1/calendars/rep-1/feed-address", headers=REP)).json()
    assert shown == {k: address[k] for k in ("owner_id", "feed_id", "created_at", "created_by")}

    # A new address replaces the old one at once; deleting it revokes it.
    renewed = (await http.post("/v1/calendars/rep-1/feed-address", headers=ADMIN_HEADERS)).json()
    assert renewed["feed_id"] != address["feed_id"]
    assert (await http.get(address["url"])).status_code == 401
    assert (await http.get(renewed["url"])).status_code == 200
    assert (await http.delete("/v1/calendars/rep-1/feed-address", headers=REP)).status_code == 204
    assert (await http.get(renewed["url"])).status_code == 401
    assert (await http.delete("/v1/calendars/rep-1/feed-address", headers=REP)).status_code == 404
    audited = [a async for a in store.db["audit_log"].find({}, {"action": 1, "reason": 1, "principal": 1})]
    assert {a["action"] for a in audited} >= {
        "POST /v1/calendars/{owner_id}/feed-address",
        "DELETE /v1/calendars/{owner_id}/feed-address",
        "GET /v1/calendars/{owner_id}/feed.ics",
    }
    assert all(token not in json.dumps(a, default=str) for a in audited)
