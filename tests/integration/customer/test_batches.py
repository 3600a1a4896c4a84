"""The customer service's batch handlers on the real database: one transaction per ingest batch, decided per event
in order; one bulk write per timeline batch; the same documents and outbox records as one event at a time."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from crm_customer import handlers, repository
from crm_customer.app import create_service
from crm_customer.settings import CustomerSettings
from crm_shared.events import (
    ChannelConsent,
    CloudEvent,
    ConsentChanged,
    ConsentChangedEvent,
    CustomerReferred,
    CustomerReferredEvent,
    CustomerRegistered,
    CustomerRegisteredEvent,
    InteractionLogged,
    InteractionLoggedEvent,
    OrderPlaced,
    OrderPlacedEvent,
    parse_event,
)
from crm_shared.personal import is_sealed, unseal
from crm_shared.store import DEADLETTERS, OUTBOX, PROCESSED, BatchOutcome, Store, outbox_records
from crm_shared.topics import Topic

from helpers import broker_of_its_own, eventually

NewStore = Callable[..., Awaitable[Store]]
# Sub-millisecond times: MongoDB keeps milliseconds, and a batch must decide on what a later read would see.
T0 = datetime(2026, 11, 20, 10, 0, 0, 123456, tzinfo=UTC)


def customer_id() -> str:
    return f"C-{uuid.uuid4().hex[:8]}"


def sign_up(customer: str, *, at: datetime = T0, event_id: str | None = None, **update: Any) -> CustomerRegisteredEvent:
    data = CustomerRegistered(
        customer_id=customer,
        name="Test Person",
        email="test.person@example.com",
        consents=[ChannelConsent(channel="email", granted=True)],
        preferred_channel="email",
    ).model_copy(update=update)
    return CustomerRegisteredEvent.create(data, source="/channels/web", id=event_id, time=at)


def consent(
    customer: str, channel: str, granted: bool, at: datetime, preferred: str | None = None
) -> ConsentChangedEvent:
    data = ConsentChanged.model_validate(
        {"customer_id": customer, "channel": channel, "granted": granted, "preferred_channel": preferred}
    )
    return ConsentChangedEvent.create(data, source="/channels/web", time=at)


def interaction(customer: str, interaction_id: str, kind: str = "call") -> InteractionLoggedEvent:
    logged = InteractionLogged.model_validate(
        {"customer_id": customer, "interaction_id": interaction_id, "kind": kind, "channel": "phone"}
    )
    return InteractionLoggedEvent.create(logged, source="/channels/call-centre", time=T0 + timedelta(minutes=5))


def referral(customer: str, referral_id: str, friend: str) -> CustomerReferredEvent:
    referred = CustomerReferred(customer_id=customer, referral_id=referral_id, referred_customer_id=friend)
    return CustomerReferredEvent.create(referred, source="/channels/shop", time=T0 + timedelta(minutes=6))


def order(customer: str, order_id: str, at: datetime = T0) -> OrderPlacedEvent:
    data = OrderPlaced(customer_id=customer, order_id=order_id, currency="EUR", total=Decimal("10.00"))
    return OrderPlacedEvent.create(data, source="/crm/sales", time=at)


async def outbox(store: Store, key: str) -> list[CloudEvent[Any]]:
    records = await outbox_records(store.db, {"key": key})
    return [parse_event(r["value"]) for r in records]


async def markers(store: Store, events: Sequence[CloudEvent[Any]]) -> set[str]:
    ids = [f"customer:{e.id}" for e in events]
    return {d["_id"] for d in await store.db[PROCESSED].find({"_id": {"$in": ids}}).to_list(None)}


# ---------------------------------------------------------------- ingest batches


async def test_duplicates_in_the_batch_and_from_an_earlier_batch_change_nothing(new_store: NewStore) -> None:
    store = await new_store("customer_batch", repository.INDEXES)
    customer = customer_id()
    registered = sign_up(customer)
    await handlers.apply_ingest_events(store, [registered])

    refused = consent(customer, "email", False, T0 + timedelta(hours=1))
    outcome = await handlers.apply_ingest_events(store, [registered, refused, refused])

    assert outcome.applied == [refused.id]
    assert sorted(outcome.duplicates) == sorted([registered.id, refused.id])
    assert not outcome.rejected
    assert [e.type for e in await outbox(store, customer)] == [
        "crm.customer.registered.v1",
        "crm.customer.consent_changed.v1",
    ]
    assert await markers(store, [registered, refused]) == {f"customer:{registered.id}", f"customer:{refused.id}"}
    profile = await handlers.find_profile(store, customer)
    assert profile is not None and profile.refused == ["email"]


async def test_a_rejection_among_good_events_applies_exactly_the_good_ones(new_store: NewStore) -> None:
    store = await new_store("customer_batch", repository.INDEXES)
    known, unknown, other = customer_id(), customer_id(), customer_id()
    await handlers.register_customer(store, sign_up(other))
    events: list[CloudEvent[Any]] = [
        sign_up(known),
        consent(unknown, "email", True, T0),  # no profile, not even after the batch's registration of `known`
        consent(known, "sms", True, T0 + timedelta(hours=1)),
        consent(known, "phone", True, T0 + timedelta(hours=2), preferred="partner"),  # partner is not granted
        sign_up(other, email="someone.else@example.com"),
        interaction(known, f"I-{known}"),
        referral(known, f"R-{known}", other),
    ]
    outcome = await handlers.apply_ingest_events(store, events)

    bad = {events[1].id, events[3].id, events[4].id}
    assert outcome.applied == [e.id for e in events if e.id not in bad]
    assert {i: str(r) for i, r in outcome.rejected.items()} == {
        events[1].id: f"no customer {unknown}",
        events[3].id: f"partner cannot be the preferred channel of customer {known}: the customer has not granted it",
        events[4].id: f"customer {other} is already registered with a different email;"
        " profile updates are not supported yet",
    }
    assert isinstance(outcome.rejected[events[1].id], handlers.UnknownCustomer)
    with pytest.raises(handlers.UnknownCustomer, match=f"no customer {unknown}"):
        outcome.result_of(events[1])

    # Nothing of a rejected event is written: no profile, no outbox record, no processed record.
    assert await handlers.find_profile(store, unknown) is None
    assert await outbox(store, unknown) == []
    assert await markers(store, events) == {f"customer:{i}" for i in outcome.applied}
    published = await outbox(store, known)
    assert [e.causationid for e in published] == [e.id for e in events if e.id not in bad]
    profile = await handlers.find_profile(store, known)
    assert profile is not None and profile.granted == ["email", "sms"] and "phone" not in profile.details.consents
    assert len(await outbox(store, other)) == 1

    # A rejected event is refused again when it comes again (it has no processed record).
    again = await handlers.apply_ingest_events(store, [events[1]])
    assert list(again.rejected) == [events[1].id]


async def test_events_of_one_customer_in_one_batch_see_each_other_in_order(new_store: NewStore) -> None:
    store = await new_store("customer_batch", repository.INDEXES)
    customer, late = customer_id(), customer_id()
    registered = sign_up(customer)
    sms = consent(customer, "sms", True, T0 + timedelta(hours=1), preferred="sms")
    no_email = consent(customer, "email", False, T0 + timedelta(hours=2))
    older = consent(customer, "email", True, T0 + timedelta(minutes=90))  # older than the refusal: no change
    too_early = consent(late, "email", True, T0)  # before the sign-up in the same batch: unknown then
    late_sign_up = sign_up(late)
    same_again = sign_up(customer)  # another event id, the same details: no change
    stale = sign_up(customer)  # the details of the sign-up, which the consents changed since: refused
    events: list[CloudEvent[Any]] = [registered, same_again, sms, no_email, older, too_early, late_sign_up, stale]

    outcome = await handlers.apply_ingest_events(store, events)

    assert {i: str(r) for i, r in outcome.rejected.items()} == {
        too_early.id: f"no customer {late}",
        stale.id: f"customer {customer} is already registered with a different consents, preferred_channel;"
        " profile updates are not supported yet",
    }
    assert [outcome.result_of(e).new for e in (registered, same_again, sms, no_email, older, late_sign_up)] == [
        True,
        False,
        True,
        True,
        False,
        True,
    ]
    profile = await handlers.find_profile(store, customer)
    assert profile is not None
    assert (profile.granted, profile.refused, profile.details.preferred_channel) == (["sms"], ["email"], "sms")
    assert outcome.result_of(no_email).value == profile  # the result is what a later read sees
    assert [e.causationid for e in await outbox(store, customer)] == [registered.id, sms.id, no_email.id]
    assert await handlers.find_profile(store, late) is not None

    # Two logs of one interaction in one batch: the second finds the first.
    first, same, clash = (
        interaction(customer, f"I-{customer}"),
        interaction(customer, f"I-{customer}"),
        interaction(customer, f"I-{customer}", kind="visit"),
    )
    logged = await handlers.apply_ingest_events(store, [first, same, clash])
    assert (logged.result_of(first).new, logged.result_of(same).new) == (True, False)
    assert str(logged.rejected[clash.id]) == f"interaction I-{customer} was already logged with different content"
    assert await store.db[repository.INTERACTIONS].count_documents({"customer_id": customer}) == 1


async def snapshot(store: Store) -> dict[str, list[dict[str, Any]]]:
    """Every document the handlers wrote, without what depends on the moment of the write or on chance: the
    personal keys are random (their customers are kept) and a sign-up's sealed fields are kept opened."""
    taken: dict[str, list[dict[str, Any]]] = {}
    for name, moment in (
        (repository.CUSTOMERS, ()),
        (repository.INTERACTIONS, ()),
        (repository.REFERRALS, ()),
        (PROCESSED, ("applied_at",)),
        (repository.PERSONAL_KEYS, ("key_id", "key", "created_at")),
    ):
        docs = await store.db[name].find().sort("_id", 1).to_list(None)
        taken[name] = [{k: v for k, v in d.items() if k not in moment} for d in docs]
    records = sorted(await outbox_records(store.db), key=lambda r: r["_id"])
    taken[OUTBOX] = [{k: v for k, v in r.items() if k not in ("seq", "created_at")} for r in records]
    for record in taken[OUTBOX]:
        record["value"] = await opened(store, record["value"])
    return taken


async def opened(store: Store, value: bytes) -> dict[str, Any]:
    """A published record with its sealed personal fields opened with the customer's key."""
    event = json.loads(value)
    key = await repository.find_personal_key(store.db, event["subject"])
    for field, sealed in event["data"].items():
        if is_sealed(sealed):
            assert key is not None
            event["data"][field] = unseal(sealed, key=key.key, customer_id=event["subject"], field=field)
    return dict(event)


async def test_one_batch_writes_what_batches_of_one_write(new_store: NewStore) -> None:
    together = await new_store("customer_together", repository.INDEXES)
    one_by_one = await new_store("customer_one_by_one", repository.INDEXES)
    a, b, c = "C-equal-a", "C-equal-b", "C-equal-c"
    ms = timedelta(microseconds=400)
    events: list[CloudEvent[Any]] = [
        sign_up(a, event_id="e-1"),
        consent(a, "sms", True, T0 + ms),  # within the sign-up's millisecond
        consent(a, "sms", False, T0 + 2 * ms),
        consent(b, "email", True, T0),  # unknown
        sign_up(c, event_id="e-2"),
        sign_up(c, email="x@example.com"),  # other details: rejected
        sign_up(a, event_id="e-1"),  # a duplicate
        interaction(a, "I-equal"),
        interaction(a, "I-equal"),
        referral(a, "R-equal", c),
        referral(a, "R-equal", b),  # other content: rejected
        consent(c, "email", False, T0 + timedelta(hours=1)),
    ]

    batch = await handlers.apply_ingest_events(together, events)
    singles = BatchOutcome()
    for event in events:
        singles.merge(await handlers.apply_ingest_events(one_by_one, [event]))

    assert batch.applied == singles.applied
    assert sorted(batch.duplicates) == sorted(singles.duplicates)
    assert {i: str(r) for i, r in batch.rejected.items()} == {i: str(r) for i, r in singles.rejected.items()}
    assert batch.results == singles.results
    assert len(batch.rejected) == 3
    written = await snapshot(together)
    assert written == await snapshot(one_by_one)
    # And in the same publish order.
    assert [e.id for e in await outbox(together, a)] == [e.id for e in await outbox(one_by_one, a)]
    assert len(await outbox(together, a)) == 5  # the second log of I-equal emits nothing


# ---------------------------------------------------------------- timeline batches


async def test_a_timeline_batch_writes_one_entry_per_new_event(new_store: NewStore) -> None:
    store = await new_store("customer_timeline", repository.INDEXES)
    customer = customer_id()
    earlier = order(customer, "O-0")
    assert await handlers.record_timeline(store, earlier) is True
    o1, o2 = order(customer, "O-1", T0 + timedelta(hours=1)), order(customer, "O-2", T0 + timedelta(hours=2))

    outcome = await handlers.record_timeline_events(store, [o1, earlier, o2, o1])

    assert sorted(outcome.applied) == sorted([o1.id, o2.id])
    assert sorted(outcome.duplicates) == sorted([earlier.id, o1.id])
    assert await store.db[repository.TIMELINE].count_documents({"customer_id": customer}) == 3
    entries, _ = await repository.timeline_page(store.db, customer, limit=10)
    assert [e.event_id for e in entries] == [earlier.id, o1.id, o2.id]
    # Nothing else is written for a timeline entry: no processed record, no outbox record.
    assert await store.db[PROCESSED].count_documents({}) == 0
    assert await outbox_records(store.db) == []


async def test_concurrent_copies_of_a_timeline_batch_write_each_entry_once(new_store: NewStore) -> None:
    store = await new_store("customer_timeline", repository.INDEXES)
    customer = customer_id()
    events = [order(customer, f"O-{i}", T0 + timedelta(minutes=i)) for i in range(50)]

    outcomes = await asyncio.gather(*(handlers.record_timeline_events(store, events) for _ in range(4)))

    applied = [i for o in outcomes for i in o.applied]
    assert sorted(applied) == sorted(e.id for e in events)  # each once, by whichever copy wrote it
    for o in outcomes:
        assert sorted(o.applied + o.duplicates) == sorted(e.id for e in events)
    assert await store.db[repository.TIMELINE].count_documents({"customer_id": customer}) == len(events)


# ---------------------------------------------------------------- through the broker


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A broker of this module's own: no other customer service of the session shares its groups."""
    with broker_of_its_own(tmp_path_factory.mktemp("customer-batch-broker")) as broker:
        yield broker.kafka_bootstrap


@pytest.fixture
async def producer(kafka: str) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all")
    await producer.start()
    yield producer
    await producer.stop()


async def test_the_subscriptions_apply_batches_and_dead_letter_the_rejections(
    backend: Any, kafka: str, producer: AIOKafkaProducer
) -> None:
    customer, unknown = customer_id(), customer_id()
    registered = sign_up(customer)
    changed = consent(customer, "sms", True, T0 + timedelta(hours=1))
    stranger = consent(unknown, "email", True, T0)
    for event in (registered, changed, registered, stranger):
        await producer.send_and_wait(Topic.INGEST_CUSTOMERS, event.to_bytes(), key=event.subject.encode())
    logged = interaction(customer, f"I-{customer}")
    await producer.send_and_wait(Topic.INGEST_INTERACTIONS, logged.to_bytes(), key=customer.encode())
    settings = CustomerSettings(
        CRM_KAFKA_BOOTSTRAP=kafka,
        CRM_MONGO_URI=backend.mongo_uri,
        db=f"customer_batch_{uuid.uuid4().hex[:8]}",
        relay_poll_seconds=0.2,
    )
    app = create_service(settings)
    async with app.router.lifespan_context(app):
        store: Store = app.state.runtime.require_store()

        async def letter() -> dict[str, Any] | None:
            return await store.db[DEADLETTERS].find_one({"key": unknown})

        async def whole_timeline() -> list[str]:
            entries, _ = await repository.timeline_page(store.db, customer, limit=10)
            return [e.type for e in entries] if len(entries) == 3 else []

        parked = await eventually(letter, timeout=60, what="the dead letter of the unknown customer's change")
        # The relay publishes what the ingest applied; the timeline subscription reads it back.
        types = await eventually(whole_timeline, timeout=60, what="three timeline entries")
        profile = await handlers.find_profile(store, customer)
        published = await outbox(store, customer)

    assert parked["reason"] == f"rejected: no customer {unknown}"
    assert profile is not None and profile.granted == ["email", "sms"]
    # In order within a topic's partition; the interactions topic is consumed beside it, in no set order.
    causes = [e.causationid for e in published]
    # The sign-up is published with its match keys (the suite sets CRM_MATCH_KEY_SECRET).
    assert [c for c in causes if c != logged.id] == [registered.id, registered.id, changed.id]
    assert sorted(causes) == sorted([registered.id, registered.id, changed.id, logged.id])
    assert sorted(types) == [
        "crm.customer.consent_changed.v1",
        "crm.customer.registered.v1",
        "crm.interaction.logged.v1",
    ]
