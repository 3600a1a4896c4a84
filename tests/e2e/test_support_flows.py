"""Tickets across the real services: every change of a ticket reaches the customer's 360 timeline, and scoring
and marketing, which do not use tickets' lifecycle, ignore those events instead of dead-lettering them."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from crm_shared.platform import Platform
from crm_shared.topics import Topic

from helpers import TopicReader, eventually


async def test_a_tickets_changes_reach_the_timeline_and_nobody_dead_letters_them(
    platform: Platform, http: httpx.AsyncClient, backend: Any
) -> None:
    support, customer = platform.url("support"), f"C-tk-{uuid.uuid4().hex[:8]}"
    opened = await http.post(
        f"{support}/v1/tickets",
        json={"customer_id": customer, "subject": "Where is my order?", "channel": "web", "category": "service"},
    )
    assert opened.status_code == 201, opened.text
    ticket_id = opened.json()["ticket_id"]
    replied = await http.post(f"{support}/v1/tickets/{ticket_id}/posts", json={"body": "It ships tomorrow."})
    assert replied.status_code == 201, replied.text
    resolved = await http.patch(f"{support}/v1/tickets/{ticket_id}", json={"status": "resolved"})
    assert resolved.status_code == 200, resolved.text

    async def on_the_timeline() -> list[str]:
        answer = await http.get(f"{platform.url('customer')}/v1/customers/{customer}/timeline?limit=50")
        summaries = [e["summary"] for e in answer.json()["items"]] if answer.status_code == 200 else []
        return summaries if len(summaries) >= 5 else []

    summaries = await eventually(on_the_timeline, what="the ticket's changes on the customer's timeline")
    # The reply and the opening it caused happened at one instant: the timeline orders those two by id.
    assert summaries[0] == f"Ticket {ticket_id} opened: request, normal priority, via web"
    assert sorted(summaries[1:3]) == sorted([f"Agent replied on ticket {ticket_id}", f"Ticket {ticket_id} new → open"])
    # Resolved, and a CSAT answer about it asked for, at one instant too.
    assert sorted(summaries[3:]) == sorted(
        [f"Ticket {ticket_id} open → resolved", f"CSAT survey CSAT-{ticket_id}-1 requested about ticket {ticket_id}"]
    )
    async with TopicReader(backend.kafka_bootstrap, Topic.DEADLETTER) as reader:
        letters = [r for r in await reader.drain() if r.key == customer.encode()]
    assert letters == [], [r.value[:300] for r in letters]
