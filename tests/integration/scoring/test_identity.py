"""Scoring follows the customer service's merges, unmerges, erasures and exports (crm_scoring.identity) on the real
database: the survivor rescored from both customers' facts, what came from the merged id given back, the ids
re-keyed to the pseudonym, the answers in the outbox."""

import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from crm_scoring import domain, handlers, repository
from crm_scoring.app import create_service
from crm_scoring.identity import ScoringHolder
from crm_shared import identity
from crm_shared.events import (
    CloudEvent,
    ComplaintFiled,
    ComplaintFiledEvent,
    CustomerErased,
    CustomerErasedEvent,
    CustomerExportRequested,
    CustomerExportRequestedEvent,
    CustomerMerged,
    CustomerMergedEvent,
    CustomerReferred,
    CustomerReferredEvent,
    CustomerUnmerged,
    CustomerUnmergedEvent,
    ExportAnsweredEvent,
    IdentityAppliedEvent,
    OrderPlaced,
    OrderPlacedEvent,
    OrderRefunded,
    OrderRefundedEvent,
    SegmentChangedEvent,
    parse_event,
)
from crm_shared.store import Store, outbox_records
from crm_shared.topics import Topic

from helpers import ADMIN_HEADERS

NewStore = Callable[..., Awaitable[Store]]
T0 = datetime(2026, 6, 1, 10, tzinfo=UTC)
THRESHOLDS = domain.Thresholds()
HOLDER = ScoringHolder(THRESHOLDS)


def ids(*names: str) -> list[str]:
    run = uuid.uuid4().hex[:6]
    return [f"{name}-{run}" for name in names]


def order(customer: str, order_id: str, total: str, at: datetime) -> OrderPlacedEvent:
    data = OrderPlaced(customer_id=customer, order_id=order_id, currency="EUR", total=Decimal(total))
    return OrderPlacedEvent.create(data, source="/channels/web", time=at)


def refund(customer: str, order_id: str, amount: str, at: datetime) -> OrderRefundedEvent:
    data = OrderRefunded(customer_id=customer, order_id=order_id, currency="EUR", amount=Decimal(amount))
    return OrderRefundedEvent.create(data, source="/channels/web", time=at)


def complaint(customer: str, complaint_id: str, at: datetime) -> ComplaintFiledEvent:
    data = ComplaintFiled(
        customer_id=customer, complaint_id=complaint_id, dimension="service", severity="high", summary="No show."
    )
    return ComplaintFiledEvent.create(data, source="/support", time=at)


def merged(survivor: str, merged_id: str, merge_id: str, at: datetime) -> CustomerMergedEvent:
    data = CustomerMerged(customer_id=survivor, merged_id=merged_id, merge_id=merge_id, decided_by="confirmed")
    return CustomerMergedEvent.create(data, source="/crm/customer", time=at)


def unmerged(survivor: str, merged_id: str, merge_id: str, at: datetime) -> CustomerUnmergedEvent:
    data = CustomerUnmerged(customer_id=survivor, merged_id=merged_id, merge_id=merge_id)
    return CustomerUnmergedEvent.create(data, source="/crm/customer", time=at)


async def apply(store: Store, events: Sequence[CloudEvent[Any]]) -> None:
    """The events as the batch consumer hands them to the handler: filed under the survivor of a merge first."""
    filed = await identity.redirect(store, events)
    outcome = await handlers.apply_events(store, filed, THRESHOLDS)
    assert not outcome.rejected


async def request(store: Store, *events: CloudEvent[Any]) -> None:
    outcome = await identity.apply_requests(store, "scoring", HOLDER, events)
    assert outcome.applied == [e.id for e in events]


async def segment_events(store: Store, cause: CloudEvent[Any]) -> list[SegmentChangedEvent]:
    found = [parse_event(r["value"]) for r in await outbox_records(store.db, {"topic": Topic.SCORING_SEGMENTS.value})]
    return [e for e in found if isinstance(e, SegmentChangedEvent) and e.data.caused_by == cause.id]


def moves(changes: list[SegmentChangedEvent]) -> list[tuple[str, str, str | None, str]]:
    return [(e.data.customer_id, e.data.dimension, e.data.old, e.data.new) for e in changes]


def named(event: CloudEvent[Any], customer_id: str) -> CloudEvent[Any]:
    """The same event (same id), naming another customer."""
    data = event.data.model_copy(update={"customer_id": customer_id})
    return event.model_copy(update={"subject": customer_id, "data": data})


async def answers(store: Store) -> list[Any]:
    return [parse_event(r["value"]) for r in await outbox_records(store.db, {"topic": Topic.IDENTITY_ANSWERS.value})]


async def customer(store: Store, customer_id: str) -> repository.CustomerScores:
    found = await handlers.find_customer(store, customer_id)
    assert found is not None, customer_id
    return found


async def test_a_merge_rescores_the_survivor_once_and_the_merged_id_is_gone_from_what_scoring_shows(
    new_store: NewStore,
) -> None:
    store = await new_store("scoring_identity", repository.INDEXES)
    a, b = ids("A", "B")
    await apply(store, [order(a, f"O-{a}", "600.00", T0), order(b, f"O-{b}", "500.00", T0 + timedelta(days=1))])
    assert (await customer(store, b)).segments.value_tier == "low_value"

    merge = merged(b, a, "m-1", T0 + timedelta(days=2))
    await request(store, merge)

    survivor = await customer(store, b)
    assert (survivor.scores.frequency, survivor.scores.monetary) == (2, Decimal("1100.00"))
    assert survivor.scores.average_order_value == Decimal("550.00")
    assert survivor.segments.value_tier == "high_value"
    assert survivor.origins[a].keys == {f"order:O-{a}"}
    # The survivor's changes, the boundaries it crossed, caused by the merge, published through the outbox.
    published = await segment_events(store, merge)
    assert moves(published) == [
        (b, "value_tier", "low_value", "high_value"),
        (b, "lifecycle_stage", "first_time_buyer", "repeat"),
    ]
    for change in published:
        assert (change.subject, change.causationid, change.data.scores.frequency) == (b, merge.id, 2)
        stored = await store.db[repository.SEGMENT_CHANGES].find_one({"_id": change.id})
        assert stored is not None and stored["customer_id"] == b
    # The merged id's segment changes and order now belong to the survivor, the id they came from kept.
    history = await store.db[repository.SEGMENT_CHANGES].find({identity.ORIGIN: a}).to_list(None)
    assert history and {d["customer_id"] for d in history} == {b}
    assert await store.db[repository.ORDER_OWNERS].find_one({"_id": f"O-{a}"}) == {
        "_id": f"O-{a}",
        "customer_id": b,
        identity.ORIGIN: a,
    }

    # Nothing scoring shows names the merged id any more; its document is kept apart for an unmerge.
    assert await handlers.find_customer(store, a) is None
    assert await store.db[repository.MERGED_CUSTOMERS].count_documents({"_id": a}) == 1
    app = create_service()
    app.state.runtime.store = store
    async with httpx.AsyncClient(
        headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://scoring"
    ) as http:
        assert (await http.get(f"/v1/customers/{a}/scores")).status_code == 404
        assert (await http.get(f"/v1/customers/{a}/segment-changes")).json()["items"] == []
        assert len((await http.get(f"/v1/customers/{b}/segment-changes")).json()["items"]) == 6
        population = (await http.get("/v1/population")).json()
        assert (population["customers"], population["value_tier"]) == (1, {"high_value": 1})

    # The passes over the whole base do not see it either.
    assert await handlers.rebuild(store, THRESHOLDS) == handlers.Rebuilt(1, [])
    refreshed = await handlers.refresh_population(store, THRESHOLDS, T0 + timedelta(days=3))
    assert refreshed.population.customers == 1
    decayed = await handlers.decay_pass(store, THRESHOLDS, T0 + timedelta(days=100))
    assert {c.data.customer_id for c in decayed} == {b}
    assert await handlers.find_customer(store, a) is None
    assert set((await customer(store, b)).origins) == {a}  # rescored, still knowing what came from A

    [applied] = [x.data for x in await answers(store) if isinstance(x, IdentityAppliedEvent)]
    assert (applied.request, applied.request_id, applied.service, applied.customer_id) == ("merge", "m-1", "scoring", b)
    assert applied.records == 1 + 1 + len(history)  # the document, the order owner, the segment changes


async def test_what_named_the_merged_id_since_goes_back_to_it_and_both_are_rescored_from_their_own_facts(
    new_store: NewStore,
) -> None:
    store = await new_store("scoring_identity", repository.INDEXES)
    control = await new_store("scoring_identity_control", repository.INDEXES)
    a, b = ids("A", "B")
    before: list[CloudEvent[Any]] = [
        order(a, f"O-{a}-1", "400.00", T0),
        complaint(a, f"T-{a}", T0 + timedelta(hours=1)),
        order(b, f"O-{b}-1", "700.00", T0 + timedelta(days=5)),
    ]
    await apply(store, before)
    merge = merged(b, a, "m-1", T0 + timedelta(days=6))
    await request(store, merge)

    # After the merge: an order and a refund that name A, a refund of A's first order and an order naming B.
    since: list[CloudEvent[Any]] = [
        order(a, f"O-{a}-2", "300.00", T0 + timedelta(days=7)),
        refund(a, f"O-{a}-2", "50.00", T0 + timedelta(days=8)),
        refund(b, f"O-{a}-1", "20.00", T0 + timedelta(days=8)),
        order(b, f"O-{b}-2", "80.00", T0 + timedelta(days=9)),
    ]
    await apply(store, since)
    survivor = await customer(store, b)
    assert survivor.scores.frequency == 4
    assert survivor.scores.monetary == Decimal("1410.00")  # 400 - 20 + 300 - 50 + 700 + 80
    assert survivor.origins[a].keys == {f"order:O-{a}-1", f"order:O-{a}-2", f"complaint:T-{a}"}
    owner = await store.db[repository.ORDER_OWNERS].find_one({"_id": f"O-{a}-2"})
    assert owner is not None and (owner["customer_id"], owner[identity.ORIGIN]) == (b, a)
    assert await handlers.find_customer(store, a) is None

    unmerge = unmerged(b, a, "m-1", T0 + timedelta(days=10))
    await request(store, unmerge)

    # Each has its own facts again: those it would have had if never merged (the refund of A's order naming A).
    await apply(control, before)
    await apply(control, [*since[:2], named(since[2], a), since[3]])
    for customer_id in (a, b):
        live, alone = await customer(store, customer_id), await customer(control, customer_id)
        assert live.facts == alone.facts, customer_id
        assert live.origins == {}
        # Scored as a rebuild from those facts scores them, and as the customer never merged is.
        assert live.scores == domain.score(alone.facts, live.scored_as_of, THRESHOLDS)
        assert (live.scores, live.segments) == (alone.scores, alone.segments)
    assert (await customer(store, a)).scores.monetary == Decimal("400.00") - Decimal("20.00") + Decimal("250.00")
    assert await handlers.rebuild(store, THRESHOLDS) == handlers.Rebuilt(2, [])
    assert await store.db[repository.MERGED_CUSTOMERS].count_documents({}) == 0
    owners = {d["_id"]: d["customer_id"] async for d in store.db[repository.ORDER_OWNERS].find({})}
    assert owners == {f"O-{a}-1": a, f"O-{a}-2": a, f"O-{b}-1": b, f"O-{b}-2": b}

    # B is back to 780 in low_value, A moves from its segments at the merge (first_time_buyer, one order) to repeat.
    assert sorted(moves(await segment_events(store, unmerge))) == [
        (a, "lifecycle_stage", "first_time_buyer", "repeat"),
        (b, "churn_risk_band", "high", "low"),
        (b, "value_tier", "high_value", "low_value"),
    ]
    # A later order of A stays A's.
    await apply(store, [order(a, f"O-{a}-3", "10.00", T0 + timedelta(days=11))])
    assert (await customer(store, a)).scores.frequency == 3
    assert (await customer(store, b)).scores.frequency == 2
    applied = [x.data for x in await answers(store) if isinstance(x, IdentityAppliedEvent)]
    assert [(x.request, x.request_id) for x in applied] == [("merge", "m-1"), ("unmerge", "m-1")]


async def test_an_event_for_the_merged_id_the_consumer_filed_before_the_merge_still_goes_to_the_survivor(
    new_store: NewStore,
) -> None:
    store = await new_store("scoring_identity", repository.INDEXES)
    a, b = ids("A", "B")
    await apply(store, [order(a, f"O-{a}", "10.00", T0), order(b, f"O-{b}", "20.00", T0)])
    late = refund(a, f"O-{a}", "5.00", T0 + timedelta(days=1))
    filed = await identity.redirect(store, [late])  # before the merge commits: still A's
    await request(store, merged(b, a, "m-1", T0 + timedelta(hours=12)))
    await handlers.apply_events(store, filed, THRESHOLDS)
    assert await handlers.find_customer(store, a) is None
    survivor = await customer(store, b)
    assert survivor.facts.orders[f"O-{a}"].refunded == Decimal("5.00")


async def test_a_chain_of_merges_is_undone_one_at_a_time(new_store: NewStore) -> None:
    store = await new_store("scoring_identity", repository.INDEXES)
    a, b, c = ids("A", "B", "C")
    await apply(
        store,
        [order(a, f"O-{a}", "100.00", T0), order(b, f"O-{b}", "200.00", T0), order(c, f"O-{c}", "300.00", T0)],
    )
    await request(store, merged(b, a, "m-1", T0 + timedelta(days=1)))
    await request(store, merged(c, b, "m-2", T0 + timedelta(days=2)))
    # An event naming A after both merges is C's now, and still A's by origin.
    await apply(store, [order(a, f"O-{a}-2", "1.00", T0 + timedelta(days=3))])
    top = await customer(store, c)
    assert top.scores.frequency == 4
    assert {k: v.keys for k, v in top.origins.items()} == {
        a: {f"order:O-{a}", f"order:O-{a}-2"},
        b: {f"order:O-{b}"},
    }

    await request(store, unmerged(c, b, "m-2", T0 + timedelta(days=4)))
    assert set((await customer(store, c)).facts.orders) == {f"O-{c}"}
    middle = await customer(store, b)
    assert set(middle.facts.orders) == {f"O-{a}", f"O-{a}-2", f"O-{b}"}
    assert set(middle.origins) == {a}
    assert await handlers.find_customer(store, a) is None

    await request(store, unmerged(b, a, "m-1", T0 + timedelta(days=5)))
    assert set((await customer(store, a)).facts.orders) == {f"O-{a}", f"O-{a}-2"}
    assert set((await customer(store, b)).facts.orders) == {f"O-{b}"}
    assert await handlers.rebuild(store, THRESHOLDS) == handlers.Rebuilt(3, [])
    owners = {d["_id"]: d["customer_id"] async for d in store.db[repository.ORDER_OWNERS].find({})}
    assert owners == {f"O-{a}": a, f"O-{a}-2": a, f"O-{b}": b, f"O-{c}": c}


async def test_an_erasure_keeps_the_scores_under_the_pseudonym_and_an_export_lists_what_scoring_holds(
    new_store: NewStore,
) -> None:
    store = await new_store("scoring_identity", repository.INDEXES)
    e, f, other = ids("E", "F", "R")
    # Order and referral ids that do not contain the customer ids, to see that no customer id is left behind.
    o_e, o_f, r = (f"{kind}-{uuid.uuid4().hex[:8]}" for kind in ("O", "O", "R"))
    pseudonym = f"anon-{uuid.uuid4().hex[:8]}"
    referral = CustomerReferred(customer_id=other, referral_id=r, referred_customer_id=e)
    await apply(
        store,
        [
            order(e, o_e, "1500.00", T0),
            order(f, o_f, "10.00", T0),
            CustomerReferredEvent.create(referral, source="/crm/customer", time=T0),
        ],
    )
    await request(store, merged(e, f, "m-1", T0 + timedelta(days=1)))
    export = CustomerExportRequestedEvent.create(
        CustomerExportRequested(customer_id=e, request_id="ex-1"), source="/crm/customer"
    )
    await request(store, export)
    [part] = [x.data for x in await answers(store) if isinstance(x, ExportAnsweredEvent)]
    assert (part.request_id, part.part, part.parts) == ("ex-1", 1, 1)
    [doc] = part.records["customers"]
    assert doc["_id"] == e and doc["scores"]["monetary"] == "1510.00" and doc["segments"]["value_tier"] == "high_value"
    assert {c["customer_id"] for c in part.records["segment_changes"]} == {e}
    assert "order_owners" not in part.records

    before = await customer(store, e)
    erasure = CustomerErasedEvent.create(
        CustomerErased(customer_id=e, erasure_id="er-1", pseudonym=pseudonym), source="/crm/customer"
    )
    await request(store, erasure)

    assert await handlers.find_customer(store, e) is None
    kept = await customer(store, pseudonym)
    assert (kept.scores, kept.segments, kept.facts.orders) == (before.scores, before.segments, before.facts.orders)
    assert set(kept.origins) == {f}  # the merged id is another customer's id, not the erased one's
    referrer = await customer(store, other)
    assert [r.referred_customer_id for r in referrer.facts.referrals.values()] == [pseudonym]
    changes = store.db[repository.SEGMENT_CHANGES]
    assert await changes.count_documents({"customer_id": e}) == 0
    moved = await changes.count_documents({"customer_id": pseudonym})
    assert moved == 2 + 2 + 1  # its own, the merged id's, the merge's (first_time_buyer to repeat)
    assert await store.db[repository.ORDER_OWNERS].count_documents({"customer_id": e}) == 0
    assert await store.db[repository.ORDER_OWNERS].count_documents({"customer_id": pseudonym}) == 2
    # Nothing in scoring's database names the erased id any more.
    for collection in (repository.CUSTOMERS, repository.MERGED_CUSTOMERS, repository.SEGMENT_CHANGES):
        async for stored in store.db[collection].find({}):
            assert e not in repr(stored), collection
    assert await handlers.rebuild(store, THRESHOLDS) == handlers.Rebuilt(2, [])

    applied = [x.data for x in await answers(store) if isinstance(x, IdentityAppliedEvent)]
    [answer] = [x for x in applied if x.request == "erasure"]
    assert (answer.request_id, answer.records) == ("er-1", 0)
    assert answer.kept == 2 + moved + 2  # the document and the referrer's, the segment changes, the order owners
