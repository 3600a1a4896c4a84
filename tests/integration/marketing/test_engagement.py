"""Engagement on the real database: interactions kept once, a prospect handed to sales once, through the outbox."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from crm_marketing import engagement, handlers, repository
from crm_marketing.app import create_service
from crm_marketing.settings import MarketingSettings
from crm_sales.app import INDEXES as SALES_INDEXES
from crm_sales.app import create_service as create_sales_service
from crm_sales.leads import handlers as sales_handlers
from crm_shared.events import (
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
from crm_shared.store import AlreadyApplied, Store, outbox_records
from crm_shared.topics import Topic

from helpers import ADMIN_HEADERS

NewStore = Callable[..., Awaitable[Store]]
# In the past: an event may not be dated ahead of the clock, and the latest interaction here is T0 + 40 days.
T0 = (utc_now() - timedelta(days=60)).replace(hour=9, minute=0, second=0, microsecond=0)
RULE = engagement.EngagementRule()
LEAD = "crm.lead.qualified.v1"


def customer_id() -> str:
    return f"C-{uuid.uuid4().hex[:8]}"


def logged(customer: str, interaction_id: str, kind: str, days: float = 0) -> InteractionLoggedEvent:
    data = InteractionLogged.model_validate(
        {"customer_id": customer, "interaction_id": interaction_id, "kind": kind, "channel": "call_centre"}
    )
    return InteractionLoggedEvent.create(data, source="/crm/customer", time=T0 + timedelta(days=days))


def lifecycle_change(customer: str, new: str, at: datetime) -> SegmentChangedEvent:
    scores = ScoreSnapshot(
        recency_days=0,
        frequency=1,
        monetary=Decimal("80.00"),
        average_order_value=Decimal("80.00"),
        value_tier="potential",
        lifecycle_stage=new,
        churn_risk=0.1,
        churn_risk_band="low",
        satisfaction=None,
    )
    change = SegmentChanged(
        customer_id=customer,
        dimension="lifecycle_stage",
        old="prospect",
        new=new,
        scores=scores,
        model_version="v1",
        changed_at=at,
        caused_by="e-order",
    )
    return SegmentChangedEvent.create(change, source="/crm/scoring", time=at)


async def apply_twice(store: Store, event: InteractionLoggedEvent) -> None:
    """Delivered, then redelivered: the second changes nothing."""
    await handlers.apply_customer_event(store, event, RULE)
    with pytest.raises(AlreadyApplied):
        await handlers.apply_customer_event(store, event, RULE)


async def leads_in_outbox(store: Store, customer: str) -> list[dict[str, Any]]:
    return await outbox_records(store.db, {"key": customer, "type": LEAD})


async def test_interactions_below_the_threshold_emit_nothing(new_store: NewStore) -> None:
    store = await new_store("marketing_engagement", repository.INDEXES)
    customer = customer_id()
    for event in (
        logged(customer, "I-1", "call"),
        logged(customer, "I-2", "chat", 1),
        logged(customer, "I-3", "web", 2),
    ):
        await apply_twice(store, event)

    assert await outbox_records(store.db, {"key": customer}) == []
    assert await store.db[repository.LEADS].count_documents({"customer_id": customer}) == 0
    assert await store.db[repository.INTERACTIONS].count_documents({"customer_id": customer}) == 3


async def test_reaching_the_threshold_hands_the_prospect_to_sales_exactly_once(new_store: NewStore) -> None:
    store = await new_store("marketing_engagement", repository.INDEXES)
    customer = customer_id()
    meeting, call = logged(customer, "I-1", "meeting"), logged(customer, "I-2", "call", 1)

    await apply_twice(store, meeting)
    assert await leads_in_outbox(store, customer) == []
    await apply_twice(store, call)
    # The same interaction logged again under a new envelope id is the same fact.
    await handlers.apply_customer_event(store, logged(customer, "I-2", "call", 1), RULE)
    for i, kind in enumerate(["visit", "meeting", "web"]):
        await apply_twice(store, logged(customer, f"I-{i + 3}", kind, 2 + i))

    [record] = await leads_in_outbox(store, customer)
    assert record["topic"] == Topic.MARKETING_EVENTS
    event = parse_event(record["value"])
    lead = event.data
    assert (lead.customer_id, lead.segment_id, lead.lead_id) == (customer, "engagement", engagement.lead_id(customer))
    assert lead.reason == (
        "Engagement score 5 reached 5 within 30 days, from 2 interactions: "
        f"meeting I-1 on {T0.date()} (+3), call I-2 on {(T0 + timedelta(days=1)).date()} (+2)"
    )
    assert (event.time, event.causationid, event.source) == (call.time, call.id, "/crm/marketing")
    [kept] = await store.db[repository.LEADS].find({"customer_id": customer}).to_list(None)
    assert (kept["engagement_score"], kept["interaction_ids"], kept["handed_over_at"]) == (5, ["I-1", "I-2"], call.time)
    assert await store.db[repository.INTERACTIONS].count_documents({"customer_id": customer}) == 5


async def test_interactions_arriving_in_reverse_order_qualify_at_the_same_moment(new_store: NewStore) -> None:
    store = await new_store("marketing_engagement", repository.INDEXES)
    customer = customer_id()
    events = [
        logged(customer, "I-1", "meeting"),
        logged(customer, "I-2", "call", 1),
        logged(customer, "I-3", "web", 40),
    ]
    for event in reversed(events):
        await handlers.apply_customer_event(store, event, RULE)

    [record] = await leads_in_outbox(store, customer)
    assert parse_event(record["value"]).time == events[1].time


async def test_interactions_too_far_apart_do_not_qualify(new_store: NewStore) -> None:
    store = await new_store("marketing_engagement", repository.INDEXES)
    customer = customer_id()
    for event in (logged(customer, "I-1", "meeting"), logged(customer, "I-2", "call", 31)):
        await handlers.apply_customer_event(store, event, RULE)
    assert await leads_in_outbox(store, customer) == []


async def test_a_customer_past_prospect_is_not_handed_over(new_store: NewStore) -> None:
    store = await new_store("marketing_engagement", repository.INDEXES)
    customer = customer_id()
    await handlers.apply_segment_change(store, lifecycle_change(customer, "first_time_buyer", T0 - timedelta(days=1)))
    for event in (logged(customer, "I-1", "meeting"), logged(customer, "I-2", "visit", 1)):
        await handlers.apply_customer_event(store, event, RULE)

    assert await leads_in_outbox(store, customer) == []
    assert await store.db[repository.LEADS].count_documents({"customer_id": customer}) == 0


async def test_a_customer_who_ordered_is_not_handed_over_before_scoring_says_so(new_store: NewStore) -> None:
    store = await new_store("marketing_engagement", repository.INDEXES)
    customer = customer_id()
    order = OrderPlaced(customer_id=customer, order_id=f"O-{customer}", currency="EUR", total=Decimal("10.00"))
    await handlers.apply_sales_event(store, OrderPlacedEvent.create(order, source="/channels/web", time=T0))
    for event in (logged(customer, "I-1", "meeting"), logged(customer, "I-2", "visit", 1)):
        await handlers.apply_customer_event(store, event, RULE)
    assert await leads_in_outbox(store, customer) == []


async def test_a_prospect_by_scoring_is_handed_over(new_store: NewStore) -> None:
    store = await new_store("marketing_engagement", repository.INDEXES)
    customer = customer_id()
    await handlers.apply_segment_change(store, lifecycle_change(customer, "prospect", T0 - timedelta(days=1)))
    for event in (logged(customer, "I-1", "meeting"), logged(customer, "I-2", "visit", 1)):
        await handlers.apply_customer_event(store, event, RULE)
    [record] = await leads_in_outbox(store, customer)
    assert parse_event(record["value"]).data.lifecycle_stage == "prospect"


async def test_concurrent_interactions_of_one_customer_are_not_missed(new_store: NewStore) -> None:
    store = await new_store("marketing_engagement", repository.INDEXES)
    customer = customer_id()
    # Each transaction alone sees too little; the per-customer write makes them conflict and retry.
    events = [logged(customer, f"I-{i}", "chat", i / 24) for i in range(5)]
    await asyncio.gather(*(handlers.apply_customer_event(store, e, RULE) for e in events))
    assert len(await leads_in_outbox(store, customer)) == 1


async def test_the_threshold_and_weights_are_the_configured_ones(new_store: NewStore) -> None:
    store = await new_store("marketing_engagement", repository.INDEXES)
    customer = customer_id()
    strict = engagement.EngagementRule(weights={**engagement.DEFAULT_WEIGHTS, "meeting": 1}, threshold=7)
    for event in (
        logged(customer, "I-1", "meeting"),
        logged(customer, "I-2", "call", 1),
        logged(customer, "I-3", "visit", 2),
    ):
        await handlers.apply_customer_event(store, event, strict)
    assert await leads_in_outbox(store, customer) == []
    await handlers.apply_customer_event(store, logged(customer, "I-4", "web", 3), strict)
    assert len(await leads_in_outbox(store, customer)) == 1


@pytest.fixture
async def api(new_store: NewStore) -> AsyncIterator[tuple[httpx.AsyncClient, Store]]:
    store = await new_store("marketing_engagement_api", repository.INDEXES)
    app = create_service(MarketingSettings(lead_engagement_days=10))
    app.state.runtime.store = store
    async with httpx.AsyncClient(
        headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://marketing"
    ) as http:
        yield http, store


async def test_the_engagement_is_exposed_with_when_it_qualified(api: tuple[httpx.AsyncClient, Store]) -> None:
    http, store = api
    customer = customer_id()
    rule = engagement.EngagementRule(window=timedelta(days=10))

    fresh = (await http.get(f"/v1/customers/{customer}/engagement")).json()
    assert (fresh["score"], fresh["threshold"], fresh["interactions_counted"], fresh["qualified_at"]) == (0, 5, 0, None)

    await handlers.apply_customer_event(store, logged(customer, "I-1", "meeting"), rule)
    await handlers.apply_customer_event(store, logged(customer, "I-2", "chat", 1), rule)
    before = (await http.get(f"/v1/customers/{customer}/engagement")).json()
    assert (before["score"], before["interactions_counted"], before["qualified_at"]) == (4, 2, None)

    await handlers.apply_customer_event(store, logged(customer, "I-3", "email", 2), rule)
    await handlers.apply_customer_event(store, logged(customer, "I-4", "call", 12), rule)
    after = (await http.get(f"/v1/customers/{customer}/engagement")).json()
    # The window is the 10 days before the latest interaction: only I-3 (day 2) and I-4 (day 12) count now.
    assert (after["score"], after["window_days"], after["interactions_counted"]) == (3, 10, 2)
    assert [(i["interaction_id"], i["kind"], i["points"]) for i in after["interactions"]] == [
        ("I-3", "email", 1),
        ("I-4", "call", 2),
    ]
    assert datetime.fromisoformat(after["qualified_at"]) == T0 + timedelta(days=2)
    assert after["lead_id"] == engagement.lead_id(customer)


async def test_engagement_is_not_a_segment_id_anyone_can_define(api: tuple[httpx.AsyncClient, Store]) -> None:
    http, _ = api
    definition = {"all": [{"field": "consent", "op": "contains", "value": "email"}]}
    segment = {"segment_id": "engagement", "name": "x", "definition": definition}
    assert (await http.post("/v1/segments", json=segment)).status_code == 409


async def test_sales_takes_the_engagement_lead_from_the_outbox(new_store: NewStore) -> None:
    marketing = await new_store("marketing_engagement", repository.INDEXES)
    sales = await new_store("sales_engagement_leads", SALES_INDEXES)
    customer = customer_id()
    for event in (logged(customer, "I-1", "visit"), logged(customer, "I-2", "call", 1)):
        await handlers.apply_customer_event(marketing, event, RULE)
    [record] = await leads_in_outbox(marketing, customer)

    await sales_handlers.apply_marketing_event(sales, parse_event(record["value"]))

    app = create_sales_service()
    app.state.runtime.store = sales
    async with httpx.AsyncClient(
        headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://sales"
    ) as http:
        [lead] = (await http.get(f"/v1/customers/{customer}/leads")).json()["items"]
    assert (lead["segment_id"], lead["status"]) == ("engagement", "new")
    assert lead["reason"].startswith("Engagement score 5 reached 5 within 30 days, from 2 interactions: visit I-1")
