"""The customer service's REST API on the real database (the app without its broker: no lifespan)."""

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from crm_customer import handlers, repository
from crm_customer.app import create_service
from crm_shared.events import OrderPlaced, OrderPlacedEvent
from crm_shared.store import Store, outbox_records

from helpers import ADMIN_HEADERS

SIGN_UP_PUBLISHED = ["crm.customer.registered.v1", "crm.customer.match_keys_changed.v1"]
"""What one sign-up publishes (the suite sets CRM_MATCH_KEY_SECRET), once however often it is sent."""

NewStore = Callable[..., Awaitable[Store]]
T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)
PROBLEM = "application/problem+json"


@pytest.fixture
async def api(new_store: NewStore) -> AsyncIterator[tuple[httpx.AsyncClient, Store]]:
    store = await new_store("customer_api", repository.INDEXES)
    app = create_service()
    app.state.runtime.store = store
    async with httpx.AsyncClient(
        headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://customer"
    ) as http:
        yield http, store


def customer_id() -> str:
    return f"C-{uuid.uuid4().hex[:8]}"


def sign_up(customer: str, **changes: Any) -> dict[str, Any]:
    return {
        "customer_id": customer,
        "name": "Test Person",
        "email": f"{customer.lower()}@example.com",
        "consents": [{"channel": "email", "granted": True}, {"channel": "sms", "granted": False}],
        **changes,
    }


async def test_register_then_same_content_then_different_content(api: tuple[httpx.AsyncClient, Store]) -> None:
    http, store = api
    customer = customer_id()

    created = await http.post("/v1/customers", json=sign_up(customer))
    assert created.status_code == 201, created.text
    assert created.json()["consents"] == {"email": True, "sms": False}

    same = await http.post("/v1/customers", json=sign_up(customer))
    assert same.status_code == 200 and same.json() == created.json()

    other = await http.post("/v1/customers", json=sign_up(customer, email="other@example.com"))
    assert other.status_code == 409
    assert other.headers["content-type"] == PROBLEM
    assert "already registered" in other.json()["detail"]
    assert "other@example.com" not in other.text

    assert (await http.get(f"/v1/customers/{customer}")).json() == created.json()
    consents = (await http.get(f"/v1/customers/{customer}/consents")).json()
    assert consents == {
        "customer_id": customer,
        "granted": ["email"],
        "refused": ["sms"],
        "preferred_channel": None,
        "service_granted": [],
        "service_refused": [],
    }
    assert [r["type"] for r in await outbox_records(store.db, {"key": customer})] == SIGN_UP_PUBLISHED


async def test_an_idempotency_key_applies_once_and_refuses_other_content(api: tuple[httpx.AsyncClient, Store]) -> None:
    http, store = api
    customer = customer_id()
    key = {"Idempotency-Key": f"k-{customer}"}

    first = await http.post("/v1/customers", json=sign_up(customer), headers=key)
    repeat = await http.post("/v1/customers", json=sign_up(customer), headers=key)
    assert (first.status_code, repeat.status_code) == (201, 200)
    assert repeat.json() == first.json()

    reused = await http.post("/v1/customers", json=sign_up(customer_id()), headers=key)
    assert reused.status_code == 409 and reused.json()["title"] == "Idempotency-Key reused"
    assert [r["type"] for r in await outbox_records(store.db, {"key": customer})] == SIGN_UP_PUBLISHED


async def test_unknown_customer_and_invalid_payload_are_problems(api: tuple[httpx.AsyncClient, Store]) -> None:
    http, _ = api
    missing = await http.get("/v1/customers/C-nobody")
    assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM
    assert missing.json()["detail"] == "no customer C-nobody"
    assert (await http.get("/v1/customers/C-nobody/consents")).status_code == 404

    invalid = await http.post("/v1/customers", json={"customer_id": "C-1", "email": "not-an-email"})
    assert invalid.status_code == 422 and invalid.headers["content-type"] == PROBLEM
    assert {e["location"] for e in invalid.json()["errors"]} >= {"body.name", "body.email"}

    unknown_event = await http.post("/v1/events", json={"type": "crm.order.placed.v1", "id": "x"})
    assert unknown_event.status_code == 422


async def test_interactions_and_events_endpoints(api: tuple[httpx.AsyncClient, Store]) -> None:
    http, _ = api
    customer = customer_id()
    interaction = {"interaction_id": f"I-{customer}", "customer_id": customer, "kind": "call", "channel": "phone"}
    key = {"Idempotency-Key": f"i-{customer}"}
    assert (await http.post("/v1/interactions", json=interaction, headers=key)).status_code == 201
    assert (await http.post("/v1/interactions", json=interaction, headers=key)).status_code == 200
    conflict = await http.post("/v1/interactions", json={**interaction, "kind": "visit"})
    assert conflict.status_code == 409
    assert (await http.get(f"/v1/interactions/I-{customer}")).json()["kind"] == "call"

    event = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/channels/webshop",
        "type": "crm.customer.registered.v1",
        "time": "2026-11-20T10:00:00Z",
        "subject": customer,
        "data": sign_up(customer),
    }
    assert (await http.post("/v1/events", json=event)).json() == {"id": event["id"], "status": "applied"}
    assert (await http.post("/v1/events", json=event)).json() == {"id": event["id"], "status": "duplicate"}
    clash = {**event, "id": str(uuid.uuid4()), "data": sign_up(customer, name="Another Name")}
    rejected = await http.post("/v1/events", json=clash)
    assert rejected.status_code == 409 and rejected.headers["content-type"] == PROBLEM


async def test_referrals_endpoint_and_referral_events(api: tuple[httpx.AsyncClient, Store]) -> None:
    http, store = api
    customer = customer_id()
    referral = {"referral_id": f"R-{customer}", "customer_id": customer, "referred_customer_id": "C-friend"}
    key = {"Idempotency-Key": f"r-{customer}"}
    created = await http.post("/v1/referrals", json=referral, headers=key)
    assert created.status_code == 201 and created.json()["referred_customer_id"] == "C-friend"
    assert (await http.post("/v1/referrals", json=referral, headers=key)).status_code == 200
    assert (await http.post("/v1/referrals", json=referral)).status_code == 200
    conflict = await http.post("/v1/referrals", json={**referral, "referred_customer_id": "C-other"})
    assert conflict.status_code == 409 and conflict.headers["content-type"] == PROBLEM
    reused_key = await http.post("/v1/referrals", json={**referral, "referral_id": f"R2-{customer}"}, headers=key)
    assert reused_key.status_code == 409
    oneself = await http.post("/v1/referrals", json={**referral, "referred_customer_id": customer})
    assert oneself.status_code == 422
    assert len(await outbox_records(store.db, {"key": customer})) == 1

    event = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/channels/shop",
        "type": "crm.customer.referred.v1",
        "time": "2026-11-20T10:00:00Z",
        "subject": customer,
        "data": {**referral, "referral_id": f"R3-{customer}", "channel": "partner"},
    }
    assert (await http.post("/v1/events", json=event)).json() == {"id": event["id"], "status": "applied"}
    clash = {**event, "id": str(uuid.uuid4()), "data": {**event["data"], "channel": "web"}}
    assert (await http.post("/v1/events", json=clash)).status_code == 409
    assert len(await outbox_records(store.db, {"key": customer})) == 2


async def test_the_timeline_pages_in_event_time_order_and_filters_by_type(api: tuple[httpx.AsyncClient, Store]) -> None:
    http, store = api
    customer = customer_id()
    # Two events share a time, so the page boundary has to break the tie by event id.
    times = [T0 + timedelta(hours=2), T0, T0 + timedelta(hours=1), T0 + timedelta(hours=1)]
    events = [
        OrderPlacedEvent.create(
            OrderPlaced(customer_id=customer, order_id=f"O-{i}", currency="EUR", total=Decimal("1500.00")),
            source="/crm/sales",
            time=at,
        )
        for i, at in enumerate(times)
    ]
    for event in events:
        await handlers.record_timeline(store, event)
    expected = [e.id for e in sorted(events, key=lambda e: (e.time, e.id))]

    seen: list[dict[str, Any]] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 3, "order": "oldest", **({"cursor": cursor} if cursor else {})}
        page = (await http.get(f"/v1/customers/{customer}/timeline", params=params)).json()
        seen += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 2
    assert [e["event_id"] for e in seen] == expected
    first = next(e for e in seen if e["event_id"] == events[1].id)
    assert first["summary"] == "Order O-1 placed: 1500.00 EUR"
    assert first["data"]["total"] == "1500.00" and first["source"] == "/crm/sales"

    orders = await http.get(f"/v1/customers/{customer}/timeline", params={"type": "crm.order.placed.v1"})
    assert len(orders.json()["items"]) == 4
    none = await http.get(f"/v1/customers/{customer}/timeline", params={"type": "crm.order.paid.v1"})
    assert none.json() == {"items": [], "next_cursor": None}
    unknown = await http.get(f"/v1/customers/{customer}/timeline", params={"type": "crm.nope.v1"})
    assert unknown.status_code == 422 and unknown.headers["content-type"] == PROBLEM
    bad_cursor = await http.get(f"/v1/customers/{customer}/timeline", params={"cursor": "bm90LWpzb24="})
    assert bad_cursor.status_code == 400


async def test_a_consent_change_updates_the_profile_and_is_published_once(
    api: tuple[httpx.AsyncClient, Store],
) -> None:
    http, store = api
    customer = customer_id()
    assert (await http.post("/v1/customers", json=sign_up(customer))).status_code == 201

    refused = await http.put(f"/v1/customers/{customer}/consents/email", json={"granted": False})
    assert refused.status_code == 200, refused.text
    assert (refused.json()["granted"], refused.json()["refused"]) == ([], ["email", "sms"])
    again = await http.put(f"/v1/customers/{customer}/consents/email", json={"granted": False})
    assert again.json() == refused.json()
    sms = await http.put(f"/v1/customers/{customer}/consents/sms", json={"granted": True, "preferred": True})
    assert sms.json() == {
        "customer_id": customer,
        "granted": ["sms"],
        "refused": ["email"],
        "preferred_channel": "sms",
        "service_granted": [],
        "service_refused": [],
    }

    records = await outbox_records(store.db, {"key": customer})
    assert [r["type"] for r in records] == [
        *SIGN_UP_PUBLISHED,
        "crm.customer.consent_changed.v1",
        "crm.customer.consent_changed.v1",
    ]
    assert all(r["topic"] == "crm.customer.events" for r in records)

    missing = await http.put("/v1/customers/C-nobody/consents/email", json={"granted": True})
    assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM
    unknown_channel = await http.put(f"/v1/customers/{customer}/consents/pigeon", json={"granted": True})
    assert unknown_channel.status_code == 422
    contradiction = await http.put(
        f"/v1/customers/{customer}/consents/phone", json={"granted": False, "preferred": True}
    )
    assert contradiction.status_code == 422
