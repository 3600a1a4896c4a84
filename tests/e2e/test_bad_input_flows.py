"""Bad input across the real services: a grant dated ahead never outranks a refusal made now."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from crm_shared.platform import Platform

from helpers import eventually


def consent_event(customer: str, at: datetime) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/channels/webshop",
        "type": "crm.customer.consent_changed.v1",
        "time": at.isoformat(),
        "subject": customer,
        "data": {"customer_id": customer, "channel": "email", "granted": True},
    }


async def test_a_refusal_made_now_beats_a_grant_dated_ahead_in_every_service(
    platform: Platform, http: httpx.AsyncClient
) -> None:
    customer_api, marketing_api = platform.url("customer"), platform.url("marketing")
    customer = f"C-E2E-{uuid.uuid4().hex[:8]}"
    registered = await http.post(
        f"{customer_api}/v1/customers",
        json={
            "customer_id": customer,
            "name": "Test Person",
            "consents": [{"channel": "email", "granted": False}, {"channel": "sms", "granted": True}],
        },
    )
    assert registered.status_code == 201, registered.text

    far = await http.post(f"{customer_api}/v1/events", json=consent_event(customer, datetime(9999, 12, 30, tzinfo=UTC)))
    assert far.status_code == 422 and "in the future" in far.json()["detail"]
    ahead = await http.post(
        f"{customer_api}/v1/events", json=consent_event(customer, datetime.now(UTC) + timedelta(minutes=4))
    )
    assert ahead.status_code == 202, ahead.text
    refused = await http.put(f"{customer_api}/v1/customers/{customer}/consents/email", json={"granted": False})
    assert refused.status_code == 200 and refused.json()["refused"] == ["email"]
    # One more change after the refusal, on the same partition: once marketing shows it, it has seen both.
    preferred = await http.put(
        f"{customer_api}/v1/customers/{customer}/consents/sms", json={"granted": True, "preferred": True}
    )
    assert preferred.status_code == 200 and preferred.json()["preferred_channel"] == "sms"

    async def marketing_caught_up() -> Any:
        answer = await http.get(f"{marketing_api}/v1/customers/{customer}/contact-preferences")
        prefs = answer.json() if answer.status_code == 200 else None
        return prefs if prefs and prefs.get("preferred_channel") == "sms" else None

    prefs = await eventually(marketing_caught_up, what="marketing to learn every consent change")
    assert "email" in prefs["refused"] and "email" not in prefs["granted"]
    consents = (await http.get(f"{customer_api}/v1/customers/{customer}/consents")).json()
    assert consents["refused"] == ["email"] and consents["granted"] == ["sms"]
