"""Scoring's handler on the real database: segment changes through the outbox, exactly once, contradictions refused."""

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from crm_scoring import handlers, repository
from crm_shared.consumer import Rejected
from crm_shared.events import (
    CloudEvent,
    ComplaintFiled,
    ComplaintFiledEvent,
    CustomerReferred,
    CustomerReferredEvent,
    CustomerRegistered,
    CustomerRegisteredEvent,
    InteractionLogged,
    InteractionLoggedEvent,
    OrderPlaced,
    OrderPlacedEvent,
    OrderRefunded,
    OrderRefundedEvent,
    SegmentChangedEvent,
    SurveyAnswered,
    SurveyAnsweredEvent,
    derived_event_id,
    parse_event,
)
from crm_shared.store import PROCESSED, AlreadyApplied, Store, outbox_records
from crm_shared.topics import Topic

NewStore = Callable[..., Awaitable[Store]]
T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)


def customer_id() -> str:
    return f"C-{uuid.uuid4().hex[:8]}"


def order(customer: str, order_id: str, total: str, at: datetime = T0) -> OrderPlacedEvent:
    data = OrderPlaced(customer_id=customer, order_id=order_id, currency="EUR", total=Decimal(total))
    return OrderPlacedEvent.create(data, source="/channels/web", time=at)


def refund(customer: str, order_id: str, amount: str, at: datetime = T0) -> OrderRefundedEvent:
    data = OrderRefunded(customer_id=customer, order_id=order_id, currency="EUR", amount=Decimal(amount))
    return OrderRefundedEvent.create(data, source="/channels/web", time=at)


def complaint(customer: str, severity: str, at: datetime) -> ComplaintFiledEvent:
    data = ComplaintFiled.model_validate(
        {
            "customer_id": customer,
            "complaint_id": f"T-{uuid.uuid4().hex[:6]}",
            "dimension": "service",
            "severity": severity,
            "summary": "The engineer did not come.",
        }
    )
    return ComplaintFiledEvent.create(data, source="/channels/call-centre", time=at)


async def published(store: Store, customer: str) -> list[tuple[dict[str, Any], CloudEvent[Any]]]:
    records = await outbox_records(store.db, {"key": customer})
    return [(r, parse_event(r["value"])) for r in records]


def changes(events: list[tuple[dict[str, Any], CloudEvent[Any]]]) -> list[tuple[str, str | None, str]]:
    return [(e.data.dimension, e.data.old, e.data.new) for _, e in events]


async def test_a_first_order_emits_tier_and_lifecycle_changes_once(new_store: NewStore) -> None:
    store = await new_store("scoring", repository.INDEXES)
    customer = customer_id()
    event = order(customer, f"O-{customer}", "1500.00")

    result = await handlers.apply_event(store, event)
    with pytest.raises(AlreadyApplied):
        await handlers.apply_event(store, event)

    emitted = await published(store, customer)
    assert changes(emitted) == [
        ("value_tier", "potential", "high_value"),
        ("lifecycle_stage", "prospect", "first_time_buyer"),
    ]
    assert [e.id for e in result.changes] == [e.id for _, e in emitted]
    for record, parsed in emitted:
        assert (record["topic"], record["key"], record["type"]) == (
            Topic.SCORING_SEGMENTS,
            customer,
            "crm.segment.changed.v1",
        )
        assert isinstance(parsed, SegmentChangedEvent)
        assert parsed.id == derived_event_id("/crm/scoring", event.id, parsed.data.dimension)
        assert (parsed.source, parsed.time, parsed.causationid, parsed.correlationid) == (
            "/crm/scoring",
            T0,
            event.id,
            event.id,
        )
        assert (parsed.data.caused_by, parsed.data.changed_at, parsed.data.model_version) == (event.id, T0, "rules-v1")
        snapshot = parsed.data.scores
        assert (snapshot.frequency, snapshot.monetary, snapshot.average_order_value) == (
            1,
            Decimal("1500.00"),
            Decimal("1500.00"),
        )
        assert (snapshot.recency_days, snapshot.churn_risk, snapshot.churn_risk_band) == (0, 0.2, "low")

    doc = await store.db[repository.CUSTOMERS].find_one({"_id": customer})
    assert doc is not None
    assert doc["scores"]["monetary"] == Decimal("1500.00")
    assert doc["segments"] == {
        "value_tier": "high_value",
        "lifecycle_stage": "first_time_buyer",
        "churn_risk_band": "low",
        "rfm_segment": None,
    }
    assert await store.db[repository.SEGMENT_CHANGES].count_documents({"customer_id": customer}) == 2
    assert await store.db[PROCESSED].find_one({"_id": f"scoring:{event.id}"}) is not None


async def test_a_second_order_moves_the_lifecycle_only(new_store: NewStore) -> None:
    store = await new_store("scoring", repository.INDEXES)
    customer = customer_id()
    await handlers.apply_event(store, order(customer, "O-1", "40.00"))
    first = len(await published(store, customer))

    await handlers.apply_event(store, order(customer, "O-2", "60.00", T0 + timedelta(days=2)))

    emitted = (await published(store, customer))[first:]
    assert changes(emitted) == [("lifecycle_stage", "first_time_buyer", "repeat")]
    snapshot = emitted[0][1].data.scores
    assert (snapshot.frequency, snapshot.monetary, snapshot.average_order_value) == (
        2,
        Decimal("100.00"),
        Decimal("50.00"),
    )


async def test_the_same_order_under_another_event_id_changes_nothing(new_store: NewStore) -> None:
    store = await new_store("scoring", repository.INDEXES)
    customer = customer_id()
    await handlers.apply_event(store, order(customer, "O-1", "40.00"))
    before = await store.db[repository.CUSTOMERS].find_one({"_id": customer})

    result = await handlers.apply_event(store, order(customer, "O-1", "40.00", T0 + timedelta(days=1)))

    assert result.changes == []
    assert len(await published(store, customer)) == 2
    assert await store.db[repository.CUSTOMERS].find_one({"_id": customer}) == before


async def test_a_high_complaint_on_a_high_value_customer_raises_the_churn_band(new_store: NewStore) -> None:
    store = await new_store("scoring", repository.INDEXES)
    customer = customer_id()
    await handlers.apply_event(store, order(customer, "O-1", "3000.00"))

    result = await handlers.apply_event(store, complaint(customer, "high", T0 + timedelta(days=1)))

    assert [(c.data.dimension, c.data.old, c.data.new) for c in result.changes] == [("churn_risk_band", "low", "high")]
    emitted = await published(store, customer)
    assert changes(emitted)[-1] == ("churn_risk_band", "low", "high")
    snapshot = emitted[-1][1].data.scores
    assert (snapshot.churn_risk, snapshot.satisfaction, snapshot.recency_days) == (0.7, 0.0, 1)


async def test_a_refund_before_its_order_counts_when_the_order_arrives(new_store: NewStore) -> None:
    store = await new_store("scoring", repository.INDEXES)
    customer = customer_id()

    early = await handlers.apply_event(store, refund(customer, "O-1", "700.00", T0 + timedelta(hours=1)))
    assert early.changes == []
    assert early.customer is not None and early.customer.scores.frequency == 0

    result = await handlers.apply_event(store, order(customer, "O-1", "1500.00"))

    assert result.customer is not None
    assert result.customer.scores.monetary == Decimal("800.00")
    assert [(c.data.dimension, c.data.new) for c in result.changes] == [
        ("value_tier", "low_value"),
        ("lifecycle_stage", "first_time_buyer"),
    ]
    # Scores are as of the newest fact (the refund), not the wall clock.
    assert result.customer.scored_as_of == T0 + timedelta(hours=1)


async def test_contradicting_orders_are_rejected_and_change_nothing(new_store: NewStore) -> None:
    store = await new_store("scoring", repository.INDEXES)
    customer, other = customer_id(), customer_id()
    await handlers.apply_event(store, order(customer, "O-1", "40.00"))
    before = await store.db[repository.CUSTOMERS].find_one({"_id": customer})

    conflicting = order(customer, "O-1", "41.00")
    with pytest.raises(Rejected, match="order O-1 is already known with different content"):
        await handlers.apply_event(store, conflicting)
    with pytest.raises(Rejected, match=f"order O-1 belongs to customer {customer}, not {other}"):
        await handlers.apply_event(store, order(other, "O-1", "40.00"))

    assert await store.db[repository.CUSTOMERS].find_one({"_id": customer}) == before
    assert await store.db[repository.CUSTOMERS].find_one({"_id": other}) is None
    assert await store.db[PROCESSED].find_one({"_id": f"scoring:{conflicting.id}"}) is None
    assert len(await published(store, customer)) == 2
    assert await published(store, other) == []


# ---------------------------------------------------------------- crm.customer.events


def referred(customer: str, referral_id: str, at: datetime = T0) -> CustomerReferredEvent:
    data = CustomerReferred(customer_id=customer, referral_id=referral_id, referred_customer_id=f"C-by-{customer}")
    return CustomerReferredEvent.create(data, source="/crm/customer", time=at)


def csat(customer: str, survey_id: str, score: int, at: datetime = T0) -> SurveyAnsweredEvent:
    data = SurveyAnswered(customer_id=customer, survey_id=survey_id, kind="csat", score=score)
    return SurveyAnsweredEvent.create(data, source="/crm/support", time=at)


async def test_a_referral_counts_once_and_makes_a_satisfied_buyer_an_advocate(new_store: NewStore) -> None:
    store = await new_store("scoring", repository.INDEXES)
    customer = customer_id()
    await handlers.apply_event(store, order(customer, f"O-{customer}", "100.00"))
    await handlers.apply_event(store, csat(customer, f"S-{customer}", 4, T0 + timedelta(hours=1)))
    satisfied = await handlers.find_customer(store, customer)
    assert satisfied is not None and satisfied.scores.loyalty_stage == "satisfied"
    before = len(await published(store, customer))

    event = referred(customer, f"R-{customer}", T0 + timedelta(hours=2))
    result = await handlers.apply_customer_event(store, event)
    assert result is not None and result.changes == []  # the loyalty stage is not a segment dimension
    with pytest.raises(AlreadyApplied):
        await handlers.apply_customer_event(store, event)
    # The same referral under another event id (e.g. sent again by a channel) changes nothing either.
    again = referred(customer, f"R-{customer}", T0 + timedelta(hours=3))
    await handlers.apply_customer_event(store, again)

    scored = await handlers.find_customer(store, customer)
    assert scored is not None
    assert list(scored.facts.referrals) == [f"R-{customer}"]
    assert scored.scores.loyalty_stage == "advocate"
    assert scored.scored_as_of == T0 + timedelta(hours=2)
    assert len(await published(store, customer)) == before
    assert await store.db[PROCESSED].find_one({"_id": f"scoring:{event.id}"}) is not None


async def test_an_interaction_updates_the_interaction_count(new_store: NewStore) -> None:
    store = await new_store("scoring", repository.INDEXES)
    customer = customer_id()
    first = InteractionLogged(customer_id=customer, interaction_id=f"I-{customer}", kind="call", channel="phone")
    second = first.model_copy(update={"interaction_id": f"I2-{customer}", "kind": "visit"})
    await handlers.apply_customer_event(store, InteractionLoggedEvent.create(second, source="/x", time=T0))
    await handlers.apply_customer_event(
        store, InteractionLoggedEvent.create(first, source="/x", time=T0 - timedelta(days=1))
    )
    await handlers.apply_customer_event(store, InteractionLoggedEvent.create(first, source="/x", time=T0))

    scored = await handlers.find_customer(store, customer)
    assert scored is not None
    assert sorted(scored.facts.interactions) == [f"I-{customer}", f"I2-{customer}"]
    assert scored.facts.interactions[f"I-{customer}"].at == T0 - timedelta(days=1)  # the earliest time is kept
    assert scored.facts.last_interaction_at == T0
    assert (scored.scores.frequency, scored.scores.loyalty_stage) == (0, "stranger")
    assert await published(store, customer) == []


async def test_a_registration_on_the_customer_topic_is_ignored_without_error(new_store: NewStore) -> None:
    store = await new_store("scoring", repository.INDEXES)
    customer = customer_id()
    registered = CustomerRegisteredEvent.create(
        CustomerRegistered(customer_id=customer, name="Test Person"), source="/crm/customer", time=T0
    )
    assert await handlers.apply_customer_event(store, registered) is None
    assert await handlers.apply_customer_event(store, registered) is None
    assert await handlers.find_customer(store, customer) is None
    assert await store.db[PROCESSED].find_one({"_id": f"scoring:{registered.id}"}) is None
