"""SLA policies and calendars as data, on the real database: defined by API, and a complaint from a high-value
customer (as scoring's segment changes say) gets the high-value policy, due sooner on the team's business hours."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from crm_shared.events import ScoreSnapshot, SegmentChanged, SegmentChangedEvent
from crm_shared.store import Store
from crm_support import handlers, repository
from crm_support.app import create_service
from crm_support.sla import repository as sla_repository

from helpers import ADMIN_HEADERS, bearer

NewStore = Callable[..., Awaitable[Store]]
T0 = datetime(2026, 11, 23, 9, tzinfo=UTC)  # a Monday, 10:00 in Berlin
BERLIN = {
    "time_zone": "Europe/Berlin",
    "weekly": {
        day: [{"start": "09:00", "end": "17:00"}] for day in ("monday", "tuesday", "wednesday", "thursday", "friday")
    },
    "country": "DE",
    "subdivision": "BY",
}


@pytest.fixture
async def support(new_store: NewStore) -> AsyncIterator[tuple[Store, httpx.AsyncClient]]:
    store = await new_store("support_sla", (*repository.INDEXES, *sla_repository.INDEXES))
    app = create_service()
    app.state.runtime.store = store
    async with httpx.AsyncClient(
        headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://support"
    ) as http:
        yield store, http


def tier_changed(customer: str, tier: str, at: datetime) -> SegmentChangedEvent:
    scores = ScoreSnapshot(
        recency_days=1,
        frequency=3,
        monetary=Decimal("2400.00"),
        average_order_value=Decimal("800.00"),
        value_tier=tier,
        lifecycle_stage="repeat",
        churn_risk=0.1,
        churn_risk_band="low",
        satisfaction=0.9,
    )
    change = SegmentChanged(
        customer_id=customer,
        dimension="value_tier",
        old=None,
        new=tier,
        scores=scores,
        model_version="v1",
        changed_at=at,
        caused_by="e-order",
    )
    return SegmentChangedEvent.create(change, source="/crm/scoring", time=at)


def complaint_event(customer: str, complaint_id: str) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/channels/call-centre",
        "type": "crm.complaint.filed.v1",
        "time": T0.isoformat(),
        "subject": customer,
        "data": {
            "customer_id": customer,
            "complaint_id": complaint_id,
            "dimension": "product",
            "severity": "medium",
            "summary": "Cracked panel",
            "channel": "phone",
        },
    }


async def test_a_high_value_customers_complaint_gets_the_high_value_policy(
    support: tuple[Store, httpx.AsyncClient],
) -> None:
    store, http = support
    run = uuid.uuid4().hex[:8]
    assert (await http.put(f"/v1/sla/calendars/berlin-{run}", json=BERLIN)).status_code == 201
    assert (await http.put(f"/v1/sla/calendars/berlin-{run}", json=BERLIN)).status_code == 200
    high = {
        "name": "High value",
        "order": 10,
        "conditions": {"value_tiers": ["high_value"]},
        "targets": {"first_response": {"hours": 1}, "resolution": {"hours": 16}},
        "calendar_id": f"berlin-{run}",
    }
    standard = {
        "name": "Everyone",
        "order": 100,
        "targets": {"first_response": {"hours": 8}},
        "calendar_id": f"berlin-{run}",
    }
    assert (await http.put(f"/v1/sla/policies/high-{run}", json=high)).status_code == 201
    assert (await http.put(f"/v1/sla/policies/std-{run}", json=standard)).status_code == 201
    shown = (await http.get(f"/v1/sla/policies/high-{run}")).json()
    assert (shown["conditions"]["value_tiers"], shown["targets"]["first_response"]) == (
        ["high_value"],
        {"hours": 1.0, "business_hours": True},
    )

    vip, regular = f"C-vip-{run}", f"C-reg-{run}"
    outcome = await handlers.apply_segment_events(
        store,
        [
            tier_changed(vip, "high_value", T0 - timedelta(days=1)),
            tier_changed(regular, "regular", T0 - timedelta(days=1)),
        ],
    )
    assert len(outcome.applied) == 2
    # An older change arriving late does not undo the newer one.
    await handlers.apply_segment_events(store, [tier_changed(vip, "regular", T0 - timedelta(days=9))])

    due = {}
    for customer in (vip, regular):
        answer = await http.post("/v1/events", json=complaint_event(customer, f"T-{customer}"))
        assert answer.status_code == 202, answer.text
        view = (await http.get(f"/v1/complaints/T-{customer}")).json()
        due[customer] = (view["sla_policy_id"], view["sla_due_at"])
    # 1 business hour for the high-value customer; 8 for the others: 7 on Monday, 1 on Tuesday from 09:00 Berlin.
    assert due == {
        vip: (f"high-{run}", "2026-11-23T10:00:00Z"),
        regular: (f"std-{run}", "2026-11-24T09:00:00Z"),
    }


async def test_sla_data_is_checked_and_guarded(support: tuple[Store, httpx.AsyncClient]) -> None:
    _, http = support
    run = uuid.uuid4().hex[:8]
    bad_zone = await http.put(f"/v1/sla/calendars/x-{run}", json={**BERLIN, "time_zone": "Mars/Olympus"})
    assert bad_zone.status_code == 422 and "unknown time zone" in bad_zone.json()["detail"]
    bad_hours = {**BERLIN, "weekly": {"monday": [{"start": "17:00", "end": "09:00"}]}}
    assert "ends before it starts" in (await http.put(f"/v1/sla/calendars/x-{run}", json=bad_hours)).json()["detail"]
    unknown = {"name": "P", "order": 1, "targets": {"resolution": {"hours": 4}}, "calendar_id": f"nowhere-{run}"}
    refused = await http.put(f"/v1/sla/policies/p-{run}", json=unknown)
    assert refused.status_code == 422 and f"no calendar nowhere-{run}" in refused.json()["detail"]
    assert (
        await http.put(f"/v1/sla/policies/p-{run}", json={"name": "P", "order": 1, "targets": {}})
    ).status_code == 422
    # A calendar a policy counts on is not deleted from under it.
    assert (await http.put(f"/v1/sla/calendars/c-{run}", json=BERLIN)).status_code == 201
    used = {"name": "P", "order": 1, "targets": {"resolution": {"hours": 4}}, "calendar_id": f"c-{run}"}
    assert (await http.put(f"/v1/sla/policies/p-{run}", json=used)).status_code == 201
    in_use = await http.delete(f"/v1/sla/calendars/c-{run}")
    assert in_use.status_code == 409 and f"p-{run}" in in_use.json()["detail"]
    assert (await http.delete(f"/v1/sla/policies/p-{run}")).status_code == 204
    assert (await http.delete(f"/v1/sla/calendars/c-{run}")).status_code == 204
    assert (await http.get(f"/v1/sla/calendars/c-{run}")).status_code == 404
    # Agents read the policies; only sla:write changes them.
    agent = {"X-API-Key": "", **bearer("agent-1", "tickets:read", "tickets:write")}
    assert (await http.get("/v1/sla/policies", headers=agent)).status_code == 200
    assert (await http.put(f"/v1/sla/calendars/c-{run}", json=BERLIN, headers=agent)).status_code == 403


async def test_a_tier_change_rematches_the_open_tickets_and_keeps_the_time_spent(
    support: tuple[Store, httpx.AsyncClient],
) -> None:
    store, http = support
    run = uuid.uuid4().hex[:8]
    high = {
        "name": "High value",
        "order": 10,
        "conditions": {"value_tiers": ["high_value"]},
        "targets": {"resolution": {"hours": 4, "business_hours": False}},
    }
    standard = {"name": "Everyone", "order": 100, "targets": {"resolution": {"hours": 48, "business_hours": False}}}
    assert (await http.put(f"/v1/sla/policies/high-{run}", json=high)).status_code == 201
    assert (await http.put(f"/v1/sla/policies/std-{run}", json=standard)).status_code == 201
    customer = f"C-{run}"
    opened, done = [
        (
            await http.post(
                "/v1/tickets",
                json={"customer_id": customer, "subject": subject, "channel": "web", "category": "product"},
            )
        ).json()
        for subject in ("Still open", "Done")
    ]
    assert (opened["sla_policy_id"], done["sla_policy_id"]) == (f"std-{run}", f"std-{run}")
    assert (await http.patch(f"/v1/tickets/{done['ticket_id']}", json={"status": "resolved"})).status_code == 200

    now = datetime.now(UTC)
    await handlers.apply_segment_events(store, [tier_changed(customer, "high_value", now)])
    view = (await http.get(f"/v1/tickets/{opened['ticket_id']}")).json()
    assert view["sla_policy_id"] == f"high-{run}"
    resolution = next(t for t in view["timers"] if t["kind"] == "resolution")
    # The clock still starts when the ticket was opened: 4 hours from then, not from the tier change.
    created = datetime.fromisoformat(opened["created_at"])
    assert datetime.fromisoformat(resolution["due_at"]) == created + timedelta(hours=4)
    history = [h for h in view["history"] if h["action"] == "policy_changed"]
    assert history[-1]["detail"] == {"from": f"std-{run}", "to": f"high-{run}", "value_tier": "high_value"}
    # A resolved ticket keeps the policy it was resolved under; an older tier arriving late changes nothing.
    assert (await http.get(f"/v1/tickets/{done['ticket_id']}")).json()["sla_policy_id"] == f"std-{run}"
    await handlers.apply_segment_events(store, [tier_changed(customer, "regular", now - timedelta(days=3))])
    assert (await http.get(f"/v1/tickets/{opened['ticket_id']}")).json()["sla_policy_id"] == f"high-{run}"
    timers = await store.db["sla_timers"].find({"ticket_id": opened["ticket_id"]}).to_list(None)
    assert [(t["kind"], t["policy_id"], t["due_at"]) for t in timers] == [
        ("resolution", f"high-{run}", created + timedelta(hours=4))
    ]
