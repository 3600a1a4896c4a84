"""Marketing following merges, unmerges, erasures and export requests (crm_marketing.identity), on the real database."""

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pymongo import ASCENDING, IndexModel

from crm_marketing import domain, handlers, repository
from crm_marketing.app import create_service
from crm_marketing.identity import HOLDER
from crm_marketing.journeys import DEFAULT_JOURNEYS
from crm_marketing.settings import MarketingSettings
from crm_shared import identity
from crm_shared.events import (
    ChannelConsent,
    CloudEvent,
    ComplaintFiled,
    ComplaintFiledEvent,
    ConsentChanged,
    ConsentChangedEvent,
    CustomerErased,
    CustomerErasedEvent,
    CustomerExportRequested,
    CustomerExportRequestedEvent,
    CustomerMerged,
    CustomerMergedEvent,
    CustomerRegistered,
    CustomerRegisteredEvent,
    CustomerUnmerged,
    CustomerUnmergedEvent,
    ExportAnsweredEvent,
    IdentityAppliedEvent,
    InteractionLogged,
    InteractionLoggedEvent,
    OrderPlaced,
    OrderPlacedEvent,
    ScoreSnapshot,
    SegmentChanged,
    SegmentChangedEvent,
    parse_event,
    utc_now,
)
from crm_shared.store import Store, outbox_records
from crm_shared.topics import Topic

from helpers import ADMIN_HEADERS

NewStore = Callable[..., Awaitable[Store]]
NOW = utc_now()
# In the past: an event may not be dated ahead of the clock.
T0 = (NOW - timedelta(days=40)).replace(hour=10, minute=0, second=0, microsecond=0)
NO_HOLDOUT = domain.Policy(holdout_share=0)
EMAIL_SEGMENT = {"all": [{"field": "consent", "op": "contains", "value": "email"}]}
IDENTITY_STATE = ("outbox", "processed_events", identity.ALIASES)
"""What a merge and an unmerge write besides marketing's own records: the answers, the requests, the alias."""


@pytest.fixture
async def api(new_store: NewStore) -> AsyncIterator[tuple[httpx.AsyncClient, Store]]:
    store = await new_store("marketing_identity", repository.INDEXES)
    app = create_service(MarketingSettings(holdout_share=0))
    app.state.runtime.store = store
    async with httpx.AsyncClient(
        headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://marketing"
    ) as http:
        yield http, store


def customer_id() -> str:
    return f"C-{uuid.uuid4().hex[:8]}"


def merged(survivor: str, merged_id: str, merge_id: str = "m-1") -> CustomerMergedEvent:
    data = CustomerMerged(customer_id=survivor, merged_id=merged_id, merge_id=merge_id, decided_by="confirmed")
    return CustomerMergedEvent.create(data, source="/crm/customer")


def unmerged(survivor: str, merged_id: str, merge_id: str = "m-1") -> CustomerUnmergedEvent:
    data = CustomerUnmerged(customer_id=survivor, merged_id=merged_id, merge_id=merge_id)
    return CustomerUnmergedEvent.create(data, source="/crm/customer")


def registered(customer: str, consents: dict[str, bool], at: datetime = T0) -> CustomerRegisteredEvent:
    data = CustomerRegistered(
        customer_id=customer,
        name="Test Person",
        consents=[ChannelConsent.model_validate({"channel": c, "granted": g}) for c, g in consents.items()],
    )
    return CustomerRegisteredEvent.create(data, source="/crm/customer", time=at)


def became_lost(customer: str, at: datetime = T0) -> SegmentChangedEvent:
    scores = ScoreSnapshot(
        recency_days=200,
        frequency=3,
        monetary=Decimal("300.00"),
        average_order_value=Decimal("100.00"),
        value_tier="low_value",
        lifecycle_stage="lost",
        churn_risk=0.9,
        churn_risk_band="high",
        satisfaction=None,
    )
    change = SegmentChanged(
        customer_id=customer,
        dimension="lifecycle_stage",
        old="at_risk",
        new="lost",
        scores=scores,
        model_version="v1",
        changed_at=at,
        caused_by="decay",
    )
    return SegmentChangedEvent.create(change, source="/crm/scoring", time=at)


def placed(customer: str, order_id: str, total: str, at: datetime) -> OrderPlacedEvent:
    data = OrderPlaced(customer_id=customer, order_id=order_id, currency="EUR", total=Decimal(total))
    return OrderPlacedEvent.create(data, source="/crm/sales", time=at)


def logged(customer: str, interaction_id: str, kind: str = "call", at: datetime = T0) -> InteractionLoggedEvent:
    data = InteractionLogged.model_validate(
        {"customer_id": customer, "interaction_id": interaction_id, "kind": kind, "channel": "call_centre"}
    )
    return InteractionLoggedEvent.create(data, source="/crm/customer", time=at)


def complaint(customer: str, complaint_id: str, at: datetime = T0) -> ComplaintFiledEvent:
    data = ComplaintFiled(
        customer_id=customer, complaint_id=complaint_id, dimension="service", severity="high", summary="Late."
    )
    return ComplaintFiledEvent.create(data, source="/crm/support", time=at)


async def customer_with_history(store: Store, customer: str, total: str) -> None:
    """Signed up with email consent, one interaction, lost (a win-back enrolment), then an order it converts."""
    await handlers.apply_customer_events(
        store, [registered(customer, {"email": True}), logged(customer, f"I-{customer}")]
    )
    await handlers.apply_segment_change(store, became_lost(customer), DEFAULT_JOURNEYS, NO_HOLDOUT)
    assert (
        await handlers.apply_sales_event(store, placed(customer, f"O-{customer}", total, T0 + timedelta(days=1))) == 1
    )


async def apply(store: Store, *requests: Any) -> None:
    outcome = await identity.apply_requests(store, "marketing", HOLDER, list(requests))
    assert outcome.applied == [r.id for r in requests]


async def state(store: Store) -> dict[str, list[dict[str, Any]]]:
    """Every document of every collection but the identity plumbing, by collection, in id order."""
    names = sorted(set(await store.db.list_collection_names()) - set(IDENTITY_STATE))
    found = {n: await store.db[n].find({}).sort("_id", ASCENDING).to_list(None) for n in names}
    return {n: docs for n, docs in found.items() if docs}


async def filed_under(store: Store, collection: str, customer: str) -> list[dict[str, Any]]:
    return await store.db[collection].find({"customer_id": customer}).sort("_id", ASCENDING).to_list(None)


async def answers(store: Store) -> list[Any]:
    return [parse_event(r["value"]) for r in await outbox_records(store.db, {"topic": Topic.IDENTITY_ANSWERS.value})]


async def create_launch(http: httpx.AsyncClient, tag: str) -> str:
    segment = {"segment_id": f"seg-{tag}", "name": "Emailable", "definition": EMAIL_SEGMENT}
    assert (await http.post("/v1/segments", json=segment)).status_code == 201
    campaign = {
        "campaign_id": f"news-{tag}",
        "name": "Newsletter",
        "objective": "Tell the emailable customers.",
        "segment_id": f"seg-{tag}",
        "channel": "email",
        "starts_at": (NOW - timedelta(days=1)).isoformat(),
        "ends_at": (NOW + timedelta(days=30)).isoformat(),
        "budget": "10.00",
        "cost_per_contact": "0.50",
    }
    assert (await http.post("/v1/campaigns", json=campaign)).status_code == 201
    return f"news-{tag}"


async def segment_count(http: httpx.AsyncClient, tag: str) -> int:
    response = await http.get(f"/v1/segments/seg-{tag}")
    assert response.status_code == 200, response.text
    count: int = response.json()["count"]
    return count


# ---------------------------------------------------------------- merge and unmerge


async def test_a_merge_moves_the_merged_ids_records_and_an_unmerge_restores_both_exactly(
    api: tuple[httpx.AsyncClient, Store],
) -> None:
    http, store = api
    a, b, tag = customer_id(), customer_id(), uuid.uuid4().hex[:6]
    await customer_with_history(store, a, "40.00")
    await customer_with_history(store, b, "60.00")
    # Both are in one launch: after the merge the survivor holds two enrolments of that episode.
    campaign = await create_launch(http, tag)
    launched = (await http.post(f"/v1/campaigns/{campaign}/launch")).json()
    assert launched["enrolled"]["contacted"] == 2
    assert await segment_count(http, tag) == 2
    results = (await http.get("/v1/campaigns/win-back/results")).json()
    before = await state(store)

    await apply(store, merged(b, a))

    for collection in (repository.ENROLMENTS, repository.ORDERS, repository.CONVERSIONS, repository.INTERACTIONS):
        assert await filed_under(store, collection, a) == []
        moved = [d for d in await filed_under(store, collection, b) if d.get(identity.ORIGIN) == a]
        assert len(moved) == (2 if collection == repository.ENROLMENTS else 1)
    assert len(await filed_under(store, repository.ENROLMENTS, b)) == 4
    # The merged id counts as a customer nowhere: its consents and attributes are put aside.
    assert await segment_count(http, tag) == 1
    assert await store.db[repository.CONTACT_PREFERENCES].find_one({"_id": a}) is None
    assert await store.db[repository.MERGED_PREFERENCES].find_one({"_id": a}) is not None
    assert await store.db[repository.ATTRIBUTES].find_one({"_id": a}) is None
    assert (await http.get(f"/v1/customers/{a}/contact-preferences")).status_code == 404
    # What derives from the records is the survivor's with the merged id's.
    assert (await store.db[repository.ENGAGEMENT].find_one({"_id": b}) or {})["interactions"] == 2
    assert await store.db[repository.ENGAGEMENT].find_one({"_id": a}) is None
    assert (await store.db[repository.CONTACT_LOCKS].find_one({"_id": b}) or {})["enrolments"] == 4
    assert (await http.get("/v1/campaigns/win-back/results")).json() == results
    [answer] = [a.data for a in await answers(store) if isinstance(a, IdentityAppliedEvent)]
    assert (answer.request, answer.service, answer.records) == ("merge", "marketing", 2 + 1 + 1 + 1 + 2)

    await apply(store, unmerged(b, a))

    assert await state(store) == before
    assert await segment_count(http, tag) == 2
    unmerge_answer = [a.data for a in await answers(store) if isinstance(a, IdentityAppliedEvent)][-1]
    assert (unmerge_answer.request, unmerge_answer.records) == ("unmerge", 7)


async def test_the_survivor_counts_as_enrolled_in_the_episodes_the_merged_id_was_enrolled_in(
    api: tuple[httpx.AsyncClient, Store],
) -> None:
    http, store = api
    a, b, tag = customer_id(), customer_id(), uuid.uuid4().hex[:6]
    await handlers.apply_customer_events(store, [registered(a, {"email": True}), registered(b, {"sms": True})])
    campaign = await create_launch(http, tag)
    assert (await http.post(f"/v1/campaigns/{campaign}/launch")).json()["enrolled"]["contacted"] == 1
    [enrolled] = await handlers.apply_support_event(store, complaint(a, "K-1"), DEFAULT_JOURNEYS, NO_HOLDOUT)
    assert enrolled.journey == "complaint-recovery"

    await apply(store, merged(b, a))
    # The customer service publishes the survivor's consents again; now the survivor is in the segment.
    granted = ConsentChanged.model_validate({"customer_id": b, "channel": "email", "granted": True})
    await handlers.apply_customer_event(store, ConsentChangedEvent.create(granted, source="/crm/customer", time=NOW))
    assert await segment_count(http, tag) == 1

    relaunch = (await http.post(f"/v1/campaigns/{campaign}/launch")).json()
    assert (relaunch["enrolled"], relaunch["already_enrolled"]) == ({"contacted": 0, "holdout": 0, "skipped": 0}, 1)
    # Support files the same complaint under the survivor: the same episode, no second enrolment.
    assert await handlers.apply_support_event(store, complaint(b, "K-1"), DEFAULT_JOURNEYS, NO_HOLDOUT) == []
    assert await handlers.apply_support_event(store, complaint(b, "K-2"), DEFAULT_JOURNEYS, NO_HOLDOUT) != []
    assert sorted(d["episode"] for d in await filed_under(store, repository.ENROLMENTS, b)) == sorted(
        [campaign, "K-1", "K-2"]
    )


async def test_what_arrives_for_the_merged_id_is_the_survivors_until_the_unmerge_gives_it_back(
    api: tuple[httpx.AsyncClient, Store],
) -> None:
    http, store = api
    a, b = customer_id(), customer_id()
    await customer_with_history(store, a, "40.00")
    await customer_with_history(store, b, "60.00")
    await apply(store, merged(b, a))

    # Events that still name the merged id, as the batch consumer files them.
    later = T0 + timedelta(days=3)
    events: list[CloudEvent[Any]] = [placed(a, f"O2-{a}", "25.00", later), logged(a, f"I2-{a}", at=later)]
    filed = await identity.redirect(store, events)
    assert [(e.customer_id, e.originalsubject) for e in filed] == [(b, a), (b, a)]
    # The order converts both win-back enrolments the survivor holds: its own and the merged id's.
    assert await handlers.apply_sales_event(store, filed[0]) == 2
    await handlers.apply_customer_event(store, filed[1])
    [order] = [o for o in await filed_under(store, repository.ORDERS, b) if o["_id"] == f"O2-{a}"]
    assert order[identity.ORIGIN] == a
    assert (await store.db[repository.ENGAGEMENT].find_one({"_id": b}) or {})["interactions"] == 3
    # A sign-up is filed under the id it names, merged or not: its consents wait with the merged id's.
    await handlers.apply_customer_event(store, registered(a, {"sms": True}, at=later))
    assert await store.db[repository.CONTACT_PREFERENCES].find_one({"_id": a}) is None
    assert await store.db[repository.ATTRIBUTES].find_one({"_id": a}) is None

    await apply(store, unmerged(b, a))

    assert sorted(o["_id"] for o in await filed_under(store, repository.ORDERS, a)) == [f"O-{a}", f"O2-{a}"]
    assert [o["_id"] for o in await filed_under(store, repository.ORDERS, b)] == [f"O-{b}"]
    assert sorted(i["interaction_id"] for i in await filed_under(store, repository.INTERACTIONS, a)) == [
        f"I-{a}",
        f"I2-{a}",
    ]
    assert await store.db[repository.ENROLMENTS].count_documents({identity.ORIGIN: {"$exists": True}}) == 0
    # The survivor's enrolment credited with the other customer's order no longer counts it.
    kept = {(c["customer_id"], c["order_id"]): c.get("cancelled", False) for c in await state_of_conversions(store)}
    assert kept == {(a, f"O-{a}"): False, (a, f"O2-{a}"): False, (b, f"O-{b}"): False, (b, f"O2-{a}"): True}
    engagement = await store.db[repository.ENGAGEMENT].find_one({"_id": a})
    assert engagement is not None and (engagement["interactions"], engagement["latest_at"]) == (2, later)
    attributes = await store.db[repository.ATTRIBUTES].find_one({"_id": a})
    assert attributes is not None and attributes["last_order_at"] == later
    assert attributes["granted"] == ["email", "sms"] and attributes["lifecycle_stage"] == "lost"
    prefs = (await http.get(f"/v1/customers/{a}/contact-preferences")).json()
    assert prefs["granted"] == ["email", "sms"]
    results = (await http.get("/v1/campaigns/win-back/results")).json()
    assert (results["treated_group"]["orders"], results["treated_group"]["revenue"]) == (3, "125.00")


async def state_of_conversions(store: Store) -> list[dict[str, Any]]:
    return await store.db[repository.CONVERSIONS].find({}).to_list(None)


async def test_a_survivor_holding_the_merged_ids_engagement_lead_is_not_handed_over_again(new_store: NewStore) -> None:
    store = await new_store("marketing_identity", repository.INDEXES)
    a, b = customer_id(), customer_id()
    await handlers.apply_customer_events(store, [logged(a, "I-a1", "meeting"), logged(a, "I-a2", "visit")])
    [lead] = await filed_under(store, repository.LEADS, a)
    await apply(store, merged(b, a))

    later = T0 + timedelta(days=1)
    await handlers.apply_customer_events(
        store, [logged(b, "I-b1", "meeting", later), logged(b, "I-b2", "visit", later)]
    )

    assert [d["_id"] for d in await filed_under(store, repository.LEADS, b)] == [lead["_id"]]
    assert await outbox_records(store.db, {"type": "crm.lead.qualified.v1", "key": b}) == []
    survivors = await repository.engagement_lead_of(store.db, b)
    assert survivors is not None and survivors["_id"] == lead["_id"]


# ---------------------------------------------------------------- erasure and export


async def test_an_erasure_keeps_campaign_results_under_the_pseudonym_and_deletes_the_rest(
    api: tuple[httpx.AsyncClient, Store],
) -> None:
    http, store = api
    a, b, bystander = customer_id(), customer_id(), customer_id()
    for customer, total in ((a, "40.00"), (b, "60.00"), (bystander, "10.00")):
        await customer_with_history(store, customer, total)
    await apply(store, merged(b, a))
    results = (await http.get("/v1/campaigns/win-back/results")).json()
    assert (results["treated_group"]["converted"], results["treated_group"]["revenue"]) == (3, "110.00")
    untouched = await state(store)

    erasure = CustomerErasedEvent.create(
        CustomerErased(customer_id=b, erasure_id="er-1", pseudonym="anon-1"), source="/crm/customer"
    )
    await apply(store, erasure)

    assert (await http.get("/v1/campaigns/win-back/results")).json() == results
    for collection in (repository.ENROLMENTS, repository.ORDERS, repository.CONVERSIONS):
        kept = await filed_under(store, collection, "anon-1")
        assert len(kept) == 2 and not any(identity.ORIGIN in d for d in kept)
        assert await filed_under(store, collection, b) == []
    for collection in (repository.INTERACTIONS, repository.LEADS):
        assert await store.db[collection].count_documents({"customer_id": {"$in": [a, b, "anon-1"]}}) == 0
    for collection in identity_documents():
        assert await store.db[collection].count_documents({"_id": {"$in": [a, b, "anon-1"]}}) == 0
    # The bystander's records are as they were.
    assert await bystanders(untouched, bystander) == await bystanders(await state(store), bystander) != {}
    [answer] = [
        x.data for x in await answers(store) if isinstance(x, IdentityAppliedEvent) and x.data.request == "erasure"
    ]
    # Kept: 2 enrolments, 2 orders, 2 conversions. Cleared: 2 interactions, and per customer documents:
    # b's preferences, attributes, engagement and lock, a's preferences and attributes put aside.
    assert (answer.customer_id, answer.request_id, answer.kept, answer.records) == (b, "er-1", 6, 2 + 4 + 2)


async def bystanders(state: dict[str, list[dict[str, Any]]], customer: str) -> dict[str, list[dict[str, Any]]]:
    theirs = {n: [d for d in docs if customer in (d["_id"], d.get("customer_id"))] for n, docs in state.items()}
    return {n: docs for n, docs in theirs.items() if docs}


def identity_documents() -> tuple[str, ...]:
    return (
        repository.CONTACT_PREFERENCES,
        repository.ATTRIBUTES,
        repository.ENGAGEMENT,
        repository.CONTACT_LOCKS,
        repository.MERGED_PREFERENCES,
        repository.MERGED_ATTRIBUTES,
    )


async def test_an_export_lists_the_customers_records_and_those_of_the_ids_merged_into_it(new_store: NewStore) -> None:
    store = await new_store("marketing_identity", repository.INDEXES)
    a, b = customer_id(), customer_id()
    await customer_with_history(store, a, "40.00")
    await customer_with_history(store, b, "60.00")
    await apply(store, merged(b, a))

    request = CustomerExportRequestedEvent.create(
        CustomerExportRequested(customer_id=b, request_id="ex-1"), source="/crm/customer"
    )
    await apply(store, request)

    [part] = [x.data for x in await answers(store) if isinstance(x, ExportAnsweredEvent)]
    assert (part.customer_id, part.request_id, part.service, part.parts) == (b, "ex-1", "marketing", 1)
    records = part.records
    enrolments = records[repository.ENROLMENTS]
    assert sorted(e["customer_id"] for e in enrolments) == [b, b]
    assert sorted(e.get(identity.ORIGIN, "") for e in enrolments) == ["", a]
    assert {e["journey"] for e in enrolments} == {"win-back"}
    assert sorted(o["total"] for o in records[repository.ORDERS]) == ["40.00", "60.00"]
    assert len(records[repository.CONVERSIONS]) == 2 and len(records[repository.INTERACTIONS]) == 2
    assert [p["_id"] for p in records[repository.CONTACT_PREFERENCES]] == [b]
    assert [p["_id"] for p in records[repository.MERGED_PREFERENCES]] == [a]
    assert records[repository.ENGAGEMENT][0]["interactions"] == 2
    assert repository.CONTACT_LOCKS not in records


# ---------------------------------------------------------------- the retired unique index


async def test_the_unique_index_on_customer_journey_and_episode_is_dropped(new_store: NewStore) -> None:
    store = await new_store("marketing_identity")
    keys = [("customer_id", ASCENDING), ("journey", ASCENDING), ("episode", ASCENDING)]
    await store.db[repository.ENROLMENTS].create_indexes([IndexModel(keys, unique=True, name="one_per_episode")])
    await store.ensure_indexes(repository.INDEXES)

    assert await repository.drop_retired_indexes(store.db) == ["enrolments.one_per_episode"]
    assert await repository.drop_retired_indexes(store.db) == []
    assert "one_per_episode" not in await store.db[repository.ENROLMENTS].index_information()


async def test_consents_published_after_an_unmerge_that_arrive_before_it_are_not_overwritten(
    api: tuple[httpx.AsyncClient, Store],
) -> None:
    """The customer service pins the consents it publishes with an unmerge to the merged id; marketing's main
    consumer may apply them before its identity consumer applies the unmerge. The newer refusal must stay."""
    _, store = api
    survivor, merged_id = customer_id(), customer_id()
    await handlers.apply_customer_events(
        store, [registered(survivor, {"email": True}), registered(merged_id, {"email": True})]
    )
    await apply(store, merged(survivor, merged_id))
    refusal = ConsentChangedEvent.create(
        ConsentChanged(customer_id=merged_id, channel="email", granted=False), source="/crm/customer", time=NOW
    ).model_copy(update={"originalsubject": merged_id})
    [filed] = await identity.redirect(store, [refusal])
    assert filed.customer_id == merged_id  # pinned: not filed under the survivor, whose alias is still held
    await handlers.apply_customer_event(store, filed)
    await apply(store, unmerged(survivor, merged_id))
    [prefs] = await store.db[repository.CONTACT_PREFERENCES].find({"_id": merged_id}).to_list(None)
    assert "email" not in repository.preferences_from_document(prefs).granted
    assert await store.db[repository.MERGED_PREFERENCES].count_documents({"_id": merged_id}) == 0
