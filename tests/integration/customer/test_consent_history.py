"""Consents per channel and purpose on the real database: marketing and service answers are kept apart, every
answer received is in the history with its source and time (one that came too late marked not effective), and
the change is published with its purpose."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import httpx
import pytest

from crm_customer import handlers
from crm_customer.app import INDEXES, create_service
from crm_shared.events import ConsentChanged, ConsentChangedEvent, utc_now
from crm_shared.store import Store, outbox_records

from helpers import ADMIN_HEADERS

NewStore = Callable[..., Awaitable[Store]]


@pytest.fixture
async def api(new_store: NewStore) -> AsyncIterator[tuple[httpx.AsyncClient, Store]]:
    store = await new_store("customer_consents", INDEXES)
    app = create_service()
    app.state.runtime.store = store
    async with httpx.AsyncClient(
        headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://customer"
    ) as http:
        yield http, store


async def test_marketing_and_service_consents_have_one_history_with_source_and_time(
    api: tuple[httpx.AsyncClient, Store],
) -> None:
    http, store = api
    customer = f"C-{uuid.uuid4().hex[:8]}"
    signed_up = await http.post(
        "/v1/customers",
        json={
            "customer_id": customer,
            "name": "Ada Lovelace",
            "consents": [
                {"channel": "email", "granted": True},
                {"channel": "sms", "granted": True, "purpose": "service"},
            ],
        },
    )
    assert signed_up.status_code == 201, signed_up.text
    refused = await http.put(f"/v1/customers/{customer}/consents/sms", json={"granted": False, "purpose": "service"})
    assert refused.status_code == 200, refused.text
    assert (refused.json()["granted"], refused.json()["service_refused"]) == (["email"], ["sms"])
    post = await http.put(f"/v1/customers/{customer}/consents/post", json={"granted": False})
    assert post.json()["refused"] == ["post"]
    bad = await http.put(
        f"/v1/customers/{customer}/consents/sms", json={"granted": True, "purpose": "service", "preferred": True}
    )
    assert bad.status_code == 422 and "marketing choice" in bad.json()["detail"]

    # A channel system's service grant from a week ago arrives late: recorded, not effective.
    stale = ConsentChangedEvent.create(
        ConsentChanged(customer_id=customer, channel="sms", granted=True, purpose="service"),
        source="/channels/call-centre",
        time=utc_now() - timedelta(days=7),
    )
    await handlers.change_consent(store, stale)
    consents = (await http.get(f"/v1/customers/{customer}/consents")).json()
    assert consents["service_refused"] == ["sms"]

    history = (await http.get(f"/v1/customers/{customer}/consents/history")).json()["items"]
    assert [(h["channel"], h["purpose"], h["granted"], h["source"], h["effective"]) for h in history] == [
        ("sms", "service", True, "/channels/call-centre", False),
        ("email", "marketing", True, "/crm/customer/api", True),
        ("sms", "service", True, "/crm/customer/api", True),
        ("sms", "service", False, "/crm/customer/api", True),
        ("post", "marketing", False, "/crm/customer/api", True),
    ]
    service_only = (await http.get(f"/v1/customers/{customer}/consents/history", params={"purpose": "service"})).json()
    assert [h["granted"] for h in service_only["items"]] == [True, True, False]
    published = [
        (json.loads(r["value"])["data"]["channel"], json.loads(r["value"])["data"]["purpose"])
        for r in await outbox_records(store.db, {"type": "crm.customer.consent_changed.v1", "key": customer})
    ]
    assert published == [("sms", "service"), ("post", "marketing")]
