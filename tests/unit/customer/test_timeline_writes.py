"""The timeline's bulk insert without a database: a duplicate key (the entry is there, or a concurrent copy
inserted it) is a duplicate, not a failure; another write error fails the batch; an unreachable database
is retried, then a TransientFailure."""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pymongo.errors import AutoReconnect, BulkWriteError, OperationFailure

from crm_customer import domain, repository
from crm_shared.events import OrderPlaced, OrderPlacedEvent
from crm_shared.store import Store, TransientFailure

T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)


def entries(n: int) -> list[domain.TimelineEntry]:
    events = [
        OrderPlacedEvent.create(
            OrderPlaced(customer_id="C-1", order_id=f"O-{i}", currency="EUR", total=Decimal("1.00")),
            source="/crm/sales",
            time=T0,
        )
        for i in range(n)
    ]
    return [domain.timeline_entry(e) for e in events]


class FailingDb:
    """A database whose timeline bulk insert fails as MongoDB reports it."""

    def __init__(self, failure: Exception) -> None:
        self.failure = failure
        self.writes: list[Any] = []

    def __getitem__(self, name: str) -> "FailingDb":
        assert name == repository.TIMELINE
        return self

    async def insert_many(self, documents: list[Any], ordered: bool = True) -> None:
        assert ordered is False  # one refused entry must not stop the others
        self.writes.append(documents)
        raise self.failure


async def test_a_duplicate_key_counts_as_already_there_and_the_others_as_written() -> None:
    written = entries(3)
    failure = BulkWriteError(
        {
            "writeErrors": [{"index": 1, "code": 11000, "errmsg": "E11000 duplicate key error"}],
            "writeConcernErrors": [],
            "nInserted": 2,
        }
    )
    db = FailingDb(failure)
    assert await repository.record_entries(db, written) == {written[0].event_id, written[2].event_id}
    assert len(db.writes) == 1 and [d["_id"] for d in db.writes[0]] == [e.event_id for e in written]


async def test_another_write_error_fails_the_batch() -> None:
    failure = BulkWriteError(
        {"writeErrors": [{"index": 0, "code": 121, "errmsg": "Document failed validation"}], "nInserted": 1}
    )
    with pytest.raises(BulkWriteError):
        await repository.record_entries(FailingDb(failure), entries(2))


async def test_an_unreachable_database_is_retried_then_a_transient_failure() -> None:
    store = Store(client=None, db=None, retry_attempts=3, retry_base_seconds=0)  # type: ignore[arg-type]
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise AutoReconnect("connection refused")
        return "written"

    assert await store.retrying(flaky) == "written"

    async def down() -> None:
        raise AutoReconnect("connection refused")

    with pytest.raises(TransientFailure, match="after 3 attempts"):
        await store.retrying(down)

    async def broken() -> None:
        raise OperationFailure("not transient", code=2)

    with pytest.raises(OperationFailure):
        await store.retrying(broken)
