"""Field service on the real database: a contract's own SLA policy applies to its tickets, a visit goes on the
first free slot of a technician with the skill (two bookings at once never share a slot), it is dispatched and
completed with time and parts, and the installed product's repair history shows it."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from crm_shared.store import Store, outbox_records
from crm_support.app import INDEXES, create_service

from helpers import ADMIN_HEADERS, bearer

NewStore = Callable[..., Awaitable[Store]]
MONDAY = "2027-03-01T08:00:00Z"  # 09:00 in Berlin
BERLIN = {
    "time_zone": "Europe/Berlin",
    "weekly": {
        day: [{"start": "09:00", "end": "17:00"}] for day in ("monday", "tuesday", "wednesday", "thursday", "friday")
    },
    "country": "DE",
}


@pytest.fixture
async def support(new_store: NewStore) -> AsyncIterator[tuple[Store, httpx.AsyncClient]]:
    store = await new_store("support_field", INDEXES)
    app = create_service()
    app.state.runtime.store = store
    async with httpx.AsyncClient(
        headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://support"
    ) as http:
        yield store, http


async def ok(answer: Awaitable[httpx.Response], status: int = 201) -> Any:
    response = await answer
    assert response.status_code == status, response.text
    return response.json()


async def test_a_contract_brings_its_own_sla_policy_and_covers_only_its_customer_and_products(
    support: tuple[Store, httpx.AsyncClient],
) -> None:
    _, http = support
    run = uuid.uuid4().hex[:8]
    fast = {"name": "Gold contract", "order": 500, "targets": {"first_response": {"hours": 2}}}
    usual = {"name": "Everyone", "order": 100, "targets": {"first_response": {"hours": 8}}}
    await ok(http.put(f"/v1/sla/policies/gold-{run}", json=fast))
    await ok(http.put(f"/v1/sla/policies/usual-{run}", json=usual))
    customer, product = f"C-{run}", f"espresso-{run}"
    contract = {
        "customer_id": customer,
        "name": "Gold maintenance",
        "starts_on": "2026-01-01",
        "ends_on": "2030-12-31",
        "products": [product],
        "sla_policy_id": f"gold-{run}",
    }
    shown = await ok(http.put(f"/v1/service-contracts/SC-{run}", json=contract))
    assert (shown["contract_id"], shown["products"]) == (f"SC-{run}", [product])
    await ok(http.put(f"/v1/service-contracts/SC-{run}", json=contract), 200)
    unknown_policy = await http.put(f"/v1/service-contracts/X-{run}", json={**contract, "sla_policy_id": "nope"})
    assert unknown_policy.status_code == 422 and "no SLA policy nope" in unknown_policy.json()["detail"]
    backwards = await http.put(f"/v1/service-contracts/X-{run}", json={**contract, "ends_on": "2025-01-01"})
    assert backwards.status_code == 422

    ticket = {"customer_id": customer, "subject": "Leaks", "channel": "phone", "product": product}
    under = await ok(http.post("/v1/tickets", json={**ticket, "contract_id": f"SC-{run}"}))
    without = await ok(http.post("/v1/tickets", json=ticket))
    # The contract's policy applies although the catch-all comes first by order.
    assert (under["sla_policy_id"], under["contract_id"], without["sla_policy_id"]) == (
        f"gold-{run}",
        f"SC-{run}",
        f"usual-{run}",
    )
    refusals = {
        "other product": {**ticket, "contract_id": f"SC-{run}", "product": "grinder"},
        "other customer": {**ticket, "contract_id": f"SC-{run}", "customer_id": f"C-other-{run}"},
        "no such contract": {**ticket, "contract_id": f"SC-none-{run}"},
    }
    for label, body in refusals.items():
        refused = await http.post("/v1/tickets", json=body)
        assert refused.status_code == 422, (label, refused.text)
        assert refused.json()["title"] == "Contract does not cover the ticket", label
    listed = await ok(http.get("/v1/service-contracts", params={"customer_id": customer}), 200)
    assert [c["contract_id"] for c in listed["items"]] == [f"SC-{run}"]


async def test_visits_go_on_the_first_free_slot_and_are_recorded_in_the_repair_history(
    support: tuple[Store, httpx.AsyncClient],
) -> None:
    store, http = support
    run = uuid.uuid4().hex[:8]
    await ok(http.put(f"/v1/sla/calendars/berlin-{run}", json=BERLIN))
    skill = f"repair-{run}"
    al, bea = f"al-{run}", f"bea-{run}"
    for tech in (al, bea):
        body = {"name": tech, "skills": [skill], "calendar_id": f"berlin-{run}", "territory": "north"}
        await ok(http.put(f"/v1/technicians/{tech}", json=body))
    no_calendar = await http.put(f"/v1/technicians/x-{run}", json={"name": "X", "skills": [skill], "calendar_id": "no"})
    assert no_calendar.status_code == 422 and "no calendar no" in no_calendar.json()["detail"]
    in_use = await http.delete(f"/v1/sla/calendars/berlin-{run}")
    assert in_use.status_code == 409 and al in in_use.json()["detail"]

    customer = f"C-{run}"
    opened = await ok(
        http.post("/v1/tickets", json={"customer_id": customer, "subject": "Broken", "channel": "web", "group": "g1"})
    )
    path = f"/v1/tickets/{opened['ticket_id']}/visits"
    first = await ok(
        http.post(
            path,
            json={"skill": skill, "earliest": MONDAY, "installed_product": f"SN-{run}"},
            headers={"Idempotency-Key": f"first-{run}"},
        )
    )
    second = await ok(http.post(path, json={"skill": skill, "earliest": MONDAY, "duration_minutes": 120}))
    third = await ok(http.post(path, json={"skill": skill, "earliest": MONDAY}))
    assert [(v["technician_id"], v["starts_at"], v["ends_at"]) for v in (first, second, third)] == [
        (al, "2027-03-01T08:00:00Z", "2027-03-01T09:00:00Z"),
        (bea, "2027-03-01T08:00:00Z", "2027-03-01T10:00:00Z"),
        (al, "2027-03-01T09:00:00Z", "2027-03-01T10:00:00Z"),
    ]
    again = await ok(
        http.post(
            path,
            json={"skill": skill, "earliest": MONDAY, "installed_product": f"SN-{run}"},
            headers={"Idempotency-Key": f"first-{run}"},
        ),
        200,
    )
    assert again["visit_id"] == first["visit_id"]
    nobody = await http.post(path, json={"skill": "welding", "earliest": MONDAY})
    assert nobody.status_code == 409 and "no active technician has the skill welding" in nobody.json()["detail"]

    # The visit is done: dispatched, completed with the time and parts, in the product's repair history.
    visit = f"/v1/visits/{first['visit_id']}"
    assert (await ok(http.post(f"{visit}/dispatch"), 200))["status"] == "dispatched"
    completion = {"minutes_spent": 45, "parts": [{"part": "gasket", "quantity": 2}], "notes": "Seal replaced"}
    done = await ok(http.post(f"{visit}/complete", json=completion), 200)
    assert (done["status"], done["minutes_spent"], done["parts"], done["installed_product"]) == (
        "completed",
        45,
        [{"part": "gasket", "quantity": 2}],
        f"SN-{run}",
    )
    final = await http.post(f"{visit}/cancel")
    assert final.status_code == 409 and "a completed visit cannot become cancelled" in final.json()["detail"]
    repairs = await ok(http.get(f"/v1/installed-products/SN-{run}/repairs"), 200)
    assert [(r["visit_id"], r["minutes_spent"]) for r in repairs["items"]] == [(first["visit_id"], 45)]
    # A cancelled visit frees its slot.
    await ok(http.post(f"/v1/visits/{third['visit_id']}/cancel"), 200)
    fourth = await ok(http.post(path, json={"skill": skill, "earliest": "2027-03-01T09:00:00Z"}))
    assert (fourth["technician_id"], fourth["starts_at"]) == (al, "2027-03-01T09:00:00Z")

    events = [
        (json.loads(r["value"])["type"], json.loads(r["value"])["data"].get("status"))
        for r in await outbox_records(store.db, {"key": customer})
        if json.loads(r["value"])["type"].startswith("crm.visit.")
    ]
    assert events == [
        *[("crm.visit.scheduled.v1", None)] * 3,
        ("crm.visit.status_changed.v1", "dispatched"),
        ("crm.visit.status_changed.v1", "completed"),
        ("crm.visit.status_changed.v1", "cancelled"),
        ("crm.visit.scheduled.v1", None),
    ]

    # A technician sees their own schedule only; booking needs field:write.
    as_al = {"X-API-Key": "", **bearer(al, "tickets:read")}
    schedule = await ok(http.get("/v1/visits", params={"from": MONDAY}, headers=as_al), 200)
    assert {v["technician_id"] for v in schedule["items"]} == {al}
    assert (await http.get(f"/v1/visits/{second['visit_id']}", headers=as_al)).status_code == 404
    assert (await http.post(path, json={"skill": skill}, headers=as_al)).status_code == 403


async def test_two_bookings_at_once_never_share_a_technicians_slot(support: tuple[Store, httpx.AsyncClient]) -> None:
    _, http = support
    run = uuid.uuid4().hex[:8]
    await ok(http.put(f"/v1/sla/calendars/berlin-{run}", json=BERLIN))
    skill = f"install-{run}"
    await ok(
        http.put(
            f"/v1/technicians/solo-{run}", json={"name": "Solo", "skills": [skill], "calendar_id": f"berlin-{run}"}
        )
    )
    opened = await ok(
        http.post("/v1/tickets", json={"customer_id": f"C-{run}", "subject": "Install", "channel": "web"})
    )
    path = f"/v1/tickets/{opened['ticket_id']}/visits"
    booked = await asyncio.gather(*(ok(http.post(path, json={"skill": skill, "earliest": MONDAY})) for _ in range(4)))
    starts = sorted(v["starts_at"] for v in booked)
    assert starts == [
        "2027-03-01T08:00:00Z",
        "2027-03-01T09:00:00Z",
        "2027-03-01T10:00:00Z",
        "2027-03-01T11:00:00Z",
    ]
