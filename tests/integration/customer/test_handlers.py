"""The customer service's handlers on the real database: one profile, one outbox record, an idempotent timeline."""

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from crm_customer import handlers, repository
from crm_shared.consumer import Rejected
from crm_shared.events import (
    ChannelConsent,
    CustomerReferred,
    CustomerReferredEvent,
    CustomerRegistered,
    CustomerRegisteredEvent,
    InteractionLogged,
    InteractionLoggedEvent,
    OrderPlaced,
    OrderPlacedEvent,
    derived_event_id,
    parse_event,
)
from crm_shared.personal import unseal
from crm_shared.store import AlreadyApplied, Store, outbox_records
from crm_shared.topics import Topic

NewStore = Callable[..., Awaitable[Store]]
T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)


def customer_id() -> str:
    return f"C-{uuid.uuid4().hex[:8]}"


def sign_up(customer: str, **update: Any) -> CustomerRegisteredEvent:
    data = CustomerRegistered(
        customer_id=customer,
        name="Test Person",
        email="test.person@example.com",
        consents=[ChannelConsent(channel="email", granted=True)],
        preferred_channel="email",
    ).model_copy(update=update)
    return CustomerRegisteredEvent.create(data, source="/channels/web", time=T0)


def order(customer: str, order_id: str, at: datetime) -> OrderPlacedEvent:
    data = OrderPlaced(customer_id=customer, order_id=order_id, currency="EUR", total=Decimal("10.00"))
    return OrderPlacedEvent.create(data, source="/crm/sales", time=at)


async def outbox(store: Store, customer: str) -> list[dict[str, Any]]:
    return await outbox_records(store.db, {"key": customer})


async def timeline(store: Store, customer: str, limit: int = 100) -> list[str]:
    entries, _ = await repository.timeline_page(store.db, customer, limit=limit)
    return [e.event_id for e in entries]


async def test_a_registration_stores_the_profile_and_emits_one_event_once(new_store: NewStore) -> None:
    store = await new_store("customer", repository.INDEXES)
    customer = customer_id()
    event = sign_up(customer)

    outcome = await handlers.register_customer(store, event)
    assert outcome.new and outcome.value.granted == ["email"]
    profile = await handlers.find_profile(store, customer)
    assert profile == outcome.value

    records = await outbox(store, customer)
    assert [(r["topic"], r["key"]) for r in records] == [(Topic.CUSTOMER_EVENTS, customer)]
    published = parse_event(records[0]["value"])
    assert isinstance(published, CustomerRegisteredEvent)
    assert published.id == derived_event_id("/crm/customer", event.id)
    assert (published.causationid, published.time) == (event.id, T0)
    # Published with the personal fields sealed with the customer's key: opened, they are the sign-up's.
    key = await repository.find_personal_key(store.db, customer)
    assert key is not None and published.data.phone is None
    opened = {
        f: unseal(getattr(published.data, f), key=key.key, customer_id=customer, field=f) for f in ("name", "email")
    }
    assert published.data.model_copy(update=opened) == event.data

    with pytest.raises(AlreadyApplied):
        await handlers.register_customer(store, event)
    assert len(await outbox(store, customer)) == 1


async def test_the_same_details_under_a_new_event_id_change_nothing_and_emit_nothing(new_store: NewStore) -> None:
    store = await new_store("customer", repository.INDEXES)
    customer = customer_id()
    first = await handlers.register_customer(store, sign_up(customer))

    again = await handlers.register_customer(store, sign_up(customer))
    assert not again.new and again.value == first.value
    assert len(await outbox(store, customer)) == 1


async def test_a_conflicting_registration_is_rejected_and_leaves_the_profile(new_store: NewStore) -> None:
    store = await new_store("customer", repository.INDEXES)
    customer = customer_id()
    first = await handlers.register_customer(store, sign_up(customer))

    with pytest.raises(Rejected, match="already registered with a different email"):
        await handlers.register_customer(store, sign_up(customer, email="someone.else@example.com"))
    assert await handlers.find_profile(store, customer) == first.value
    assert len(await outbox(store, customer)) == 1


async def test_an_interaction_is_stored_and_emitted_once_and_a_reused_id_is_rejected(new_store: NewStore) -> None:
    store = await new_store("customer", repository.INDEXES)
    customer = customer_id()
    logged = InteractionLogged(customer_id=customer, interaction_id=f"I-{customer}", kind="call", channel="phone")
    event = InteractionLoggedEvent.create(logged, source="/channels/call-centre", time=T0)

    outcome = await handlers.log_interaction(store, event)
    assert outcome.new and await handlers.find_interaction(store, logged.interaction_id) == outcome.value
    again = InteractionLoggedEvent.create(logged, source="/channels/call-centre", time=T0)
    assert not (await handlers.log_interaction(store, again)).new
    with pytest.raises(Rejected, match="already logged with different content"):
        other = logged.model_copy(update={"kind": "visit"})
        await handlers.log_interaction(store, InteractionLoggedEvent.create(other, source="/x", time=T0))

    records = await outbox(store, customer)
    assert [parse_event(r["value"]).type for r in records] == ["crm.interaction.logged.v1"]


async def test_a_referral_is_stored_and_emitted_once_and_a_conflicting_one_is_rejected(new_store: NewStore) -> None:
    store = await new_store("customer", repository.INDEXES)
    customer = customer_id()
    referred = CustomerReferred(customer_id=customer, referral_id=f"R-{customer}", referred_customer_id="C-friend")
    event = CustomerReferredEvent.create(referred, source="/channels/shop", time=T0)

    await handlers.apply_ingest(store, event)
    stored = await handlers.find_referral(store, referred.referral_id)
    assert stored is not None and stored.referred == referred and stored.referred_at == T0
    with pytest.raises(AlreadyApplied):
        await handlers.apply_ingest(store, event)
    again = CustomerReferredEvent.create(referred, source="/channels/shop", time=T0)
    assert not (await handlers.record_referral(store, again)).new
    with pytest.raises(Rejected, match="already recorded with different content"):
        other = referred.model_copy(update={"referred_customer_id": "C-someone-else"})
        await handlers.apply_ingest(store, CustomerReferredEvent.create(other, source="/x", time=T0))

    records = await outbox(store, customer)
    assert [(r["topic"], r["key"]) for r in records] == [(Topic.CUSTOMER_EVENTS, customer)]
    published = parse_event(records[0]["value"])
    assert isinstance(published, CustomerReferredEvent)
    assert published.type == "crm.customer.referred.v1"
    assert (published.id, published.causationid, published.data) == (
        derived_event_id("/crm/customer", event.id),
        event.id,
        referred,
    )


async def test_a_timeline_entry_is_written_once_per_event(new_store: NewStore) -> None:
    store = await new_store("customer", repository.INDEXES)
    customer = customer_id()
    event = order(customer, "O-1", T0)

    assert await handlers.record_timeline(store, event) is True
    assert await handlers.record_timeline(store, event) is False
    assert await store.db[repository.TIMELINE].count_documents({"customer_id": customer}) == 1
    [entry], _ = await repository.timeline_page(store.db, customer, limit=10)
    assert (entry.summary, entry.data["total"]) == ("Order O-1 placed: 10.00 EUR", Decimal("10.00"))


async def test_the_timeline_reads_in_event_time_order_whatever_the_arrival_order(new_store: NewStore) -> None:
    store = await new_store("customer", repository.INDEXES)
    customer = customer_id()
    events = [order(customer, f"O-{i}", T0 + timedelta(hours=i)) for i in range(4)]
    for event in (events[2], events[0], events[3], events[1]):
        await handlers.record_timeline(store, event)
    assert await timeline(store, customer) == [e.id for e in events]


async def test_a_sign_up_reaches_the_timeline_without_personal_data(new_store: NewStore) -> None:
    store = await new_store("customer", repository.INDEXES)
    customer = customer_id()
    await handlers.register_customer(store, sign_up(customer))
    [record] = await outbox(store, customer)
    await handlers.record_timeline(store, parse_event(record["value"]))

    doc = await store.db[repository.TIMELINE].find_one({"customer_id": customer})
    assert doc is not None and doc["summary"] == "Registered via web"
    assert {"name", "email", "phone"}.isdisjoint(doc["data"])
    assert doc["data"]["consents"] == [{"channel": "email", "granted": True, "purpose": "marketing"}]
