"""The unit of work against the real database: atomic outbox, exactly-once application."""

from collections.abc import Awaitable, Callable

import pytest

from crm_shared.events import OrderPlaced, OrderPlacedEvent
from crm_shared.store import PROCESSED, AlreadyApplied, Store, UnitOfWork, outbox_records
from crm_shared.topics import Topic

NewStore = Callable[..., Awaitable[Store]]


def _event(order_id: str = "O-1") -> OrderPlacedEvent:
    return OrderPlacedEvent.create(
        OrderPlaced(order_id=order_id, customer_id="C-1", currency="EUR", total="10.00"), source="/test"
    )


async def test_state_outbox_and_processed_commit_together(new_store: NewStore) -> None:
    store = await new_store("uow")
    event = _event()

    async def work(uow: UnitOfWork) -> None:
        await uow.db.things.insert_one({"_id": "x"}, session=uow.session)
        uow.emit(event, Topic.SALES_EVENTS)

    await store.transaction(work, applies=f"test:{event.id}")
    assert await store.db.things.count_documents({}) == 1
    [record] = await outbox_records(store.db, {"_id": event.id})
    assert record["sent_at"] is None and record["key"] == "C-1"
    assert await store.db[PROCESSED].count_documents({"_id": f"test:{event.id}"}) == 1


async def test_a_failed_handler_leaves_no_state_and_no_outbox_record(new_store: NewStore) -> None:
    store = await new_store("uow")
    event = _event()

    async def work(uow: UnitOfWork) -> None:
        await uow.db.things.insert_one({"_id": "x"}, session=uow.session)
        uow.emit(event, Topic.SALES_EVENTS)
        raise ValueError("boom")

    with pytest.raises(ValueError):
        await store.transaction(work, applies=f"test:{event.id}")
    assert await store.db.things.count_documents({}) == 0
    assert await outbox_records(store.db) == []
    assert await store.db[PROCESSED].count_documents({}) == 0


async def test_the_same_event_applies_once(new_store: NewStore) -> None:
    store = await new_store("uow")
    calls = 0

    async def work(uow: UnitOfWork) -> None:
        nonlocal calls
        calls += 1
        await uow.db.counter.update_one({"_id": "n"}, {"$inc": {"v": 1}}, upsert=True, session=uow.session)

    await store.transaction(work, applies="test:e-1")
    with pytest.raises(AlreadyApplied):
        await store.transaction(work, applies="test:e-1")
    doc = await store.db.counter.find_one({"_id": "n"})
    assert doc is not None and doc["v"] == 1
    assert calls == 1
