"""Pipelines, opportunities and lead conversion on the real database: stages that require fields, the stage
history, a won opportunity that becomes exactly one order, the learned win probability with its sample, and a
lead converted exactly once (customer, account link, opportunity) however often the command is sent."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from crm_sales.accounts.repository import ACCOUNTS
from crm_sales.app import INDEXES, create_service
from crm_sales.opportunities.repository import OPPORTUNITIES
from crm_sales.orders import repository as orders_repository
from crm_shared.store import Store, outbox_records
from crm_shared.topics import Topic

from helpers import ADMIN_HEADERS, bearer

NewStore = Callable[..., Awaitable[Store]]
PROBLEM = "application/problem+json"
REP = bearer("rep-1", "opportunities:read", "opportunities:write", "leads:read", "leads:write")
OTHER_REP = bearer("rep-9", "opportunities:read", "opportunities:write", "leads:read", "leads:write")
LINES = [
    {"sku": "ESP-2", "quantity": 2, "unit_price": "1250.00", "discount": "100.00", "unit_cost": "700.00"},
]
RENEWALS = {
    "name": "Renewals",
    "stages": [
        {"stage_id": "due", "name": "Due", "probability": 0.5, "forecast_category": "pipeline"},
        {
            "stage_id": "agreed",
            "name": "Agreed",
            "probability": 0.9,
            "forecast_category": "commit",
            "requires": ["amount", "expected_close"],
        },
    ],
}


@pytest.fixture
async def sales(new_store: NewStore) -> AsyncIterator[tuple[Store, httpx.AsyncClient]]:
    store = await new_store("sales_opportunities", INDEXES)
    app = create_service()
    app.state.runtime.store = store
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sales") as http:
        yield store, http


async def open_one(http: httpx.AsyncClient, headers: dict[str, str] = REP, **fields: Any) -> dict[str, Any]:
    body = {"customer_id": "C-opp-1", "name": "Espresso machines", "amount": "2400.00", "currency": "EUR"}
    answer = await http.post("/v1/opportunities", json=body | fields, headers=headers)
    assert answer.status_code == 201, answer.text
    opened: dict[str, Any] = answer.json()
    return opened


async def events_of(store: Store, topic: str = Topic.SALES_EVENTS) -> list[dict[str, Any]]:
    return [json.loads(r["value"]) for r in await outbox_records(store.db, {"topic": topic})]


async def test_an_opportunity_moves_through_its_stages_with_the_history_kept_and_the_requirements_checked(
    sales: tuple[Store, httpx.AsyncClient],
) -> None:
    store, http = sales
    opened = await open_one(http, amount="0")
    assert (opened["stage"], opened["probability"], opened["forecast_category"], opened["owner_id"]) == (
        "qualify",
        0.1,
        "pipeline",
        "rep-1",
    )
    url = f"/v1/opportunities/{opened['opportunity_id']}"

    refused = await http.post(f"{url}/stage", json={"stage": "propose"}, headers=REP)
    assert (refused.status_code, refused.headers["content-type"]) == (409, PROBLEM)
    assert "stage propose requires amount, expected_close" in refused.json()["detail"]
    unknown = await http.post(f"{url}/stage", json={"stage": "dream"}, headers=REP)
    assert unknown.status_code == 409 and "its stages are qualify, develop, propose, negotiate" in unknown.text

    changed = await http.patch(url, json={"amount": "2500.00", "expected_close": "2027-01-31"}, headers=REP)
    assert (changed.status_code, changed.json()["amount"]) == (200, "2500.00")
    not_the_lines = await http.patch(url, json={"lines": LINES}, headers=REP)
    assert not_the_lines.status_code == 409 and "does not equal the sum of the lines" in not_the_lines.text
    with_lines = await http.patch(url, json={"lines": LINES, "amount": "2400.00"}, headers=REP)
    assert with_lines.status_code == 200, with_lines.text

    moved = (await http.post(f"{url}/stage", json={"stage": "propose"}, headers=REP)).json()
    assert (moved["stage"], moved["probability"], moved["forecast_category"]) == ("propose", 0.6, "best_case")
    assert [v["stage"] for v in moved["stage_history"]] == ["qualify", "propose"]
    assert moved["stage_history"][0]["left_at"] == moved["stage_history"][1]["entered_at"]

    # Another rep neither sees nor moves it; the list is the caller's.
    assert (await http.get(url, headers=OTHER_REP)).status_code == 404
    assert (await http.post(f"{url}/stage", json={"stage": "develop"}, headers=OTHER_REP)).status_code == 404
    mine = (await http.get("/v1/opportunities", params={"status": "open"}, headers=REP)).json()
    assert [o["opportunity_id"] for o in mine["items"]] == [opened["opportunity_id"]]
    assert (await http.get("/v1/opportunities", headers=OTHER_REP)).json()["items"] == []

    changes = [e for e in await events_of(store) if e["type"] == "crm.opportunity.stage_changed.v1"]
    assert [(e["data"]["from_stage"], e["data"]["to_stage"]) for e in changes] == [("qualify", "propose")]


async def test_a_won_opportunity_becomes_exactly_one_order_and_a_lost_one_keeps_its_reason(
    sales: tuple[Store, httpx.AsyncClient],
) -> None:
    store, http = sales
    opened = await open_one(http, lines=LINES)
    url = f"/v1/opportunities/{opened['opportunity_id']}"
    won = [
        await http.post(f"{url}/win", json={"reason": "best offer", "place_order": True}, headers=REP) for _ in range(2)
    ]
    assert [w.status_code for w in won] == [200, 200]
    assert won[0].json() == won[1].json()
    order_id = won[0].json()["order_id"]
    assert (won[0].json()["status"], order_id, won[0].json()["probability"]) == (
        "won",
        f"SO-{opened['opportunity_id']}",
        1.0,
    )

    order = await store.db[orders_repository.ORDERS].find_one({"_id": order_id})
    assert order is not None
    assert (order["opportunity_id"], order["owner_id"], str(order["placed"]["total"])) == (
        opened["opportunity_id"],
        "rep-1",
        "2400.00",
    )
    types = [e["type"] for e in await events_of(store)]
    assert types.count("crm.order.placed.v1") == 1 and types.count("crm.opportunity.won.v1") == 1

    assert (await http.post(f"{url}/lose", json={"reason": "late"}, headers=REP)).status_code == 409
    assert (await http.patch(url, json={"amount": "1.00"}, headers=REP)).status_code == 409

    no_lines = await open_one(http)
    refused = await http.post(
        f"/v1/opportunities/{no_lines['opportunity_id']}/win", json={"place_order": True}, headers=REP
    )
    assert refused.status_code == 409 and "has no lines" in refused.json()["detail"]
    lost = await http.post(
        f"/v1/opportunities/{no_lines['opportunity_id']}/lose", json={"reason": "price"}, headers=REP
    )
    assert (lost.json()["status"], lost.json()["reason"], lost.json()["forecast_category"]) == (
        "lost",
        "price",
        "omitted",
    )
    assert (
        await http.post(f"/v1/opportunities/{no_lines['opportunity_id']}/lose", json={"reason": ""}, headers=REP)
    ).status_code == 422


async def test_an_idempotency_key_opens_one_opportunity_and_bad_input_is_refused_precisely(
    sales: tuple[Store, httpx.AsyncClient],
) -> None:
    store, http = sales
    body = {"customer_id": "C-opp-2", "name": "Grinders", "amount": "300.00", "currency": "EUR"}
    keyed = {**REP, "Idempotency-Key": "open-grinders-1"}
    first = await http.post("/v1/opportunities", json=body, headers=keyed)
    again = await http.post("/v1/opportunities", json=body, headers=keyed)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["opportunity_id"] == again.json()["opportunity_id"]
    other = await http.post("/v1/opportunities", json={**body, "amount": "301.00"}, headers=keyed)
    assert other.status_code == 409
    assert await store.db[OPPORTUNITIES].count_documents({"customer_id": "C-opp-2"}) == 1

    for bad, status, words in (
        ({"currency": "XXX"}, 422, "XXX"),
        ({"pipeline_id": "nowhere"}, 404, "no pipeline nowhere"),
        ({"stage": "negotiate"}, 422, "requires expected_close"),
        ({"lines": LINES}, 422, "does not equal the sum of the lines"),
        ({"amount": "-1"}, 422, "amount"),
        ({"owner_id": "rep-2"}, 403, "for themselves or their team"),
    ):
        answer = await http.post("/v1/opportunities", json=body | bad, headers=REP)
        assert (answer.status_code, answer.headers["content-type"]) == (status, PROBLEM), (bad, answer.text)
        assert words in answer.text, (bad, answer.text)


async def test_a_pipeline_is_data_and_its_learned_probabilities_show_their_sample(
    sales: tuple[Store, httpx.AsyncClient],
) -> None:
    _, http = sales
    defined = await http.put("/v1/pipelines/renewals", json=RENEWALS, headers=ADMIN_HEADERS)
    assert defined.status_code == 200, defined.text
    assert [p["pipeline_id"] for p in (await http.get("/v1/pipelines", headers=REP)).json()] == [
        "new-business",
        "renewals",
    ]
    twice = {"name": "x", "stages": [RENEWALS["stages"][0]] * 2}
    assert (await http.put("/v1/pipelines/bad", json=twice, headers=ADMIN_HEADERS)).status_code == 422

    # Three won and one lost that reached "due"; two of the won reached "agreed".
    for n, (agreed, win) in enumerate([(True, True), (True, True), (False, True), (False, False)]):
        o = await open_one(http, pipeline_id="renewals", customer_id=f"C-ren-{n}", expected_close="2027-03-01")
        url = f"/v1/opportunities/{o['opportunity_id']}"
        if agreed:
            assert (await http.post(f"{url}/stage", json={"stage": "agreed"}, headers=REP)).status_code == 200
        closing = await http.post(
            f"{url}/win" if win else f"{url}/lose", json={} if win else {"reason": "no budget"}, headers=REP
        )
        assert closing.status_code == 200, closing.text

    learned = (await http.get("/v1/pipelines/renewals/probabilities", params={"min_sample": 3}, headers=REP)).json()
    by_stage = {s["stage_id"]: s for s in learned["stages"]}
    assert (by_stage["due"]["sample_size"], by_stage["due"]["won"], by_stage["due"]["basis"]) == (4, 3, "learned")
    assert by_stage["due"]["probability"] == 0.75 and by_stage["due"]["default_probability"] == 0.5
    assert (by_stage["agreed"]["sample_size"], by_stage["agreed"]["basis"], by_stage["agreed"]["probability"]) == (
        2,
        "default",
        0.9,
    )
    assert (await http.get("/v1/pipelines/none/probabilities", headers=REP)).status_code == 404
    # Narrowed evidence: deals of 2400 and up (all four), below 1000 (none), and those that lingered a year.
    banded = (await http.get("/v1/pipelines/renewals/probabilities", params={"amount_min": "2400"}, headers=REP)).json()
    assert banded["stages"][0]["sample_size"] == 4 and banded["currency"] == "EUR"
    small = (await http.get("/v1/pipelines/renewals/probabilities", params={"amount_max": "1000"}, headers=REP)).json()
    assert (small["stages"][0]["sample_size"], small["stages"][0]["basis"]) == (0, "default")
    old = await http.get("/v1/pipelines/renewals/probabilities", params={"min_days_in_stage": 365}, headers=REP)
    assert old.json()["stages"][0]["sample_size"] == 0
    band = {"amount_min": "10", "amount_max": "5"}
    assert (await http.get("/v1/pipelines/renewals/probabilities", params=band, headers=REP)).status_code == 422

    # An open opportunity shows its stage's learned probability beside the default.
    open_now = await open_one(http, pipeline_id="renewals", customer_id="C-ren-9")
    seen = (await http.get(f"/v1/opportunities/{open_now['opportunity_id']}", headers=REP)).json()
    assert (seen["probability"], seen["learned"]["learned_probability"], seen["learned"]["sample_size"]) == (
        0.5,
        0.75,
        4,
    )

    # A stage open opportunities are in cannot be dropped.
    fewer = {"name": "Renewals", "stages": [RENEWALS["stages"][1]]}
    in_use = await http.put("/v1/pipelines/renewals", json=fewer, headers=ADMIN_HEADERS)
    assert in_use.status_code == 409 and in_use.json()["open_in_stages"] == {"due": 1}


LEAD = {
    "source": "field_visit",
    "name": "Grace Hopper",
    "email": "grace@example.com",
    "company": "Compilers  Inc",
    "industry": "software",
    "region": "north",
    "owner_id": "rep-1",
}


async def test_a_lead_converts_exactly_once_into_a_customer_an_account_link_and_an_opportunity(
    sales: tuple[Store, httpx.AsyncClient],
) -> None:
    store, http = sales
    lead = await http.post("/v1/leads", json=LEAD, headers=ADMIN_HEADERS)
    assert lead.status_code == 201, lead.text
    lead_id = lead.json()["lead_id"]
    body = {"currency": "EUR", "amount": "2400.00", "lines": LINES, "expected_close": "2027-02-01"}

    # Sent three times, two of them at once: one conversion.
    answers = await asyncio.gather(
        *(http.post(f"/v1/leads/{lead_id}/convert", json=body, headers=REP) for _ in range(2))
    )
    answers.append(await http.post(f"/v1/leads/{lead_id}/convert", json=body, headers=REP))
    assert sorted(a.status_code for a in answers) == [200, 200, 201], [a.text for a in answers]
    made = [a.json() for a in answers]
    assert len({(m["customer_id"], m["account_id"], m["opportunity_id"]) for m in made}) == 1
    conversion = made[0]
    assert conversion["new_customer"] is True and conversion["lead"]["status"] == "converted"

    assert await store.db[OPPORTUNITIES].count_documents({"lead_id": lead_id}) == 1
    opportunity = await store.db[OPPORTUNITIES].find_one({"lead_id": lead_id})
    assert opportunity is not None
    assert (opportunity["account_id"], opportunity["owner_id"], opportunity["source"]) == (
        conversion["account_id"],
        "rep-1",
        "field_visit",
    )
    account = await store.db[ACCOUNTS].find_one({"_id": conversion["account_id"]})
    assert account is not None and (account["name"], account["contacts"]) == (
        "Compilers  Inc",
        [conversion["customer_id"]],
    )

    registered = await events_of(store, Topic.INGEST_CUSTOMERS)
    assert [(e["type"], e["subject"], e["data"]["name"], e["data"]["channel"]) for e in registered] == [
        ("crm.customer.registered.v1", conversion["customer_id"], "Grace Hopper", "face_to_face")
    ]
    types = [e["type"] for e in await events_of(store)]
    assert (types.count("crm.lead.converted.v1"), types.count("crm.opportunity.opened.v1")) == (1, 1)

    # A colleague from the same company (spelt otherwise) joins the same account.
    colleague = await http.post(
        "/v1/leads",
        json={**LEAD, "name": "Ada", "email": "ada@example.com", "company": "compilers inc"},
        headers=ADMIN_HEADERS,
    )
    joined = await http.post(f"/v1/leads/{colleague.json()['lead_id']}/convert", json={"currency": "EUR"}, headers=REP)
    assert (joined.status_code, joined.json()["account_id"]) == (201, conversion["account_id"]), joined.text
    account = await store.db[ACCOUNTS].find_one({"_id": conversion["account_id"]})
    assert account is not None and len(account["contacts"]) == 2
    seen = (await http.get(f"/v1/accounts/{conversion['account_id']}", headers=REP)).json()
    assert (seen["name"], sorted(seen["contacts"])) == ("Compilers  Inc", sorted(account["contacts"]))
    by_contact = (await http.get("/v1/accounts", params={"contact": conversion["customer_id"]}, headers=REP)).json()
    assert [a["account_id"] for a in by_contact["items"]] == [conversion["account_id"]]
    assert (await http.get(f"/v1/accounts/{conversion['account_id']}", headers=OTHER_REP)).status_code == 404
    assert (await http.get("/v1/accounts", headers=OTHER_REP)).json()["items"] == []


async def test_a_lead_that_cannot_convert_is_refused_with_the_reason(sales: tuple[Store, httpx.AsyncClient]) -> None:
    store, http = sales
    # A company without a person's name registers as the organisation.
    company = await http.post(
        "/v1/leads", json={"source": "inbound", "company": "Acme", "email": "hq@acme.example"}, headers=ADMIN_HEADERS
    )
    assert company.status_code == 201, company.text
    converted = await http.post(
        f"/v1/leads/{company.json()['lead_id']}/convert", json={"currency": "EUR"}, headers=ADMIN_HEADERS
    )
    assert converted.status_code == 201, converted.text
    [registered] = await events_of(store, Topic.INGEST_CUSTOMERS)
    assert (registered["data"]["name"], registered["data"]["channel"]) == ("Acme", "web")

    # To a customer the business knows already, it converts without registering one.
    known_lead = await http.post("/v1/leads", json={**LEAD, "email": "known@example.com"}, headers=ADMIN_HEADERS)
    known = await http.post(
        f"/v1/leads/{known_lead.json()['lead_id']}/convert",
        json={"currency": "EUR", "customer_id": "C-known"},
        headers=ADMIN_HEADERS,
    )
    assert (known.status_code, known.json()["customer_id"], known.json()["new_customer"]) == (201, "C-known", False)
    assert len(await events_of(store, Topic.INGEST_CUSTOMERS)) == 1

    gone = await http.post("/v1/leads", json={**LEAD, "email": "gone@example.com"}, headers=ADMIN_HEADERS)
    gone_id = gone.json()["lead_id"]
    out = {"status": "disqualified", "disqualified_reason": "no budget"}
    assert (await http.patch(f"/v1/leads/{gone_id}", json=out, headers=ADMIN_HEADERS)).status_code == 200
    refused = await http.post(f"/v1/leads/{gone_id}/convert", json={"currency": "EUR"}, headers=ADMIN_HEADERS)
    assert refused.status_code == 409 and "disqualified" in refused.json()["detail"]
    bad_bodies = (
        {"currency": "EUR", "account_id": "A-none"},
        {"currency": "XXX"},
        {"currency": "EUR", "pipeline_id": "none"},
    )
    for n, bad in enumerate(bad_bodies):
        lead = await http.post("/v1/leads", json={**LEAD, "email": f"{n}@example.org"}, headers=ADMIN_HEADERS)
        answer = await http.post(f"/v1/leads/{lead.json()['lead_id']}/convert", json=bad, headers=ADMIN_HEADERS)
        assert (answer.status_code, answer.headers["content-type"]) == (422, PROBLEM), answer.text
    assert (await http.post("/v1/leads/L-none/convert", json={"currency": "EUR"}, headers=REP)).status_code == 404
