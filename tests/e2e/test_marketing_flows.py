"""Marketing across the real services: a consent change reaches marketing, a complaint is answered once."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from crm_shared.platform import Platform
from crm_shared.topics import Topic

from helpers import eventually

Publish = Callable[[str, Any, str], Awaitable[None]]


async def get_json(http: httpx.AsyncClient, url: str) -> Any:
    response = await http.get(url)
    return response.json() if response.status_code == 200 else None


async def test_a_consent_refused_in_the_customer_service_is_never_used_by_marketing(
    platform: Platform, http: httpx.AsyncClient, publish: Publish
) -> None:
    customer = f"C-E2E-{uuid.uuid4().hex[:8]}"
    registered = await http.post(
        f"{platform.url('customer')}/v1/customers",
        json={
            "customer_id": customer,
            "name": "Test Person",
            "consents": [{"channel": "email", "granted": True}, {"channel": "sms", "granted": True}],
            "preferred_channel": "email",
        },
    )
    assert registered.status_code == 201, registered.text
    refused = await http.put(
        f"{platform.url('customer')}/v1/customers/{customer}/consents/email", json={"granted": False}
    )
    assert refused.status_code == 200 and refused.json()["refused"] == ["email"]

    async def marketing_knows() -> Any:
        prefs = await get_json(http, f"{platform.url('marketing')}/v1/customers/{customer}/contact-preferences")
        return prefs if prefs and prefs["refused"] == ["email"] else None

    await eventually(marketing_knows, what="marketing to learn the refusal")

    complaint = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/channels/call-centre",
        "type": "crm.complaint.filed.v1",
        "time": "2026-11-21T09:00:00Z",
        "subject": customer,
        "data": {
            "customer_id": customer,
            "complaint_id": f"T-{customer}",
            "dimension": "service",
            "severity": "medium",
            "summary": "Late delivery.",
        },
    }
    for _ in range(2):
        await publish(Topic.INGEST_TICKETS, complaint, customer)

    async def recovery() -> list[dict[str, Any]]:
        page = await get_json(http, f"{platform.url('marketing')}/v1/customers/{customer}/enrolments")
        return [e for e in (page or {"items": []})["items"] if e["journey"] == "complaint-recovery"]

    [enrolment] = await eventually(recovery, what="the complaint-recovery enrolment")
    assert (enrolment["status"], enrolment["channel"], enrolment["episode"]) == ("contacted", "sms", f"T-{customer}")


async def test_a_segment_handed_over_reaches_sales_as_leads(platform: Platform, http: httpx.AsyncClient) -> None:
    customer = f"C-E2E-{uuid.uuid4().hex[:8]}"
    registered = await http.post(
        f"{platform.url('customer')}/v1/customers",
        json={"customer_id": customer, "name": "Test Person", "consents": [{"channel": "phone", "granted": True}]},
    )
    assert registered.status_code == 201, registered.text

    async def marketing_knows() -> Any:
        return await get_json(http, f"{platform.url('marketing')}/v1/customers/{customer}/contact-preferences")

    await eventually(marketing_knows, what="marketing to learn the consents")
    segment_id = f"phone-{uuid.uuid4().hex[:6]}"
    defined = await http.post(
        f"{platform.url('marketing')}/v1/segments",
        json={
            "segment_id": segment_id,
            "name": "Reachable by phone",
            "definition": {"all": [{"field": "consent", "op": "contains", "value": "phone"}]},
        },
    )
    assert defined.status_code == 201, defined.text
    handed = await http.post(f"{platform.url('marketing')}/v1/segments/{segment_id}/hand-over")
    assert handed.status_code == 200 and handed.json()["handed_over"] >= 1

    async def lead() -> list[dict[str, Any]]:
        page = await get_json(http, f"{platform.url('sales')}/v1/customers/{customer}/leads")
        return page["items"] if page else []

    [taken] = await eventually(lead, what="sales to take the lead")
    assert (taken["segment_id"], taken["status"]) == (segment_id, "new")
