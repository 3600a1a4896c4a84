"""The time-decay pass on the real database: only due customers, one change per boundary, reruns emit nothing."""

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx

from crm_scoring import handlers, repository
from crm_scoring.app import create_service
from crm_scoring.domain import Thresholds
from crm_scoring.settings import ScoringSettings
from crm_shared.events import (
    ComplaintFiled,
    ComplaintFiledEvent,
    OrderPlaced,
    OrderPlacedEvent,
    derived_event_id,
)
from crm_shared.store import Store, outbox_records

from helpers import ADMIN_HEADERS

NewStore = Callable[..., Awaitable[Store]]
THRESHOLDS = Thresholds()
# A past "now": the passes below run months after it, and event times may not lie ahead of the clock.
NOW = datetime(2025, 11, 25, 8, tzinfo=UTC)
DAY = f"{NOW:%Y-%m-%d}"


def order(customer: str, order_id: str, at: datetime, total: str = "40.00") -> OrderPlacedEvent:
    data = OrderPlaced(customer_id=customer, order_id=order_id, currency="EUR", total=Decimal(total))
    return OrderPlacedEvent.create(data, source="/channels/web", time=at)


async def lifecycle_changes(store: Store, customer: str) -> list[tuple[str | None, str, str]]:
    docs = store.db[repository.SEGMENT_CHANGES].find({"customer_id": customer}).sort("changed_at", 1)
    return [
        (d["old"], d["new"], d["caused_by"]) for d in await docs.to_list(None) if d["dimension"] == "lifecycle_stage"
    ]


async def test_a_customer_decays_to_at_risk_then_lost_once_each(new_store: NewStore) -> None:
    store = await new_store("scoring_decay", repository.INDEXES)
    customer, recent = f"C-{uuid.uuid4().hex[:8]}", f"C-{uuid.uuid4().hex[:8]}"
    placed_at = NOW - timedelta(days=100)
    first = await handlers.apply_event(store, order(customer, "O-1", placed_at), THRESHOLDS)
    await handlers.apply_event(store, order(recent, "O-2", NOW - timedelta(days=3)), THRESHOLDS)
    assert first.customer is not None
    # Scored as of the order's own time: a first-time buyer, due for review when 90 days have passed.
    assert first.customer.scores.lifecycle_stage == "first_time_buyer"
    assert first.customer.scores.next_review_at == placed_at + timedelta(days=90)

    changes = await handlers.decay_pass(store, THRESHOLDS, NOW)

    # Silence raises the churn risk with the stage: at least medium at_risk, at least high lost.
    assert [(c.data.customer_id, c.data.dimension, c.data.old, c.data.new) for c in changes] == [
        (customer, "lifecycle_stage", "first_time_buyer", "at_risk"),
        (customer, "churn_risk_band", "low", "medium"),
    ]
    change = changes[0]
    assert change.id == derived_event_id("/crm/scoring", customer, "decay", "lifecycle_stage", "at_risk", DAY)
    assert (change.data.caused_by, change.data.changed_at, change.data.scores.recency_days) == (
        f"decay:{DAY}",
        NOW,
        100,
    )
    doc = await store.db[repository.CUSTOMERS].find_one({"_id": customer})
    assert doc is not None
    assert (doc["scored_as_of"], doc["next_review_at"]) == (NOW, placed_at + timedelta(days=180))
    assert await handlers.decay_pass(store, THRESHOLDS, NOW) == []
    assert await handlers.decay_pass(store, THRESHOLDS, NOW + timedelta(hours=1)) == []

    later = placed_at + timedelta(days=180)
    lost = await handlers.decay_pass(store, THRESHOLDS, later)
    assert [(c.data.old, c.data.new) for c in lost] == [("at_risk", "lost"), ("medium", "high")]
    assert await handlers.decay_pass(store, THRESHOLDS, later) == []
    # Only the other customer, due now, moves a month later.
    month_later = await handlers.decay_pass(store, THRESHOLDS, later + timedelta(days=30))
    assert [(c.data.customer_id, c.data.new) for c in month_later] == [(recent, "at_risk"), (recent, "medium")]

    assert await lifecycle_changes(store, customer) == [
        ("prospect", "first_time_buyer", first.changes[0].data.caused_by),
        ("first_time_buyer", "at_risk", f"decay:{DAY}"),
        ("at_risk", "lost", f"decay:{later:%Y-%m-%d}"),
    ]
    assert len(await outbox_records(store.db, {"key": customer})) == 6
    assert [(o, n) for o, n, _ in await lifecycle_changes(store, recent)] == [
        ("prospect", "first_time_buyer"),
        ("first_time_buyer", "at_risk"),
    ]
    doc = await store.db[repository.CUSTOMERS].find_one({"_id": customer})
    assert doc is not None and doc["next_review_at"] is None


async def test_a_late_old_event_does_not_undo_the_decay_and_an_order_reactivates(new_store: NewStore) -> None:
    store = await new_store("scoring_decay", repository.INDEXES)
    customer = f"C-{uuid.uuid4().hex[:8]}"
    await handlers.apply_event(store, order(customer, "O-1", NOW - timedelta(days=200)), THRESHOLDS)
    assert [(c.data.old, c.data.new) for c in await handlers.decay_pass(store, THRESHOLDS, NOW)] == [
        ("first_time_buyer", "lost"),
        ("low", "high"),
    ]
    filed = ComplaintFiled(
        customer_id=customer, complaint_id="T-1", dimension="service", severity="low", summary="Slow answer."
    )
    old_complaint = ComplaintFiledEvent.create(filed, source="/support", time=NOW - timedelta(days=150))
    result = await handlers.apply_event(store, old_complaint, THRESHOLDS)
    assert result.customer is not None
    assert (result.customer.scores.lifecycle_stage, result.customer.scored_as_of) == ("lost", NOW)

    back = await handlers.apply_event(store, order(customer, "O-2", NOW + timedelta(days=1)), THRESHOLDS)
    assert [(c.data.dimension, c.data.old, c.data.new) for c in back.changes] == [
        ("lifecycle_stage", "lost", "reactivated"),
        ("churn_risk_band", "high", "low"),  # no longer lost, and two orders: a lower base under the low complaint
    ]

    app = create_service(ScoringSettings())
    app.state.runtime.store = store
    async with httpx.AsyncClient(
        headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://scoring"
    ) as http:
        by_month = (await http.get("/v1/population/movements")).json()
        by_day = (await http.get("/v1/population/movements", params={"period": "day"})).json()
    first_order = NOW - timedelta(days=200)
    assert by_month == [
        {"period": f"{first_order:%Y-%m}", "new": 1, "lost": 0, "reactivated": 0},
        {"period": f"{NOW:%Y-%m}", "new": 0, "lost": 1, "reactivated": 1},
    ]
    next_day = NOW + timedelta(days=1)
    assert [row["period"] for row in by_day] == [f"{first_order:%Y-%m-%d}", DAY, f"{next_day:%Y-%m-%d}"]


async def test_two_decay_passes_at_once_publish_each_change_once(new_store: NewStore) -> None:
    store = await new_store("scoring_decay", repository.INDEXES)
    customers = [f"C-{uuid.uuid4().hex[:8]}" for _ in range(5)]
    events = [order(c, f"O-{c}", NOW - timedelta(days=100)) for c in customers]
    await handlers.apply_events(store, events, THRESHOLDS)

    first, second = await asyncio.gather(
        handlers.decay_pass(store, THRESHOLDS, NOW), handlers.decay_pass(store, THRESHOLDS, NOW)
    )

    published = sorted((c.data.customer_id, c.data.dimension) for c in [*first, *second])
    assert published == sorted((c, d) for c in customers for d in ("lifecycle_stage", "churn_risk_band"))
    stored = await store.db[repository.SEGMENT_CHANGES].count_documents(
        {"customer_id": {"$in": customers}, "caused_by": f"decay:{DAY}"}
    )
    assert stored == 10
