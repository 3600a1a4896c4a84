"""`crm scoring rebuild` after live processing: the scores recomputed from the facts equal the live ones."""

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from crm_scoring import handlers, rebuild, repository
from crm_scoring.cli import TASKS
from crm_scoring.domain import Thresholds
from crm_scoring.settings import ScoringSettings
from crm_shared.events import (
    CloudEvent,
    ComplaintFiled,
    ComplaintFiledEvent,
    OrderCancelled,
    OrderCancelledEvent,
    OrderPlaced,
    OrderPlacedEvent,
    OrderRefunded,
    OrderRefundedEvent,
    SurveyAnswered,
    SurveyAnsweredEvent,
)
from crm_shared.store import Store

NewStore = Callable[..., Awaitable[Store]]
NOW = datetime(2026, 11, 25, 8, tzinfo=UTC)
THRESHOLDS = Thresholds()


def live_events(prefix: str, customers: int = 24) -> list[CloudEvent]:  # type: ignore[type-arg]
    events: list[CloudEvent] = []  # type: ignore[type-arg]
    for i in range(customers):
        customer = f"C-{prefix}-{i}"
        for k in range(1 + i % 4):
            at = NOW - timedelta(days=250 - 60 * k - i)
            placed = OrderPlaced(
                customer_id=customer, order_id=f"O-{customer}-{k}", currency="EUR", total=Decimal(50 + 97 * i)
            )
            events.append(OrderPlacedEvent.create(placed, source="/web", time=at))
        if i % 5 == 0:
            refund = OrderRefunded(customer_id=customer, order_id=f"O-{customer}-0", currency="EUR", amount=Decimal(20))
            events.append(OrderRefundedEvent.create(refund, source="/web", time=NOW - timedelta(days=100)))
        if i % 7 == 0:
            cancel = OrderCancelled(customer_id=customer, order_id=f"O-{customer}-0")
            events.append(OrderCancelledEvent.create(cancel, source="/web", time=NOW - timedelta(days=90)))
        if i % 3 == 0:
            complaint = ComplaintFiled(
                customer_id=customer, complaint_id=f"T-{customer}", dimension="product", severity="medium", summary="x"
            )
            events.append(ComplaintFiledEvent.create(complaint, source="/support", time=NOW - timedelta(days=10)))
        if i % 4 == 1:
            survey = SurveyAnswered(customer_id=customer, survey_id=f"S-{customer}", kind="nps", score=10)
            events.append(SurveyAnsweredEvent.create(survey, source="/support", time=NOW - timedelta(days=5)))
    return events


async def test_rebuild_after_live_processing_finds_no_difference(
    new_store: NewStore, backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await new_store("scoring_rebuild", repository.INDEXES)
    events = live_events(uuid.uuid4().hex[:6])
    half = len(events) // 2
    for event in events[:half]:
        await handlers.apply_event(store, event, THRESHOLDS)
    await handlers.refresh_population(store, THRESHOLDS, NOW - timedelta(days=1))
    for event in events[half:]:
        await handlers.apply_event(store, event, THRESHOLDS)
    await handlers.decay_pass(store, THRESHOLDS, NOW)
    await handlers.refresh_population(store, THRESHOLDS, NOW)

    result = await handlers.rebuild(store, THRESHOLDS)

    assert (result.customers, result.different) == (24, [])
    stages = await store.db[repository.CUSTOMERS].distinct("segments.lifecycle_stage")
    assert {"at_risk", "lost"} <= set(stages)  # the decay pass had work to do

    # The task, as `crm scoring rebuild` runs it, on the same database; and a tampered customer is found.
    assert "rebuild" in TASKS
    monkeypatch.setenv("CRM_MONGO_URI", backend.mongo_uri)
    monkeypatch.setenv("CRM_SCORING_DB", store.db.name)
    assert await rebuild.run(ScoringSettings(), show=5) == 0
    customer = f"C-{events[0].customer_id.split('-')[1]}-3"
    await store.db[repository.CUSTOMERS].update_one({"_id": customer}, {"$set": {"scores.frequency": 99}})
    tampered = await handlers.rebuild(store, THRESHOLDS)
    assert tampered.different == [customer]
    assert await rebuild.run(ScoringSettings(), show=5) == 1
