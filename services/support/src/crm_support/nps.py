"""The periodic NPS survey: every customer is asked for an NPS answer (0-10) once per interval, exactly once per
period, restarts and competing instances included.

`nps_requests` holds one document per customer support knows from scoring's value tiers: when their next
request is due (`due_at`) and how many were sent (`sent`). A customer's first request is due one interval after
scoring first gave them a tier (a new customer is not asked on day one); each request sets the next one an
interval later. A customer who answered an NPS survey within the interval (a request of ours, or one a channel
ran) is not asked again until an interval after that answer.

The worker (`run`) looks for the requests due; for each, in one transaction, it moves `due_at` on with an update
conditional on the `due_at` it read and, only if that update changed the document, publishes
`crm.survey.requested.v1` (kind `nps`, `survey_id` `NPS-<customer>-<n>`) through the outbox, its id derived from
the survey id. Two passes or instances racing: one wins the update, the other changes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, IndexModel

from crm_shared.events import SurveyRequested, SurveyRequestedEvent, derived_event_id, utc_now
from crm_shared.logging import get_logger
from crm_shared.store import IndexSpec, Store, UnitOfWork, as_stored
from crm_shared.topics import Topic
from crm_support.repository import SURVEYS

log = get_logger(__name__)

NPS_REQUESTS = "nps_requests"
SOURCE = "/crm/support"
BATCH = 200
"""Requests handled per pass."""

INDEXES = (IndexSpec(NPS_REQUESTS, IndexModel([("due_at", ASCENDING)], name="due")),)


async def enrol(uow: UnitOfWork, first_tiers: Iterable[tuple[str, datetime]], interval: timedelta) -> None:
    """In the unit of work that saves value tiers: each customer not known yet gets their first request due an
    interval after the tier's time; a customer known already keeps their schedule. The known ones are read first
    and only the new ones inserted (writes are what the embedded database is slow at; most tier changes are of
    customers enrolled long ago)."""
    firsts = dict(first_tiers)
    known = {d["_id"] for d in await uow.find_ids(NPS_REQUESTS, firsts, {"_id": 1})}
    new = [{"_id": c, "due_at": as_stored(at + interval), "sent": 0} for c, at in firsts.items() if c not in known]
    if new:
        await uow.db[NPS_REQUESTS].insert_many(new, ordered=False, session=uow.session)


async def _last_answer(uow: UnitOfWork, customer_id: str) -> datetime | None:
    doc = await uow.db[SURVEYS].find_one(
        {"customer_id": customer_id, "kind": "nps"},
        {"answered_at": 1},
        sort=[("answered_at", -1)],
        session=uow.session,
    )
    return doc["answered_at"] if doc else None


async def _request(store: Store, doc: dict[str, Any], now: datetime, interval: timedelta) -> str | None:
    """Send one due request, exactly once; the survey id sent, or None (not due after all, or sent by another)."""

    async def work(uow: UnitOfWork) -> str | None:
        customer = doc["_id"]
        answered = await _last_answer(uow, customer)
        if answered is not None and answered + interval > now:
            # They answered recently: ask an interval after that answer instead.
            await uow.db[NPS_REQUESTS].update_one(
                {"_id": customer, "due_at": doc["due_at"]},
                {"$set": {"due_at": as_stored(answered + interval)}},
                session=uow.session,
            )
            return None
        sent = doc.get("sent", 0) + 1
        moved = await uow.db[NPS_REQUESTS].update_one(
            {"_id": customer, "due_at": doc["due_at"]},
            {"$set": {"due_at": as_stored(now + interval), "last_sent_at": now}, "$inc": {"sent": 1}},
            session=uow.session,
        )
        if moved.modified_count != 1:
            return None  # another pass (or instance) sent it
        survey_id = f"NPS-{customer}-{sent}"
        request = SurveyRequested(customer_id=customer, survey_id=survey_id, kind="nps")
        event = SurveyRequestedEvent.create(
            request, source=SOURCE, id=derived_event_id(SOURCE, f"nps:{survey_id}"), time=now
        )
        uow.emit(event, Topic.SUPPORT_EVENTS)
        return survey_id

    return await store.transaction(work)


async def request_due(store: Store, interval: timedelta, now: datetime | None = None) -> list[str]:
    """One pass: every NPS request due by `now` (default: now); the survey ids sent."""
    now = as_stored(now or utc_now())
    cursor = store.db[NPS_REQUESTS].find({"due_at": {"$lte": now}}).sort("due_at", 1).limit(BATCH)
    sent = []
    for doc in await cursor.to_list(None):
        survey_id = await _request(store, doc, now, interval)
        if survey_id is not None:
            sent.append(survey_id)
    if sent:
        log.info("nps_requested", surveys=len(sent))
    return sent


async def run(store: Store, interval: timedelta, poll_seconds: float) -> None:
    """The NPS worker: a pass every `poll_seconds` (at once again while a pass was full), until cancelled."""
    while True:
        try:
            sent = await request_due(store, interval)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a failed pass is retried at the next one; nothing sent twice
            log.error("nps_pass_failed", error=repr(exc))
            sent = []
        await asyncio.sleep(0 if len(sent) >= BATCH else poll_seconds)
