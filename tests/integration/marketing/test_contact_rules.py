"""Consent changes, complaints, the frequency cap, holdouts, budgets and conversions, on the real database."""

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from crm_marketing import domain, handlers, repository
from crm_marketing.app import create_service
from crm_marketing.journeys import DEFAULT_JOURNEYS
from crm_shared.events import (
    ChannelConsent,
    ComplaintFiled,
    ComplaintFiledEvent,
    ConsentChanged,
    ConsentChangedEvent,
    CustomerRegistered,
    CustomerRegisteredEvent,
    OrderCancelled,
    OrderCancelledEvent,
    OrderPlaced,
    OrderPlacedEvent,
    ScoreSnapshot,
    SegmentChanged,
    SegmentChangedEvent,
    parse_event,
    utc_now,
)
from crm_shared.store import AlreadyApplied, Store, outbox_records

from helpers import ADMIN_HEADERS

NewStore = Callable[..., Awaitable[Store]]
# In the past: an event may not be dated ahead of the clock, and the latest event here is T0 + 31 days.
T0 = (utc_now() - timedelta(days=40)).replace(hour=10, minute=0, second=0, microsecond=0)
NO_HOLDOUT = domain.Policy(holdout_share=0)


def customer_id() -> str:
    return f"C-{uuid.uuid4().hex[:8]}"


def segment_change(customer: str, dimension: Any, old: str, new: str, at: datetime = T0) -> SegmentChangedEvent:
    scores = ScoreSnapshot(
        recency_days=200,
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
        caused_by="decay:2026-11-20",
    )
    return SegmentChangedEvent.create(change, source="/crm/scoring", time=at)


def became_lost(customer: str, at: datetime = T0) -> SegmentChangedEvent:
    return segment_change(customer, "lifecycle_stage", "at_risk", "lost", at)


def complaint(customer: str, complaint_id: str, at: datetime = T0) -> ComplaintFiledEvent:
    filed = ComplaintFiled(
        customer_id=customer, complaint_id=complaint_id, dimension="service", severity="high", summary="Late."
    )
    return ComplaintFiledEvent.create(filed, source="/crm/support", time=at)


def order(customer: str, order_id: str, total: str, at: datetime) -> OrderPlacedEvent:
    placed = OrderPlaced(customer_id=customer, order_id=order_id, currency="EUR", total=Decimal(total))
    return OrderPlacedEvent.create(placed, source="/crm/sales", time=at)


def cancelled(customer: str, order_id: str, at: datetime) -> OrderCancelledEvent:
    return OrderCancelledEvent.create(
        OrderCancelled(customer_id=customer, order_id=order_id), source="/crm/sales", time=at
    )


async def register(store: Store, customer: str, consents: dict[str, bool], preferred: str | None = None) -> None:
    data = CustomerRegistered.model_validate(
        {
            "customer_id": customer,
            "name": "Test Person",
            "consents": [ChannelConsent.model_validate({"channel": c, "granted": g}) for c, g in consents.items()],
            "preferred_channel": preferred,
        }
    )
    await handlers.apply_customer_event(store, CustomerRegisteredEvent.create(data, source="/crm/customer", time=T0))


async def change_consent(store: Store, customer: str, channel: str, granted: bool, at: datetime) -> None:
    data = ConsentChanged.model_validate({"customer_id": customer, "channel": channel, "granted": granted})
    await handlers.apply_customer_event(store, ConsentChangedEvent.create(data, source="/crm/customer", time=at))


async def emitted_types(store: Store, customer: str) -> list[str]:
    return [r["type"] for r in await outbox_records(store.db, {"key": customer})]


# ---------------------------------------------------------------- consent


async def test_a_customer_without_email_consent_is_not_emailed(new_store: NewStore) -> None:
    store = await new_store("marketing_rules", repository.INDEXES)
    customer = customer_id()
    # Email comes first in the fallback order, and is refused.
    await register(store, customer, {"email": False, "sms": True})

    [enrolment] = await handlers.apply_segment_change(store, became_lost(customer), DEFAULT_JOURNEYS, NO_HOLDOUT)

    assert (enrolment.journey, enrolment.status, enrolment.channel) == ("win-back", "contacted", "sms")


async def test_a_consent_change_revoking_email_is_respected(new_store: NewStore) -> None:
    store = await new_store("marketing_rules", repository.INDEXES)
    customer = customer_id()
    await register(store, customer, {"email": True, "phone": True}, preferred="email")
    await change_consent(store, customer, "email", False, T0 + timedelta(hours=1))
    # An older fact arriving late does not undo the newer refusal.
    await change_consent(store, customer, "email", True, T0 + timedelta(minutes=30))

    later = became_lost(customer, T0 + timedelta(days=1))
    [enrolment] = await handlers.apply_segment_change(store, later, DEFAULT_JOURNEYS, NO_HOLDOUT)

    assert (enrolment.status, enrolment.channel) == ("contacted", "phone")
    prefs = await store.db[repository.CONTACT_PREFERENCES].find_one({"_id": customer})
    assert prefs is not None and prefs["refused"] == ["email"]


async def test_revoking_the_only_channel_means_skipped_with_the_reason(new_store: NewStore) -> None:
    store = await new_store("marketing_rules", repository.INDEXES)
    customer = customer_id()
    await register(store, customer, {"email": True})
    await change_consent(store, customer, "email", False, T0 + timedelta(hours=1))

    [enrolment] = await handlers.apply_segment_change(
        store, became_lost(customer, T0 + timedelta(days=1)), DEFAULT_JOURNEYS, NO_HOLDOUT
    )

    assert (enrolment.status, enrolment.channel, enrolment.reason) == (
        "skipped",
        None,
        "customer refused every channel",
    )
    assert "crm.campaign.contacted.v1" not in await emitted_types(store, customer)


# ---------------------------------------------------------------- complaints


async def test_a_complaint_enrols_in_complaint_recovery_once(new_store: NewStore) -> None:
    store = await new_store("marketing_rules", repository.INDEXES)
    customer = customer_id()
    await register(store, customer, {"sms": True})
    filed = complaint(customer, f"T-{customer}")

    [enrolment] = await handlers.apply_support_event(store, filed, DEFAULT_JOURNEYS, NO_HOLDOUT)
    for _ in range(2):
        with pytest.raises(AlreadyApplied):
            await handlers.apply_support_event(store, filed, DEFAULT_JOURNEYS, NO_HOLDOUT)
    # The same complaint under another event id (a channel system's retry with a new id) is the same episode.
    assert await handlers.apply_support_event(store, complaint(customer, f"T-{customer}"), DEFAULT_JOURNEYS) == []

    assert (enrolment.journey, enrolment.episode, enrolment.status, enrolment.channel) == (
        "complaint-recovery",
        f"T-{customer}",
        "contacted",
        "sms",
    )
    assert await store.db[repository.ENROLMENTS].count_documents({"customer_id": customer}) == 1
    assert await emitted_types(store, customer) == ["crm.campaign.enrolled.v1", "crm.campaign.contacted.v1"]
    [again] = await handlers.apply_support_event(
        store, complaint(customer, f"T2-{customer}"), DEFAULT_JOURNEYS, NO_HOLDOUT
    )
    assert again.episode == f"T2-{customer}"


# ---------------------------------------------------------------- frequency cap and holdout


async def test_the_frequency_cap_skips_the_fourth_contact_in_a_week_but_not_complaint_recovery(
    new_store: NewStore,
) -> None:
    store = await new_store("marketing_rules", repository.INDEXES)
    customer = customer_id()
    await register(store, customer, {"email": True})
    changes = [
        segment_change(customer, "lifecycle_stage", "prospect", "first_time_buyer", T0),
        segment_change(customer, "value_tier", "potential", "high_value", T0 + timedelta(hours=1)),
        segment_change(customer, "churn_risk_band", "low", "high", T0 + timedelta(days=2)),
        segment_change(customer, "lifecycle_stage", "at_risk", "lost", T0 + timedelta(days=3)),
    ]
    statuses = []
    for change in changes:
        [enrolment] = await handlers.apply_segment_change(store, change, DEFAULT_JOURNEYS, NO_HOLDOUT)
        statuses.append((enrolment.journey, enrolment.status, enrolment.reason))
    [recovery] = await handlers.apply_support_event(
        store, complaint(customer, f"T-{customer}", T0 + timedelta(days=4)), DEFAULT_JOURNEYS, NO_HOLDOUT
    )
    # A week after the first contact, the cap has room again.
    [after_the_period] = await handlers.apply_segment_change(
        store, became_lost(customer, T0 + timedelta(days=7, minutes=1)), DEFAULT_JOURNEYS, NO_HOLDOUT
    )

    assert statuses == [
        ("welcome", "contacted", None),
        ("high-value-thank-you", "contacted", None),
        ("service-recovery", "contacted", None),
        ("win-back", "skipped", "frequency cap"),
    ]
    assert recovery.status == "contacted"
    assert after_the_period.status == "contacted"


async def test_a_held_out_customer_is_recorded_not_contacted_and_decided_the_same_every_time(
    new_store: NewStore,
) -> None:
    store = await new_store("marketing_rules", repository.INDEXES)
    policy = domain.Policy(holdout_share=0.5)
    customers = [customer_id() for _ in range(40)]
    held = [c for c in customers if domain.in_holdout(c, "win-back", policy.holdout_share)]
    assert 0 < len(held) < len(customers)
    for customer in customers:
        await register(store, customer, {"email": True})
        await handlers.apply_segment_change(store, became_lost(customer), DEFAULT_JOURNEYS, policy)

    docs = await store.db[repository.ENROLMENTS].find({"customer_id": {"$in": customers}}).to_list(None)
    assert sorted(d["customer_id"] for d in docs if d["status"] == "holdout") == sorted(held)
    assert all(d["channel"] is None and d["reason"] == "holdout group" for d in docs if d["status"] == "holdout")
    assert all(d["status"] == "contacted" for d in docs if d["customer_id"] not in held)
    assert await emitted_types(store, held[0]) == ["crm.campaign.enrolled.v1"]


# ---------------------------------------------------------------- campaigns, budgets and results


@pytest.fixture
async def api(new_store: NewStore) -> AsyncIterator[tuple[httpx.AsyncClient, Store]]:
    store = await new_store("marketing_campaigns", repository.INDEXES)
    app = create_service()
    app.state.runtime.store = store
    async with httpx.AsyncClient(
        headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://marketing"
    ) as http:
        yield http, store


def plan(campaign_id: str, **changes: Any) -> dict[str, Any]:
    return {
        "campaign_id": campaign_id,
        "name": "Win-back Q4",
        "objective": "Bring lost customers back.",
        "journey": "win-back",
        "offer": "15% off",
        "starts_at": (T0 - timedelta(days=19)).isoformat(),
        "ends_at": (T0 + timedelta(days=11)).isoformat(),
        "budget": "1.00",
        "cost_per_contact": "0.40",
        **changes,
    }


async def test_budget_exhaustion_stops_enrolment(api: tuple[httpx.AsyncClient, Store]) -> None:
    http, store = api
    campaign = f"wb-{uuid.uuid4().hex[:8]}"
    created = await http.post("/v1/campaigns", json=plan(campaign))
    assert created.status_code == 201, created.text
    assert (await http.post("/v1/campaigns", json=plan(campaign))).status_code == 200
    assert (await http.post("/v1/campaigns", json=plan(campaign, budget="2.00"))).status_code == 409

    customers = [customer_id() for _ in range(3)]
    enrolled = []
    for i, customer in enumerate(customers):
        await register(store, customer, {"email": True})
        [e] = await handlers.apply_segment_change(
            store, became_lost(customer, T0 + timedelta(minutes=i)), DEFAULT_JOURNEYS, NO_HOLDOUT
        )
        enrolled.append((e.campaign_id, e.status, e.reason, e.cost))

    assert enrolled == [
        (campaign, "contacted", None, Decimal("0.40")),
        (campaign, "contacted", None, Decimal("0.40")),
        (campaign, "skipped", "budget exhausted", Decimal(0)),
    ]
    doc = (await http.get(f"/v1/campaigns/{campaign}")).json()
    assert (doc["spent"], doc["budget"], doc["kind"]) == ("0.80", "1.00", "planned")
    # Outside its dates the campaign does not run: the journey's own campaign takes the enrolment.
    late = customer_id()
    await register(store, late, {"email": True})
    [e] = await handlers.apply_segment_change(
        store, became_lost(late, T0 + timedelta(days=15)), DEFAULT_JOURNEYS, NO_HOLDOUT
    )
    assert (e.campaign_id, e.status) == ("win-back", "contacted")


async def test_a_plan_is_validated_with_precise_problems(api: tuple[httpx.AsyncClient, Store]) -> None:
    http, _ = api
    unknown = await http.post("/v1/campaigns", json=plan("c-x", journey="nope"))
    assert unknown.status_code == 422 and "'nope' is not one of" in unknown.json()["detail"]
    backwards = await http.post("/v1/campaigns", json=plan("c-y", ends_at=(T0 - timedelta(days=50)).isoformat()))
    assert backwards.status_code == 422 and "ends_at must be after starts_at" in backwards.json()["detail"]
    negative = await http.post("/v1/campaigns", json=plan("c-z", budget="-1"))
    assert negative.status_code == 422 and "budget" in negative.json()["detail"]
    taken = await http.post("/v1/campaigns", json=plan("welcome"))
    assert taken.status_code == 409
    assert (await http.get("/v1/campaigns/none-such")).status_code == 404


async def test_an_order_after_enrolment_is_a_conversion_with_its_revenue(api: tuple[httpx.AsyncClient, Store]) -> None:
    http, store = api
    campaign = f"wb-{uuid.uuid4().hex[:8]}"
    assert (await http.post("/v1/campaigns", json=plan(campaign, budget="100.00"))).status_code == 201
    policy = domain.Policy(holdout_share=0.5)
    treated = next(c for c in (customer_id() for _ in range(100)) if not domain.in_holdout(c, "win-back", 0.5))
    held = next(c for c in (customer_id() for _ in range(100)) if domain.in_holdout(c, "win-back", 0.5))
    bystander = customer_id()
    for customer in (treated, held, bystander):
        await register(store, customer, {"email": True})
    # The treated customer's second order reaches marketing before the enrolment does.
    assert (
        await handlers.apply_sales_event(store, order(treated, f"O2-{treated}", "80.00", T0 + timedelta(days=2))) == 0
    )
    for customer in (treated, held):
        await handlers.apply_segment_change(store, became_lost(customer), DEFAULT_JOURNEYS, policy)

    assert (
        await handlers.apply_sales_event(store, order(treated, f"O1-{treated}", "120.00", T0 + timedelta(days=1))) == 1
    )
    assert await handlers.apply_sales_event(store, order(held, f"O-{held}", "50.00", T0 + timedelta(days=3))) == 1
    # Before enrolment, after the window, or never enrolled: no conversion.
    assert (
        await handlers.apply_sales_event(store, order(treated, f"O0-{treated}", "9.00", T0 - timedelta(hours=1))) == 0
    )
    assert await handlers.apply_sales_event(store, order(held, f"O9-{held}", "9.00", T0 + timedelta(days=31))) == 0
    assert (
        await handlers.apply_sales_event(store, order(bystander, f"O-{bystander}", "9.00", T0 + timedelta(days=1))) == 0
    )

    converted = [
        parse_event(r["value"]).data
        for r in await outbox_records(store.db, {"type": "crm.campaign.converted.v1", "key": treated})
    ]
    assert sorted((c.order_id, c.revenue, c.group, c.campaign_id) for c in converted) == [
        (f"O1-{treated}", Decimal("120.00"), "treated", campaign),
        (f"O2-{treated}", Decimal("80.00"), "treated", campaign),
    ]
    results = (await http.get(f"/v1/campaigns/{campaign}/results")).json()
    assert (results["contacted"], results["holdout"], results["skipped"]) == (1, 1, 0)
    assert results["treated_group"] == {
        "enrolled": 1,
        "converted": 1,
        "orders": 2,
        "revenue": "200.00",
        "conversion_rate": 1.0,
        "revenue_per_customer": "200.00",
    }
    assert (results["holdout_group"]["converted"], results["holdout_group"]["revenue"]) == (1, "50.00")
    assert results["uplift"] == 0.0
    # 1 of 1 against 1 of 1: each Wilson interval is 0.2065 to 1, so the difference's is 0 +/- 0.7935.
    assert (round(results["uplift_ci_low"], 4), round(results["uplift_ci_high"], 4)) == (-0.7935, 0.7935)
    assert (results["cost"], results["incremental_revenue"]) == ("0.40", "150.00")
    assert results["roi"] == pytest.approx((150 - 0.40) / 0.40)


async def test_a_cancelled_order_is_no_conversion_whichever_arrives_first(api: tuple[httpx.AsyncClient, Store]) -> None:
    http, store = api
    customer = customer_id()
    await register(store, customer, {"email": True})
    await handlers.apply_segment_change(store, became_lost(customer), DEFAULT_JOURNEYS, NO_HOLDOUT)
    kept = order(customer, f"O1-{customer}", "30.00", T0 + timedelta(days=1))
    withdrawn = order(customer, f"O2-{customer}", "70.00", T0 + timedelta(days=2))
    assert await handlers.apply_sales_event(store, kept) == 1
    assert await handlers.apply_sales_event(store, withdrawn) == 1
    assert await handlers.apply_sales_event(store, cancelled(customer, f"O2-{customer}", T0 + timedelta(days=3))) == -1
    # Cancelled before marketing saw it placed: never a conversion.
    assert await handlers.apply_sales_event(store, cancelled(customer, f"O3-{customer}", T0 + timedelta(days=4))) == 0
    assert (
        await handlers.apply_sales_event(store, order(customer, f"O3-{customer}", "5.00", T0 + timedelta(days=3))) == 0
    )

    results = (await http.get("/v1/campaigns/win-back/results")).json()
    assert (results["treated_group"]["orders"], results["treated_group"]["revenue"]) == (1, "30.00")


# ---------------------------------------------------------------- campaign dates and archiving


@pytest.mark.parametrize(
    ("changes", "location", "message"),
    [
        ({"ends_at": "9999-12-31T23:59:59-01:00"}, "body.ends_at", "is after 2200-01-01T00:00:00+00:00"),
        ({"starts_at": "0001-01-01T00:00:00+01:00"}, "body.starts_at", "is before 1900-01-01T00:00:00+00:00"),
        ({"starts_at": "2026-11-01T00:00:00"}, "body.starts_at", "with an offset"),
        ({"ends_at": 1798761600}, "body.ends_at", "RFC 3339"),
        ({"budget": 1.5}, "body.budget", "decimal string"),
    ],
)
async def test_campaign_dates_are_rfc_3339_times_within_the_planned_window(
    api: tuple[httpx.AsyncClient, Store], changes: dict[str, Any], location: str, message: str
) -> None:
    http, store = api
    campaign = f"c-{uuid.uuid4().hex[:8]}"
    refused = await http.post("/v1/campaigns", json=plan(campaign, **changes))
    assert refused.status_code == 422, refused.text
    assert any(e["location"] == location and message in e["message"] for e in refused.json()["errors"]), refused.json()
    assert await store.db[repository.CAMPAIGNS].find_one({"_id": campaign}) is None


async def test_an_archived_campaign_enrols_nobody_and_keeps_its_results(api: tuple[httpx.AsyncClient, Store]) -> None:
    http, store = api
    campaign = f"wb-{uuid.uuid4().hex[:8]}"
    assert (await http.post("/v1/campaigns", json=plan(campaign))).status_code == 201
    before, after = customer_id(), customer_id()
    for customer in (before, after):
        await register(store, customer, {"email": True})
    [first] = await handlers.apply_segment_change(store, became_lost(before), DEFAULT_JOURNEYS, NO_HOLDOUT)
    assert first.campaign_id == campaign

    archived = await http.delete(f"/v1/campaigns/{campaign}")
    assert archived.status_code == 204 and archived.content == b""
    view = (await http.get(f"/v1/campaigns/{campaign}")).json()
    assert view["archived_at"] is not None
    # Archiving again changes nothing: the first archiving's time stays.
    assert (await http.delete(f"/v1/campaigns/{campaign}")).status_code == 204
    assert (await http.get(f"/v1/campaigns/{campaign}")).json()["archived_at"] == view["archived_at"]

    # The journey still runs, under its own campaign: the archived one enrols nobody.
    [second] = await handlers.apply_segment_change(
        store, became_lost(after, T0 + timedelta(hours=1)), DEFAULT_JOURNEYS, NO_HOLDOUT
    )
    assert (second.campaign_id, second.status) == ("win-back", "contacted")
    results = (await http.get(f"/v1/campaigns/{campaign}/results")).json()
    assert (results["contacted"], results["cost"]) == (1, "0.40")
    enrolments = (await http.get(f"/v1/campaigns/{campaign}/enrolments")).json()["items"]
    assert [e["customer_id"] for e in enrolments] == [before]
    # The id stays taken.
    assert (await http.post("/v1/campaigns", json=plan(campaign, budget="9.00"))).status_code == 409


async def test_archiving_an_unknown_or_a_journeys_own_campaign_is_refused(
    api: tuple[httpx.AsyncClient, Store],
) -> None:
    http, store = api
    missing = await http.delete("/v1/campaigns/none-such")
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    customer = customer_id()
    await register(store, customer, {"email": True})
    await handlers.apply_segment_change(store, became_lost(customer), DEFAULT_JOURNEYS, NO_HOLDOUT)
    own = await http.delete("/v1/campaigns/win-back")
    assert own.status_code == 409 and "configured journey" in own.json()["detail"]
    assert (await http.get("/v1/campaigns/win-back")).json()["archived_at"] is None
