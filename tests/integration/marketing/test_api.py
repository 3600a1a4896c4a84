"""Marketing's REST reads on the real database (the app without its broker: no lifespan)."""

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx

from crm_marketing import domain, handlers, repository
from crm_marketing.app import create_service
from crm_marketing.journeys import DEFAULT_JOURNEYS
from crm_shared.events import ScoreSnapshot, SegmentChanged, SegmentChangedEvent
from crm_shared.store import Store

from helpers import ADMIN_HEADERS

NewStore = Callable[..., Awaitable[Store]]
T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)


def lifecycle_change(customer: str, at: datetime) -> SegmentChangedEvent:
    scores = ScoreSnapshot(
        recency_days=0,
        frequency=1,
        monetary=Decimal("50.00"),
        average_order_value=Decimal("50.00"),
        value_tier="low_value",
        lifecycle_stage="first_time_buyer",
        churn_risk=0.1,
        churn_risk_band="low",
        satisfaction=0.8,
    )
    change = SegmentChanged(
        customer_id=customer,
        dimension="lifecycle_stage",
        old="prospect",
        new="first_time_buyer",
        scores=scores,
        model_version="v1",
        changed_at=at,
        caused_by="e-order",
    )
    return SegmentChangedEvent.create(change, source="/crm/scoring", time=at)


async def test_journeys_campaigns_and_enrolments_pages(new_store: NewStore) -> None:
    store = await new_store("marketing_api", repository.INDEXES)
    app = create_service()
    app.state.runtime.store = store
    customers = [f"C-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    for i, customer in enumerate(customers):
        await handlers.apply_segment_change(
            store, lifecycle_change(customer, T0 + timedelta(hours=i)), DEFAULT_JOURNEYS, domain.Policy(holdout_share=0)
        )

    async with httpx.AsyncClient(
        headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://marketing"
    ) as http:
        journeys = (await http.get("/v1/journeys")).json()
        assert [j["name"] for j in journeys] == [
            "welcome",
            "high-value-thank-you",
            "service-recovery",
            "complaint-recovery",
            "win-back",
        ]

        campaigns = (await http.get("/v1/campaigns")).json()
        assert [c["campaign_id"] for c in campaigns["items"]] == ["welcome"]

        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = (await http.get("/v1/campaigns/welcome/enrolments", params=params)).json()
            seen += [e["customer_id"] for e in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == customers[::-1]

        mine = (await http.get(f"/v1/customers/{customers[0]}/enrolments")).json()
        assert [(e["journey"], e["status"]) for e in mine["items"]] == [("welcome", "skipped")]

        missing = await http.get("/v1/campaigns/nope/enrolments")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        assert (await http.get(f"/v1/customers/{customers[0]}/contact-preferences")).status_code == 404
        bad = await http.get("/v1/campaigns/welcome/enrolments", params={"cursor": "bm90LWpzb24="})
        assert bad.status_code == 400
