"""The paths that prove the platform, across the five real services on the real broker and database."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from crm_shared.platform import Platform
from crm_shared.topics import Topic

from helpers import TopicReader, eventually

Publish = Callable[[str, Any, str], Awaitable[None]]


def cloud_event(
    type_: str, customer_id: str, data: dict[str, Any], time: str = "2026-11-20T10:00:00Z"
) -> dict[str, Any]:
    """A CloudEvent as a channel system writes it: plain JSON, nothing from this project's code."""
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/channels/webshop",
        "type": type_,
        "time": time,
        "subject": customer_id,
        "data": {"customer_id": customer_id, **data},
    }


def order(customer_id: str, order_id: str, total: str, time: str = "2026-11-20T10:00:00Z") -> dict[str, Any]:
    return cloud_event(
        "crm.order.placed.v1", customer_id, {"order_id": order_id, "currency": "EUR", "total": total}, time
    )


async def register(http: httpx.AsyncClient, platform: Platform, customer_id: str, consents: dict[str, bool]) -> None:
    response = await http.post(
        f"{platform.url('customer')}/v1/customers",
        json={
            "customer_id": customer_id,
            "name": "Test Person",
            "email": f"{customer_id.lower()}@example.com",
            "consents": [{"channel": c, "granted": g} for c, g in consents.items()],
        },
    )
    assert response.status_code in (200, 201), response.text

    async def marketing_knows() -> bool:
        r = await http.get(f"{platform.url('marketing')}/v1/customers/{customer_id}/contact-preferences")
        return r.status_code == 200

    await eventually(marketing_knows, what=f"marketing to learn {customer_id}'s consents")


async def get_json(http: httpx.AsyncClient, url: str) -> Any:
    response = await http.get(url)
    return response.json() if response.status_code == 200 else None


async def enrolments(http: httpx.AsyncClient, platform: Platform, customer_id: str) -> list[dict[str, Any]]:
    page = await get_json(http, f"{platform.url('marketing')}/v1/customers/{customer_id}/enrolments")
    return page["items"] if page else []


async def test_an_order_updates_scores_changes_the_tier_enrols_once_and_shows_on_the_timeline(
    platform: Platform, http: httpx.AsyncClient, publish: Publish
) -> None:
    customer = f"C-E2E-{uuid.uuid4().hex[:8]}"
    await register(http, platform, customer, {"email": True})

    await publish(Topic.INGEST_ORDERS, order(customer, f"O-{customer}", "1500.00"), customer)

    async def high_value() -> Any:
        scores = await get_json(http, f"{platform.url('scoring')}/v1/customers/{customer}/scores")
        return scores if scores and scores["value_tier"] == "high_value" else None

    scores = await eventually(high_value, what="the customer's tier to become high_value")
    assert scores["frequency"] == 1
    assert scores["monetary"] in ("1500.00", "1500")

    changes = await get_json(http, f"{platform.url('scoring')}/v1/customers/{customer}/segment-changes")
    tier_changes = [c for c in changes["items"] if c["dimension"] == "value_tier"]
    assert [(c["old"], c["new"]) for c in tier_changes] == [("potential", "high_value")]

    async def enrolled() -> list[dict[str, Any]]:
        found = await enrolments(http, platform, customer)
        return found if {e["journey"] for e in found} >= {"welcome", "high-value-thank-you"} else []

    found = await eventually(enrolled, what="welcome and thank-you enrolments")
    assert all(e["channel"] == "email" and e["status"] == "contacted" for e in found)

    async def timeline_complete() -> list[str]:
        page = await get_json(http, f"{platform.url('customer')}/v1/customers/{customer}/timeline?limit=100")
        types = [entry["type"] for entry in page["items"]] if page else []
        wanted = {"crm.order.placed.v1", "crm.segment.changed.v1", "crm.campaign.enrolled.v1"}
        return types if wanted <= set(types) else []

    await eventually(timeline_complete, what="the order, the tier change and the enrolment on the 360 timeline")
    page = await get_json(http, f"{platform.url('customer')}/v1/customers/{customer}/timeline?limit=100")
    entries = {e["event_id"]: (i, e) for i, e in enumerate(page["items"])}
    # Newest first, yet at one instant a cause lists before what it caused: the order before its segment changes.
    caused_at_once = [
        (entries[e["cause"]][0], i)
        for i, e in enumerate(page["items"])
        if e["cause"] in entries and entries[e["cause"]][1]["time"] == e["time"]
    ]
    assert caused_at_once and all(cause < effect for cause, effect in caused_at_once), page["items"]
    card = await get_json(http, f"{platform.url('customer')}/v1/customers/{customer}/summary")
    assert card["scores"]["value_tier"] == "high_value" and card["orders"] == 1
    assert card["last_order"]["order_id"] == f"O-{customer}"


async def test_a_complaint_from_a_high_value_customer_triggers_service_recovery(
    platform: Platform, http: httpx.AsyncClient, publish: Publish
) -> None:
    customer = f"C-E2E-{uuid.uuid4().hex[:8]}"
    await register(http, platform, customer, {"email": False, "sms": True})
    await publish(Topic.INGEST_ORDERS, order(customer, f"O-{customer}", "3000.00"), customer)

    async def high_value() -> bool:
        scores = await get_json(http, f"{platform.url('scoring')}/v1/customers/{customer}/scores")
        return bool(scores and scores["value_tier"] == "high_value")

    await eventually(high_value, what="high value before the complaint")
    before = await get_json(http, f"{platform.url('scoring')}/v1/customers/{customer}/scores")

    complaint = cloud_event(
        "crm.complaint.filed.v1",
        customer,
        {"complaint_id": f"T-{customer}", "dimension": "service", "severity": "high", "summary": "No-show twice."},
        time="2026-11-21T09:00:00Z",
    )
    await publish(Topic.INGEST_TICKETS, complaint, customer)

    async def at_risk() -> Any:
        scores = await get_json(http, f"{platform.url('scoring')}/v1/customers/{customer}/scores")
        return scores if scores and scores["churn_risk_band"] == "high" else None

    after = await eventually(at_risk, what="churn risk band high after the complaint")
    assert after["satisfaction"] < (before["satisfaction"] if before["satisfaction"] is not None else 1.0)
    assert after["churn_risk"] > before["churn_risk"]

    async def recovered() -> list[dict[str, Any]]:
        return [e for e in await enrolments(http, platform, customer) if e["journey"] == "service-recovery"]

    recovery = await eventually(recovered, what="a service-recovery enrolment")
    assert len(recovery) == 1
    assert recovery[0]["channel"] == "sms"


async def test_a_redelivered_event_is_applied_once(
    platform: Platform, http: httpx.AsyncClient, publish: Publish
) -> None:
    customer = f"C-E2E-{uuid.uuid4().hex[:8]}"
    await register(http, platform, customer, {"email": True})
    event = order(customer, f"O-{customer}", "40.00")
    for _ in range(3):
        await publish(Topic.INGEST_ORDERS, event, customer)
    # A later order from the same customer marks the end of the redeliveries (one partition per key).
    await publish(Topic.INGEST_ORDERS, order(customer, f"O2-{customer}", "60.00", "2026-11-22T10:00:00Z"), customer)

    async def second_order_scored() -> Any:
        scores = await get_json(http, f"{platform.url('scoring')}/v1/customers/{customer}/scores")
        return scores if scores and scores["frequency"] >= 2 else None

    scores = await eventually(second_order_scored, what="both orders scored")
    assert scores["frequency"] == 2
    assert scores["monetary"] in ("100.00", "100")

    async def welcomed() -> list[dict[str, Any]]:
        return [e for e in await enrolments(http, platform, customer) if e["journey"] == "welcome"]

    assert len(await eventually(welcomed, what="the welcome enrolment")) == 1
    orders = await get_json(http, f"{platform.url('sales')}/v1/customers/{customer}/orders")
    assert len(orders["items"]) == 2


async def test_a_malformed_record_is_dead_lettered_and_the_next_good_one_processed(
    platform: Platform, http: httpx.AsyncClient, publish: Publish, backend: Any
) -> None:
    customer = f"C-E2E-{uuid.uuid4().hex[:8]}"
    bad_total = order(customer, f"BAD-{customer}", "-5")
    await publish(Topic.INGEST_ORDERS, b"{not json at all", customer)
    await publish(Topic.INGEST_ORDERS, bad_total, customer)
    good = order(customer, f"O-{customer}", "12.00")
    await publish(Topic.INGEST_ORDERS, good, customer)

    async def good_order_stored() -> Any:
        return await get_json(http, f"{platform.url('sales')}/v1/orders/O-{customer}")

    await eventually(good_order_stored, what="the good order after two bad records")

    async with TopicReader(backend.kafka_bootstrap, Topic.DEADLETTER) as reader:
        garbage = await reader.find(lambda r: r.key == customer.encode() and b"not JSON" in r.value)
        invalid = await reader.find(lambda r: r.key == customer.encode() and bad_total["id"].encode() in r.value)
    letter = json.loads(garbage.value)
    assert letter["source_topic"] == Topic.INGEST_ORDERS
    # Not JSON, so nothing in it can be found to mask: the letter carries its size and digest, the
    # service's own database the bytes.
    assert letter["original_value_base64"] is None and letter["original_text"] is None
    assert letter["original_size"] == len(b"{not json at all")
    assert letter["original_sha256"] == hashlib.sha256(b"{not json at all").hexdigest()
    assert letter["original_kept_in"] == "crm_sales.deadletters"
    assert isinstance(letter["partition"], int) and isinstance(letter["offset"], int)
    assert letter["service"] == "sales"
    invalid_letter = json.loads(invalid.value)
    assert "data.total" in invalid_letter["reason"] and "plain decimal string" in invalid_letter["reason"]
    assert base64.b64decode(invalid_letter["original_value_base64"]) == json.dumps(bad_total).encode()

    # What an operator sees: `crm deadletters` prints both, with their reasons and without the raw bytes.
    cli = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "crm_shared.cli",
        "deadletters",
        "--limit",
        "1000",
        env={**os.environ, "CRM_KAFKA_BOOTSTRAP": backend.kafka_bootstrap},
        stdout=asyncio.subprocess.PIPE,
    )
    stdout, _ = await asyncio.wait_for(cli.communicate(), 60)
    assert cli.returncode == 0
    mine = [letter for line in stdout.decode().splitlines() if (letter := json.loads(line))["key"] == customer]
    assert [letter["offset"] for letter in mine] == sorted([letter["offset"] for letter in mine])
    assert {letter["event_id"] for letter in mine} == {None, bad_total["id"]}
    assert all("original_value_base64" not in letter and letter["reason"] for letter in mine)
