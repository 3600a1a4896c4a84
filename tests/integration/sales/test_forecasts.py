"""Forecasts on the real database: this month's weighted pipeline and roll-up per owner, team and territory,
closed-won against the quota, who may see which forecast, and a past period's snapshot beside what was paid."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from crm_sales.app import INDEXES, create_service
from crm_shared.events import OrderPaid, OrderPaidEvent, OrderPlaced, OrderPlacedEvent
from crm_shared.store import Store

from helpers import ADMIN_HEADERS, bearer

NewStore = Callable[..., Awaitable[Store]]
SCOPES = ("opportunities:read", "opportunities:write", "forecasts:read", "forecasts:write")
ANN = bearer("ann", *SCOPES)
BOB = bearer("bob", *SCOPES)
BOSS = bearer("boss", "forecasts:read", team=["ann", "bob"])
NORTH_LEAD = bearer("nina", "forecasts:read", territories=["north"])


@pytest.fixture
async def sales(new_store: NewStore) -> AsyncIterator[httpx.AsyncClient]:
    store = await new_store("sales_forecasts", INDEXES)
    app = create_service()
    app.state.runtime.store = store
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sales") as http:
        yield http


async def opportunity(http: httpx.AsyncClient, who: dict[str, str], amount: str, **fields: Any) -> str:
    body = {"customer_id": "C-f", "name": "Deal", "amount": amount, "currency": "EUR"} | fields
    answer = await http.post("/v1/opportunities", json=body, headers=who)
    assert answer.status_code == 201, answer.text
    opportunity_id: str = answer.json()["opportunity_id"]
    return opportunity_id


async def test_a_months_forecast_per_owner_team_and_territory_against_the_quota(sales: httpx.AsyncClient) -> None:
    http = sales
    today = datetime.now(UTC).date()
    month = today.strftime("%Y-%m")
    close = today.isoformat()
    await opportunity(http, ANN, "1000.00", expected_close=close)  # qualify, 0.1, pipeline
    proposing = await opportunity(http, ANN, "2000.00", expected_close=close)
    assert (
        await http.post(f"/v1/opportunities/{proposing}/stage", json={"stage": "propose"}, headers=ANN)
    ).status_code == 200
    committed = await opportunity(http, BOB, "3000.00", expected_close=close, territory="north")
    assert (
        await http.post(f"/v1/opportunities/{committed}/stage", json={"stage": "negotiate"}, headers=BOB)
    ).status_code == 200
    won = await opportunity(http, ANN, "4000.00", expected_close=close)
    assert (await http.post(f"/v1/opportunities/{won}/win", json={}, headers=ANN)).status_code == 200
    next_year = (today + timedelta(days=400)).isoformat()
    await opportunity(http, ANN, "9999.00", expected_close=next_year)  # another period: not counted
    assert (
        await http.put(f"/v1/quotas/ann/{month}", json={"amount": "10000.00"}, headers=ADMIN_HEADERS)
    ).status_code == 200
    assert (
        await http.put(f"/v1/quotas/bob/{month}", json={"amount": "5000.00"}, headers=ADMIN_HEADERS)
    ).status_code == 200

    ann = (await http.get("/v1/forecasts", params={"period": month}, headers=ANN)).json()
    assert ann["owners"] == ["ann"] and ann["currency"] == "EUR"
    assert (ann["categories"]["pipeline"]["count"], ann["categories"]["best_case"]["weighted"]) == (1, "1200.00")
    assert (ann["weighted_pipeline"], ann["closed_won"], ann["commit"], ann["best_case"]) == (
        "1300.00",
        "4000.00",
        "4000.00",
        "6000.00",
    )
    assert (ann["quota"], ann["attainment"], ann["gap"]) == ("10000.00", "0.4000", "6000.00")

    team = (await http.get("/v1/forecasts", params={"period": month}, headers=BOSS)).json()
    assert team["owners"] == ["ann", "bob", "boss"]
    assert (team["weighted_pipeline"], team["commit"], team["quota"]) == ("3700.00", "7000.00", "15000.00")
    north = (await http.get("/v1/forecasts", params={"period": month, "territory": "north"}, headers=NORTH_LEAD)).json()
    assert (north["categories"]["commit"]["amount"], north["quota"]) == ("3000.00", None)

    # Who sees what: a rep only their own; a manager their team's; a territory only its people.
    refused = await http.get("/v1/forecasts", params={"period": month, "owner_id": "bob"}, headers=ANN)
    assert refused.status_code == 403
    assert (
        await http.get("/v1/forecasts", params={"period": month, "territory": "south"}, headers=NORTH_LEAD)
    ).status_code == 403
    assert (
        await http.get("/v1/forecasts", params={"period": month, "owner_id": "bob"}, headers=BOSS)
    ).status_code == 200
    assert [q["owner_id"] for q in (await http.get("/v1/quotas", headers=BOSS)).json()] == ["ann", "bob"]
    assert [q["owner_id"] for q in (await http.get("/v1/quotas", headers=ANN)).json()] == ["ann"]
    for bad in ("2027-13", "soon"):
        answer = await http.get("/v1/forecasts", params={"period": bad}, headers=ANN)
        assert answer.status_code == 422 and "is not a year" in answer.json()["detail"]


async def test_a_past_periods_snapshot_beside_the_revenue_paid_in_it(sales: httpx.AsyncClient) -> None:
    http = sales
    last_month_day = datetime.now(UTC).replace(day=1) - timedelta(days=10)
    period = last_month_day.strftime("%Y-%m")
    await opportunity(
        http, ADMIN_HEADERS, "5000.00", expected_close=last_month_day.date().isoformat(), stage="negotiate"
    )
    snapshot = await http.post("/v1/forecasts/snapshots", json={"period": period}, headers=ADMIN_HEADERS)
    assert snapshot.status_code == 201, snapshot.text
    assert (snapshot.json()["weighted_pipeline"], snapshot.json()["owners"]) == ("4000.00", None)
    # What was paid in that month: 3000 of one order (a payment in another month does not count).
    at = last_month_day.replace(microsecond=0)
    events = [
        OrderPlacedEvent.create(
            OrderPlaced(order_id="O-f1", customer_id="C-f", currency="EUR", total=Decimal("4000")),
            source="/pos",
            time=at,
        ),
        OrderPaidEvent.create(
            OrderPaid(order_id="O-f1", customer_id="C-f", currency="EUR", amount=Decimal("3000")),
            source="/pos",
            time=at,
        ),
        OrderPaidEvent.create(
            OrderPaid(order_id="O-f1", customer_id="C-f", currency="EUR", amount=Decimal("1000")),
            source="/pos",
            time=at - timedelta(days=40),
        ),
    ]
    for event in events:
        sent = await http.post(
            "/v1/events", content=event.to_bytes(), headers={**ADMIN_HEADERS, "Content-Type": "application/json"}
        )
        assert sent.status_code == 202, sent.text
    [measured] = (await http.get("/v1/forecasts/accuracy", headers=ADMIN_HEADERS)).json()
    assert (measured["period"], measured["forecast"], measured["actual_paid"], measured["error"]) == (
        period,
        "4000.00",
        "3000",
        "0.3333",
    )
    # A snapshot of this month is not measured before the month is over.
    this_month = datetime.now(UTC).strftime("%Y-%m")
    assert (
        await http.post("/v1/forecasts/snapshots", json={"period": this_month}, headers=ADMIN_HEADERS)
    ).status_code == 201
    assert len((await http.get("/v1/forecasts/accuracy", headers=ADMIN_HEADERS)).json()) == 1
    assert (
        await http.post("/v1/forecasts/snapshots", json={"period": period}, headers=bearer("x", "forecasts:read"))
    ).status_code == 403
