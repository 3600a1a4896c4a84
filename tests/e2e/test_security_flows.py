"""Security across the five service processes: nothing open, one key known everywhere, no personal data in logs."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from crm_shared.platform import Platform
from crm_shared.settings import SERVICES
from crm_shared.topics import Topic

from helpers import eventually

Publish = Callable[[str, Any, str], Awaitable[None]]


async def test_every_service_refuses_an_anonymous_call_and_answers_its_health_checks(platform: Platform) -> None:
    async with httpx.AsyncClient(timeout=10) as anonymous:
        for name in SERVICES:
            document = (await anonymous.get(f"{platform.url(name)}/openapi.json")).json()
            path = next(p for p, item in document["paths"].items() if "get" in item and "{" not in p and "/v1/" in p)
            refused = await anonymous.get(f"{platform.url(name)}{path}")
            assert refused.status_code == 401, (name, path, refused.text)
            assert "WWW-Authenticate" in refused.headers
            assert (await anonymous.get(f"{platform.url(name)}/healthz")).status_code == 200


async def test_a_key_issued_on_one_service_is_accepted_by_all_five(http: httpx.AsyncClient, platform: Platform) -> None:
    answer = await http.post(
        f"{platform.url('sales')}/v1/admin/keys", json={"name": "e2e-reader", "scopes": ["scores:read"]}
    )
    assert answer.status_code == 201, answer.text
    key = answer.json()["key"]

    async def known_everywhere() -> bool:
        for name in SERVICES:
            whoami = await http.get(f"{platform.url(name)}/v1/auth/whoami", headers={"X-API-Key": key})
            if whoami.status_code != 200:
                return False
        return True

    await eventually(known_everywhere, timeout=20, what="the key to reach every service")


async def test_the_logs_carry_no_name_email_or_phone_in_clear(
    http: httpx.AsyncClient, platform: Platform, publish: Publish
) -> None:
    marker = uuid.uuid4().hex[:10]
    customer = f"C-pii-{marker}"
    name, email, phone = (
        f"Zelda Pii{marker}",
        f"zelda.{marker}@example.com",
        f"+44 20 7946 {int(marker, 16) % 10000:04d}",
    )
    registered = await http.post(
        f"{platform.url('customer')}/v1/customers",
        json={"customer_id": customer, "name": name, "email": email, "phone": phone, "consents": []},
    )
    assert registered.status_code == 201, registered.text
    # The same person through the ingest topic, once refused (a bad consent) and once as a duplicate sign-up.
    event = {
        "specversion": "1.0",
        "id": f"pii-{marker}",
        "source": "/channels/webshop",
        "type": "crm.customer.registered.v1",
        "time": "2026-11-20T10:00:00Z",
        "subject": customer,
        "data": {"customer_id": customer, "name": name, "email": email, "phone": phone, "consents": []},
    }
    bad = {**event, "id": f"pii-bad-{marker}", "data": {**event["data"], "consents": [{"channel": "pigeon"}]}}
    await publish(Topic.INGEST_CUSTOMERS, bad, customer)
    await publish(Topic.INGEST_CUSTOMERS, json.dumps(bad).encode()[:-3], customer)
    await publish(Topic.INGEST_CUSTOMERS, event, customer)
    # A refused API call that carries them too.
    await http.post(
        f"{platform.url('customer')}/v1/customers",
        json={"customer_id": customer, "name": name, "email": email, "phone": "not a phone"},
    )

    async def timeline_has_it() -> bool:
        answer = await http.get(f"{platform.url('customer')}/v1/customers/{customer}/timeline")
        return answer.status_code == 200 and bool(answer.json()["items"])

    await eventually(timeline_has_it, timeout=20, what="the registration in the timeline")

    async def the_bad_records_were_logged() -> bool:
        text = (platform.log_dir / "customer.log").read_text(errors="replace")
        return f"pii-bad-{marker}" in text or text.count(customer) >= 2

    await eventually(the_bad_records_were_logged, timeout=20, what="the rejections in the customer log")
    for log_file in sorted(platform.log_dir.glob("*.log")):
        text = log_file.read_text(errors="replace")
        for secret in (name, email, phone, f"Pii{marker}", f"zelda.{marker}"):
            assert secret not in text, f"{log_file.name} carries {secret!r} in clear"
