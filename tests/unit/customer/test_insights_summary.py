"""The summary card's fold of a customer's timeline entries, without a database."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from crm_customer import domain
from crm_customer.insights import summary
from crm_shared.events import (
    EVENT_TYPES,
    OpportunityLost,
    OpportunityOpened,
    OpportunityStageChanged,
    OpportunityWon,
    OrderCancelled,
    OrderFulfilled,
    OrderPaid,
    OrderPlaced,
    OrderRefunded,
    Payload,
    ScoreSnapshot,
    SegmentChanged,
    SlaBreached,
    SlaWarned,
    TicketOpened,
    TicketReplied,
    TicketStatusChanged,
)

T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)
C = "C-1"


def entry(type_: str, data: Payload, at: datetime, id: str | None = None) -> domain.TimelineEntry:
    return domain.timeline_entry(EVENT_TYPES[type_].create(data, source="/test", time=at, id=id))


def placed(order_id: str, total: str, at: datetime, **more: Any) -> domain.TimelineEntry:
    data = OrderPlaced(customer_id=C, order_id=order_id, currency="EUR", total=Decimal(total), **more)
    return entry("crm.order.placed.v1", data, at)


def snapshot(**changes: Any) -> ScoreSnapshot:
    base: dict[str, Any] = {
        "recency_days": 0,
        "frequency": 2,
        "monetary": Decimal("1700.00"),
        "average_order_value": Decimal("850.00"),
        "value_tier": "high_value",
        "lifecycle_stage": "repeat_buyer",
        "churn_risk": 0.2,
        "churn_risk_band": "low",
        "satisfaction": 0.8,
        "lifetime_value": Decimal("4200.50"),
    }
    return ScoreSnapshot(**{**base, **changes})


def segment_change(at: datetime, **changes: Any) -> domain.TimelineEntry:
    data = SegmentChanged(
        customer_id=C,
        dimension="value_tier",
        old="potential",
        new="high_value",
        scores=snapshot(**changes),
        model_version="1",
        changed_at=at,
        caused_by="o-1",
    )
    return entry("crm.segment.changed.v1", data, at)


def test_the_scores_are_those_of_the_segment_change() -> None:
    scores = summary.scores_of(segment_change(T0))
    assert scores == summary.Scores(
        as_of=T0,
        value_tier="high_value",
        lifecycle_stage="repeat_buyer",
        monetary=Decimal("1700.00"),
        lifetime_value=Decimal("4200.50"),
        churn_risk=0.2,
        churn_risk_band="low",
        satisfaction=0.8,
        rfm_segment=None,
        loyalty_stage=None,
    )
    assert summary.scores_of(segment_change(T0, lifetime_value=None, satisfaction=None)) is not None
    assert summary.scores_of(None) is None


def test_orders_fold_to_their_status_the_last_order_and_the_realised_value() -> None:
    entries = [
        placed("O-1", "1000.00", T0),
        entry("crm.order.paid.v1", OrderPaid(customer_id=C, order_id="O-1", currency="EUR", amount="1000.00"), T0),
        entry("crm.order.fulfilled.v1", OrderFulfilled(customer_id=C, order_id="O-1"), T0 + timedelta(hours=1)),
        entry(
            "crm.order.refunded.v1",
            OrderRefunded(customer_id=C, order_id="O-1", currency="EUR", amount="250.00"),
            T0 + timedelta(days=2),
        ),
        placed("O-2", "80.00", T0 + timedelta(days=3)),
        entry("crm.order.cancelled.v1", OrderCancelled(customer_id=C, order_id="O-2"), T0 + timedelta(days=3)),
        placed("O-3", "40.00", T0 + timedelta(days=1), channel="pos"),
        entry(
            "crm.order.placed.v1",
            OrderPlaced(customer_id=C, order_id="O-4", currency="USD", total=Decimal("10.00")),
            T0 + timedelta(hours=5),
        ),
    ]
    orders = summary.orders_of(entries)
    assert {o: orders[o].status for o in orders} == {
        "O-1": "partially_refunded",
        "O-2": "cancelled",
        "O-3": "placed",
        "O-4": "placed",
    }
    last = summary.last_order(orders)
    assert last is not None and (last.order_id, last.status, last.total) == ("O-2", "cancelled", Decimal("80.00"))
    assert summary.realised_value(orders) == {"EUR": Decimal("790.00"), "USD": Decimal("10.00")}
    assert summary.last_order({}) is None


def ticket_opened(ticket_id: str, at: datetime, policy: str | None = "gold") -> domain.TimelineEntry:
    data = TicketOpened(
        customer_id=C, ticket_id=ticket_id, kind="complaint", channel="email", priority="high", sla_policy_id=policy
    )
    return entry("crm.ticket.opened.v1", data, at)


def status(ticket_id: str, old: str, new: str, at: datetime) -> domain.TimelineEntry:
    data = TicketStatusChanged(customer_id=C, ticket_id=ticket_id, old=old, new=new)
    return entry("crm.ticket.status_changed.v1", data, at)


def warned(ticket_id: str, timer: str, at: datetime) -> domain.TimelineEntry:
    data = SlaWarned(customer_id=C, ticket_id=ticket_id, timer=timer, policy_id="gold", due_at=at + timedelta(hours=1))
    return entry("crm.sla.warned.v1", data, at)


def breached(ticket_id: str, timer: str, at: datetime) -> domain.TimelineEntry:
    data = SlaBreached(customer_id=C, ticket_id=ticket_id, timer=timer, policy_id="gold", due_at=at)
    return entry("crm.sla.breached.v1", data, at)


def agent_reply(ticket_id: str, at: datetime, public: bool = True) -> domain.TimelineEntry:
    data = TicketReplied(
        customer_id=C, ticket_id=ticket_id, post_id=f"P-{at.timestamp()}", author="agent", public=public
    )
    return entry("crm.ticket.replied.v1", data, at)


def test_open_tickets_and_their_sla_state_in_any_arrival_order() -> None:
    entries = [
        # T-1: warned of its first response, then answered in public: running again.
        ticket_opened("T-1", T0),
        warned("T-1", "first_response", T0 + timedelta(hours=1)),
        agent_reply("T-1", T0 + timedelta(hours=2)),
        status("T-1", "new", "open", T0 + timedelta(hours=2)),
        # T-2: warned, an internal note only: still warned; then resolution breached.
        ticket_opened("T-2", T0 + timedelta(hours=3)),
        warned("T-2", "first_response", T0 + timedelta(hours=4)),
        agent_reply("T-2", T0 + timedelta(hours=5), public=False),
        # T-3: breached, answered and pending: a breach stays a breach.
        ticket_opened("T-3", T0 + timedelta(hours=6)),
        breached("T-3", "first_response", T0 + timedelta(hours=7)),
        agent_reply("T-3", T0 + timedelta(hours=8)),
        status("T-3", "new", "pending", T0 + timedelta(hours=8)),
        # T-4: resolved: not open. T-5: no SLA policy.
        ticket_opened("T-4", T0),
        status("T-4", "new", "resolved", T0 + timedelta(hours=1)),
        ticket_opened("T-5", T0 + timedelta(hours=9), policy=None),
        # T-6: only an SLA warning is known: whether it is open is not.
        warned("T-6", "resolution", T0),
    ]
    for arrival in (entries, entries[::-1]):
        tickets = summary.open_tickets(summary.tickets_of(arrival))
        states = [(t.ticket_id, t.status, t.sla_state) for t in tickets]
        assert states == [
            ("T-5", "new", "none"),
            ("T-3", "pending", "breached"),
            ("T-2", "new", "warned"),
            ("T-1", "open", "running"),
        ]
    t2 = summary.tickets_of(entries)["T-2"]
    assert t2.warned == {("first_response", 1): T0 + timedelta(hours=5)}


def test_a_ticket_reopened_is_open_again_and_resolving_meets_a_resolution_warning() -> None:
    entries = [
        ticket_opened("T-1", T0),
        warned("T-1", "resolution", T0 + timedelta(hours=1)),
        status("T-1", "new", "resolved", T0 + timedelta(hours=2)),
        status("T-1", "resolved", "open", T0 + timedelta(hours=3)),
    ]
    [ticket] = summary.open_tickets(summary.tickets_of(entries))
    assert (ticket.status, ticket.sla_state) == ("open", "running")


def opened(opportunity_id: str, amount: str, at: datetime, currency: str = "EUR") -> domain.TimelineEntry:
    data = OpportunityOpened(
        customer_id=C,
        opportunity_id=opportunity_id,
        pipeline_id="default",
        stage="qualify",
        name=f"Deal {opportunity_id}",
        amount=Decimal(amount),
        currency=currency,
        probability=0.2,
        forecast_category="pipeline",
        expected_close=(T0 + timedelta(days=30)).date(),
        owner_id="rep-1",
    )
    return entry("crm.opportunity.opened.v1", data, at)


def test_open_opportunities_are_those_neither_won_nor_lost_with_their_latest_stage_and_amount() -> None:
    moved = OpportunityStageChanged(
        customer_id=C,
        opportunity_id="OP-1",
        pipeline_id="default",
        from_stage="qualify",
        to_stage="propose",
        probability=0.6,
        forecast_category="best_case",
        amount=Decimal("12000.00"),
        currency="EUR",
    )
    won = OpportunityWon(customer_id=C, opportunity_id="OP-2", pipeline_id="default", amount="500.00", currency="EUR")
    lost = OpportunityLost(
        customer_id=C, opportunity_id="OP-3", pipeline_id="default", amount="9.00", currency="EUR", reason="Price"
    )
    entries = [
        opened("OP-1", "10000.00", T0),
        entry("crm.opportunity.stage_changed.v1", moved, T0 + timedelta(days=1)),
        opened("OP-2", "500.00", T0),
        entry("crm.opportunity.won.v1", won, T0 + timedelta(days=2)),
        opened("OP-3", "9.00", T0),
        entry("crm.opportunity.lost.v1", lost, T0 + timedelta(days=2)),
        opened("OP-4", "300.00", T0 + timedelta(days=3), currency="USD"),
    ]
    still = summary.open_opportunities(summary.opportunities_of(entries[::-1]))
    assert [(o.opportunity_id, o.stage, o.amount, o.probability) for o in still] == [
        ("OP-4", "qualify", Decimal("300.00"), 0.2),
        ("OP-1", "propose", Decimal("12000.00"), 0.6),
    ]
    assert still[1].expected_close == "2026-12-20" and still[1].name == "Deal OP-1"
    assert summary.pipeline(still) == {"EUR": Decimal("12000.00"), "USD": Decimal("300.00")}


def test_the_card_puts_it_together_with_the_owner_of_the_profile() -> None:
    entries = [placed("O-1", "1500.00", T0), ticket_opened("T-1", T0), opened("OP-1", "100.00", T0)]
    card = summary.summarize(
        C, segment_change=segment_change(T0), entries=entries, profile={"owner_id": "rep-1", "territory": "north"}
    )
    assert (card.owner_id, card.territory, card.orders) == ("rep-1", "north", 1)
    assert card.scores is not None and card.scores.value_tier == "high_value"
    assert card.realised_value == {"EUR": Decimal("1500.00")}
    assert [t.ticket_id for t in card.open_tickets] == ["T-1"]
    assert card.open_pipeline == {"EUR": Decimal("100.00")}
    empty = summary.summarize(C, segment_change=None, entries=[], profile=None)
    assert (empty.owner_id, empty.scores, empty.last_order, empty.orders) == (None, None, None, 0)
    assert empty.open_tickets == [] and empty.open_opportunities == [] and empty.realised_value == {}
