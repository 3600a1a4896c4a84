"""The demo data `crm run` loads, on the real services: every view has something to show, and loading it on
every start adds nothing twice."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from crm_shared.cli import load_demo_data
from crm_shared.platform import Platform

from helpers import ADMIN_KEY, eventually


async def test_the_demo_data_fills_each_view_once_however_often_it_is_loaded(
    platform: Platform, http: httpx.AsyncClient
) -> None:
    for _ in range(2):
        await asyncio.to_thread(load_demo_data, platform, ADMIN_KEY)
    sales = platform.url("sales")

    customer = await http.get(f"{platform.url('customer')}/v1/customers/C-1001")
    assert customer.status_code == 200 and customer.json()["name"] == "Ada Demo"

    async def demo_leads() -> Any:
        leads = (await http.get(f"{sales}/v1/leads", params={"limit": 200})).json()["items"]
        return [lead for lead in leads if "Demo" in (lead["name"] or lead["company"] or "")]

    leads = await eventually(demo_leads, what="the demo leads")
    # The demo territory's rule shared them round-robin between its two reps.
    assert sorted(lead["owner_id"] for lead in leads) == ["rep-1", "rep-2"]
    opportunities = (await http.get(f"{sales}/v1/opportunities", params={"limit": 200})).json()["items"]
    assert [o["amount"] for o in opportunities if o["name"] == "Second machine for Ada Demo"] == ["4800.00"]
    calendar = (await http.get(f"{sales}/v1/calendars/rep-1")).json()
    assert [a["title"] for a in calendar].count("Call Ada Demo about the second machine") == 1

    support = platform.url("support")
    tickets = (await http.get(f"{support}/v1/tickets", params={"customer_id": "C-1001"})).json()["items"]
    demo = [t for t in tickets if t["subject"] == "Coffee runs slowly"]
    assert [(t["contract_id"], t["product"]) for t in demo] == [("demo-contract", "ATM-200")]
    assert demo[0]["sla_policy_id"] in ("demo-standard", "demo-high-value")
    visits = (await http.get(f"{support}/v1/visits", params={"ticket_id": demo[0]["ticket_id"]})).json()["items"]
    assert [(v["technician_id"], v["installed_product"]) for v in visits] == [("tech-1", "ATM-200-SN-0001")]
    found = (await http.get(f"{support}/v1/kb/search", params={"q": "descaling slow coffee"})).json()
    assert "demo-descale" in [f["article"]["article_id"] for f in found]

    # The web shop's sign-up of Ada under W-1001 was merged into C-1001 at once, and its order is C-1001's.
    web = (await http.get(f"{platform.url('customer')}/v1/customers/W-1001")).json()
    assert web["merged_into"] == "C-1001"
    merges = (await http.get(f"{platform.url('customer')}/v1/customers/C-1001/merges")).json()
    assert [(m["merged_id"], m["decided_by"], m["evidence"]) for m in merges] == [
        ("W-1001", "automatic", ["the same email"])
    ]
    orders = (await http.get(f"{sales}/v1/customers/C-1001/orders")).json()["items"]
    assert "O-9005" in [o["order_id"] for o in orders]
