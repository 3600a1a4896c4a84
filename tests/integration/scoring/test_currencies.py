"""Scores in the reporting currency on the real database: each order converted at its currency's rate and the
conversion shown in the scores' inputs; an order in a currency with no rate is refused, not summed."""

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from crm_scoring import handlers, repository
from crm_scoring.app import create_service
from crm_scoring.settings import ScoringSettings
from crm_shared.consumer import Rejected
from crm_shared.events import OrderPlaced, OrderPlacedEvent, OrderRefunded, OrderRefundedEvent
from crm_shared.store import PROCESSED, Store

from helpers import ADMIN_HEADERS

NewStore = Callable[..., Awaitable[Store]]
T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)
SHOWN = ("order_id", "currency", "total", "refunded", "net_value", "exchange_rate", "converted_net_value", "counts")


def order(customer: str, order_id: str, currency: str, total: str, at: datetime) -> OrderPlacedEvent:
    data = OrderPlaced(customer_id=customer, order_id=order_id, currency=currency, total=Decimal(total))
    return OrderPlacedEvent.create(data, source="/crm/sales", time=at)


def refund(customer: str, order_id: str, currency: str, amount: str, at: datetime) -> OrderRefundedEvent:
    data = OrderRefunded(customer_id=customer, order_id=order_id, currency=currency, amount=Decimal(amount))
    return OrderRefundedEvent.create(data, source="/crm/sales", time=at)


async def test_the_scores_convert_each_order_and_show_the_conversion(new_store: NewStore) -> None:
    store = await new_store("scoring_fx", repository.INDEXES)
    app = create_service(ScoringSettings(CRM_EXCHANGE_RATES={"EUR": "1", "USD": "0.90"}))
    app.state.runtime.store = store
    thresholds = app.state.runtime.settings.thresholds
    customer = f"C-{uuid.uuid4().hex[:8]}"
    await handlers.apply_event(store, order(customer, "O-1", "EUR", "100.00", T0), thresholds)
    await handlers.apply_event(store, order(customer, "O-2", "USD", "200.00", T0 + timedelta(days=1)), thresholds)
    await handlers.apply_event(store, refund(customer, "O-2", "USD", "50.00", T0 + timedelta(days=2)), thresholds)

    unscorable = order(customer, "O-3", "XXX", "999.00", T0 + timedelta(days=3))
    with pytest.raises(Rejected) as refused:
        await handlers.apply_event(store, unscorable, thresholds)
    assert str(refused.value) == (
        "order O-3 not scored: currency XXX has no exchange rate into the reporting currency EUR, so the platform "
        "cannot score it; the accepted currencies are EUR, USD (CRM_EXCHANGE_RATES)"
    )
    assert await store.db[PROCESSED].count_documents({"_id": f"scoring:{unscorable.id}"}) == 0
    mismatched = refund(customer, "O-1", "USD", "5.00", T0 + timedelta(days=3))
    with pytest.raises(Rejected, match=r"refund of 5\.00 USD on order O-1 contradicts its currency: the order is in"):
        await handlers.apply_event(store, mismatched, thresholds)

    async with httpx.AsyncClient(
        headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://scoring"
    ) as http:
        body = (await http.get(f"/v1/customers/{customer}/scores")).json()

    # 100.00 EUR + (200.00 - 50.00) USD x 0.90 = 100.00 + 135.00 = 235.00 EUR (not 250.00).
    assert body["reporting_currency"] == "EUR"
    assert (body["frequency"], body["monetary"], body["average_order_value"]) == (2, "235.00", "117.50")
    inputs = body["inputs"]
    assert inputs["reporting_currency"] == "EUR"
    shown = [tuple(o[f] for f in SHOWN) for o in inputs["orders"]]
    assert shown == [
        ("O-1", "EUR", "100.00", "0", "100.00", "1", "100.00", True),
        ("O-2", "USD", "200.00", "50.00", "150.00", "0.90", "135.00", True),
    ]
