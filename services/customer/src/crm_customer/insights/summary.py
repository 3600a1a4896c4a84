"""A customer's summary card, folded from their timeline entries and profile. Pure.

Scores (value tier, lifecycle stage, monetary value, forecast lifetime value, churn risk and band, satisfaction)
are those of the newest segment change: scoring publishes one, with every score as it stood, whenever the
customer crosses a boundary, so the card shows the scores as of that change (`as_of`), not every later order's
effect; the realised value and the last order come from the orders themselves. Tickets and opportunities are
folded from their events oldest first, a cause before what it caused at one time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from crm_customer.domain import TimelineEntry
from crm_customer.insights.timeline import in_cause_order
from crm_shared.events import (
    OpportunityLostEvent,
    OpportunityOpenedEvent,
    OpportunityStageChangedEvent,
    OpportunityWonEvent,
    OrderCancelledEvent,
    OrderFulfilledEvent,
    OrderPaidEvent,
    OrderPlacedEvent,
    OrderRefundedEvent,
    SegmentChangedEvent,
    SlaBreachedEvent,
    SlaWarnedEvent,
    TicketOpenedEvent,
    TicketRepliedEvent,
    TicketStatusChangedEvent,
)

SEGMENT_CHANGED = SegmentChangedEvent.TYPE
ORDER_TYPES = frozenset(
    t.TYPE for t in (OrderPlacedEvent, OrderPaidEvent, OrderFulfilledEvent, OrderCancelledEvent, OrderRefundedEvent)
)
TICKET_TYPES = frozenset(
    t.TYPE for t in (TicketOpenedEvent, TicketStatusChangedEvent, TicketRepliedEvent, SlaWarnedEvent, SlaBreachedEvent)
)
OPPORTUNITY_TYPES = frozenset(
    t.TYPE for t in (OpportunityOpenedEvent, OpportunityStageChangedEvent, OpportunityWonEvent, OpportunityLostEvent)
)
OPEN_TICKET_STATUSES = frozenset({"new", "open", "pending"})
RESPONSE_TIMERS = frozenset({"first_response", "next_response"})

SlaState = Literal["none", "running", "warned", "breached"]
OrderStatus = Literal["placed", "paid", "fulfilled", "partially_refunded", "refunded", "cancelled"]


@dataclass(frozen=True)
class Scores:
    as_of: datetime
    """The time of the segment change they come from."""
    value_tier: str
    lifecycle_stage: str
    monetary: Decimal
    lifetime_value: Decimal | None
    churn_risk: float
    churn_risk_band: str
    satisfaction: float | None
    rfm_segment: str | None
    loyalty_stage: str | None


def scores_of(segment_change: TimelineEntry | None) -> Scores | None:
    """The scores a segment change carries (crm_shared.events.ScoreSnapshot)."""
    if segment_change is None:
        return None
    s = segment_change.data["scores"]
    return Scores(
        as_of=segment_change.time,
        value_tier=s["value_tier"],
        lifecycle_stage=s["lifecycle_stage"],
        monetary=Decimal(s["monetary"]),
        lifetime_value=Decimal(s["lifetime_value"]) if s.get("lifetime_value") is not None else None,
        churn_risk=float(s["churn_risk"]),
        churn_risk_band=s["churn_risk_band"],
        satisfaction=float(s["satisfaction"]) if s.get("satisfaction") is not None else None,
        rfm_segment=s.get("rfm_segment"),
        loyalty_stage=s.get("loyalty_stage"),
    )


# ---------------------------------------------------------------- orders


@dataclass
class Order:
    order_id: str
    placed_at: datetime | None = None
    total: Decimal | None = None
    currency: str | None = None
    channel: str | None = None
    paid: bool = False
    fulfilled: bool = False
    cancelled: bool = False
    refunded: Decimal = Decimal(0)

    @property
    def status(self) -> OrderStatus:
        if self.cancelled:
            return "cancelled"
        if self.refunded > 0:
            return "refunded" if self.total is not None and self.refunded >= self.total else "partially_refunded"
        if self.fulfilled:
            return "fulfilled"
        return "paid" if self.paid else "placed"

    @property
    def net(self) -> Decimal:
        """What the order is worth now: nothing once cancelled, else its total less what was refunded."""
        return Decimal(0) if self.cancelled or self.total is None else self.total - self.refunded


def orders_of(entries: Iterable[TimelineEntry]) -> dict[str, Order]:
    """Each order of the entries, by id, with what happened to it since it was placed."""
    orders: dict[str, Order] = {}
    for entry in in_cause_order(e for e in entries if e.type in ORDER_TYPES):
        d = entry.data
        order = orders.setdefault(d["order_id"], Order(d["order_id"]))
        if entry.type == OrderPlacedEvent.TYPE:
            order.placed_at, order.total, order.currency = entry.time, Decimal(d["total"]), d["currency"]
            order.channel = d.get("channel")
        elif entry.type == OrderPaidEvent.TYPE:
            order.paid = True
        elif entry.type == OrderFulfilledEvent.TYPE:
            order.fulfilled = True
        elif entry.type == OrderCancelledEvent.TYPE:
            order.cancelled = True
        else:
            order.refunded += Decimal(d["amount"])
    return orders


def last_order(orders: Mapping[str, Order]) -> Order | None:
    """The order placed last (by time, then id); None before the first."""
    placed = [o for o in orders.values() if o.placed_at is not None]
    return max(placed, key=lambda o: (o.placed_at, o.order_id), default=None)


def realised_value(orders: Mapping[str, Order]) -> dict[str, Decimal]:
    """The orders' worth, net of cancellations and refunds, per currency."""
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for order in orders.values():
        if order.placed_at is not None and order.currency is not None:
            totals[order.currency] += order.net
    return dict(sorted(totals.items()))


# ---------------------------------------------------------------- tickets


@dataclass
class Ticket:
    ticket_id: str
    opened_at: datetime | None = None
    kind: str | None = None
    priority: str | None = None
    channel: str | None = None
    status: str = "new"
    sla_policy_id: str | None = None
    warned: dict[tuple[str, int], datetime] = field(default_factory=dict)
    """Timers (timer, cycle) warned of and neither met nor breached since, with their due time."""
    breached: set[tuple[str, int]] = field(default_factory=set)
    status_known: bool = False

    @property
    def is_open(self) -> bool:
        return self.status_known and self.status in OPEN_TICKET_STATUSES

    @property
    def sla_state(self) -> SlaState:
        """breached once any timer breached; else warned while a warned timer is neither met nor breached; else
        running under a policy, none without one."""
        if self.breached:
            return "breached"
        if self.warned:
            return "warned"
        return "running" if self.sla_policy_id is not None else "none"


def tickets_of(entries: Iterable[TimelineEntry]) -> dict[str, Ticket]:
    """Each ticket of the entries, by id, as its events leave it. An agent's public reply meets the response
    timers warned of before it; resolving or closing meets the resolution timer."""
    tickets: dict[str, Ticket] = {}
    for entry in in_cause_order(e for e in entries if e.type in TICKET_TYPES):
        d = entry.data
        ticket = tickets.setdefault(d["ticket_id"], Ticket(d["ticket_id"]))
        if entry.type == TicketOpenedEvent.TYPE:
            ticket.opened_at, ticket.kind, ticket.priority = entry.time, d["kind"], d["priority"]
            ticket.channel, ticket.sla_policy_id = d.get("channel"), d.get("sla_policy_id")
            ticket.status_known = True
        elif entry.type == TicketStatusChangedEvent.TYPE:
            ticket.status, ticket.status_known = d["new"], True
            if d["new"] in ("resolved", "closed"):
                ticket.warned = {t: due for t, due in ticket.warned.items() if t[0] != "resolution"}
        elif entry.type == TicketRepliedEvent.TYPE:
            if d["author"] == "agent" and d["public"]:
                ticket.warned = {t: due for t, due in ticket.warned.items() if t[0] not in RESPONSE_TIMERS}
        else:
            timer = (d["timer"], int(d.get("cycle", 1)))
            ticket.sla_policy_id = ticket.sla_policy_id or d.get("policy_id")
            if entry.type == SlaBreachedEvent.TYPE:
                ticket.breached.add(timer)
                ticket.warned.pop(timer, None)
            elif timer not in ticket.breached:
                ticket.warned[timer] = d["due_at"]
    return tickets


def open_tickets(tickets: Mapping[str, Ticket]) -> list[Ticket]:
    """The tickets new, open or pending, newest first."""
    opened = [t for t in tickets.values() if t.is_open]
    return sorted(opened, key=lambda t: (t.opened_at is not None, t.opened_at, t.ticket_id), reverse=True)


# ---------------------------------------------------------------- opportunities


@dataclass
class Opportunity:
    opportunity_id: str
    opened_at: datetime | None = None
    name: str | None = None
    stage: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    probability: float | None = None
    forecast_category: str | None = None
    expected_close: str | None = None
    owner_id: str | None = None
    closed: bool = False


def opportunities_of(entries: Iterable[TimelineEntry]) -> dict[str, Opportunity]:
    """Each opportunity of the entries, by id: its stage and amount as they stand, closed once won or lost."""
    found: dict[str, Opportunity] = {}
    for entry in in_cause_order(e for e in entries if e.type in OPPORTUNITY_TYPES):
        d = entry.data
        opportunity = found.setdefault(d["opportunity_id"], Opportunity(d["opportunity_id"]))
        opportunity.amount, opportunity.currency = Decimal(d["amount"]), d["currency"]
        if entry.type == OpportunityOpenedEvent.TYPE:
            opportunity.opened_at, opportunity.name, opportunity.stage = entry.time, d["name"], d["stage"]
            opportunity.probability, opportunity.forecast_category = float(d["probability"]), d["forecast_category"]
            opportunity.expected_close = _text(d.get("expected_close"))
            opportunity.owner_id = d.get("owner_id")
        elif entry.type == OpportunityStageChangedEvent.TYPE:
            opportunity.stage = d["to_stage"]
            opportunity.probability, opportunity.forecast_category = float(d["probability"]), d["forecast_category"]
        else:
            opportunity.closed = True
    return found


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def open_opportunities(opportunities: Mapping[str, Opportunity]) -> list[Opportunity]:
    """The opportunities opened and neither won nor lost, newest first (one known only from a stage change,
    whose opening is not on the timeline, too)."""
    still = [o for o in opportunities.values() if not o.closed]
    return sorted(still, key=lambda o: (o.opened_at is not None, o.opened_at, o.opportunity_id), reverse=True)


def pipeline(opportunities: Iterable[Opportunity]) -> dict[str, Decimal]:
    """The amounts of the opportunities, per currency."""
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for o in opportunities:
        if o.amount is not None and o.currency is not None:
            totals[o.currency] += o.amount
    return dict(sorted(totals.items()))


# ---------------------------------------------------------------- the card


@dataclass(frozen=True)
class Summary:
    customer_id: str
    owner_id: str | None
    territory: str | None
    scores: Scores | None
    orders: int
    """Orders placed and not cancelled."""
    realised_value: Mapping[str, Decimal]
    last_order: Order | None
    open_tickets: list[Ticket]
    open_opportunities: list[Opportunity]
    open_pipeline: Mapping[str, Decimal]


def summarize(
    customer_id: str,
    *,
    segment_change: TimelineEntry | None,
    entries: Iterable[TimelineEntry],
    profile: Mapping[str, Any] | None,
) -> Summary:
    """The card from the newest segment change, the entries of the customer's orders, tickets (with their SLA
    events) and opportunities, and the profile's owner and territory (None: no profile yet)."""
    listed = list(entries)
    orders = orders_of(listed)
    still_open = open_opportunities(opportunities_of(listed))
    return Summary(
        customer_id=customer_id,
        owner_id=(profile or {}).get("owner_id"),
        territory=(profile or {}).get("territory"),
        scores=scores_of(segment_change),
        orders=sum(1 for o in orders.values() if o.placed_at is not None and not o.cancelled),
        realised_value=realised_value(orders),
        last_order=last_order(orders),
        open_tickets=open_tickets(tickets_of(listed)),
        open_opportunities=still_open,
        open_pipeline=pipeline(still_open),
    )
