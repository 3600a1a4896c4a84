"""Marketing's batch handlers on the real database: a batch applied in one transaction ends exactly as its
events applied one after another, duplicates change nothing, and each event sees what the earlier ones wrote."""

import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from crm_marketing import domain, engagement, handlers, repository
from crm_marketing.journeys import DEFAULT_JOURNEYS
from crm_shared.events import (
    ChannelConsent,
    CloudEvent,
    ComplaintFiled,
    ComplaintFiledEvent,
    ConsentChanged,
    ConsentChangedEvent,
    CustomerRegistered,
    CustomerRegisteredEvent,
    InteractionLogged,
    InteractionLoggedEvent,
    OrderCancelled,
    OrderCancelledEvent,
    OrderPaid,
    OrderPaidEvent,
    OrderPlaced,
    OrderPlacedEvent,
    ScoreSnapshot,
    SegmentChanged,
    SegmentChangedEvent,
    parse_event,
    utc_now,
)
from crm_shared.store import OUTBOX, PROCESSED, BatchOutcome, Store, outbox_records

NewStore = Callable[..., Awaitable[Store]]
# In the past: an event may not be dated ahead of the clock.
T0 = (utc_now() - timedelta(days=40)).replace(hour=10, minute=0, second=0, microsecond=0)
NO_HOLDOUT = domain.Policy(holdout_share=0)
RULE = engagement.EngagementRule()


def customer_id() -> str:
    return f"C-{uuid.uuid4().hex[:8]}"


def contacted_customer(policy: domain.Policy) -> str:
    """A random customer id that no journey holds out under the policy."""
    while True:
        candidate = customer_id()
        if not any(domain.in_holdout(candidate, j.name, policy.holdout_share) for j in DEFAULT_JOURNEYS):
            return candidate


def registered(customer: str, consents: dict[str, bool], at: datetime = T0 - timedelta(days=1)) -> CloudEvent[Any]:
    data = CustomerRegistered(
        customer_id=customer,
        name="Test Person",
        consents=[ChannelConsent.model_validate({"channel": c, "granted": g}) for c, g in consents.items()],
    )
    return CustomerRegisteredEvent.create(data, source="/crm/customer", time=at)


def consent(customer: str, channel: str, granted: bool, at: datetime) -> CloudEvent[Any]:
    data = ConsentChanged.model_validate({"customer_id": customer, "channel": channel, "granted": granted})
    return ConsentChangedEvent.create(data, source="/crm/customer", time=at)


def segment_change(customer: str, dimension: Any, old: str, new: str, at: datetime) -> CloudEvent[Any]:
    scores = ScoreSnapshot(
        recency_days=100,
        frequency=3,
        monetary=Decimal("3000.00"),
        average_order_value=Decimal("1000.00"),
        value_tier="high_value",
        lifecycle_stage="lost" if new == "lost" else "repeat",
        churn_risk=0.9,
        churn_risk_band="high",
        satisfaction=None,
    )
    change = SegmentChanged(
        customer_id=customer,
        dimension=dimension,
        old=old,
        new=new,
        scores=scores,
        model_version="v1",
        changed_at=at,
        caused_by="decay",
    )
    return SegmentChangedEvent.create(change, source="/crm/scoring", time=at)


def became_lost(customer: str, at: datetime = T0) -> CloudEvent[Any]:
    return segment_change(customer, "lifecycle_stage", "at_risk", "lost", at)


def complaint(customer: str, complaint_id: str, at: datetime = T0) -> CloudEvent[Any]:
    filed = ComplaintFiled(
        customer_id=customer, complaint_id=complaint_id, dimension="service", severity="high", summary="Late."
    )
    return ComplaintFiledEvent.create(filed, source="/crm/support", time=at)


def placed(customer: str, order_id: str, total: str, at: datetime) -> CloudEvent[Any]:
    order = OrderPlaced(customer_id=customer, order_id=order_id, currency="EUR", total=Decimal(total))
    return OrderPlacedEvent.create(order, source="/crm/sales", time=at)


def cancelled(customer: str, order_id: str, at: datetime) -> CloudEvent[Any]:
    return OrderCancelledEvent.create(
        OrderCancelled(customer_id=customer, order_id=order_id), source="/crm/sales", time=at
    )


def paid(customer: str, order_id: str, at: datetime) -> CloudEvent[Any]:
    payment = OrderPaid(customer_id=customer, order_id=order_id, currency="EUR", amount=Decimal("1.00"))
    return OrderPaidEvent.create(payment, source="/crm/sales", time=at)


def logged(customer: str, interaction_id: str, kind: str, at: datetime) -> CloudEvent[Any]:
    data = InteractionLogged.model_validate(
        {"customer_id": customer, "interaction_id": interaction_id, "kind": kind, "channel": "call_centre"}
    )
    return InteractionLoggedEvent.create(data, source="/crm/customer", time=at)


async def plan_campaign(store: Store, campaign_id: str, budget: str, cost: str) -> None:
    await store.db[repository.CAMPAIGNS].insert_one(
        {
            "_id": campaign_id,
            "kind": "planned",
            "name": "Win-back",
            "objective": "Bring lost customers back.",
            "journey": "win-back",
            "segment_id": None,
            "channel": None,
            "starts_at": T0 - timedelta(days=5),
            "ends_at": T0 + timedelta(days=30),
            "budget": Decimal(budget),
            "cost_per_contact": Decimal(cost),
            "currency": "EUR",
            "spent": Decimal(0),
            "archived_at": None,
        }
    )


Topic = str
Step = tuple[Topic, CloudEvent[Any]]


async def apply(store: Store, topic: Topic, events: Sequence[CloudEvent[Any]], policy: domain.Policy) -> BatchOutcome:
    if topic == "customer":
        return await handlers.apply_customer_events(store, events, RULE)
    if topic == "segments":
        return await handlers.apply_segment_changes(store, events, DEFAULT_JOURNEYS, policy)
    if topic == "support":
        return await handlers.apply_support_events(store, events, DEFAULT_JOURNEYS, policy)
    return await handlers.apply_sales_events(store, events, policy)


async def apply_in_batches(store: Store, steps: Sequence[Step], policy: domain.Policy) -> None:
    """Each run of events of one topic as one batch, as a consumer takes them from a partition."""
    run: list[CloudEvent[Any]] = []
    for i, (topic, event) in enumerate(steps):
        run.append(event)
        if i + 1 == len(steps) or steps[i + 1][0] != topic:
            await apply(store, topic, run, policy)
            run = []


async def apply_one_by_one(store: Store, steps: Sequence[Step], policy: domain.Policy) -> None:
    for topic, event in steps:
        await apply(store, topic, [event], policy)


async def contents(store: Store) -> dict[str, list[dict[str, Any]]]:
    """Every document, but the times of writing; the outbox in publishing order."""
    found: dict[str, list[dict[str, Any]]] = {}
    for name in sorted(await store.db.list_collection_names()):
        if name == OUTBOX:
            docs = await outbox_records(store.db)
            found[name] = [{k: v for k, v in d.items() if k not in ("seq", "created_at", "sent_at")} for d in docs]
        else:
            docs = await store.db[name].find().to_list(None)
            found[name] = sorted(({k: v for k, v in d.items() if k != "applied_at"} for d in docs), key=str)
    return found


async def emitted(store: Store, customer: str) -> list[tuple[str, Any]]:
    records = await outbox_records(store.db, {"key": customer})
    return [(r["type"], parse_event(r["value"]).data) for r in records]


# ---------------------------------------------------------------- one batch equals its events one after another


async def test_a_batch_ends_as_its_events_applied_one_at_a_time(new_store: NewStore) -> None:
    batched = await new_store("marketing_batched", repository.INDEXES)
    single = await new_store("marketing_single", repository.INDEXES)
    policy = domain.Policy(holdout_share=0.3, max_contacts_per_period=2)
    # a and b are drawn outside every journey's holdout, so the campaign surely spends (with random ids it
    # was held out entirely about one run in thirty); c and d stay random, so the holdout still plays a part.
    a, b = contacted_customer(policy), contacted_customer(policy)
    c, d = customer_id(), customer_id()
    steps: list[Step] = [
        ("customer", registered(a, {"email": True})),
        ("customer", registered(b, {"sms": True, "email": False})),
        ("customer", consent(a, "email", False, T0 - timedelta(hours=2))),
        ("customer", consent(a, "phone", True, T0 - timedelta(hours=1))),
        ("customer", registered(c, {"email": True})),
        ("sales", placed(b, f"O1-{b}", "80.00", T0 + timedelta(days=2))),
        ("sales", placed(a, f"O1-{a}", "30.00", T0 + timedelta(days=3))),
        ("segments", became_lost(a)),
        ("segments", segment_change(a, "value_tier", "potential", "high_value", T0 + timedelta(hours=1))),
        ("segments", became_lost(b, T0 + timedelta(hours=2))),
        ("segments", segment_change(a, "churn_risk_band", "low", "high", T0 + timedelta(hours=3))),
        ("segments", became_lost(c, T0 + timedelta(hours=4))),
        ("support", complaint(a, f"T-{a}", T0 + timedelta(hours=5))),
        ("support", complaint(a, f"T-{a}", T0 + timedelta(hours=6))),
        ("support", complaint(c, f"T-{c}", T0 + timedelta(hours=6))),
        ("sales", placed(a, f"O2-{a}", "50.00", T0 + timedelta(days=4))),
        ("sales", paid(a, f"O2-{a}", T0 + timedelta(days=4))),
        ("sales", cancelled(b, f"O1-{b}", T0 + timedelta(days=5))),
        ("sales", placed(c, f"O1-{c}", "20.00", T0 + timedelta(days=5))),
        ("sales", cancelled(c, f"O1-{c}", T0 + timedelta(days=6))),
        ("sales", cancelled(c, f"O2-{c}", T0 + timedelta(days=6))),
        ("sales", placed(c, f"O2-{c}", "20.00", T0 + timedelta(days=5))),
        ("customer", logged(d, "I-1", "meeting", T0)),
        ("customer", consent(c, "sms", True, T0 + timedelta(hours=1))),
        ("customer", logged(d, "I-2", "call", T0 + timedelta(days=1))),
        ("customer", logged(d, "I-2", "call", T0 + timedelta(days=1))),
        ("customer", logged(c, "I-1", "visit", T0 + timedelta(days=2))),
        ("customer", logged(d, "I-3", "visit", T0 + timedelta(days=2))),
    ]
    for store in (batched, single):
        await plan_campaign(store, "wb-q4", budget="0.80", cost="0.40")

    await apply_in_batches(batched, steps, policy)
    await apply_one_by_one(single, steps, policy)

    assert await contents(batched) == await contents(single)
    # What the scenario is for happened: conversions, a withdrawal, a spent budget, a lead.
    stored = await contents(batched)
    assert {d["order_id"] for d in stored[repository.CONVERSIONS]} >= {f"O1-{a}", f"O1-{b}"}
    assert any(d.get("cancelled") for d in stored[repository.CONVERSIONS])
    assert len(stored[repository.LEADS]) == 1
    [campaign] = [d for d in stored[repository.CAMPAIGNS] if d["_id"] == "wb-q4"]
    assert campaign["spent"] > 0


# ---------------------------------------------------------------- duplicates


async def test_duplicates_within_a_batch_and_from_an_earlier_batch_change_nothing(new_store: NewStore) -> None:
    store = await new_store("marketing_batch_duplicates", repository.INDEXES)
    early, late = customer_id(), customer_id()
    await handlers.apply_customer_events(store, [registered(early, {"email": True}), registered(late, {"email": True})])
    before = became_lost(early)
    await handlers.apply_segment_changes(store, [before], DEFAULT_JOURNEYS, NO_HOLDOUT)
    fresh = became_lost(late)

    outcome = await handlers.apply_segment_changes(store, [before, fresh, fresh], DEFAULT_JOURNEYS, NO_HOLDOUT)

    assert outcome.applied == [fresh.id]
    assert sorted(outcome.duplicates) == sorted([before.id, fresh.id])
    # The second copy of `fresh` is a duplicate (so result_of raises AlreadyApplied); the first one's result stays.
    assert [e.customer_id for e in outcome.results[fresh.id]] == [late]
    for customer in (early, late):
        assert await store.db[repository.ENROLMENTS].count_documents({"customer_id": customer}) == 1
        types = [t for t, _ in await emitted(store, customer)]
        assert types == ["crm.campaign.enrolled.v1", "crm.campaign.contacted.v1"]
    markers = [f"marketing:{before.id}", f"marketing:{fresh.id}"]
    assert await store.db[PROCESSED].count_documents({"_id": {"$in": markers}}) == 2


async def test_events_marketing_does_not_use_are_ignored_among_the_ones_it_applies(new_store: NewStore) -> None:
    store = await new_store("marketing_batch_ignored", repository.INDEXES)
    customer = customer_id()
    order, payment = placed(customer, f"O-{customer}", "10.00", T0), paid(customer, f"O-{customer}", T0)

    outcome = await handlers.apply_sales_events(store, [payment, order])

    assert (outcome.ignored, outcome.applied, outcome.rejected) == ([payment.id], [order.id], {})
    assert await store.db[repository.ORDERS].count_documents({"customer_id": customer}) == 1
    assert await store.db[PROCESSED].find_one({"_id": f"marketing:{payment.id}"}) is None
    assert await handlers.apply_sales_event(store, payment) == 0


# ---------------------------------------------------------------- each event sees the ones before it


async def test_the_second_enrolment_of_a_batch_sees_the_first_ones_contacts(new_store: NewStore) -> None:
    store = await new_store("marketing_batch_cap", repository.INDEXES)
    policy = domain.Policy(holdout_share=0, max_contacts_per_period=1)
    customer = customer_id()
    await handlers.apply_customer_event(store, registered(customer, {"email": True}))
    first = segment_change(customer, "value_tier", "potential", "high_value", T0)
    second = became_lost(customer, T0 + timedelta(hours=1))

    outcome = await handlers.apply_segment_changes(store, [first, second], DEFAULT_JOURNEYS, policy)

    [thanked] = outcome.result_of(first)
    [won_back] = outcome.result_of(second)
    assert (thanked.status, won_back.status, won_back.reason) == ("contacted", "skipped", domain.FREQUENCY_CAP)


async def test_one_batch_spends_a_shared_budget_once_across_customers(new_store: NewStore) -> None:
    store = await new_store("marketing_batch_budget", repository.INDEXES)
    await plan_campaign(store, "wb-budget", budget="1.00", cost="0.40")
    customers = [customer_id() for _ in range(3)]
    await handlers.apply_customer_events(store, [registered(c, {"email": True}) for c in customers])
    changes = [became_lost(c, T0 + timedelta(minutes=i)) for i, c in enumerate(customers)]

    outcome = await handlers.apply_segment_changes(store, changes, DEFAULT_JOURNEYS, NO_HOLDOUT)

    decided = [(e.status, e.reason, e.cost) for change in changes for e in outcome.result_of(change)]
    assert decided == [
        ("contacted", None, Decimal("0.40")),
        ("contacted", None, Decimal("0.40")),
        ("skipped", domain.BUDGET_EXHAUSTED, Decimal(0)),
    ]
    campaign = await store.db[repository.CAMPAIGNS].find_one({"_id": "wb-budget"})
    assert campaign is not None and campaign["spent"] == Decimal("0.80")


async def test_the_same_complaint_twice_in_a_batch_enrols_once(new_store: NewStore) -> None:
    store = await new_store("marketing_batch_complaint", repository.INDEXES)
    customer = customer_id()
    await handlers.apply_customer_event(store, registered(customer, {"sms": True}))
    first, again = complaint(customer, f"T-{customer}"), complaint(customer, f"T-{customer}", T0 + timedelta(hours=1))

    outcome = await handlers.apply_support_events(store, [first, again], DEFAULT_JOURNEYS, NO_HOLDOUT)

    assert [e.journey for e in outcome.result_of(first)] == ["complaint-recovery"]
    assert outcome.result_of(again) == []
    assert outcome.applied == [first.id, again.id]
    assert await store.db[repository.ENROLMENTS].count_documents({"customer_id": customer}) == 1


async def test_a_consent_change_in_a_batch_merges_into_the_sign_up_before_it(new_store: NewStore) -> None:
    store = await new_store("marketing_batch_consents", repository.INDEXES)
    customer = customer_id()
    signed_up = registered(customer, {"email": True, "sms": True})
    revoked = consent(customer, "email", False, T0)

    outcome = await handlers.apply_customer_events(store, [signed_up, revoked])

    assert outcome.result_of(signed_up).granted == ("email", "sms")
    assert outcome.result_of(revoked).granted == ("sms",)
    prefs = await store.db[repository.CONTACT_PREFERENCES].find_one({"_id": customer})
    attributes = await store.db[repository.ATTRIBUTES].find_one({"_id": customer})
    assert prefs is not None and (prefs["granted"], prefs["refused"]) == (["sms"], ["email"])
    assert attributes is not None and attributes["granted"] == ["sms"]


async def test_an_order_and_its_cancellation_in_one_batch_convert_then_withdraw(new_store: NewStore) -> None:
    store = await new_store("marketing_batch_orders", repository.INDEXES)
    customer = customer_id()
    await handlers.apply_customer_event(store, registered(customer, {"email": True}))
    await handlers.apply_segment_change(store, became_lost(customer), DEFAULT_JOURNEYS, NO_HOLDOUT)
    order = placed(customer, f"O-{customer}", "70.00", T0 + timedelta(days=1))
    withdrawn = cancelled(customer, f"O-{customer}", T0 + timedelta(days=2))
    late = cancelled(customer, f"O2-{customer}", T0 + timedelta(days=2))
    late_order = placed(customer, f"O2-{customer}", "5.00", T0 + timedelta(days=1))

    outcome = await handlers.apply_sales_events(store, [order, withdrawn, late, late_order])

    assert [outcome.result_of(e) for e in (order, withdrawn, late, late_order)] == [1, -1, 0, 0]
    [conversion] = await store.db[repository.CONVERSIONS].find({"customer_id": customer}).to_list(None)
    assert (conversion["order_id"], conversion["cancelled"]) == (f"O-{customer}", True)
    attributes = await store.db[repository.ATTRIBUTES].find_one({"_id": customer})
    assert attributes is not None and attributes["last_order_at"] == T0 + timedelta(days=1)


async def test_interactions_of_one_batch_reach_the_threshold_together_and_hand_over_once(new_store: NewStore) -> None:
    store = await new_store("marketing_batch_engagement", repository.INDEXES)
    customer = customer_id()
    events = [
        logged(customer, "I-1", "meeting", T0),
        logged(customer, "I-2", "call", T0 + timedelta(days=1)),
        logged(customer, "I-2", "call", T0 + timedelta(days=1)),
        logged(customer, "I-3", "visit", T0 + timedelta(days=2)),
    ]

    outcome = await handlers.apply_customer_events(store, events, RULE)

    assert [outcome.result_of(e) is not None for e in events] == [False, True, False, False]
    assert [t for t, _ in await emitted(store, customer)] == ["crm.lead.qualified.v1"]
    counter = await store.db[repository.ENGAGEMENT].find_one({"_id": customer})
    assert counter is not None and (counter["interactions"], counter["latest_at"]) == (3, T0 + timedelta(days=2))
    assert await store.db[repository.INTERACTIONS].count_documents({"customer_id": customer}) == 3
