"""`find_any` on the real database: the same documents as one `$or` of long `$in`s, each once."""

from collections.abc import Awaitable, Callable

from crm_shared.store import IN_CHUNK, Store, UnitOfWork, find_any

NewStore = Callable[..., Awaitable[Store]]


async def test_find_any_finds_what_one_or_finds_each_once(new_store: NewStore) -> None:
    store = await new_store("find_any")
    things = store.db.things
    await things.insert_many(
        [
            {"_id": f"T-{i:04d}", "customer_id": f"C-{i % 40}", "at": i, "status": "closed" if i % 5 == 0 else "open"}
            for i in range(400)
        ]
    )
    ids = [f"T-{i:04d}" for i in range(0, 400, 3)] + ["T-missing"]
    customers = [f"C-{i}" for i in range(0, 40, 2)]
    clauses = [
        {"_id": {"$in": ids}},
        {"customer_id": {"$in": customers}, "status": {"$in": ["open"]}, "at": {"$gte": 50, "$lte": 300}},
    ]
    assert len(ids) > IN_CHUNK * 4
    expected = {d["_id"] for d in await things.find({"$or": clauses}).to_list(None)}
    found = await find_any(things, clauses, {"_id": 1})
    assert len(found) == len({d["_id"] for d in found})
    assert {d["_id"] for d in found} == expected
    assert len(expected) > len(ids) - 1  # the second clause added documents the first did not name
    assert await find_any(things, []) == []


async def test_find_ids_reads_inside_the_transaction(new_store: NewStore) -> None:
    store = await new_store("find_ids")

    async def work(uow: UnitOfWork) -> list[str]:
        await uow.db.things.insert_many([{"_id": f"T-{i}"} for i in range(60)], session=uow.session)
        return sorted(d["_id"] for d in await uow.find_ids("things", [f"T-{i}" for i in range(0, 60, 2)] * 2))

    assert await store.transaction(work) == sorted(f"T-{i}" for i in range(0, 60, 2))
