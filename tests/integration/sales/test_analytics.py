"""Conversion analytics on the real database: a converted lead whose customer orders counts as converted to a
first order for its source and owner, closed opportunities give win rates and velocity, and the account of
the lead's company takes its contact's order revenue."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from crm_sales.app import INDEXES, create_service
from crm_shared.store import Store

from helpers import ADMIN_HEADERS, bearer

NewStore = Callable[..., Awaitable[Store]]
ANN = bearer("ann", "leads:read", "leads:write", "opportunities:read", "opportunities:write", "forecasts:read")


@pytest.fixture
async def sales(new_store: NewStore) -> AsyncIterator[httpx.AsyncClient]:
    store = await new_store("sales_analytics", INDEXES)
    app = create_service()
    app.state.runtime.store = store
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sales") as http:
        yield http


async def test_lead_to_order_win_rates_velocity_and_revenue_by_account(sales: httpx.AsyncClient) -> None:
    http = sales
    converted = []
    for n, source in enumerate(["referral", "referral", "inbound"]):
        lead = {
            "source": source,
            "name": f"P {n}",
            "email": f"p{n}@example.com",
            "company": f"Co {n % 2}",
            "owner_id": "ann",
        }
        made = await http.post("/v1/leads", json=lead, headers=ADMIN_HEADERS)
        assert made.status_code == 201, made.text
        if n < 2:
            answer = await http.post(
                f"/v1/leads/{made.json()['lead_id']}/convert", json={"currency": "EUR"}, headers=ANN
            )
            converted.append(answer.json())
    order = {"order_id": "O-an-1", "customer_id": converted[0]["customer_id"], "currency": "EUR", "total": "900.00"}
    assert (await http.post("/v1/orders", json=order, headers=ADMIN_HEADERS)).status_code == 201

    leads = (await http.get("/v1/analytics/lead-conversion", headers=ANN)).json()
    by_source = {r["key"]: r for r in leads["by_source"]}
    assert (
        by_source["referral"]["leads"],
        by_source["referral"]["converted"],
        by_source["referral"]["with_order"],
    ) == (2, 2, 1)
    assert (by_source["referral"]["conversion_rate"], by_source["inbound"]["with_order"]) == ("0.5000", 0)
    assert by_source["referral"]["median_days_to_first_order"] is not None
    assert [(r["key"], r["leads"]) for r in leads["by_owner"]] == [("ann", 3)]
    assert (await http.get("/v1/analytics/lead-conversion", params={"owner_id": "bob"}, headers=ANN)).status_code == 403

    # The two conversions opened an opportunity each: win one, lose the other.
    first, second = (c["opportunity_id"] for c in converted)
    assert (await http.post(f"/v1/opportunities/{first}/win", json={}, headers=ANN)).status_code == 200
    assert (
        await http.post(f"/v1/opportunities/{second}/lose", json={"reason": "price"}, headers=ANN)
    ).status_code == 200
    body = {"customer_id": "C-an", "name": "Open", "amount": "100.00", "currency": "EUR"}
    assert (await http.post("/v1/opportunities", json=body, headers=ANN)).status_code == 201
    pipeline = (await http.get("/v1/analytics/pipelines/new-business", headers=ANN)).json()
    assert (pipeline["closed"], pipeline["stages"][0]["stage_id"], pipeline["stages"][0]["win_rate"]) == (
        2,
        "qualify",
        "0.5000",
    )
    assert (pipeline["velocity"]["open_count"], pipeline["velocity"]["win_rate"]) == (1, "0.5000")
    assert (await http.get("/v1/analytics/pipelines/none", headers=ANN)).status_code == 404

    revenue = (await http.get("/v1/analytics/account-revenue", headers=ANN)).json()
    assert (revenue["total"], revenue["accounts_for_80_percent"]) == ("900.00", 1)
    assert [(a["name"], a["revenue"]) for a in revenue["accounts"]] == [("Co 0", "900.00"), ("Co 1", "0")]
    assert (await http.get("/v1/analytics/account-revenue", params={"period": "soon"}, headers=ANN)).status_code == 422
