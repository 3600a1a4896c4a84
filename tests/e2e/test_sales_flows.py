"""Sales force automation across the real services: a lead converted (twice) becomes one customer in the
customer service with the conversion on its timeline, and a call done with the customer reaches the timeline
and scoring's interactions; none of sales' new event types is dead-lettered by a consumer that does not use it."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from crm_shared.platform import Platform
from crm_shared.topics import Topic

from helpers import TopicReader, eventually


async def test_a_converted_lead_is_one_customer_and_a_call_done_with_them_an_interaction(
    platform: Platform, http: httpx.AsyncClient, backend: Any
) -> None:
    sales, run = platform.url("sales"), uuid.uuid4().hex[:8]
    lead = await http.post(
        f"{sales}/v1/leads",
        json={
            "source": "field_visit",
            "name": "Grace Hopper",
            "email": f"grace-{run}@example.com",
            "company": f"Co {run}",
        },
    )
    assert lead.status_code == 201, lead.text
    lead_id = lead.json()["lead_id"]
    convert = {"currency": "EUR", "amount": "900.00"}
    first, again = await asyncio.gather(
        *(http.post(f"{sales}/v1/leads/{lead_id}/convert", json=convert) for _ in range(2))
    )
    assert sorted((first.status_code, again.status_code)) == [200, 201], (first.text, again.text)
    assert first.json()["opportunity_id"] == again.json()["opportunity_id"]
    customer = first.json()["customer_id"]

    async def registered() -> Any:
        answer = await http.get(f"{platform.url('customer')}/v1/customers/{customer}")
        return answer.json() if answer.status_code == 200 else None

    await eventually(registered, what=f"the customer service to register {customer} from the conversion")

    call = await http.post(
        f"{sales}/v1/activities",
        json={"kind": "call", "title": "Follow-up", "due_at": "2026-11-20T10:00:00Z", "customer_id": customer},
    )
    assert call.status_code == 201, call.text
    done = await http.post(f"{sales}/v1/activities/{call.json()['activity_id']}/complete", json={"outcome": "Keen"})
    assert done.status_code == 200, done.text

    async def counted() -> Any:
        answer = await http.get(f"{platform.url('scoring')}/v1/customers/{customer}/scores")
        return answer.json() if answer.status_code == 200 and answer.json()["interactions"] == 1 else None

    await eventually(counted, what="scoring to count the call as an interaction")

    async def on_the_timeline() -> list[str]:
        answer = await http.get(f"{platform.url('customer')}/v1/customers/{customer}/timeline?limit=100")
        types = [e["type"] for e in answer.json()["items"]] if answer.status_code == 200 else []
        wanted = {"crm.lead.converted.v1", "crm.opportunity.opened.v1", "crm.activity.completed.v1"}
        return types if wanted <= set(types) else []

    types = await eventually(on_the_timeline, what="the conversion, the opportunity and the call on the timeline")
    assert types.count("crm.lead.converted.v1") == 1 and types.count("crm.opportunity.opened.v1") == 1

    # Scoring and marketing saw the opportunity, the activities and the conversion too, and ignored them.
    async with TopicReader(backend.kafka_bootstrap, Topic.DEADLETTER) as reader:
        letters = [r for r in await reader.drain() if r.key == customer.encode()]
    assert letters == [], [r.value[:300] for r in letters]


async def test_a_lead_who_is_a_customer_is_refused_until_the_customer_is_erased(
    platform: Platform, http: httpx.AsyncClient, backend: Any
) -> None:
    customer_api, sales, run = platform.url("customer"), platform.url("sales"), uuid.uuid4().hex[:8]
    customer = f"C-match-{run}"
    signed_up = await http.post(
        f"{customer_api}/v1/customers",
        json={
            "customer_id": customer,
            "name": "Ada Lovelace",
            "email": f"ada-{run}@example.com",
            "phone": "+44 20 7946 0018",
        },
    )
    assert signed_up.status_code == 201, signed_up.text
    # The same person as sales writes them down: other case and spacing, the phone in another form.
    lead = {"source": "field_visit", "name": "A. Lovelace", "email": f"  ADA-{run}@Example.com "}
    by_phone = {"source": "inbound", "name": "Ada", "phone": "0044 (20) 7946-0018"}

    async def refused(body: dict[str, Any]) -> Any:
        # Before sales has the keys the lead is taken (and then refused as a duplicate lead): a customer's match
        # is said first, so the wait ends once the keys arrive either way.
        answer = await http.post(f"{sales}/v1/leads", json=body)
        assert answer.status_code in (201, 409), answer.text
        return answer.json() if "existing_customer_id" in answer.json() else None

    problem = await eventually(lambda: refused(lead), what="sales to learn the customer's match keys")
    assert (problem["existing_customer_id"], problem["title"]) == (customer, "Lead is a customer")
    assert f"ada-{run}" not in problem["detail"].lower()
    phone_refused = await http.post(f"{sales}/v1/leads", json=by_phone)
    assert phone_refused.status_code == 409 and phone_refused.json()["existing_customer_id"] == customer

    erased = await http.delete(f"{customer_api}/v1/customers/{customer}/personal-data")
    assert erased.status_code == 200, erased.text

    async def accepted() -> Any:
        answer = await http.post(f"{sales}/v1/leads", json=by_phone)
        assert answer.status_code in (201, 409), answer.text
        return answer.json() if answer.status_code == 201 else None

    await eventually(accepted, what="sales to drop the erased customer's match keys")

    async with TopicReader(backend.kafka_bootstrap, Topic.DEADLETTER) as reader:
        letters = [r for r in await reader.drain() if r.key == customer.encode()]
    assert letters == [], [r.value[:300] for r in letters]
