"""Expenses on the real database: recorded against an opportunity or account the rep sees, refused when tied to
nothing or spent in the future, reported per owner and period, and an opportunity's cost of sale once won."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from crm_sales.app import INDEXES, create_service
from crm_shared.store import Store

from helpers import bearer

NewStore = Callable[..., Awaitable[Store]]
PROBLEM = "application/problem+json"
REP = bearer("rep-1", "opportunities:read", "opportunities:write", "expenses:read", "expenses:write")
OTHER = bearer("rep-9", "expenses:read", "expenses:write")
BOSS = bearer("boss", "expenses:read", team=["rep-1"])


@pytest.fixture
async def sales(new_store: NewStore) -> AsyncIterator[httpx.AsyncClient]:
    store = await new_store("sales_expenses", INDEXES)
    app = create_service()
    app.state.runtime.store = store
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sales") as http:
        yield http


async def test_expenses_make_a_report_and_an_opportunitys_cost_of_sale(sales: httpx.AsyncClient) -> None:
    http = sales
    opened = await http.post(
        "/v1/opportunities",
        json={"customer_id": "C-x", "name": "Deal", "amount": "2000.00", "currency": "EUR"},
        headers=REP,
    )
    opportunity_id = opened.json()["opportunity_id"]
    today = datetime.now(UTC).date()
    month = today.strftime("%Y-%m")
    spend = {"currency": "EUR", "spent_on": today.isoformat(), "opportunity_id": opportunity_id}
    keyed = {**REP, "Idempotency-Key": "taxi-1"}
    for _ in range(2):
        taxi = await http.post("/v1/expenses", json={**spend, "category": "travel", "amount": "40.00"}, headers=keyed)
        assert taxi.status_code in (200, 201), taxi.text
    assert taxi.status_code == 200 and taxi.json()["owner_id"] == "rep-1"
    lunch = await http.post(
        "/v1/expenses", json={**spend, "category": "meals", "amount": "60.00", "receipt_ref": "r/1.pdf"}, headers=REP
    )
    assert lunch.status_code == 201, lunch.text

    report = (await http.get("/v1/expenses/report", params={"owner_id": "rep-1", "period": month}, headers=BOSS)).json()
    assert (report["count"], report["total"], report["by_category"]["travel"], report["by_category"]["meals"]) == (
        2,
        "100.00",
        "40.00",
        "60.00",
    )
    assert (await http.get("/v1/expenses/report", headers=OTHER)).json()["count"] == 0
    assert (await http.get(f"/v1/expenses/{lunch.json()['expense_id']}", headers=OTHER)).status_code == 404
    listed = (await http.get("/v1/expenses", params={"opportunity_id": opportunity_id}, headers=REP)).json()
    assert sorted(e["category"] for e in listed["items"]) == ["meals", "travel"]

    before = (await http.get(f"/v1/opportunities/{opportunity_id}/cost-of-sale", headers=REP)).json()
    assert (before["expenses"], before["won_amount"], before["ratio"]) == ("100.00", None, None)
    assert (await http.post(f"/v1/opportunities/{opportunity_id}/win", json={}, headers=REP)).status_code == 200
    after = (await http.get(f"/v1/opportunities/{opportunity_id}/cost-of-sale", headers=REP)).json()
    assert (after["won_amount"], after["ratio"]) == ("2000.00", "0.0500")
    assert (await http.get(f"/v1/opportunities/{opportunity_id}/cost-of-sale", headers=OTHER)).status_code == 404


async def test_a_bad_expense_is_refused_with_the_reason(sales: httpx.AsyncClient) -> None:
    http = sales
    today = datetime.now(UTC).date()
    base = {"category": "travel", "amount": "10.00", "currency": "EUR", "spent_on": today.isoformat()}
    for bad, code, words in (
        ({}, 422, "against an account or an opportunity"),
        ({"opportunity_id": "O-none"}, 422, "no opportunity O-none"),
        ({"account_id": "A-x", "spent_on": (today + timedelta(days=2)).isoformat()}, 422, "is in the future"),
        ({"account_id": "A-x", "currency": "XXX"}, 422, "XXX"),
        ({"account_id": "A-x", "amount": "0"}, 422, "above 0"),
        ({"account_id": "A-x", "category": "yacht"}, 422, "category"),
    ):
        answer = await http.post("/v1/expenses", json=base | bad, headers=REP)
        assert (answer.status_code, answer.headers["content-type"]) == (code, PROBLEM), (bad, answer.text)
        assert words in answer.text, (bad, answer.text)
    assert (await http.get("/v1/expenses/report", params={"period": "2027-Q9"}, headers=REP)).status_code == 422
