"""Orders as facts: any arrival order gives the same order, contradictions are refused."""

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from crm_sales.orders import domain
from crm_shared.events import OrderCancelled, OrderFulfilled, OrderPaid, OrderPlaced, OrderRefunded

T0 = datetime(2026, 11, 1, tzinfo=UTC)
PLACED = OrderPlaced(order_id="O-1", customer_id="C-1", currency="EUR", total=Decimal("100.00"))
PAID = OrderPaid(order_id="O-1", customer_id="C-1", currency="EUR", amount=Decimal("100.00"))
REFUND = OrderRefunded(order_id="O-1", customer_id="C-1", currency="EUR", amount=Decimal("40.00"))


def test_a_placed_order_is_placed_then_paid() -> None:
    order = domain.place(None, PLACED, T0)
    assert order.status == "placed" and order.total == Decimal("100.00")
    order = domain.pay(order, PAID, "e-pay", T0 + timedelta(minutes=5))
    assert order.status == "paid" and order.paid == Decimal("100.00")


def test_placing_the_same_order_twice_changes_nothing() -> None:
    order = domain.place(None, PLACED, T0)
    assert domain.place(order, PLACED, T0 + timedelta(days=1)) == order


def test_placing_an_order_id_again_with_other_content_is_refused() -> None:
    order = domain.place(None, PLACED, T0)
    other = PLACED.model_copy(update={"total": Decimal("99.00")})
    with pytest.raises(domain.OrderRejected, match="already placed with different content"):
        domain.place(order, other, T0)


def test_an_order_of_another_customer_is_refused() -> None:
    order = domain.place(None, PLACED, T0)
    with pytest.raises(domain.OrderRejected, match="belongs to customer C-1, not C-2"):
        domain.pay(order, PAID.model_copy(update={"customer_id": "C-2"}), "e", T0)


def test_refunds_may_not_exceed_the_total() -> None:
    order = domain.refund(domain.place(None, PLACED, T0), REFUND, "r1", T0)
    order = domain.refund(order, REFUND, "r2", T0)
    with pytest.raises(domain.OrderRejected, match=r"would exceed its total 100\.00"):
        domain.refund(order, REFUND, "r3", T0)


def test_a_partial_refund_then_the_rest_makes_the_order_refunded_and_cancel_wins() -> None:
    paid = domain.pay(domain.place(None, PLACED, T0), PAID, "e-pay", T0)
    partly = domain.refund(paid, REFUND, "r1", T0)
    assert (partly.status, partly.refunded) == ("partially_refunded", Decimal("40.00"))
    rest = REFUND.model_copy(update={"amount": Decimal("60.00")})
    order = domain.refund(partly, rest, "r2", T0)
    assert order.status == "refunded"
    cancelled = domain.cancel(order, OrderCancelled(order_id="O-1", customer_id="C-1"), T0)
    assert cancelled.status == "cancelled"


def test_facts_in_any_order_give_the_same_order() -> None:
    steps = [
        lambda o: domain.place(o, PLACED, T0),
        lambda o: domain.pay(o, PAID, "e-pay", T0 + timedelta(hours=1)),
        lambda o: domain.refund(o, REFUND, "e-ref", T0 + timedelta(hours=2)),
    ]
    results = set()
    for permutation in itertools.permutations(steps):
        order = None
        for step in permutation:
            order = step(order)
        assert order is not None
        results.add((order.status, order.paid, order.refunded, order.placed_at))
    assert results == {("partially_refunded", Decimal("100.00"), Decimal("40.00"), T0)}


def test_a_payment_before_its_order_waits_for_it() -> None:
    early = domain.pay(None, PAID, "e-pay", T0)
    assert early.status == "awaiting_order"
    assert domain.place(early, PLACED, T0).status == "paid"


# ---------------------------------------------------------------- one currency per order

USD_REFUND = OrderRefunded(order_id="O-1", customer_id="C-1", currency="USD", amount=Decimal("5"))
USD_PAYMENT = OrderPaid(order_id="O-1", customer_id="C-1", currency="USD", amount=Decimal("100.00"))


def test_a_refund_in_another_currency_than_its_order_is_refused() -> None:
    order = domain.place(None, PLACED, T0)
    with pytest.raises(
        domain.OrderRejected,
        match=r"refund of 5 USD on order O-1 refused: the order is in EUR, and a refund must be in its order's "
        r"currency",
    ):
        domain.refund(order, USD_REFUND, "r-usd", T0)
    assert order.refunded == Decimal(0)


def test_a_payment_in_another_currency_than_its_order_is_refused() -> None:
    order = domain.place(None, PLACED, T0)
    with pytest.raises(domain.OrderRejected, match=r"payment of 100\.00 USD on order O-1 refused: the order is in EUR"):
        domain.pay(order, USD_PAYMENT, "p-usd", T0)


def test_a_payment_kept_before_its_order_refuses_an_order_in_another_currency() -> None:
    early = domain.pay(None, USD_PAYMENT, "p-usd", T0)
    assert (early.status, early.currency) == ("awaiting_order", "USD")
    with pytest.raises(
        domain.OrderRejected,
        match=r"order O-1 in EUR refused: a payment of 100\.00 USD \(event p-usd\) was kept for it before it arrived",
    ):
        domain.place(early, PLACED, T0)
    # The same order in the payment's currency is placed, and paid.
    assert domain.place(early, PLACED.model_copy(update={"currency": "USD"}), T0).status == "paid"


def test_facts_kept_before_their_order_share_one_currency() -> None:
    early = domain.refund(None, REFUND, "r-eur", T0)
    with pytest.raises(domain.OrderRejected, match=r"kept for it until the order arrives are in EUR"):
        domain.pay(early, USD_PAYMENT, "p-usd", T0)
    assert domain.pay(early, PAID, "p-eur", T0).currency == "EUR"


def test_a_fact_recorded_without_its_currency_takes_its_orders() -> None:
    legacy = domain.Order(
        order_id="O-1", customer_id="C-1", refunds=(domain.MoneyFact("r-old", Decimal("40.00"), T0, None),)
    )
    assert legacy.currency is None
    order = domain.place(legacy, PLACED, T0)
    assert [r.currency for r in order.refunds] == ["EUR"]
    assert order.refunded == Decimal("40.00")


def test_a_fulfilled_order_keeps_every_tracking_step_and_a_cancelled_one_is_not_fulfilled() -> None:
    shipped = OrderFulfilled(order_id="O-1", customer_id="C-1", carrier="DHL", tracking_number="JD1", location="Depot")
    moved = shipped.model_copy(update={"location": "Out for delivery"})
    paid = domain.pay(domain.place(None, PLACED, T0), PAID, "e-pay", T0)
    order = domain.fulfil(domain.fulfil(paid, shipped, "e-ship", T0 + timedelta(days=1)), moved, "e-move", T0)
    assert order.status == "fulfilled"
    assert [(s.event_id, s.location) for s in order.shipments] == [("e-ship", "Depot"), ("e-move", "Out for delivery")]
    # A refund wins over the fulfilment: a partial one makes it partially refunded (tracking stays).
    partly = domain.refund(order, REFUND, "e-r1", T0)
    assert (partly.status, partly.refunded, len(partly.shipments)) == ("partially_refunded", Decimal("40.00"), 2)
    assert domain.refund(order, REFUND.model_copy(update={"amount": Decimal("100.00")}), "e-r", T0).status == (
        "refunded"
    )
    # Before its order it waits, as a payment does.
    early = domain.fulfil(None, shipped, "e-ship", T0)
    assert early.status == "awaiting_order" and domain.place(early, PLACED, T0).status == "fulfilled"
    cancelled = domain.cancel(paid, OrderCancelled(order_id="O-1", customer_id="C-1"), T0)
    with pytest.raises(domain.OrderRejected, match="a cancelled order is not fulfilled"):
        domain.fulfil(cancelled, shipped, "e-ship", T0)
    with pytest.raises(domain.OrderRejected, match="belongs to customer C-1, not C-2"):
        domain.fulfil(paid, shipped.model_copy(update={"customer_id": "C-2"}), "e", T0)
