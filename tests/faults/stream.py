"""The generated stream of channel events and what the platform must end with, from the events alone.

Each fault runs on customers of its own (`F<n>-...`), so one fault's leftovers never count for another.
The expected outcome (the oracle) is computed here from the generated events, never read from a service:
every order stored once with its final status, each customer's frequency and net revenue, each complaint,
survey and interaction once, and a timeline entry per order.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from crm_shared.events import (
    CloudEvent,
    ComplaintFiled,
    ComplaintFiledEvent,
    InteractionLogged,
    InteractionLoggedEvent,
    OrderCancelled,
    OrderCancelledEvent,
    OrderPaid,
    OrderPaidEvent,
    OrderPlaced,
    OrderPlacedEvent,
    OrderRefunded,
    OrderRefundedEvent,
    SurveyAnswered,
    SurveyAnsweredEvent,
    utc_now,
)
from crm_shared.topics import Topic

CENT = Decimal("0.01")


@dataclass(frozen=True)
class Record:
    """One record as a channel system publishes it: a topic, the customer id as key, a CloudEvent."""

    topic: str
    key: bytes
    value: bytes
    event_id: str | None
    customer_id: str | None


@dataclass
class OrderFacts:
    customer_id: str
    total: Decimal
    paid: bool = False
    cancelled: bool = False
    refunded: Decimal = Decimal(0)

    @property
    def counts(self) -> bool:
        return not self.cancelled

    @property
    def net(self) -> Decimal:
        return self.total - min(self.refunded, self.total) if self.counts else Decimal(0)


@dataclass
class Stream:
    """A fault's events, in the order a channel system would send them, and the oracle's facts."""

    prefix: str
    records: list[Record] = field(default_factory=list)
    orders: dict[str, OrderFacts] = field(default_factory=dict)
    complaints: Counter[str] = field(default_factory=Counter)
    surveys: Counter[str] = field(default_factory=Counter)
    interactions: Counter[str] = field(default_factory=Counter)
    poison: list[tuple[Record, str]] = field(default_factory=list)
    """Records that must be dead-lettered, each with a word its reason must hold."""

    @property
    def customers(self) -> list[str]:
        return sorted({o.customer_id for o in self.orders.values()})

    @property
    def event_ids(self) -> set[str]:
        return {r.event_id for r in self.records if r.event_id is not None}

    def frequency(self, customer_id: str) -> int:
        return sum(1 for o in self.orders.values() if o.customer_id == customer_id and o.counts)

    def monetary(self, customer_id: str) -> Decimal:
        return sum((o.net for o in self.orders.values() if o.customer_id == customer_id), Decimal(0)).quantize(CENT)

    def orders_of(self, customer_id: str) -> dict[str, OrderFacts]:
        return {i: o for i, o in self.orders.items() if o.customer_id == customer_id}


def _record(topic: str, event: CloudEvent[Any]) -> Record:
    return Record(topic, event.subject.encode(), event.to_bytes(), event.id, event.subject)


def generate(prefix: str, customers: int, seed: int) -> Stream:
    """`customers` customers, each with one to five orders (some paid, cancelled or refunded), and for a share of
    them a complaint, a survey answer and an interaction; every event with a unique id and a time in the past."""
    rng = random.Random(seed)
    stream = Stream(prefix)
    now = utc_now().replace(microsecond=0)
    timed: list[tuple[datetime, Record]] = []
    for c in range(customers):
        customer = f"{prefix}-C{c:04d}"
        start = now - timedelta(days=rng.randint(120, 400))
        for o in range(rng.randint(1, 5)):
            order_id = f"{prefix}-O{c:04d}-{o}"
            at = start + timedelta(days=o * rng.randint(1, 20), hours=rng.randint(0, 10))
            total = Decimal(rng.randint(500, 40_000)) / 100
            facts = OrderFacts(customer, total)
            stream.orders[order_id] = facts
            placed = OrderPlacedEvent.create(
                OrderPlaced(customer_id=customer, order_id=order_id, currency="EUR", total=total),
                source="/channels/web-shop",
                id=f"{order_id}-placed",
                time=at,
            )
            timed.append((at, _record(Topic.INGEST_ORDERS, placed)))
            roll = rng.random()
            if roll < 0.5:
                facts.paid = True
                paid = OrderPaidEvent.create(
                    OrderPaid(customer_id=customer, order_id=order_id, currency="EUR", amount=total),
                    source="/channels/payments",
                    id=f"{order_id}-paid",
                    time=at + timedelta(minutes=5),
                )
                timed.append((at + timedelta(minutes=5), _record(Topic.INGEST_ORDERS, paid)))
            elif roll < 0.6:
                facts.cancelled = True
                cancelled = OrderCancelledEvent.create(
                    OrderCancelled(customer_id=customer, order_id=order_id, reason="changed my mind"),
                    source="/channels/web-shop",
                    id=f"{order_id}-cancelled",
                    time=at + timedelta(hours=1),
                )
                timed.append((at + timedelta(hours=1), _record(Topic.INGEST_ORDERS, cancelled)))
            elif roll < 0.7:
                amount = (total / 2).quantize(CENT)
                facts.refunded = amount
                refunded = OrderRefundedEvent.create(
                    OrderRefunded(customer_id=customer, order_id=order_id, currency="EUR", amount=amount),
                    source="/channels/payments",
                    id=f"{order_id}-refunded",
                    time=at + timedelta(days=2),
                )
                timed.append((at + timedelta(days=2), _record(Topic.INGEST_ORDERS, refunded)))
        later = start + timedelta(days=rng.randint(1, 25), hours=rng.randint(0, 8))
        if rng.random() < 0.15:
            stream.complaints[customer] += 1
            complaint = ComplaintFiledEvent.create(
                ComplaintFiled(
                    customer_id=customer,
                    complaint_id=f"{prefix}-T{c:04d}",
                    dimension=rng.choice(("product", "service", "people")),
                    severity=rng.choice(("low", "medium", "high")),
                    summary="The parcel arrived late.",
                ),
                source="/channels/call-centre",
                id=f"{prefix}-T{c:04d}-filed",
                time=later,
            )
            timed.append((later, _record(Topic.INGEST_TICKETS, complaint)))
        if rng.random() < 0.15:
            stream.surveys[customer] += 1
            survey = SurveyAnsweredEvent.create(
                SurveyAnswered(
                    customer_id=customer,
                    survey_id=f"{prefix}-S{c:04d}",
                    kind="csat",
                    score=rng.randint(1, 5),
                    dimension=rng.choice(("product", "service", "people")),
                ),
                source="/channels/surveys",
                id=f"{prefix}-S{c:04d}-answered",
                time=later + timedelta(hours=1),
            )
            timed.append((later + timedelta(hours=1), _record(Topic.INGEST_TICKETS, survey)))
        if rng.random() < 0.3:
            stream.interactions[customer] += 1
            interaction = InteractionLoggedEvent.create(
                InteractionLogged(
                    customer_id=customer, interaction_id=f"{prefix}-I{c:04d}", kind="call", channel="call_centre"
                ),
                source="/channels/call-centre",
                id=f"{prefix}-I{c:04d}-logged",
                time=later + timedelta(hours=2),
            )
            timed.append((later + timedelta(hours=2), _record(Topic.INGEST_INTERACTIONS, interaction)))
    timed.sort(key=lambda item: item[0])
    stream.records = [record for _, record in timed]
    return stream


def redelivered(stream: Stream, seed: int) -> list[Record]:
    """Every record two to five times, the copies spread over the stream, and one customer's records shuffled
    among themselves (their order of arrival says nothing)."""
    rng = random.Random(seed)
    shuffled = stream.customers[0]
    own = [r for r in stream.records if r.customer_id == shuffled]
    rng.shuffle(own)
    mixed = iter(own)
    records = [next(mixed) if r.customer_id == shuffled else r for r in stream.records]
    copies: list[tuple[float, Record]] = []
    for position, record in enumerate(records):
        for _ in range(rng.randint(2, 5)):
            copies.append((position + rng.random() * 40, record))
    # A customer's copies keep one partition, so only the shuffled customer's first copies change order.
    copies.sort(key=lambda item: item[0])
    return [record for _, record in copies]


def with_poison(stream: Stream, seed: int) -> list[Record]:
    """The stream with bad records among the good ones; each bad one is noted with what its letter must say."""
    rng = random.Random(seed)
    good = json.loads(stream.records[0].value)
    customer = str(good["subject"])
    key = customer.encode()

    made = iter(range(1_000_000))

    def variant(**changes: Any) -> bytes:
        body = {**good, "id": f"{stream.prefix}-poison-{next(made)}", **changes}
        return json.dumps(body).encode()

    def data(**changes: Any) -> dict[str, Any]:
        return {**good["data"], **changes}

    stream.poison.extend(
        [
            (Record(Topic.INGEST_ORDERS, key, b"{not json", None, customer), "json"),
            (Record(Topic.INGEST_ORDERS, key, variant(type="crm.order.teleported.v1"), None, customer), "type"),
            (Record(Topic.INGEST_ORDERS, key, variant(type="crm.order.placed.v9"), None, customer), "type"),
            (Record(Topic.INGEST_ORDERS, key, variant(data=data(total="NaN")), None, customer), "total"),
            (Record(Topic.INGEST_ORDERS, key, variant(data=data(total={"amount": 5})), None, customer), "total"),
            # 900 KB: under the broker's limit, far over what the field may hold.
            (
                Record(Topic.INGEST_ORDERS, key, variant(data=data(product_line="x" * 900_000)), None, customer),
                "product_line",
            ),
        ]
    )
    records = list(stream.records)
    for record, _ in stream.poison:
        records.insert(rng.randint(0, len(records)), record)
    return records
