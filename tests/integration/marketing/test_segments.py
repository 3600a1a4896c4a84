"""Segments on the real database: kept current from segment changes, consents and orders; counted and exported."""

import base64
import csv
import io
import json
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
from crm_marketing.segments import Group
from crm_marketing.settings import MarketingSettings
from crm_shared.events import (
    ChannelConsent,
    ConsentChanged,
    ConsentChangedEvent,
    CustomerRegistered,
    CustomerRegisteredEvent,
    OrderPlaced,
    OrderPlacedEvent,
    ScoreSnapshot,
    SegmentChanged,
    SegmentChangedEvent,
    parse_event,
    utc_now,
)
from crm_shared.store import Store, outbox_records

from helpers import ADMIN_HEADERS

NewStore = Callable[..., Awaitable[Store]]
NOW = utc_now()
NO_HOLDOUT = domain.Policy(holdout_share=0)


@pytest.fixture
async def api(new_store: NewStore) -> AsyncIterator[tuple[httpx.AsyncClient, Store]]:
    store = await new_store("marketing_segments", repository.INDEXES)
    app = create_service()
    app.state.runtime.store = store
    async with httpx.AsyncClient(
        headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://marketing"
    ) as http:
        yield http, store


def tier_change(customer: str, old: str, new: str, at: datetime, churn: str = "low") -> SegmentChangedEvent:
    scores = ScoreSnapshot(
        recency_days=1,
        frequency=2,
        monetary=Decimal("100.00"),
        average_order_value=Decimal("50.00"),
        value_tier=new,
        lifecycle_stage="repeat",
        churn_risk=0.1,
        churn_risk_band=churn,
        satisfaction=0.8,
        rfm_segment="loyal",
    )
    change = SegmentChanged(
        customer_id=customer,
        dimension="value_tier",
        old=old,
        new=new,
        scores=scores,
        model_version="v1",
        changed_at=at,
        caused_by="e-order",
    )
    return SegmentChangedEvent.create(change, source="/crm/scoring", time=at)


async def register(store: Store, customer: str, consents: dict[str, bool]) -> None:
    data = CustomerRegistered.model_validate(
        {
            "customer_id": customer,
            "name": "Test Person",
            "consents": [ChannelConsent.model_validate({"channel": c, "granted": g}) for c, g in consents.items()],
        }
    )
    await handlers.apply_customer_event(
        store, CustomerRegisteredEvent.create(data, source="/crm/customer", time=NOW - timedelta(days=60))
    )


DEFINITION: dict[str, Any] = {
    "all": [
        {"field": "value_tier", "op": "eq", "value": "high_value"},
        {"field": "consent", "op": "contains", "value": "email"},
        {"field": "last_order_at", "op": "within_days", "value": 30},
    ]
}


async def test_a_segment_is_kept_current_counted_and_exported_in_pages(api: tuple[httpx.AsyncClient, Store]) -> None:
    http, store = api
    tag = uuid.uuid4().hex[:6]
    customers = [f"C-{tag}-{i}" for i in range(5)]
    for customer in customers:
        await register(store, customer, {"email": True})
        await handlers.apply_segment_change(
            store,
            tier_change(customer, "potential", "high_value", NOW - timedelta(days=3)),
            DEFAULT_JOURNEYS,
            NO_HOLDOUT,
        )
        placed = OrderPlaced(customer_id=customer, order_id=f"O-{customer}", currency="EUR", total=Decimal("10"))
        await handlers.apply_sales_event(
            store, OrderPlacedEvent.create(placed, source="/crm/sales", time=NOW - timedelta(days=4))
        )
    # One falls out by tier (a newer change), one by consent, one never ordered recently; an older change is ignored.
    await handlers.apply_segment_change(
        store, tier_change(customers[0], "high_value", "low_value", NOW - timedelta(days=1)), DEFAULT_JOURNEYS
    )
    await handlers.apply_segment_change(
        store, tier_change(customers[0], "potential", "high_value", NOW - timedelta(days=2)), DEFAULT_JOURNEYS
    )
    revoked = ConsentChanged(customer_id=customers[1], channel="email", granted=False)
    await handlers.apply_customer_event(store, ConsentChangedEvent.create(revoked, source="/crm/customer"))
    await store.db[repository.ATTRIBUTES].update_one(
        {"_id": customers[2]}, {"$set": {"last_order_at": NOW - timedelta(days=45)}}
    )
    expected = customers[3:]
    segment_id = f"seg-{tag}"

    created = await http.post("/v1/segments", json={"segment_id": segment_id, "name": "Hot", "definition": DEFINITION})
    assert created.status_code == 201, created.text
    assert created.json()["count"] == len(expected)
    assert (await http.get(f"/v1/segments/{segment_id}")).json()["count"] == len(expected)

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = (await http.get(f"/v1/segments/{segment_id}/members", params=params)).json()
        seen += [m["customer_id"] for m in page["items"]]
        assert all(m["value_tier"] == "high_value" and "email" in m["granted"] for m in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == expected

    exported = await http.get(f"/v1/segments/{segment_id}/members", params={"format": "csv", "limit": 1})
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [r["customer_id"] for r in rows] == expected[:1]
    assert rows[0]["granted"] == "email" and rows[0]["rfm_segment"] == "loyal"
    assert 'rel="next"' in exported.headers["link"]
    last = await http.get(f"/v1/segments/{segment_id}/members", params={"format": "csv", "limit": 10})
    assert "link" not in last.headers and len(list(csv.DictReader(io.StringIO(last.text)))) == len(expected)


async def test_a_segment_definition_is_refused_precisely_and_never_redefined(
    api: tuple[httpx.AsyncClient, Store],
) -> None:
    http, _ = api
    segment_id = f"seg-{uuid.uuid4().hex[:6]}"
    bad = await http.post(
        "/v1/segments",
        json={
            "segment_id": segment_id,
            "name": "Bad",
            "definition": {"all": [{"field": "value_tier", "op": "gte", "value": "high_value"}]},
        },
    )
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"
    assert "definition.all.0.rule" in bad.json()["detail"]
    assert "value_tier does not take op 'gte'" in bad.json()["detail"]
    injected = await http.post(
        "/v1/segments",
        json={
            "segment_id": segment_id,
            "name": "Bad",
            "definition": {"all": [{"field": "region", "op": "eq", "value": {"$where": "sleep(1000)"}}]},
        },
    )
    assert injected.status_code == 422

    body = {"segment_id": segment_id, "name": "Good", "definition": DEFINITION}
    assert (await http.post("/v1/segments", json=body)).status_code == 201
    assert (await http.post("/v1/segments", json=body)).status_code == 200
    other = {**body, "definition": {"any": [{"field": "value_tier", "op": "eq", "value": "potential"}]}}
    assert (await http.post("/v1/segments", json=other)).status_code == 409
    assert (await http.get("/v1/segments/none-such")).status_code == 404
    assert (await http.get("/v1/segments/none-such/members")).status_code == 404


async def test_a_segment_campaign_launch_enrols_members_once_within_its_budget(new_store: NewStore) -> None:
    store = await new_store("marketing_launch", repository.INDEXES)
    app = create_service(MarketingSettings(holdout_share=0))
    app.state.runtime.store = store
    tag = uuid.uuid4().hex[:6]
    members = [f"C-{tag}-{i}" for i in range(3)]
    for customer in members:
        await register(store, customer, {"email": True})
        await handlers.apply_segment_change(
            store,
            tier_change(customer, "potential", "high_value", NOW - timedelta(days=3)),
            DEFAULT_JOURNEYS,
            NO_HOLDOUT,
        )
    definition = {"all": [{"field": "value_tier", "op": "eq", "value": "high_value"}]}
    campaign = {
        "campaign_id": f"vip-{tag}",
        "name": "VIP evening",
        "objective": "Invite high-value customers.",
        "segment_id": f"seg-{tag}",
        "channel": "email",
        "starts_at": (NOW - timedelta(days=1)).isoformat(),
        "ends_at": (NOW + timedelta(days=30)).isoformat(),
        "budget": "1.00",
        "cost_per_contact": "0.40",
    }
    async with httpx.AsyncClient(
        headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://marketing"
    ) as http:
        unknown = await http.post("/v1/campaigns", json=campaign)
        assert unknown.status_code == 422 and "no segment" in unknown.json()["detail"]
        both = await http.post("/v1/campaigns", json={**campaign, "journey": "win-back"})
        assert both.status_code == 422 and "exactly one of journey or segment_id" in both.json()["detail"]
        segment = {"segment_id": f"seg-{tag}", "name": "High value", "definition": definition}
        assert (await http.post("/v1/segments", json=segment)).status_code == 201
        assert (await http.post("/v1/campaigns", json=campaign)).status_code == 201

        first = await http.post(f"/v1/campaigns/vip-{tag}/launch")
        assert first.status_code == 200, first.text
        assert first.json()["enrolled"] == {"contacted": 2, "holdout": 0, "skipped": 1}
        again = (await http.post(f"/v1/campaigns/vip-{tag}/launch")).json()
        assert (again["enrolled"], again["already_enrolled"]) == ({"contacted": 0, "holdout": 0, "skipped": 0}, 3)

        spent = (await http.get(f"/v1/campaigns/vip-{tag}")).json()["spent"]
        assert spent == "0.80"
        enrolments = (await http.get(f"/v1/campaigns/vip-{tag}/enrolments")).json()["items"]
        assert sorted(e["reason"] or "" for e in enrolments) == ["", "", "budget exhausted"]
        assert (await http.post("/v1/campaigns/welcome/launch")).status_code in (404, 409)


async def test_a_segments_members_are_handed_to_sales_as_leads_once(api: tuple[httpx.AsyncClient, Store]) -> None:
    http, store = api
    tag = uuid.uuid4().hex[:6]
    prospects = [f"C-{tag}-{i}" for i in range(2)]
    for customer in prospects:
        await register(store, customer, {"email": True})
    definition = {"all": [{"field": "consent", "op": "contains", "value": "email"}]}
    segment = {"segment_id": f"leads-{tag}", "name": "Reachable prospects", "definition": definition}
    assert (await http.post("/v1/segments", json=segment)).status_code == 201

    first = (await http.post(f"/v1/segments/leads-{tag}/hand-over")).json()
    again = (await http.post(f"/v1/segments/leads-{tag}/hand-over")).json()

    assert (first["handed_over"], first["already_handed_over"]) == (2, 0)
    assert (again["handed_over"], again["already_handed_over"]) == (0, 2)
    records = await outbox_records(store.db, {"type": "crm.lead.qualified.v1"})
    leads = sorted((parse_event(r["value"]).data for r in records), key=lambda lead: lead.customer_id)
    assert [(lead.customer_id, lead.segment_id, lead.reason) for lead in leads] == [
        (c, f"leads-{tag}", "Reachable prospects") for c in prospects
    ]
    assert (await http.post("/v1/segments/none-such/hand-over")).status_code == 404


# ---------------------------------------------------------------- nothing invalid stored; unusable ones deleted

OUT_OF_WINDOW = {"all": [{"field": "last_order_at", "op": "gt", "value": "0001-01-01T00:00:00+01:00"}]}


async def test_a_time_outside_the_window_is_refused_and_nothing_is_stored(
    api: tuple[httpx.AsyncClient, Store],
) -> None:
    http, store = api
    segment_id = f"seg-{uuid.uuid4().hex[:6]}"
    refused = await http.post(
        "/v1/segments", json={"segment_id": segment_id, "name": "Old", "definition": OUT_OF_WINDOW}
    )
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert "body.definition.all.0.rule: " in refused.json()["detail"]
    assert "last_order_at gt: time 0001-01-01T00:00:00+01:00 is before 1900-01-01" in refused.json()["detail"]
    assert await store.db[repository.SEGMENTS].find_one({"_id": segment_id}) is None
    assert (await http.get(f"/v1/segments/{segment_id}")).status_code == 404
    fine = {"all": [{"field": "last_order_at", "op": "gt", "value": "1900-01-01T00:00:00Z"}]}
    created = await http.post("/v1/segments", json={"segment_id": segment_id, "name": "Old", "definition": fine})
    assert created.status_code == 201, created.text


async def test_a_segment_stored_under_older_rules_answers_409_and_can_be_deleted(
    api: tuple[httpx.AsyncClient, Store],
) -> None:
    http, store = api
    segment_id = f"seg-{uuid.uuid4().hex[:6]}"
    # What earlier versions stored: a time BSON cannot encode once compiled, and a tree over today's limits.
    rule = {"field": "region", "op": "in", "value": [f"r{i}" for i in range(50)]}
    for definition, reason in [
        (OUT_OF_WINDOW, "is before 1900-01-01"),
        ({"all": [{"any": [rule] * 20}] * 20}, "at most 200 rules in all"),
    ]:
        await store.db[repository.SEGMENTS].insert_one({"_id": segment_id, "name": "Stored", "definition": definition})
        for method, path in [
            ("GET", f"/v1/segments/{segment_id}"),
            ("GET", f"/v1/segments/{segment_id}/members"),
            ("GET", f"/v1/segments/{segment_id}/members?format=csv"),
            ("POST", f"/v1/segments/{segment_id}/hand-over"),
        ]:
            answer = await http.request(method, path)
            assert answer.status_code == 409, (path, answer.text)
            assert reason in answer.json()["detail"] and "DELETE /v1/segments/" in answer.json()["detail"]
        again = await http.post(
            "/v1/segments", json={"segment_id": segment_id, "name": "New", "definition": DEFINITION}
        )
        assert again.status_code == 409 and reason in again.json()["detail"]

        assert (await http.delete(f"/v1/segments/{segment_id}")).status_code == 204
        assert (await http.get(f"/v1/segments/{segment_id}")).status_code == 404
    assert (await http.delete(f"/v1/segments/{segment_id}")).status_code == 404
    again = await http.post("/v1/segments", json={"segment_id": segment_id, "name": "New", "definition": DEFINITION})
    assert again.status_code == 201


def _region(i: int) -> dict[str, Any]:
    return {"field": "region", "op": "in", "value": [f"r{i}-{j}" for j in range(50)]}


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        # The shape of the probe's 16,000 rules of 50 values (5.3 MB, now over the body limit), at 400 rules.
        ({"all": [{"any": [{"all": [_region(i)] * 20} for i in range(20)]}]}, "at most 200 rules in all"),
        ({"all": []}, "List should have at least 1 item"),
        ({"any": []}, "List should have at least 1 item"),
        ({"all": [{"field": "region", "op": "in", "value": []}]}, "region in: List should have at least 1 item"),
        ({"all": [{"field": "region", "op": "in", "value": [f"r{j}" for j in range(51)]}]}, "at most 50 items"),
    ],
)
async def test_an_empty_or_oversized_definition_is_refused_and_not_stored(
    api: tuple[httpx.AsyncClient, Store], definition: dict[str, Any], message: str
) -> None:
    http, store = api
    segment_id = f"seg-{uuid.uuid4().hex[:6]}"
    refused = await http.post("/v1/segments", json={"segment_id": segment_id, "name": "Big", "definition": definition})
    assert refused.status_code == 422, refused.text[:500]
    assert message in refused.json()["detail"], refused.json()["detail"][:500]
    assert await store.db[repository.SEGMENTS].find_one({"_id": segment_id}) is None


def test_the_openapi_schema_says_what_the_rule_language_refuses() -> None:
    document = create_service().openapi()
    schemas = document["components"]["schemas"]
    group = schemas["Group-Input"]["properties"]
    assert all(any(s.get("minItems") == 1 for s in group[key]["anyOf"]) for key in ("all", "any"))
    value = schemas["Rule"]["properties"]["value"]
    assert any(s.get("type") == "array" and s.get("minItems") == 1 for s in value["anyOf"])
    assert "value" in schemas["Rule"]["required"]
    operations = document["paths"]["/v1/segments/{segment_id}"]
    assert operations["delete"]["summary"] and "204" in operations["delete"]["responses"]
    assert "204" in document["paths"]["/v1/campaigns/{campaign_id}"]["delete"]["responses"]


async def test_a_segment_is_deleted_only_once_no_live_campaign_targets_it(new_store: NewStore) -> None:
    store = await new_store("marketing_delete", repository.INDEXES)
    app = create_service(MarketingSettings(holdout_share=0))
    app.state.runtime.store = store
    tag = uuid.uuid4().hex[:6]
    customer = f"C-{tag}-0"
    await register(store, customer, {"email": True})
    await handlers.apply_segment_change(
        store, tier_change(customer, "potential", "high_value", NOW - timedelta(days=3)), DEFAULT_JOURNEYS, NO_HOLDOUT
    )
    segment = {"segment_id": f"seg-{tag}", "name": "High value", "definition": DEFINITION}
    campaign = {
        "campaign_id": f"vip-{tag}",
        "name": "VIP evening",
        "objective": "Invite high-value customers.",
        "segment_id": f"seg-{tag}",
        "starts_at": (NOW - timedelta(days=1)).isoformat(),
        "ends_at": (NOW + timedelta(days=30)).isoformat(),
        "budget": "10.00",
        "cost_per_contact": "0.40",
    }
    async with httpx.AsyncClient(
        headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://marketing"
    ) as http:
        assert (await http.post("/v1/segments", json=segment)).status_code == 201
        assert (await http.post("/v1/campaigns", json=campaign)).status_code == 201

        in_use = await http.delete(f"/v1/segments/seg-{tag}")
        assert in_use.status_code == 409 and f"vip-{tag}" in in_use.json()["detail"]
        assert (await http.delete(f"/v1/campaigns/vip-{tag}")).status_code == 204
        archived = await http.post(f"/v1/campaigns/vip-{tag}/launch")
        assert archived.status_code == 409 and archived.json()["title"] == "Campaign archived"
        assert (await http.delete(f"/v1/segments/seg-{tag}")).status_code == 204
        assert (await http.get(f"/v1/segments/seg-{tag}")).status_code == 404
        # The archived campaign stays readable, with its (now deleted) audience named.
        assert (await http.get(f"/v1/campaigns/vip-{tag}")).json()["segment_id"] == f"seg-{tag}"


async def test_archiving_a_campaign_during_its_launch_stops_the_launch(new_store: NewStore) -> None:
    store = await new_store("marketing_launch_archived", repository.INDEXES)
    tag = uuid.uuid4().hex[:6]
    customer = f"C-{tag}-0"
    await register(store, customer, {"email": True})
    await handlers.apply_segment_change(
        store, tier_change(customer, "potential", "high_value", NOW - timedelta(days=3)), DEFAULT_JOURNEYS, NO_HOLDOUT
    )
    campaign = {
        "_id": f"vip-{tag}",
        "kind": "planned",
        "segment_id": f"seg-{tag}",
        "starts_at": NOW - timedelta(days=1),
        "ends_at": NOW + timedelta(days=1),
        "budget": Decimal("10"),
        "cost_per_contact": Decimal("1"),
        "spent": Decimal(0),
    }
    await store.db[repository.CAMPAIGNS].insert_one(campaign)
    # The launch holds the campaign as it read it before the archiving.
    await repository.archive_campaign(store.db, f"vip-{tag}", NOW)
    audience = Group.model_validate({"all": [{"field": "value_tier", "op": "eq", "value": "high_value"}]})
    with pytest.raises(handlers.CampaignArchived):
        await handlers.launch_campaign(store, campaign, audience, NOW, NO_HOLDOUT)
    assert await store.db[repository.ENROLMENTS].count_documents({"campaign_id": f"vip-{tag}"}) == 0


RULE_HIGH = {"field": "value_tier", "op": "eq", "value": "high_value"}


async def test_the_segments_are_listed_by_id_in_pages_each_with_its_count_now(new_store: NewStore) -> None:
    # A database of its own: the list is every segment there is.
    store = await new_store("marketing_segment_list", repository.INDEXES)
    app = create_service()
    app.state.runtime.store = store
    tag = uuid.uuid4().hex[:6]
    tiers = {f"C-{tag}-{i}": tier for i, tier in enumerate(["high_value"] * 3 + ["potential"] * 2)}
    defined = {
        "a-high": ({"all": [RULE_HIGH]}, 3),
        "b-email": ({"all": [{"field": "consent", "op": "contains", "value": "email"}]}, 4),
        "c-high-without-email": (
            {"all": [RULE_HIGH, {"field": "consent", "op": "not_contains", "value": "email"}]},
            0,
        ),
        # A dot in the id: the counts are keyed by position, never by the id as a field name.
        "e.potential": ({"any": [{"field": "value_tier", "op": "in", "value": ["potential"]}]}, 2),
    }
    async with httpx.AsyncClient(
        headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://marketing"
    ) as http:
        assert (await http.get("/v1/segments")).json() == {"items": [], "next_cursor": None}
        # No customer known yet: counted 0, not missing.
        body = {"segment_id": "a-high", "name": "A-HIGH", "definition": {"all": [RULE_HIGH]}}
        assert (await http.post("/v1/segments", json=body)).status_code == 201
        assert [s["count"] for s in (await http.get("/v1/segments")).json()["items"]] == [0]

        for customer, tier in tiers.items():
            await register(store, customer, {"email": tier == "high_value" or customer.endswith("-3")})
            await handlers.apply_segment_change(
                store, tier_change(customer, "low_value", tier, NOW - timedelta(days=3)), DEFAULT_JOURNEYS, NO_HOLDOUT
            )
        for segment_id, (definition, _) in defined.items():
            body = {"segment_id": segment_id, "name": segment_id.upper(), "definition": definition}
            assert (await http.post("/v1/segments", json=body)).status_code in (200, 201)
        # What an earlier version stored, no longer accepted: listed with why, not counted, not failing the page.
        await store.db[repository.SEGMENTS].insert_one({"_id": "d-old", "name": "Old", "definition": OUT_OF_WINDOW})

        everything = await http.get("/v1/segments")
        assert everything.status_code == 200, everything.text
        assert everything.json()["next_cursor"] is None
        listed = {s["segment_id"]: s for s in everything.json()["items"]}
        assert list(listed) == ["a-high", "b-email", "c-high-without-email", "d-old", "e.potential"]
        assert {i: s["count"] for i, s in listed.items() if i != "d-old"} == {i: c for i, (_, c) in defined.items()}
        for segment_id in defined:
            one = (await http.get(f"/v1/segments/{segment_id}")).json()
            assert {k: v for k, v in listed[segment_id].items() if k not in ("as_of", "unusable")} == {
                k: v for k, v in one.items() if k != "as_of"
            }
            assert listed[segment_id]["unusable"] is None
        old = listed["d-old"]
        assert (old["name"], old["count"], old["definition"]) == ("Old", None, None)
        assert "is before 1900-01-01" in old["unusable"]

        seen: list[tuple[str, int | None]] = []
        cursor = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = (await http.get("/v1/segments", params=params)).json()
            pages += 1
            assert len(page["items"]) <= 2
            seen += [(s["segment_id"], s["count"]) for s in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert pages == 3
        assert seen == [("a-high", 3), ("b-email", 4), ("c-high-without-email", 0), ("d-old", None), ("e.potential", 2)]

        # A customer moving in is counted on the next read: the counts are live, not kept.
        await handlers.apply_segment_change(
            store,
            tier_change(f"C-{tag}-4", "potential", "high_value", NOW - timedelta(days=1)),
            DEFAULT_JOURNEYS,
            NO_HOLDOUT,
        )
        first = (await http.get("/v1/segments", params={"limit": 1})).json()
        assert [(s["segment_id"], s["count"]) for s in first["items"]] == [("a-high", 4)]

        assert (await http.get("/v1/segments", params={"limit": 101})).status_code == 422
        assert (await http.get("/v1/segments", params={"limit": 0})).status_code == 422
        operator = base64.urlsafe_b64encode(json.dumps({"segment_id": {"$gt": ""}}).encode()).decode()
        for bad_cursor in ("not base64!", operator):
            bad = await http.get("/v1/segments", params={"cursor": bad_cursor})
            assert bad.status_code == 400 and bad.json()["title"] == "Invalid cursor"
