"""Scoring's batch handler on the real database: one transaction per batch that gives what the events give one by
one: duplicates skipped, a rejected event alone set aside, each event seeing the ones before it in the batch."""

import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from crm_scoring import domain, handlers, repository
from crm_shared.events import (
    CloudEvent,
    ComplaintFiled,
    ComplaintFiledEvent,
    ConsentChanged,
    ConsentChangedEvent,
    CustomerReferred,
    CustomerReferredEvent,
    CustomerRegistered,
    CustomerRegisteredEvent,
    InteractionLogged,
    InteractionLoggedEvent,
    OrderCancelled,
    OrderCancelledEvent,
    OrderPlaced,
    OrderPlacedEvent,
    OrderRefunded,
    OrderRefundedEvent,
    SurveyAnswered,
    SurveyAnsweredEvent,
    derived_event_id,
    parse_event,
)
from crm_shared.money import ExchangeRates
from crm_shared.store import PROCESSED, AlreadyApplied, BatchOutcome, Rejected, Store, outbox_records
from crm_shared.topics import Topic

NewStore = Callable[..., Awaitable[Store]]
T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)
START = datetime(2025, 11, 20, 10, tzinfo=UTC)  # with 200 days after it, all before today
EUR_AND_USD = domain.Thresholds(exchange_rates=ExchangeRates.of("EUR", {"EUR": "1", "USD": "0.90"}))
UNKNOWN_CURRENCY = (
    "order {order_id} not scored: currency XXX has no exchange rate into the reporting currency EUR, so the platform "
    "cannot score it; the accepted currencies are EUR, USD (CRM_EXCHANGE_RATES)"
)


def customer_id() -> str:
    return f"C-{uuid.uuid4().hex[:8]}"


def order(customer: str, order_id: str, total: str, at: datetime = T0, currency: str = "EUR") -> OrderPlacedEvent:
    data = OrderPlaced(customer_id=customer, order_id=order_id, currency=currency, total=Decimal(total))
    return OrderPlacedEvent.create(data, source="/channels/web", time=at)


def refund(customer: str, order_id: str, amount: str, at: datetime, currency: str = "EUR") -> OrderRefundedEvent:
    data = OrderRefunded(customer_id=customer, order_id=order_id, currency=currency, amount=Decimal(amount))
    return OrderRefundedEvent.create(data, source="/channels/web", time=at)


def cancel(customer: str, order_id: str, at: datetime) -> OrderCancelledEvent:
    return OrderCancelledEvent.create(OrderCancelled(customer_id=customer, order_id=order_id), source="/x", time=at)


def complaint(customer: str, complaint_id: str, severity: str, at: datetime) -> ComplaintFiledEvent:
    data = ComplaintFiled.model_validate(
        {
            "customer_id": customer,
            "complaint_id": complaint_id,
            "dimension": "service",
            "severity": severity,
            "summary": "The parcel came late.",
        }
    )
    return ComplaintFiledEvent.create(data, source="/crm/support", time=at)


def csat(customer: str, survey_id: str, score: int, at: datetime) -> SurveyAnsweredEvent:
    data = SurveyAnswered(customer_id=customer, survey_id=survey_id, kind="csat", score=score)
    return SurveyAnsweredEvent.create(data, source="/crm/support", time=at)


def logged(customer: str, interaction_id: str, at: datetime) -> InteractionLoggedEvent:
    data = InteractionLogged(customer_id=customer, interaction_id=interaction_id, kind="call", channel="phone")
    return InteractionLoggedEvent.create(data, source="/crm/customer", time=at)


def referred(customer: str, referral_id: str, at: datetime) -> CustomerReferredEvent:
    data = CustomerReferred(customer_id=customer, referral_id=referral_id, referred_customer_id=f"C-by-{customer}")
    return CustomerReferredEvent.create(data, source="/crm/customer", time=at)


async def changes_of(store: Store, customer: str) -> list[tuple[str, str, str | None, str]]:
    """(caused_by, dimension, old, new) of what the outbox holds for the customer, in publish order."""
    records = await outbox_records(store.db, {"key": customer})
    events = [parse_event(r["value"]) for r in records]
    return [(e.data.caused_by, e.data.dimension, e.data.old, e.data.new) for e in events]


async def markers(store: Store) -> set[str]:
    return {d["_id"] for d in await store.db[PROCESSED].find({}, {"_id": 1}).to_list(None)}


async def test_duplicates_in_the_batch_and_from_an_earlier_batch_change_nothing(new_store: NewStore) -> None:
    store = await new_store("scoring_batch", repository.INDEXES)
    customer = customer_id()
    earlier = order(customer, "O-1", "40.00")
    await handlers.apply_events(store, [earlier])
    before = await changes_of(store, customer)

    second = order(customer, "O-2", "60.00", T0 + timedelta(days=2))
    third = complaint(customer, "T-1", "low", T0 + timedelta(days=3))
    outcome = await handlers.apply_events(store, [earlier, second, second, third])

    assert outcome.applied == [second.id, third.id]
    assert sorted(outcome.duplicates) == sorted([earlier.id, second.id])
    with pytest.raises(AlreadyApplied):
        outcome.result_of(earlier)
    scored = await handlers.find_customer(store, customer)
    assert scored is not None and scored.scores.frequency == 2
    assert sorted(scored.facts.complaints) == ["T-1"]
    assert await changes_of(store, customer) == [*before, (second.id, "lifecycle_stage", "first_time_buyer", "repeat")]
    assert await store.db[repository.SEGMENT_CHANGES].count_documents({"customer_id": customer}) == len(before) + 1
    assert await markers(store) == {f"scoring:{e.id}" for e in (earlier, second, third)}


async def test_a_rejected_event_is_set_aside_and_the_good_ones_are_applied(new_store: NewStore) -> None:
    store = await new_store("scoring_batch", repository.INDEXES)
    customer, other = customer_id(), customer_id()
    first = order(customer, "O-1", "40.00")
    conflicting = order(customer, "O-1", "41.00", T0 + timedelta(hours=1))
    foreign = order(other, "O-1", "40.00", T0 + timedelta(hours=2))
    wrong_currency = refund(customer, "O-1", "5.00", T0 + timedelta(hours=3), currency="USD")
    unpriced = order(customer, "O-9", "10.00", T0 + timedelta(hours=4), currency="XXX")
    # The unpriced order claimed nothing: O-9 is free for the other customer, later in the same batch.
    claimed_after = order(other, "O-9", "25.00", T0 + timedelta(hours=5))
    not_scoring = CustomerRegisteredEvent.create(
        CustomerRegistered(customer_id=customer, name="Test Person"), source="/crm/customer", time=T0
    )
    last = order(customer, "O-2", "60.00", T0 + timedelta(days=2))
    batch = [first, conflicting, foreign, wrong_currency, unpriced, claimed_after, not_scoring, last]

    outcome = await handlers.apply_events(store, batch, EUR_AND_USD)

    assert outcome.applied == [first.id, claimed_after.id, last.id]
    assert {event_id: str(reason) for event_id, reason in outcome.rejected.items()} == {
        conflicting.id: "order O-1 is already known with different content",
        foreign.id: f"order O-1 belongs to customer {customer}, not {other}",
        wrong_currency.id: str(outcome.rejected[wrong_currency.id]),
        unpriced.id: UNKNOWN_CURRENCY.format(order_id="O-9"),
        not_scoring.id: "scoring does not handle events of type crm.customer.registered.v1",
    }
    assert str(outcome.rejected[wrong_currency.id]).startswith(
        "refund of 5.00 USD on order O-1 contradicts its currency: the order is in"
    )
    with pytest.raises(Rejected, match="belongs to customer"):
        outcome.result_of(foreign)

    mine = await handlers.find_customer(store, customer)
    theirs = await handlers.find_customer(store, other)
    assert mine is not None and theirs is not None
    assert sorted(mine.facts.orders) == ["O-1", "O-2"]
    assert mine.facts.orders["O-1"].placed is not None and mine.facts.orders["O-1"].placed.total == Decimal("40.00")
    assert mine.facts.orders["O-1"].refunds == {}
    assert sorted(theirs.facts.orders) == ["O-9"]
    owners = await store.db[repository.ORDER_OWNERS].find({}).sort("_id", 1).to_list(None)
    assert owners == [
        {"_id": "O-1", "customer_id": customer},
        {"_id": "O-2", "customer_id": customer},
        {"_id": "O-9", "customer_id": other},
    ]
    assert await markers(store) == {f"scoring:{e.id}" for e in (first, claimed_after, last)}
    rejected_ids = set(outcome.rejected)
    assert {caused_by for caused_by, *_ in await changes_of(store, customer)} == {first.id, last.id}
    assert not rejected_ids & {d["caused_by"] for d in await store.db[repository.SEGMENT_CHANGES].find().to_list(None)}


async def test_two_events_of_one_customer_in_a_batch_each_see_the_one_before(new_store: NewStore) -> None:
    store = await new_store("scoring_batch", repository.INDEXES)
    customer = customer_id()
    first = order(customer, "O-1", "400.00")
    second = order(customer, "O-2", "900.00", T0 + timedelta(days=2))
    # The same order again under another event id: nothing new, the customer as the second event left them.
    again = order(customer, "O-2", "900.00", T0 + timedelta(days=3))
    outcome = await handlers.apply_events(store, [first, second, again])

    one, two, three = (outcome.result_of(e) for e in (first, second, again))
    assert (one.customer.scores.frequency, two.customer.scores.frequency) == (1, 2)
    assert two.customer.scores.monetary == Decimal("1300.00")
    assert [(c.data.dimension, c.data.old, c.data.new) for c in one.changes] == [
        ("value_tier", "potential", "low_value"),
        ("lifecycle_stage", "prospect", "first_time_buyer"),
    ]
    # The second order crosses two boundaries from where the first left the customer.
    assert [(c.data.dimension, c.data.old, c.data.new) for c in two.changes] == [
        ("value_tier", "low_value", "high_value"),
        ("lifecycle_stage", "first_time_buyer", "repeat"),
    ]
    assert three.changes == [] and three.customer == two.customer
    assert await changes_of(store, customer) == [
        (first.id, "value_tier", "potential", "low_value"),
        (first.id, "lifecycle_stage", "prospect", "first_time_buyer"),
        (second.id, "value_tier", "low_value", "high_value"),
        (second.id, "lifecycle_stage", "first_time_buyer", "repeat"),
    ]
    ids = {d["_id"] for d in await store.db[repository.SEGMENT_CHANGES].find({"customer_id": customer}).to_list(None)}
    assert ids == {
        derived_event_id("/crm/scoring", e.id, dimension)
        for e in (first, second)
        for dimension in ("value_tier", "lifecycle_stage")
    }
    stored = await handlers.find_customer(store, customer)
    assert stored is not None
    assert (stored.scores, stored.segments, stored.scored_as_of) == (
        two.customer.scores,
        two.customer.segments,
        T0 + timedelta(days=2),
    )


async def test_the_scored_as_of_time_never_goes_back_within_a_batch(new_store: NewStore) -> None:
    store = await new_store("scoring_batch", repository.INDEXES)
    customer = customer_id()
    late = order(customer, "O-1", "40.00", T0 + timedelta(days=10))
    older = complaint(customer, "T-1", "high", T0)

    outcome = await handlers.apply_events(store, [late, older])

    assert outcome.result_of(older).customer.scored_as_of == T0 + timedelta(days=10)


async def test_customer_events_other_than_interactions_and_referrals_are_ignored(new_store: NewStore) -> None:
    store = await new_store("scoring_batch", repository.INDEXES)
    customer = customer_id()
    registered = CustomerRegisteredEvent.create(
        CustomerRegistered(customer_id=customer, name="Test Person"), source="/crm/customer", time=T0
    )
    consent = ConsentChangedEvent.create(
        ConsentChanged(customer_id=customer, channel="email", granted=False), source="/crm/customer", time=T0
    )
    call = logged(customer, "I-1", T0 + timedelta(hours=1))
    referral = referred(customer, "R-1", T0 + timedelta(hours=2))

    outcome = await handlers.apply_customer_events(store, [registered, call, consent, referral])

    assert outcome.ignored == [registered.id, consent.id]
    assert outcome.applied == [call.id, referral.id]
    assert outcome.result_of(registered) is None
    scored = await handlers.find_customer(store, customer)
    assert scored is not None
    assert (sorted(scored.facts.interactions), sorted(scored.facts.referrals)) == (["I-1"], ["R-1"])
    assert await markers(store) == {f"scoring:{call.id}", f"scoring:{referral.id}"}


# ---------------------------------------------------------------- a batch gives what one event at a time gives


def mixed_events() -> list[CloudEvent[Any]]:
    """Three customers' orders, refunds, cancellations, complaints, surveys and duplicates, interleaved, with
    rejections among them."""
    a, b, c = (f"C-{name}-{uuid.uuid4().hex[:6]}" for name in "abc")
    day = timedelta(days=1)
    first = order(a, "A-1", "300.00")
    return [
        first,
        order(b, "B-1", "1200.00", START + timedelta(hours=1)),
        refund(a, "A-1", "50.00", START + day),
        complaint(b, "T-b1", "high", START + day),
        order(a, "A-2", "800.00", START + 2 * day),
        order(c, "A-2", "800.00", START + 2 * day),  # another customer's order id: rejected
        csat(a, "S-a1", 2, START + 3 * day),
        refund(c, "C-1", "10.00", START + 3 * day),  # before its order arrives
        order(c, "C-1", "90.00", START + 2 * day),
        order(a, "A-2", "801.00", START + 4 * day),  # contradicts A-2: rejected
        cancel(b, "B-1", START + 4 * day),
        first,  # a redelivery
        order(b, "B-2", "20.00", START + 5 * day, currency="XXX"),  # no rate: rejected
        order(a, "A-3", "5.00", START + 200 * day),
        complaint(b, "T-b1", "high", START + 6 * day),  # the same complaint under another event id
        csat(c, "S-c1", 5, START + 6 * day),
    ]


async def contents(store: Store) -> dict[str, Any]:
    """Every document scoring wrote, without the wall-clock stamps."""

    async def all_of(name: str, sort: str = "_id", drop: Sequence[str] = ()) -> list[dict[str, Any]]:
        docs = await store.db[name].find({}).sort(sort, 1).to_list(None)
        return [{k: v for k, v in d.items() if k not in drop} for d in docs]

    return {
        "customers": await all_of(repository.CUSTOMERS, drop=("updated_at",)),
        "segment_changes": await all_of(repository.SEGMENT_CHANGES),
        "order_owners": await all_of(repository.ORDER_OWNERS),
        "processed": await all_of(PROCESSED, drop=("applied_at",)),
        "outbox": [
            {k: v for k, v in r.items() if k not in ("created_at", "seq", "sent_at")}
            for r in await outbox_records(store.db)
        ],
    }


async def test_one_batch_gives_the_same_documents_and_outbox_as_one_event_at_a_time(new_store: NewStore) -> None:
    events = mixed_events()
    batched = await new_store("scoring_batch", repository.INDEXES)
    one_by_one = await new_store("scoring_batch", repository.INDEXES)

    outcome = await handlers.apply_events(batched, events, EUR_AND_USD)
    singles = BatchOutcome()
    for event in events:
        singles.merge(await handlers.apply_events(one_by_one, [event], EUR_AND_USD))

    assert outcome.applied == singles.applied
    assert sorted(outcome.duplicates) == sorted(singles.duplicates)
    assert {k: str(v) for k, v in outcome.rejected.items()} == {k: str(v) for k, v in singles.rejected.items()}
    assert len(outcome.rejected) == 3
    got, want = await contents(batched), await contents(one_by_one)
    assert got == want
    assert len(got["outbox"]) == len(got["segment_changes"]) > 0
    assert {r["topic"] for r in got["outbox"]} == {Topic.SCORING_SEGMENTS}
