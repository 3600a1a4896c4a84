"""Commissions on the real database: an owner's statement from the paid revenue of the orders they sold (won
opportunities), tiers above the quota, closed once the month is over, and a refund after the payout clawed
back in the next month's statement."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from crm_sales.app import INDEXES, create_service
from crm_shared.events import CloudEvent, OrderPaid, OrderPaidEvent, OrderRefunded, OrderRefundedEvent
from crm_shared.store import Store

from helpers import ADMIN_HEADERS, bearer

NewStore = Callable[..., Awaitable[Store]]
ANN = bearer("ann", "opportunities:read", "opportunities:write", "commissions:read")
BOB = bearer("bob", "commissions:read")
JSON = {**ADMIN_HEADERS, "Content-Type": "application/json"}


@pytest.fixture
async def sales(new_store: NewStore) -> AsyncIterator[httpx.AsyncClient]:
    store = await new_store("sales_commissions", INDEXES)
    app = create_service()
    app.state.runtime.store = store
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sales") as http:
        yield http


async def sold(http: httpx.AsyncClient, amount: str) -> str:
    """An order ann sold: an opportunity of hers won as its order."""
    line = {"sku": "ESP", "quantity": 1, "unit_price": amount}
    body = {"customer_id": "C-com", "name": "Deal", "amount": amount, "currency": "EUR", "lines": [line]}
    opened = (await http.post("/v1/opportunities", json=body, headers=ANN)).json()
    won = await http.post(f"/v1/opportunities/{opened['opportunity_id']}/win", json={"place_order": True}, headers=ANN)
    order_id: str = won.json()["order_id"]
    return order_id


async def send(http: httpx.AsyncClient, event: CloudEvent[object]) -> None:
    answer = await http.post("/v1/events", content=event.to_bytes(), headers=JSON)
    assert answer.status_code == 202, answer.text


async def test_a_statement_pays_the_tiers_and_a_later_refund_is_clawed_back(sales: httpx.AsyncClient) -> None:
    http = sales
    now = datetime.now(UTC).replace(microsecond=0)
    this_month = now.strftime("%Y-%m")
    in_last_month = now.replace(day=1) - timedelta(days=5)
    last_month = in_last_month.strftime("%Y-%m")
    plan = {"owner_id": "ann", "base_rate": "0.05", "tiers": [{"from_quota": "1", "rate": "0.10"}]}
    assert (await http.put("/v1/commission-plans/ann", json=plan, headers=ADMIN_HEADERS)).status_code == 200
    other = await http.put("/v1/commission-plans/ann-2", json=plan, headers=ADMIN_HEADERS)
    assert other.status_code == 409 and "already the plan of owner ann" in other.json()["detail"]
    assert (
        await http.put(f"/v1/quotas/ann/{last_month}", json={"amount": "10000.00"}, headers=ADMIN_HEADERS)
    ).status_code == 200

    big, small = await sold(http, "12000.00"), await sold(http, "3000.00")
    for order_id, amount in ((big, "12000.00"), (small, "3000.00")):
        paid = OrderPaid(order_id=order_id, customer_id="C-com", currency="EUR", amount=Decimal(amount))
        await send(http, OrderPaidEvent.create(paid, source="/payments", time=in_last_month))

    statement = (await http.get(f"/v1/commission-statements/ann/{last_month}", headers=ANN)).json()
    # 5% of 10,000 + 10% of 5,000.
    assert (statement["paid"], statement["revenue"], statement["commission"], statement["closed_at"]) == (
        "15000.00",
        "15000.00",
        "1000.00",
        None,
    )
    assert (await http.get(f"/v1/commission-statements/ann/{last_month}", headers=BOB)).status_code == 404
    not_over = await http.post(f"/v1/commission-statements/ann/{this_month}/close", headers=ADMIN_HEADERS)
    assert not_over.status_code == 409
    closed = [
        (await http.post(f"/v1/commission-statements/ann/{last_month}/close", headers=ADMIN_HEADERS)).json()
        for _ in range(2)
    ]
    assert closed[0] == closed[1] and closed[0]["closed_at"] is not None
    assert closed[0]["effective_rate"] == "0.066667"

    # Refunded after the payout: the next statement takes the commission back at last month's rate.
    refund = OrderRefunded(order_id=big, customer_id="C-com", currency="EUR", amount=Decimal("1500.00"))
    await send(http, OrderRefundedEvent.create(refund, source="/payments", time=now - timedelta(seconds=5)))
    fixed = (await http.get(f"/v1/commission-statements/ann/{last_month}", headers=ANN)).json()
    assert fixed == closed[0]
    current = (await http.get(f"/v1/commission-statements/ann/{this_month}", headers=ANN)).json()
    assert [(c["order_id"], c["refunded"], c["period"], c["amount"]) for c in current["clawbacks"]] == [
        (big, "1500.00", last_month, "100.00")
    ]
    assert (current["revenue"], current["commission"], current["payable"]) == ("0", "0.00", "-100.00")
    assert (await http.get("/v1/commission-statements/ann/2027-13", headers=ANN)).status_code == 422
