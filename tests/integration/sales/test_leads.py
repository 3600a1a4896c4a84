"""Qualified leads from marketing, kept once each and listed, on the real database."""

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from crm_sales.app import INDEXES, create_service
from crm_sales.leads import handlers, repository
from crm_shared.events import CampaignContacted, CampaignContactedEvent, LeadQualified, LeadQualifiedEvent
from crm_shared.store import AlreadyApplied, Store

from helpers import ADMIN_HEADERS

NewStore = Callable[..., Awaitable[Store]]
T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)


def qualified(customer: str, at: datetime) -> LeadQualifiedEvent:
    lead = LeadQualified(
        customer_id=customer, lead_id=f"L-{customer}", segment_id="hot", reason="Hot prospects", value_tier="potential"
    )
    return LeadQualifiedEvent.create(lead, source="/crm/marketing", time=at)


async def test_a_lead_is_kept_once_and_listed_newest_first(new_store: NewStore) -> None:
    store = await new_store("sales_leads", INDEXES)
    customers = [f"C-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    for i, customer in enumerate(customers):
        event = qualified(customer, T0 + timedelta(hours=i))
        lead = await handlers.apply_marketing_event(store, event)
        assert lead is not None and lead.status == "new"
        with pytest.raises(AlreadyApplied):
            await handlers.apply_marketing_event(store, event)
    # The same lead handed over again under another event id is still one lead.
    assert await handlers.apply_marketing_event(store, qualified(customers[0], T0 + timedelta(days=1))) is not None
    contacted = CampaignContacted(
        customer_id=customers[0],
        enrolment_id="E-1",
        campaign_id="welcome",
        journey="welcome",
        channel="email",
        cost="0",
    )
    assert await handlers.apply_marketing_event(store, CampaignContactedEvent.create(contacted, source="/m")) is None
    assert await store.db[repository.LEADS].count_documents({}) == 3

    app = create_service()
    app.state.runtime.store = store
    async with httpx.AsyncClient(
        headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://sales"
    ) as http:
        seen, cursor = [], None
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = (await http.get("/v1/leads", params=params)).json()
            seen += [lead["customer_id"] for lead in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == customers[::-1]
        mine = (await http.get(f"/v1/customers/{customers[1]}/leads")).json()["items"]
        assert [(lead["segment_id"], lead["reason"], lead["status"]) for lead in mine] == [
            ("hot", "Hot prospects", "new")
        ]
