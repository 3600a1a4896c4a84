"""Scoring's REST reads on the real database (the app without its broker: no lifespan)."""

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx

from crm_scoring import handlers, repository
from crm_scoring.app import create_service
from crm_scoring.settings import ScoringSettings
from crm_shared.events import (
    ComplaintFiled,
    ComplaintFiledEvent,
    CustomerReferred,
    CustomerReferredEvent,
    InteractionLogged,
    InteractionLoggedEvent,
    OrderCancelled,
    OrderCancelledEvent,
    OrderPlaced,
    OrderPlacedEvent,
    SurveyAnswered,
    SurveyAnsweredEvent,
)
from crm_shared.store import Store

from helpers import ADMIN_HEADERS

NewStore = Callable[..., Awaitable[Store]]
T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)


def order(customer: str, order_id: str, total: str, at: datetime) -> OrderPlacedEvent:
    data = OrderPlaced(customer_id=customer, order_id=order_id, currency="EUR", total=Decimal(total))
    return OrderPlacedEvent.create(data, source="/channels/web", time=at)


async def test_scores_show_the_facts_and_thresholds_behind_them(new_store: NewStore) -> None:
    store = await new_store("scoring_api", repository.INDEXES)
    app = create_service(ScoringSettings(high_value_monetary=Decimal("1200"), stable_after_orders=3))
    app.state.runtime.store = store
    customer = f"C-{uuid.uuid4().hex[:8]}"
    thresholds = app.state.runtime.settings.thresholds
    await handlers.apply_event(store, order(customer, "O-1", "1500.00", T0), thresholds)
    await handlers.apply_event(store, order(customer, "O-2", "99.90", T0 + timedelta(days=1)), thresholds)
    cancel = OrderCancelledEvent.create(
        OrderCancelled(customer_id=customer, order_id="O-2"), source="/channels/web", time=T0 + timedelta(days=2)
    )
    await handlers.apply_event(store, cancel, thresholds)
    filed = ComplaintFiled(
        customer_id=customer, complaint_id="T-1", dimension="people", severity="medium", summary="Rude on the phone."
    )
    await handlers.apply_event(
        store, ComplaintFiledEvent.create(filed, source="/support", time=T0 + timedelta(days=3)), thresholds
    )
    answered = SurveyAnswered(customer_id=customer, survey_id="S-1", kind="nps", score=9, dimension="product")
    await handlers.apply_event(
        store, SurveyAnsweredEvent.create(answered, source="/support", time=T0 + timedelta(days=3)), thresholds
    )

    async with httpx.AsyncClient(
        headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://scoring"
    ) as http:
        response = await http.get(f"/v1/customers/{customer}/scores")

    assert response.status_code == 200
    body = response.json()
    now_days = (datetime.now(UTC) - T0).days
    assert body["customer_id"] == customer
    assert (body["frequency"], body["monetary"], body["average_order_value"]) == (1, "1500.00", "1500.00")
    assert body["recency_days"] == max(0, now_days)
    assert (body["value_tier"], body["lifecycle_stage"]) == ("high_value", "first_time_buyer")
    assert (body["churn_risk"], body["churn_risk_band"]) == (0.45, "medium")
    assert body["satisfaction"] == round((0.25 + 0.9) / 2, 4)
    assert body["satisfaction_by_dimension"] == {"product": 0.9, "service": None, "people": 0.25}
    assert body["model_version"] == "rules-v1"
    assert datetime.fromisoformat(body["scored_as_of"]) == T0 + timedelta(days=3)
    assert (body["first_order_at"], body["last_order_at"]) == ("2026-11-20T10:00:00Z", "2026-11-20T10:00:00Z")
    limits = body["thresholds"]
    assert (limits["high_value_monetary"], limits["stable_after_orders"]) == ("1200", 3)
    assert (limits["churn_medium_from"], limits["churn_high_from"]) == (0.3, 0.6)
    assert limits["churn_per_complaint"] == {"low": 0.1, "medium": 0.25, "high": 0.5}
    inputs = body["inputs"]
    assert [(o["order_id"], o["total"], o["cancelled"], o["counts"]) for o in inputs["orders"]] == [
        ("O-1", "1500.00", False, True),
        ("O-2", "99.90", True, False),
    ]
    assert [(c["complaint_id"], c["severity"], c["dimension"]) for c in inputs["complaints"]] == [
        ("T-1", "medium", "people")
    ]
    assert [(s["survey_id"], s["kind"], s["score"], s["bad"]) for s in inputs["surveys"]] == [("S-1", "nps", 9, False)]
    # No population statistics yet, no fitted models: RFM and the model figures are absent, the fixed threshold holds.
    assert (body["rfm_score"], body["rfm_segment"], body["value_quadrant"], body["population"]) == (None,) * 4
    assert (body["probability_alive"], body["lifetime_value"], body["population_version"]) == (None, None, None)
    # Satisfaction (0.25 + 0.9) / 2 < 0.7 with one order: a buyer on the loyalty ladder.
    assert body["loyalty_stage"] == "buyer"
    assert datetime.fromisoformat(body["next_review_at"]) == T0 + timedelta(days=90)
    assert (limits["at_risk_days"], limits["lost_days"], limits["min_population"]) == (90, 180, 20)
    # The default formula inputs: D = 10 x (100 + 50), F = 1 x D, G = D + F.
    formula = body["formula_lifetime_value"]
    assert formula["product_line"] == "default"
    assert formula["inputs"] == {"A": "100", "B": "50", "C": "10", "E": "1"}
    assert formula["referrals_from"] == "settings"
    assert (formula["D"], formula["F"], formula["G"]) == ("1500", "1500", "3000")
    assert (body["interactions"], body["last_interaction_at"], body["referrals"], body["referral_ids"]) == (
        0,
        None,
        0,
        [],
    )


async def test_scores_show_interactions_and_referrals_and_e_from_own_referrals(new_store: NewStore) -> None:
    store = await new_store("scoring_api", repository.INDEXES)
    app = create_service()
    app.state.runtime.store = store
    customer = f"C-{uuid.uuid4().hex[:8]}"
    await handlers.apply_event(store, order(customer, "O-1", "50.00", T0))
    logged = InteractionLogged(customer_id=customer, interaction_id="I-1", kind="visit", channel="face_to_face")
    await handlers.apply_customer_event(store, InteractionLoggedEvent.create(logged, source="/x", time=T0))
    for referral_id in ("R-2", "R-1"):
        data = CustomerReferred(customer_id=customer, referral_id=referral_id, referred_customer_id=f"C-{referral_id}")
        await handlers.apply_customer_event(store, CustomerReferredEvent.create(data, source="/x", time=T0))

    async with httpx.AsyncClient(
        headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://scoring"
    ) as http:
        body = (await http.get(f"/v1/customers/{customer}/scores")).json()

    assert (body["interactions"], body["last_interaction_at"]) == (1, "2026-11-20T10:00:00Z")
    assert (body["referrals"], body["referral_ids"], body["loyalty_stage"]) == (2, ["R-1", "R-2"], "advocate")
    formula = body["formula_lifetime_value"]
    # E = the 2 referrals instead of the configured 1: D = 10 x (100 + 50), F = 2 x D.
    assert (formula["referrals_from"], formula["inputs"]["E"]) == ("own_referrals", "2")
    assert (formula["D"], formula["F"], formula["G"]) == ("1500", "3000", "4500")


async def test_segment_changes_page_oldest_first_and_unknown_customers(new_store: NewStore) -> None:
    store = await new_store("scoring_api", repository.INDEXES)
    app = create_service()
    app.state.runtime.store = store
    customer = f"C-{uuid.uuid4().hex[:8]}"
    first = order(customer, "O-1", "1500.00", T0)
    await handlers.apply_event(store, first)
    for i in range(2, 10):
        await handlers.apply_event(store, order(customer, f"O-{i}", "10.00", T0 + timedelta(days=i)))

    async with httpx.AsyncClient(
        headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://scoring"
    ) as http:
        seen = []
        cursor = None
        while True:
            params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
            response = await http.get(f"/v1/customers/{customer}/segment-changes", params=params)
            assert response.status_code == 200
            page = response.json()
            seen += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                break

        missing = await http.get("/v1/customers/C-nobody/scores")
        empty = await http.get("/v1/customers/C-nobody/segment-changes")
        bad = await http.get(f"/v1/customers/{customer}/segment-changes", params={"cursor": "bm90LWpzb24="})

    # The first order changed two dimensions at the same time: those two are ordered by event id.
    assert sorted((c["dimension"], c["old"], c["new"]) for c in seen[:2]) == [
        ("lifecycle_stage", "prospect", "first_time_buyer"),
        ("value_tier", "potential", "high_value"),
    ]
    assert seen[0]["event_id"] < seen[1]["event_id"]
    assert [(c["dimension"], c["old"], c["new"]) for c in seen[2:]] == [
        ("lifecycle_stage", "first_time_buyer", "repeat"),
        ("lifecycle_stage", "repeat", "stable"),
    ]
    assert [c["caused_by"] for c in seen[:2]] == [first.id, first.id]
    assert datetime.fromisoformat(seen[-1]["changed_at"]) == T0 + timedelta(days=9)
    assert seen[0]["scores"]["monetary"] == "1500.00" and seen[-1]["scores"]["frequency"] == 9
    assert len({c["event_id"] for c in seen}) == 4
    assert all(c["model_version"] == "rules-v1" for c in seen)

    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    problem = missing.json()
    assert (problem["status"], problem["title"], problem["instance"]) == (
        404,
        "Customer not scored",
        "/v1/customers/C-nobody/scores",
    )
    assert "C-nobody" in problem["detail"]
    assert empty.status_code == 200 and empty.json() == {"items": [], "next_cursor": None}
    assert bad.status_code == 400
