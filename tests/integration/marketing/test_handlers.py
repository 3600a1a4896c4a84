"""Marketing's handlers on the real database: exactly-once enrolment, consent-driven channels, the outbox."""

import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pymongo.errors import DuplicateKeyError

from crm_marketing import domain, handlers, repository
from crm_marketing.journeys import DEFAULT_JOURNEYS
from crm_shared.events import (
    ChannelConsent,
    CustomerRegistered,
    CustomerRegisteredEvent,
    InteractionLogged,
    InteractionLoggedEvent,
    ScoreSnapshot,
    SegmentChanged,
    SegmentChangedEvent,
    parse_event,
)
from crm_shared.store import AlreadyApplied, Store, UnitOfWork, outbox_records
from crm_shared.topics import Topic

NewStore = Callable[..., Awaitable[Store]]
T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)
NO_HOLDOUT = domain.Policy(holdout_share=0)


def customer_id() -> str:
    return f"C-{uuid.uuid4().hex[:8]}"


def became_high_value(customer: str) -> SegmentChangedEvent:
    scores = ScoreSnapshot(
        recency_days=0,
        frequency=1,
        monetary=Decimal("1500.00"),
        average_order_value=Decimal("1500.00"),
        value_tier="high_value",
        lifecycle_stage="first_time_buyer",
        churn_risk=0.1,
        churn_risk_band="low",
        satisfaction=None,
    )
    change = SegmentChanged(
        customer_id=customer,
        dimension="value_tier",
        old="potential",
        new="high_value",
        scores=scores,
        model_version="v1",
        changed_at=T0,
        caused_by="e-order",
    )
    return SegmentChangedEvent.create(change, source="/crm/scoring", time=T0)


async def register(store: Store, customer: str, consents: dict[str, bool]) -> None:
    data = CustomerRegistered(
        customer_id=customer,
        name="Test Person",
        consents=[ChannelConsent.model_validate({"channel": c, "granted": g}) for c, g in consents.items()],
    )
    await handlers.apply_customer_event(store, CustomerRegisteredEvent.create(data, source="/channels/web", time=T0))


async def outbox(store: Store, customer: str) -> list[dict[str, Any]]:
    return await outbox_records(store.db, {"key": customer})


async def enrolments(store: Store, customer: str) -> list[dict[str, Any]]:
    return await store.db[repository.ENROLMENTS].find({"customer_id": customer}).to_list(None)


async def test_a_segment_change_enrols_once_and_emits_once_even_applied_three_times(new_store: NewStore) -> None:
    store = await new_store("marketing", repository.INDEXES)
    customer = customer_id()
    await register(store, customer, {"email": True})
    event = became_high_value(customer)

    first = await handlers.apply_segment_change(store, event, DEFAULT_JOURNEYS, NO_HOLDOUT)
    for _ in range(2):
        with pytest.raises(AlreadyApplied):
            await handlers.apply_segment_change(store, event, DEFAULT_JOURNEYS, NO_HOLDOUT)

    assert [(e.journey, e.status, e.channel) for e in first] == [("high-value-thank-you", "contacted", "email")]
    assert len(await enrolments(store, customer)) == 1
    records = await outbox(store, customer)
    assert [(r["topic"], r["type"]) for r in records] == [
        (Topic.MARKETING_EVENTS, "crm.campaign.enrolled.v1"),
        (Topic.MARKETING_EVENTS, "crm.campaign.contacted.v1"),
    ]
    emitted = parse_event(records[0]["value"])
    contacted = parse_event(records[1]["value"])
    assert (contacted.data.channel, contacted.data.enrolment_id) == ("email", emitted.data.enrolment_id)
    assert emitted.causationid == event.id and emitted.time == event.time and emitted.source == "/crm/marketing"
    assert emitted.data.episode == event.id and emitted.data.trigger_event_id == event.id
    campaign = await store.db[repository.CAMPAIGNS].find_one({"_id": "high-value-thank-you"})
    assert campaign is not None and campaign["objective"] and campaign["kind"] == "journey"


async def test_a_customer_who_granted_only_sms_is_contacted_by_sms(new_store: NewStore) -> None:
    store = await new_store("marketing", repository.INDEXES)
    customer = customer_id()
    await register(store, customer, {"email": False, "sms": True})

    [enrolment] = await handlers.apply_segment_change(store, became_high_value(customer), DEFAULT_JOURNEYS, NO_HOLDOUT)

    assert (enrolment.status, enrolment.channel) == ("contacted", "sms")
    prefs = await store.db[repository.CONTACT_PREFERENCES].find_one({"_id": customer})
    assert prefs is not None
    assert (prefs["granted"], prefs["refused"]) == (["sms"], ["email"])
    assert not {"name", "email", "phone"} & prefs.keys()


async def test_without_consent_the_enrolment_is_skipped_with_the_reason(new_store: NewStore) -> None:
    store = await new_store("marketing", repository.INDEXES)
    customer = customer_id()

    await handlers.apply_segment_change(store, became_high_value(customer), DEFAULT_JOURNEYS, NO_HOLDOUT)

    [doc] = await enrolments(store, customer)
    assert (doc["status"], doc["channel"], doc["reason"]) == ("skipped", None, "no consent on record")
    [record] = await outbox(store, customer)
    data = json.loads(record["value"])["data"]
    assert (data["status"], data.get("channel"), data["reason"]) == ("skipped", None, "no consent on record")


async def test_a_skipped_enrolment_event_parses_as_published(new_store: NewStore) -> None:
    store = await new_store("marketing", repository.INDEXES)
    customer = customer_id()
    await handlers.apply_segment_change(store, became_high_value(customer), DEFAULT_JOURNEYS, NO_HOLDOUT)
    [record] = await outbox(store, customer)
    assert parse_event(record["value"]).data.channel is None


async def test_a_second_enrolment_in_the_same_episode_is_refused(new_store: NewStore) -> None:
    store = await new_store("marketing", repository.INDEXES)
    customer = customer_id()
    event = became_high_value(customer)
    await handlers.apply_segment_change(store, event, DEFAULT_JOURNEYS, NO_HOLDOUT)
    # Same customer, journey and episode, reached through another upstream event: the same enrolment id.
    skipped = domain.Decision("skipped", reason="no consent on record")
    again = domain.enrol(customer, "high-value-thank-you", "high-value-thank-you", event.id, "another", skipped, T0)

    async def work(uow: UnitOfWork) -> None:
        await repository.write(uow, {repository.ENROLMENTS: [repository.enrolment_write(again)]})

    with pytest.raises(DuplicateKeyError):
        await store.transaction(work, applies="marketing:another-upstream-event")
    assert len(await enrolments(store, customer)) == 1
    assert await store.db["processed_events"].find_one({"_id": "marketing:another-upstream-event"}) is None


async def test_customer_events_marketing_does_not_use_are_ignored(new_store: NewStore) -> None:
    store = await new_store("marketing", repository.INDEXES)
    customer = customer_id()
    touch = InteractionLogged(customer_id=customer, interaction_id="I-1", kind="call", channel="phone")

    assert await handlers.apply_customer_event(store, InteractionLoggedEvent.create(touch, source="/x")) is None
    assert await store.db[repository.CONTACT_PREFERENCES].find_one({"_id": customer}) is None
