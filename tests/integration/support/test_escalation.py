"""SLA warnings and escalations on the real broker and database: each fires exactly once per timer, across
passes, a restart and a competing instance; a timer met in time fires nothing; a breach escalates the ticket."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crm_shared.security import Principal
from crm_shared.store import Store, outbox_records
from crm_support.app import INDEXES, create_service
from crm_support.settings import SupportSettings
from crm_support.sla import escalation
from crm_support.sla import repository as sla_repository
from crm_support.sla.policies import SlaPolicy, Target
from crm_support.tickets import domain, handlers
from crm_support.tickets import repository as tickets_repository

from helpers import broker_of_its_own, eventually

NewStore = Callable[..., Awaitable[Store]]
H = timedelta(hours=1)
AGENT = Principal(kind="token", id="agent-1", scopes=frozenset({"tickets:write"}))


def policy(run: str) -> SlaPolicy:
    return SlaPolicy(
        f"fast-{run}",
        "Fast",
        order=1,
        targets={"first_response": Target(2 * H, business_hours=False)},
        warn_before=timedelta(minutes=30),
        escalate_to_group=f"leads-{run}",
        escalate_to="boss-1",
    )


async def define(store: Store, run: str) -> None:
    document = sla_repository.policy_to_document(policy(run), datetime.now(UTC))
    await store.db[sla_repository.SLA_POLICIES].replace_one({"_id": document["_id"]}, document, upsert=True)


async def open_at(store: Store, run: str, at: datetime) -> str:
    new = handlers.NewTicket(customer_id=f"C-{run}", kind="request", subject="Help", channel="email")
    ticket, _ = await handlers.open_ticket(store, new, f"TK-{run}-{uuid.uuid4().hex[:4]}", at, by=AGENT)
    assert ticket.policy_id == f"fast-{run}"
    return ticket.ticket_id


async def fired(store: Store, ticket_id: str) -> list[str]:
    records = await outbox_records(store.db, {"type": {"$in": ["crm.sla.warned.v1", "crm.sla.breached.v1"]}})
    return [r["type"] for r in records if json.loads(r["value"])["data"]["ticket_id"] == ticket_id]


async def test_a_warning_then_a_breach_fire_once_each_and_the_breach_escalates(
    new_store: NewStore, backend: Any
) -> None:
    store = await new_store("support_sla_timers", INDEXES)
    run = uuid.uuid4().hex[:8]
    await define(store, run)
    t0 = datetime.now(UTC).replace(microsecond=0) - 3 * H
    ticket_id = await open_at(store, run, t0)

    assert await escalation.fire_due(store, t0 + H) == []  # the warning is due at 1:30
    warned = await escalation.fire_due(store, t0 + 100 * timedelta(minutes=1))
    assert [f.what for f in warned] == ["warned"]
    assert await escalation.fire_due(store, t0 + 110 * timedelta(minutes=1)) == []
    # Another instance, on its own connection, racing the next pass: one of them fires the breach.
    other = Store.connect(backend.mongo_uri, store.db.name)
    try:
        passes = await asyncio.gather(
            escalation.fire_due(store, t0 + 130 * timedelta(minutes=1)),
            escalation.fire_due(other, t0 + 130 * timedelta(minutes=1)),
        )
        assert sorted(f.what for done in passes for f in done) == ["breached"]
        assert await escalation.fire_due(other, t0 + 5 * H) == []
    finally:
        await other.close()
    assert await fired(store, ticket_id) == ["crm.sla.warned.v1", "crm.sla.breached.v1"]

    ticket = await handlers.find_ticket(store, ticket_id, seen_by=None)
    assert ticket is not None and ticket.group == f"leads-{run}"
    assert ticket.history[-1].action == "escalated"
    assert dict(ticket.history[-1].detail) == {"timer": "first_response", "group": f"leads-{run}", "manager": "boss-1"}
    breach = [
        json.loads(r["value"])["data"]
        for r in await outbox_records(store.db, {"type": "crm.sla.breached.v1"})
        if ticket_id in r["value"].decode()
    ]
    assert [(b["timer"], b["escalated_to_group"], b["escalated_to"]) for b in breach] == [
        ("first_response", f"leads-{run}", "boss-1")
    ]


async def test_a_timer_met_in_time_fires_nothing_and_one_breached_while_down_skips_its_warning(
    new_store: NewStore,
) -> None:
    store = await new_store("support_sla_timers", INDEXES)
    run = uuid.uuid4().hex[:8]
    await define(store, run)
    t0 = datetime.now(UTC).replace(microsecond=0) - 3 * H
    answered = await open_at(store, run, t0)

    def reply(ticket: domain.Ticket) -> domain.Ticket:
        return domain.post(ticket, domain.Post("P-1", t0 + H, domain.Actor("agent", "agent-1"), "On it."))

    assert await handlers.change_ticket(store, answered, reply, seen_by=None) is not None  # type: ignore[arg-type]
    late = await open_at(store, run, t0)
    await escalation.fire_due(store, t0 + 3 * H)
    assert await fired(store, answered) == []
    assert await fired(store, late) == ["crm.sla.breached.v1"]  # down through the warning: the breach says it


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with broker_of_its_own(tmp_path_factory.mktemp("support-escalation-broker")) as broker:
        yield broker.kafka_bootstrap


@pytest.fixture
def settings(backend: Any, kafka: str) -> SupportSettings:
    return SupportSettings(
        CRM_KAFKA_BOOTSTRAP=kafka,
        CRM_MONGO_URI=backend.mongo_uri,
        db=f"support_escalation_{uuid.uuid4().hex[:8]}",
        sla_poll_seconds=0.2,
    )


@pytest.fixture
async def running(settings: SupportSettings) -> AsyncIterator[Callable[[], Any]]:
    """Start the service (its worker included); the test stops and starts it again as it likes."""
    apps: list[Any] = []

    def start() -> Any:
        app = create_service(settings)
        apps.append(app)
        return app.router.lifespan_context(app), app

    yield start


async def test_the_worker_warns_once_and_a_restarted_service_breaches_once(running: Callable[[], Any]) -> None:
    run = uuid.uuid4().hex[:8]
    context, app = running()
    async with context:
        store: Store = app.state.runtime.require_store()
        await define(store, run)
        # Opened 100 minutes ago: the warning (at 90) is due now, the breach (at 120) in 20 minutes.
        ticket_id = await open_at(store, run, datetime.now(UTC).replace(microsecond=0) - 100 * timedelta(minutes=1))

        async def warned() -> list[str]:
            return await fired(store, ticket_id)

        assert await eventually(warned, what="the worker to warn") == ["crm.sla.warned.v1"]
        await asyncio.sleep(1)  # several more passes: nothing more
        assert await fired(store, ticket_id) == ["crm.sla.warned.v1"]

    # Half an hour passes while the service is down: the ticket and its timer are that much older.
    shift = 30 * timedelta(minutes=1)
    settings = app.state.runtime.settings
    store = Store.connect(settings.mongo_uri, settings.database_name)
    tickets = store.db[tickets_repository.TICKETS]
    doc = await tickets.find_one({"_id": ticket_id})
    assert doc is not None
    statuses = [{**s, "at": s["at"] - shift} for s in doc["statuses"]]
    await tickets.update_one(
        {"_id": ticket_id}, {"$set": {"created_at": doc["created_at"] - shift, "statuses": statuses}}
    )
    timer = store.db[escalation.SLA_TIMERS]
    async for stored in timer.find({"ticket_id": ticket_id}):
        await timer.update_one({"_id": stored["_id"]}, {"$set": {"due_at": stored["due_at"] - shift}})
    await store.close()

    context, app = running()
    async with context:
        store = app.state.runtime.require_store()

        async def breached() -> list[str]:
            kinds = await fired(store, ticket_id)
            return kinds if "crm.sla.breached.v1" in kinds else []

        assert await eventually(breached, what="the restarted worker to breach") == [
            "crm.sla.warned.v1",
            "crm.sla.breached.v1",
        ]
        await asyncio.sleep(1)  # several more passes: the warning is not sent again, the breach not repeated
        assert await fired(store, ticket_id) == ["crm.sla.warned.v1", "crm.sla.breached.v1"]
