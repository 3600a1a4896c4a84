"""Merges, unmerges and erasures across the five services as processes on the real broker and database.

Two customers with orders and a complaint each; a person confirms they are one: sales' orders, support's
tickets and scoring's facts move under the survivor, which scoring rescores; an order that still names the
merged id goes to the survivor. The undo gives each customer back what is theirs, the order since included.
An erasure reaches every service, each confirms, and the customer's email is left in no service's database.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
from pymongo import AsyncMongoClient

from crm_shared.platform import Platform
from crm_shared.settings import SERVICES
from crm_shared.topics import Topic

from helpers import eventually

Publish = Callable[[str, Any, str], Awaitable[None]]


def cloud_event(type_: str, customer_id: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/channels/webshop",
        "type": type_,
        "time": datetime.now(UTC).isoformat(),
        "subject": customer_id,
        "data": {"customer_id": customer_id, **data},
    }


async def _order(publish: Publish, customer_id: str, order_id: str, total: str) -> None:
    placed = {"order_id": order_id, "currency": "EUR", "total": total}
    await publish(Topic.INGEST_ORDERS, cloud_event("crm.order.placed.v1", customer_id, placed), customer_id)


async def _json(http: httpx.AsyncClient, url: str) -> Any:
    answer = await http.get(url)
    return answer.json() if answer.status_code == 200 else None


async def test_a_merge_every_service_follows_an_undo_that_restores_both_and_an_erasure_everywhere(
    platform: Platform, http: httpx.AsyncClient, publish: Publish, backend: Any
) -> None:
    customer, sales, support, scoring = (platform.url(s) for s in ("customer", "sales", "support", "scoring"))
    marker = uuid.uuid4().hex[:8]
    survivor, merged = f"C-sv-{marker}", f"C-mg-{marker}"
    email = f"grace.{marker}@example.com"
    for customer_id, address in ((survivor, email), (merged, f"g.hopper.{marker}@example.org")):
        body = {"customer_id": customer_id, "name": "Grace Hopper", "email": address, "consents": []}
        assert (await http.post(f"{customer}/v1/customers", json=body)).status_code == 201
    await _order(publish, survivor, f"O-{survivor}", "100.00")
    await _order(publish, merged, f"O-{merged}", "50.00")
    complaint = {
        "complaint_id": f"K-{merged}",
        "dimension": "product",
        "severity": "high",
        "summary": f"The kettle leaks; write to {email}",
    }
    await publish(Topic.INGEST_TICKETS, cloud_event("crm.complaint.filed.v1", merged, complaint), merged)

    async def scores(customer_id: str, frequency: int) -> Any:
        found = await _json(http, f"{scoring}/v1/customers/{customer_id}/scores")
        return found if found and found["frequency"] == frequency else None

    async def tickets_of(customer_id: str) -> list[str]:
        found = await _json(http, f"{support}/v1/tickets?customer_id={customer_id}")
        return [t["ticket_id"] for t in (found or {}).get("items", [])]

    async def orders_of(customer_id: str) -> list[str]:
        found = await _json(http, f"{sales}/v1/customers/{customer_id}/orders")
        return sorted(o["order_id"] for o in (found or {}).get("items", []))

    await eventually(lambda: scores(survivor, 1), what="the survivor scored")
    await eventually(lambda: scores(merged, 1), what="the other customer scored")
    ticket = (await eventually(lambda: tickets_of(merged), what="the complaint's ticket"))[0]

    answer = await http.post(f"{customer}/v1/customers/{survivor}/merges", json={"merged_id": merged})
    assert answer.status_code == 201, answer.text
    merge_id = answer.json()["merge_id"]

    async def applied(step: str) -> Any:
        view = await _json(http, f"{customer}/v1/merges/{merge_id}")
        done = set((view or {}).get("applied", {}).get(step, {}))
        return view if done >= set(SERVICES) else None

    view = await eventually(lambda: applied("merge"), timeout=60, what="every service applied the merge")
    assert view["pending"] == []
    assert await orders_of(survivor) == sorted([f"O-{survivor}", f"O-{merged}"]) and await orders_of(merged) == []
    assert ticket in await tickets_of(survivor) and await tickets_of(merged) == []
    combined = await eventually(lambda: scores(survivor, 2), what="the survivor rescored")
    assert Decimal(combined["monetary"]) == Decimal("150")
    assert (await http.get(f"{scoring}/v1/customers/{merged}/scores")).status_code == 404

    # The web shop still knows the merged id: its next order is the survivor's.
    await _order(publish, merged, f"O-{merged}-2", "30.00")
    after = await eventually(lambda: scores(survivor, 3), what="an order naming the merged id scored for the survivor")
    assert Decimal(after["monetary"]) == Decimal("180")

    undone = await http.post(f"{customer}/v1/merges/{merge_id}/undo")
    assert undone.status_code == 200, undone.text
    await eventually(lambda: applied("unmerge"), timeout=60, what="every service applied the undo")
    assert await orders_of(survivor) == [f"O-{survivor}"]
    assert await orders_of(merged) == sorted([f"O-{merged}", f"O-{merged}-2"])
    assert ticket in await tickets_of(merged) and ticket not in await tickets_of(survivor)
    own = await eventually(lambda: scores(survivor, 1), what="the survivor scored on its own orders again")
    theirs = await eventually(lambda: scores(merged, 2), what="the merged customer scored on its orders again")
    assert Decimal(own["monetary"]) == Decimal("100") and Decimal(theirs["monetary"]) == Decimal("80")

    # The merged customer asks to be forgotten: every service erases, and confirms.
    erased = await http.delete(f"{customer}/v1/customers/{merged}/personal-data")
    assert erased.status_code == 200, erased.text
    erasure_id = erased.json()["erasure_id"]

    async def complete() -> Any:
        status = await _json(http, f"{customer}/v1/erasures/{erasure_id}")
        return status if status and status["complete"] else None

    status = await eventually(complete, timeout=60, what="the erasure confirmed by every service")
    assert set(status["confirmed"]) == set(SERVICES) and status["pending"] == []
    # The survivor's email was in the merged customer's complaint: support held it (and the timeline, and the
    # outbox that published it); now only the survivor's own profile does.
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(backend.mongo_uri, tz_aware=True)
    found: list[str] = []
    try:
        for service in SERVICES:
            db = client[f"crm_{service}"]
            for name in await db.list_collection_names():
                async for doc in db[name].find({}):
                    if email in json.dumps(doc, default=str):
                        found.append(f"crm_{service}.{name} {doc.get('_id')}")
    finally:
        await client.close()
    assert found == [f"crm_customer.customers {survivor}"]
    # What counts is kept under the pseudonym: the orders (revenue), the ticket, the scores.
    pseudonym = status["pseudonym"]
    assert await orders_of(pseudonym) == sorted([f"O-{merged}", f"O-{merged}-2"]) and await orders_of(merged) == []
    assert ticket in await tickets_of(pseudonym) and await tickets_of(merged) == []
    kept = await eventually(lambda: scores(pseudonym, 2), what="the scores kept under the pseudonym")
    assert Decimal(kept["monetary"]) == Decimal("80")
    assert (await http.get(f"{scoring}/v1/customers/{merged}/scores")).status_code == 404
