"""The periodic NPS survey on the real database: a customer scoring gave a tier is asked once per interval,
exactly once per period even when passes race, and not again soon after they answered."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

from crm_shared.events import (
    SurveyAnswered,
    SurveyAnsweredEvent,
    utc_now,
)
from crm_shared.store import Store, as_stored, outbox_records
from crm_support import handlers, nps
from crm_support.app import INDEXES

from helpers import tier_changed

NewStore = Callable[..., Awaitable[Store]]
INTERVAL = timedelta(days=90)


async def requested(store: Store, customer: str) -> list[str]:
    records = await outbox_records(store.db, {"type": "crm.survey.requested.v1", "key": customer})
    return [json.loads(r["value"])["data"]["survey_id"] for r in records]


async def test_each_customer_is_asked_once_per_interval_and_racing_passes_ask_once(new_store: NewStore) -> None:
    store = await new_store("support_nps", INDEXES)
    run = uuid.uuid4().hex[:8]
    now = as_stored(utc_now())
    old, new = f"C-old-{run}", f"C-new-{run}"
    await handlers.apply_segment_events(
        store,
        [
            tier_changed(old, "regular", now - timedelta(days=200)),
            tier_changed(new, "regular", now - timedelta(days=120)),
        ],
        INTERVAL,
    )
    # A later tier change does not move the schedule the first one set.
    await handlers.apply_segment_events(store, [tier_changed(old, "high_value", now - timedelta(days=150))], INTERVAL)

    then = now - timedelta(days=100)
    sent = await asyncio.gather(*(nps.request_due(store, INTERVAL, then) for _ in range(3)))
    assert sorted(s for batch in sent for s in batch) == [f"NPS-{old}-1"]
    assert await requested(store, old) == [f"NPS-{old}-1"]
    assert await requested(store, new) == []  # a customer of twenty days is not asked yet
    assert await nps.request_due(store, INTERVAL, then + timedelta(days=1)) == []

    # An interval on, both are due: the old customer gets their second request, the new one their first.
    assert sorted(await nps.request_due(store, INTERVAL, now)) == sorted([f"NPS-{old}-2", f"NPS-{new}-1"])
    assert await requested(store, old) == [f"NPS-{old}-1", f"NPS-{old}-2"]


async def test_a_customer_who_answered_recently_is_asked_an_interval_after_their_answer(new_store: NewStore) -> None:
    store = await new_store("support_nps", INDEXES)
    customer = f"C-{uuid.uuid4().hex[:8]}"
    now = as_stored(utc_now())
    await handlers.apply_segment_events(store, [tier_changed(customer, "regular", now - timedelta(days=200))], INTERVAL)
    answer = SurveyAnswered(customer_id=customer, survey_id=f"S-{customer}", kind="nps", score=9)
    answered_at = now - timedelta(days=100)
    await handlers.record_survey_answer(
        store, SurveyAnsweredEvent.create(answer, source="/channels/survey-tool", time=answered_at)
    )
    assert await nps.request_due(store, INTERVAL, now - timedelta(days=95)) == []
    doc = await store.db[nps.NPS_REQUESTS].find_one({"_id": customer})
    assert doc is not None and doc["due_at"] == answered_at + INTERVAL
    assert await nps.request_due(store, INTERVAL, now) == [f"NPS-{customer}-1"]
