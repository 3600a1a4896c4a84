"""Leads from every source on the real database: entered, imported from CSV (API and `crm sales import-leads`)
and handed over by marketing, de-duplicated, assigned by the territories' rules, moved through their lifecycle."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from crm_sales import cli
from crm_sales.app import INDEXES, create_service
from crm_sales.leads import handlers, repository
from crm_sales.territories.repository import TERRITORIES
from crm_shared.events import LeadQualified, LeadQualifiedEvent
from crm_shared.store import Store

from helpers import ADMIN_HEADERS, bearer

NewStore = Callable[..., Awaitable[Store]]
PROBLEM = "application/problem+json"
CSV = {"Content-Type": "text/csv; charset=utf-8"}
T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)

NORTH = {
    "territory_id": "north",
    "name": "North",
    "priority": 10,
    "regions": ["north"],
    "strategy": "round_robin",
    "reps": [{"user_id": "ann", "capacity": 10}, {"user_id": "bob", "capacity": 10}],
}
BIG = {
    "territory_id": "enterprise",
    "name": "Enterprise",
    "priority": 1,
    "company_size_min": 1000,
    "strategy": "least_busy",
    "reps": [{"user_id": "eve", "capacity": 1}, {"user_id": "fay", "capacity": 5, "skip": True}],
}
CATCH_ALL = {"territory_id": "rest", "name": "Everyone else", "priority": 100, "strategy": "least_busy"}


@pytest.fixture
async def store(new_store: NewStore) -> Store:
    return await new_store("sales_intake", INDEXES)


@pytest.fixture
def app(store: Store) -> FastAPI:
    app = create_service()
    app.state.runtime.store = store
    return app


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://sales"
    ) as client:
        for territory in (NORTH, BIG, CATCH_ALL):
            defined = await client.post("/v1/territories", json=territory)
            assert defined.status_code == 201, defined.text
        yield client


async def as_user(
    http: httpx.AsyncClient, method: str, url: str, headers: dict[str, str], **body: Any
) -> httpx.Response:
    """A request with a user's token only: without the admin key the client sends by default."""
    request = http.build_request(method, url, headers=headers, **body)
    del request.headers["X-API-Key"]
    return await http.send(request)


def person(n: int, **fields: Any) -> dict[str, Any]:
    return {"source": "inbound", "name": f"Person {n}", "email": f"p{n}@example.com", **fields}


async def test_territories_are_data_kept_read_and_changed(http: httpx.AsyncClient) -> None:
    again = await http.post("/v1/territories", json=NORTH)
    assert (again.status_code, again.json()["cursor"]) == (200, 0)
    other = await http.post("/v1/territories", json={**NORTH, "priority": 11})
    assert (other.status_code, other.headers["content-type"]) == (409, PROBLEM)
    page = (await http.get("/v1/territories", params={"limit": 2})).json()
    rest = (await http.get("/v1/territories", params={"cursor": page["next_cursor"]})).json()
    assert [t["territory_id"] for t in page["items"] + rest["items"]] == ["enterprise", "north", "rest"]
    assert rest["next_cursor"] is None
    changed = await http.put("/v1/territories/north", json={**NORTH, "territory_id": None} | {"priority": 3})
    assert changed.status_code == 422  # the id is the path's
    body = {k: v for k, v in NORTH.items() if k != "territory_id"}
    changed = await http.put("/v1/territories/north", json={**body, "priority": 3})
    assert (changed.status_code, changed.json()["priority"]) == (200, 3)
    bad = await http.post(
        "/v1/territories", json={**CATCH_ALL, "territory_id": "x", "company_size_min": 9, "company_size_max": 2}
    )
    assert bad.status_code == 422 and "company_size_min is above company_size_max" in bad.json()["detail"]
    assert (await http.delete("/v1/territories/rest")).status_code == 204
    assert (await http.get("/v1/territories/rest")).status_code == 404
    assert (await as_user(http, "GET", "/v1/territories/north", bearer("rep-1", "leads:read"))).status_code == 403


async def test_a_lead_is_assigned_on_arrival_and_a_duplicate_is_refused_naming_the_lead(
    http: httpx.AsyncClient, store: Store
) -> None:
    owners = []
    for n in range(4):
        created = await http.post("/v1/leads", json=person(n, region="North"))
        assert created.status_code == 201, created.text
        lead = created.json()
        assert (lead["territory"], lead["source"], lead["status"], lead["unassigned_reason"]) == (
            "north",
            "inbound",
            "new",
            None,
        )
        owners.append(lead["owner_id"])
    assert owners == ["ann", "bob", "ann", "bob"]
    assert (await store.db[TERRITORIES].find_one({"_id": "north"}))["cursor"] == 0  # type: ignore[index]

    big = (await http.post("/v1/leads", json=person(10, company_size=5000, region="north"))).json()
    assert (big["territory"], big["owner_id"]) == ("enterprise", "eve")
    full = (await http.post("/v1/leads", json=person(11, company_size=5000))).json()
    assert (full["territory"], full["owner_id"]) == ("enterprise", None)
    assert full["unassigned_reason"] == "no rep of territory enterprise is available (1 skipped, 1 at capacity)"
    nowhere = (await http.post("/v1/leads", json=person(12, region="south", owner_id="zed"))).json()
    assert (nowhere["territory"], nowhere["owner_id"]) == ("rest", "zed")  # an owner given is kept

    for duplicate in ({"email": "  P0@EXAMPLE.com "}, {"email": None, "phone": None}):
        refused = await http.post("/v1/leads", json={**person(0), **duplicate} | {"name": "Someone"})
        if duplicate["email"] is None:
            assert refused.status_code == 422 and "a lead needs an email or a phone" in refused.text
            continue
        assert (refused.status_code, refused.headers["content-type"]) == (409, PROBLEM)
        problem = refused.json()
        first = await store.db[repository.LEADS].find_one({"email_key": "p0@example.com"})
        assert first is not None and problem["existing_lead_id"] == first["_id"]
        assert "example" not in problem["detail"].lower()
    with_phone = (await http.post("/v1/leads", json=person(20, phone="+44 20 7946 0018"))).json()
    by_phone = await http.post("/v1/leads", json=person(21, phone="0044 (20) 7946-0018"))
    assert (by_phone.status_code, by_phone.json()["existing_lead_id"]) == (409, with_phone["lead_id"])
    assert await store.db[repository.LEADS].count_documents({}) == 8


async def test_an_idempotency_key_enters_a_lead_once(http: httpx.AsyncClient) -> None:
    key = {"Idempotency-Key": f"visit-{uuid.uuid4().hex}"}
    first = await http.post("/v1/leads", json=person(1, source="field_visit"), headers=key)
    again = await http.post("/v1/leads", json=person(1, source="field_visit"), headers=key)
    other = await http.post("/v1/leads", json=person(2, source="field_visit"), headers=key)
    assert (first.status_code, again.status_code, other.status_code) == (201, 200, 409)
    assert again.json() == first.json()
    assert other.json()["title"] == "Idempotency-Key reused"


async def test_a_lead_moves_through_its_lifecycle_and_is_refused_a_step_it_may_not_take(
    http: httpx.AsyncClient,
) -> None:
    lead = (await http.post("/v1/leads", json=person(1, region="north"))).json()
    path = f"/v1/leads/{lead['lead_id']}"

    skipped = await http.patch(path, json={"status": "qualified"})
    assert (skipped.status_code, skipped.headers["content-type"]) == (409, PROBLEM)
    assert skipped.json()["allowed_statuses"] == ["contacted", "disqualified"]
    assert (await http.patch(path, json={"status": "contacted"})).json()["status"] == "contacted"
    converted = await http.patch(path, json={"status": "converted"})
    assert converted.status_code == 409 and "only by converting" in converted.json()["detail"]
    no_reason = await http.patch(path, json={"status": "disqualified"})
    assert no_reason.status_code == 422 and "disqualified_reason" in no_reason.json()["detail"]
    out = await http.patch(path, json={"status": "disqualified", "disqualified_reason": "no budget this year"})
    assert (out.status_code, out.json()["status"], out.json()["disqualified_reason"]) == (
        200,
        "disqualified",
        "no budget this year",
    )
    back = await http.patch(path, json={"status": "new"})
    assert back.status_code == 409 and back.json()["allowed_statuses"] == []
    assert (await http.post(f"{path}/assign")).status_code == 409


async def test_the_rules_are_applied_again_on_demand(http: httpx.AsyncClient, store: Store) -> None:
    waiting = [(await http.post("/v1/leads", json=person(n, company_size=2000))).json() for n in range(3)]
    assert [lead["owner_id"] for lead in waiting] == ["eve", None, None]
    # Fay is back from holiday: the unassigned leads go to her, a batch at a time.
    back = {**{k: v for k, v in BIG.items() if k != "territory_id"}}
    back["reps"] = [{"user_id": "eve", "capacity": 1}, {"user_id": "fay", "capacity": 1}]
    assert (await http.put("/v1/territories/enterprise", json=back)).status_code == 200
    first = (await http.post("/v1/leads/assign", params={"limit": 1})).json()
    assert (first["examined"], first["assigned"], first["still_unassigned"]) == (1, 1, 0)
    rest = (await http.post("/v1/leads/assign", params={"cursor": first["next_cursor"]})).json()
    assert (rest["examined"], rest["assigned"], rest["still_unassigned"], rest["next_cursor"]) == (1, 0, 1, None)
    owners = {lead["lead_id"]: (await http.get(f"/v1/leads/{lead['lead_id']}")).json()["owner_id"] for lead in waiting}
    assert sorted(map(str, owners.values())) == ["None", "eve", "fay"]
    [left] = [lead_id for lead_id, owner in owners.items() if owner is None]

    # One lead again: Eve's lead no longer counts against her while it is re-assigned, so she keeps it.
    again = await http.post(f"/v1/leads/{waiting[0]['lead_id']}/assign")
    assert (again.status_code, again.json()["owner_id"], again.json()["territory"]) == (200, "eve", "enterprise")
    assert (await http.post("/v1/leads/L-nobody/assign")).status_code == 404
    hidden = await as_user(http, "POST", f"/v1/leads/{left}/assign", bearer("rep-x", "leads:write"))
    assert hidden.status_code == 404


async def test_marketing_leads_are_assigned_on_arrival_and_kept_once_per_customer(
    http: httpx.AsyncClient, store: Store
) -> None:
    customer = f"C-{uuid.uuid4().hex[:8]}"

    def qualified(lead_id: str) -> LeadQualifiedEvent:
        lead = LeadQualified(customer_id=customer, lead_id=lead_id, segment_id="hot", reason="Hot prospects")
        return LeadQualifiedEvent.create(lead, source="/crm/marketing", time=T0)

    outcome = await handlers.apply_marketing_events(store, [qualified(f"L-{customer}-1"), qualified(f"L-{customer}-2")])
    assert len(outcome.applied) == 2
    [lead] = [d async for d in store.db[repository.LEADS].find({"customer_id": customer})]
    assert (lead["_id"], lead["source"], lead["territory"], lead["created_at"]) == (
        f"L-{customer}-1",
        "marketing",
        "rest",
        T0,
    )
    assert lead["unassigned_reason"] == "territory rest has no reps"
    later = await handlers.apply_marketing_event(store, qualified(f"L-{customer}-3"))
    assert later is not None and later.lead_id == f"L-{customer}-1"


def rows_of(report: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(report)))[1:]


GOOD_AND_BAD = (
    "name,email,phone,company,industry,company_size,region,source,owner_id\n"
    "Ada,ada@example.com,,Engines,,,north,,\n"
    "Bob,not-an-address,,,,,,,\n"
    "Cy,cy@example.com,,,,lots,,,\n"
    "Dee,,+44 20 7946 0018,,,,north,referral,\n"
    "Eve,ADA@example.com,,,,,,,\n"
    "Fay,fay@example.com,,,,,north,,rep-9\n"
)


async def test_a_csv_upload_imports_the_good_rows_and_reports_the_bad_ones(
    http: httpx.AsyncClient, store: Store
) -> None:
    await http.post("/v1/leads", json={"source": "inbound", "name": "Fay", "email": "FAY@example.com"})

    answer = await http.post("/v1/leads/import", content=GOOD_AND_BAD.encode(), headers=CSV)

    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "imported": 2,
        "duplicates": 2,
        "rejected": [
            {"row": 3, "reason": "email: email is not a valid address"},
            {"row": 4, "reason": "company_size: Input should be a valid integer, unable to parse string as an integer"},
            {"row": 6, "reason": "duplicate of row 2 (same email or phone)"},
            {"row": 7, "reason": answer.json()["rejected"][3]["reason"]},
        ],
    }
    assert answer.json()["rejected"][3]["reason"].startswith("duplicate of lead L-")
    imported = {d["name"]: d async for d in store.db[repository.LEADS].find({"name": {"$in": ["Ada", "Dee"]}})}
    assert {(d["source"], d["territory"], d["owner_id"]) for d in imported.values()} == {
        ("directory_import", "north", "ann"),
        ("referral", "north", "bob"),
    }
    # The same file again imports nothing twice.
    again = (await http.post("/v1/leads/import", content=GOOD_AND_BAD.encode(), headers=CSV)).json()
    assert (again["imported"], again["duplicates"], len(again["rejected"])) == (0, 4, 6)

    wrong = await http.post("/v1/leads/import", json={"csv": GOOD_AND_BAD})
    assert (wrong.status_code, wrong.headers["content-type"]) == (415, PROBLEM)
    unusable = await http.post("/v1/leads/import", content=b"who,what\nx,y\n", headers=CSV)
    assert unusable.status_code == 422 and "unknown column(s) 'who', 'what'" in unusable.json()["detail"]
    too_big = await http.post("/v1/leads/import", content=b"name,email\n" + b"x" * (6 * 1024 * 1024), headers=CSV)
    assert too_big.status_code == 413
    refused = await as_user(
        http, "POST", "/v1/leads/import", {**bearer("rep-1", "leads:read"), **CSV}, content=b"name,email\n"
    )
    assert refused.status_code == 403


async def test_the_cli_imports_a_file_with_a_progress_bar_and_an_error_report(
    store: Store, backend: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CRM_MONGO_URI", backend.mongo_uri)
    monkeypatch.setenv("CRM_SALES_DB", store.db.name)
    leads_file = tmp_path / "fair.csv"
    leads_file.write_text(GOOD_AND_BAD, encoding="utf-8")

    # In a thread: the task runs its own event loop, as on a terminal.
    status = await asyncio.to_thread(cli.main, ["import-leads", str(leads_file), "--source", "field_visit"])

    assert status == 1
    out, err = capsys.readouterr()
    assert "3 imported, 1 duplicates, 3 rejected (duplicates included) of 6 rows" in out
    assert "6/6" in err  # the progress bar
    report = rows_of((tmp_path / "fair.errors.csv").read_text(encoding="utf-8"))
    assert [row for row, _ in report] == ["3", "4", "6"]
    assert all("example" not in reason for _, reason in report)
    assert await store.db[repository.LEADS].count_documents({"source": "field_visit"}) == 2
    assert await store.db[repository.LEADS].count_documents({"source": "referral"}) == 1

    only_new = tmp_path / "new.csv"
    only_new.write_text("name,email\nGil,gil@example.com\n", encoding="utf-8")
    assert await asyncio.to_thread(cli.main, ["import-leads", str(only_new)]) == 0
    assert not (tmp_path / "new.errors.csv").exists()
    errors = tmp_path / "elsewhere.csv"
    assert await asyncio.to_thread(cli.main, ["import-leads", str(only_new), "--errors", str(errors)]) == 1
    assert rows_of(errors.read_text(encoding="utf-8"))[0][0] == "2"
    assert await asyncio.to_thread(cli.main, ["import-leads", str(tmp_path / "missing.csv")]) == 2
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00")
    assert await asyncio.to_thread(cli.main, ["import-leads", str(tmp_path / "binary.csv")]) == 2
