"""Every export of a segment's members is in the audit log, on the real database (every route's 401 and 403:
tests/integration/shared/test_route_access.py).

Marketing has no row-level access: it does not know who owns a customer, campaign or segment, so a
caller's scope is all that is checked.
"""

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from crm_marketing import handlers, repository
from crm_marketing.app import create_service
from crm_marketing.journeys import DEFAULT_JOURNEYS
from crm_shared.events import ScoreSnapshot, SegmentChanged, SegmentChangedEvent, utc_now
from crm_shared.store import Store

from helpers import ADMIN_HEADERS, bearer, eventually

NewStore = Callable[..., Awaitable[Store]]
PROBLEM = "application/problem+json"
MEMBERS = "GET /v1/segments/{segment_id}/members"


@pytest.fixture(scope="module")
async def api(new_store: NewStore) -> AsyncIterator[tuple[httpx.AsyncClient, Store]]:
    store = await new_store("marketing_access", repository.INDEXES)
    app = create_service()
    app.state.runtime.store = store
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://marketing") as client:
        yield client, store


def high_value(customer: str) -> SegmentChangedEvent:
    at = utc_now() - timedelta(days=1)
    scores = ScoreSnapshot(
        recency_days=1,
        frequency=3,
        monetary=Decimal("2400.00"),
        average_order_value=Decimal("800.00"),
        value_tier="high_value",
        lifecycle_stage="repeat",
        churn_risk=0.1,
        churn_risk_band="low",
        satisfaction=0.9,
    )
    change = SegmentChanged(
        customer_id=customer,
        dimension="value_tier",
        old="potential",
        new="high_value",
        scores=scores,
        model_version="v1",
        changed_at=at,
        caused_by="e-order",
    )
    return SegmentChangedEvent.create(change, source="/crm/scoring", time=at)


async def test_every_export_of_a_segments_members_is_in_the_audit_log(api: tuple[httpx.AsyncClient, Store]) -> None:
    http, store = api
    tag = uuid.uuid4().hex[:8]
    customer, segment_id = f"C-{tag}", f"seg-{tag}"
    await handlers.apply_segment_change(store, high_value(customer), DEFAULT_JOURNEYS)
    definition = {"all": [{"field": "value_tier", "op": "eq", "value": "high_value"}]}
    created = await http.post(
        "/v1/segments",
        json={"segment_id": segment_id, "name": "High value", "definition": definition},
        headers=ADMIN_HEADERS,
    )
    assert created.status_code == 201, created.text

    url = f"/v1/segments/{segment_id}/members"
    analyst = bearer("analyst-7", "segments:export")
    as_json = await http.get(url, headers=analyst)
    assert as_json.status_code == 200 and customer in [m["customer_id"] for m in as_json.json()["items"]]
    as_csv = await http.get(url, params={"format": "csv"}, headers=analyst)
    assert as_csv.status_code == 200 and customer in as_csv.text
    refused = await http.get(url, headers=bearer("rep-1", "segments:read"))
    assert refused.status_code == 403

    async def exports() -> list[dict[str, Any]] | None:
        page = await http.get("/v1/admin/audit", params={"limit": 200}, headers=ADMIN_HEADERS)
        assert page.status_code == 200, page.text
        found = [
            item
            for item in page.json()["items"]
            if item["action"] == MEMBERS and item["target"] == {"segment_id": segment_id}
        ]
        return found if len(found) == 3 else None

    found = await eventually(exports, timeout=10, what="the three export records")
    assert sorted((e["principal"], e["status"], e["outcome"]) for e in found) == [
        ("token:analyst-7", 200, "allowed"),
        ("token:analyst-7", 200, "allowed"),
        ("token:rep-1", 403, "denied"),
    ]
    assert {e["service"] for e in found} == {"marketing"}
    # The audit log names who exported which segment, never the customers exported.
    assert customer not in str(found)
