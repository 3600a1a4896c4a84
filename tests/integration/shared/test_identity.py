"""Merges, unmerges, erasures and exports as every service applies them (crm_shared.identity), on the real database."""

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from crm_shared import identity
from crm_shared.events import (
    CustomerErased,
    CustomerErasedEvent,
    CustomerExportRequested,
    CustomerExportRequestedEvent,
    CustomerMerged,
    CustomerMergedEvent,
    CustomerUnmerged,
    CustomerUnmergedEvent,
    ExportAnsweredEvent,
    IdentityAppliedEvent,
    OrderPlaced,
    OrderPlacedEvent,
    parse_event,
)
from crm_shared.store import DEADLETTERS, OUTBOX, Store, outbox_records
from crm_shared.topics import Topic

NewStore = Callable[..., Awaitable[Store]]
HELD = identity.Records((identity.Held("things", personal=("note",)), identity.Held("gone", on_erasure="deleted")))


def _merged(survivor: str, merged: str, merge_id: str) -> CustomerMergedEvent:
    data = CustomerMerged(customer_id=survivor, merged_id=merged, merge_id=merge_id, decided_by="confirmed")
    return CustomerMergedEvent.create(data, source="/crm/customer")


def _unmerged(survivor: str, merged: str, merge_id: str) -> CustomerUnmergedEvent:
    data = CustomerUnmerged(customer_id=survivor, merged_id=merged, merge_id=merge_id)
    return CustomerUnmergedEvent.create(data, source="/crm/customer")


async def _owners(store: Store) -> dict[str, str]:
    return {d["_id"]: d["customer_id"] async for d in store.db.things.find({})}


async def _answers(store: Store) -> list[Any]:
    return [parse_event(r["value"]) for r in await outbox_records(store.db, {"topic": Topic.IDENTITY_ANSWERS.value})]


async def test_a_merge_moves_records_and_an_unmerge_gives_back_what_came_from_the_merged_id(
    new_store: NewStore,
) -> None:
    store = await new_store("identity")
    await store.db.things.insert_many(
        [{"_id": "a1", "customer_id": "A"}, {"_id": "b1", "customer_id": "B"}, {"_id": "c1", "customer_id": "C"}]
    )
    merge = _merged("B", "A", "m-1")
    outcome = await identity.apply_requests(store, "sales", HELD, [merge, merge])  # the copy changes nothing
    assert outcome.applied == [merge.id] and outcome.duplicates == [merge.id]
    assert await _owners(store) == {"a1": "B", "b1": "B", "c1": "C"}

    # An event that still names A is filed under B, keeping the id it named.
    order = OrderPlacedEvent.create(
        OrderPlaced(order_id="O-1", customer_id="A", currency="EUR", total="1.00"), source="/shop"
    )
    [filed] = await identity.redirect(store, [order])
    assert filed.customer_id == "B" and filed.originalsubject == "A" and filed.id == order.id
    await store.db.things.insert_one({"_id": "a2", "customer_id": filed.customer_id, **identity.origin_fields(filed)})

    # B into C, then A is C's too; undoing B's merge gives A's and B's records back to B.
    await identity.apply_requests(store, "sales", HELD, [_merged("C", "B", "m-2")])
    assert await _owners(store) == {"a1": "C", "a2": "C", "b1": "C", "c1": "C"}
    assert (await identity.resolve(store.db, ["A", "B", "C"])) == {"A": "C", "B": "C"}
    await identity.apply_requests(store, "sales", HELD, [_unmerged("C", "B", "m-2")])
    assert await _owners(store) == {"a1": "B", "a2": "B", "b1": "B", "c1": "C"}
    # An unmerge naming another merge id gives nothing back.
    await identity.apply_requests(store, "sales", HELD, [_unmerged("B", "A", "m-other")])
    assert await _owners(store) == {"a1": "B", "a2": "B", "b1": "B", "c1": "C"}
    await identity.apply_requests(store, "sales", HELD, [_unmerged("B", "A", "m-1")])
    assert await _owners(store) == {"a1": "A", "a2": "A", "b1": "B", "c1": "C"}
    assert await store.db.things.count_documents({identity.ORIGIN: {"$exists": True}}) == 0
    assert await identity.resolve(store.db, ["A", "B"]) == {}

    applied = [a.data for a in await _answers(store) if isinstance(a, IdentityAppliedEvent)]
    assert [(a.request, a.request_id, a.records) for a in applied] == [
        ("merge", "m-1", 1),
        ("merge", "m-2", 3),
        ("unmerge", "m-2", 3),
        ("unmerge", "m-other", 0),
        ("unmerge", "m-1", 2),
    ]


async def test_an_erasure_clears_personal_fields_keeps_the_rest_under_the_pseudonym_and_is_confirmed(
    new_store: NewStore,
) -> None:
    store = await new_store("identity")
    await store.db.things.insert_many(
        [
            {"_id": "t1", "customer_id": "E", "note": "call Eve on +49 170 1234567", "amount": 5},
            {"_id": "t2", "customer_id": "F", "note": "other"},
        ]
    )
    await store.db.gone.insert_one({"_id": "g1", "customer_id": "E"})
    erased = CustomerErasedEvent.create(
        CustomerErased(customer_id="E", erasure_id="er-1", pseudonym="anon-1"), source="/crm/customer"
    )
    await identity.apply_requests(store, "support", HELD, [erased])
    assert await store.db.things.find_one({"_id": "t1"}) == {"_id": "t1", "customer_id": "anon-1", "amount": 5}
    assert await store.db.things.find_one({"_id": "t2"}) == {"_id": "t2", "customer_id": "F", "note": "other"}
    assert await store.db.gone.count_documents({}) == 0
    [answer] = await _answers(store)
    assert answer.data.request == "erasure" and answer.data.service == "support"
    assert (answer.data.records, answer.data.kept) == (2, 1)


async def test_an_export_answers_in_parts_of_bounded_size(new_store: NewStore) -> None:
    store = await new_store("identity")
    await store.db.things.insert_many(
        [{"_id": f"x{i}", "customer_id": "X", "note": "n" * 100_000} for i in range(6)]
        + [{"_id": "y", "customer_id": "Y"}]
    )
    request = CustomerExportRequestedEvent.create(
        CustomerExportRequested(customer_id="X", request_id="ex-1"), source="/crm/customer"
    )
    await identity.apply_requests(store, "marketing", HELD, [request])
    parts = [a.data for a in await _answers(store) if isinstance(a, ExportAnsweredEvent)]
    assert [p.part for p in parts] == [1, 2, 3] and {p.parts for p in parts} == {3}
    ids = [d["_id"] for p in parts for d in p.records.get("things", [])]
    assert sorted(ids) == [f"x{i}" for i in range(6)]
    assert all(len(p.model_dump_json()) < 2 * identity.EXPORT_PART_BYTES for p in parts)


async def test_an_erasure_removes_the_customers_sent_outbox_records_and_dead_letter_originals(
    new_store: NewStore,
) -> None:
    store = await new_store("identity")
    sent = datetime.now(UTC)
    await store.db[OUTBOX].insert_one(
        {
            "_id": "o1",
            "seq": "o1",
            "sent_at": sent,
            "records": [{"_id": "r1", "key": "E", "value": b"about E"}, {"_id": "r2", "key": "F", "value": b"F"}],
        }
    )
    await store.db[OUTBOX].insert_one(
        {"_id": "o2", "seq": "o2", "sent_at": None, "records": [{"_id": "r3", "key": "E"}]}
    )
    await store.db[DEADLETTERS].insert_one({"_id": "d1", "key": "E", "original": b"raw", "original_text": "{}"})
    erased = CustomerErasedEvent.create(
        CustomerErased(customer_id="E", erasure_id="er-2", pseudonym="anon-2"), source="/crm/customer"
    )
    await identity.apply_requests(store, "scoring", identity.Records(), [erased])
    kept = await store.db[OUTBOX].find_one({"_id": "o1"})
    assert kept is not None and [r["_id"] for r in kept["records"]] == ["r2"]
    unsent = await store.db[OUTBOX].find_one({"_id": "o2"})
    assert unsent is not None and [r["_id"] for r in unsent["records"]] == ["r3"]  # still to be published
    letter = await store.db[DEADLETTERS].find_one({"_id": "d1"})
    assert letter is not None and letter["original"] is None and letter["original_text"] is None
    [answer] = [a for a in await _answers(store) if a.data.request_id == "er-2"]
    assert answer.data.records == 2
