"""The sales database's `territories` collection: each territory's assignment rules and its round-robin cursor.

A territory document: `_id` (the territory id tokens name in `crm_territories`), `name`, `priority`, `regions`,
`industries`, `size_min`, `size_max`, `strategy`, `reps` [{user_id, capacity, skip}], `cursor`, `updated_at`.
"""

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, IndexModel

from crm_sales.territories.domain import Rep, Territory
from crm_shared.store import IndexSpec, UnitOfWork

TERRITORIES = "territories"

INDEXES: tuple[IndexSpec, ...] = (
    IndexSpec(TERRITORIES, IndexModel([("priority", ASCENDING), ("_id", ASCENDING)], name="by_priority")),
)


def territory_to_document(territory: Territory, at: datetime) -> dict[str, Any]:
    return {
        "_id": territory.territory_id,
        "name": territory.name,
        "priority": territory.priority,
        "regions": sorted(territory.regions),
        "industries": sorted(territory.industries),
        "size_min": territory.size_min,
        "size_max": territory.size_max,
        "strategy": territory.strategy,
        "reps": [{"user_id": r.user_id, "capacity": r.capacity, "skip": r.skip} for r in territory.reps],
        "cursor": territory.cursor,
        "updated_at": at,
    }


def territory_from_document(doc: Mapping[str, Any]) -> Territory:
    return Territory(
        territory_id=doc["_id"],
        name=doc["name"],
        priority=doc["priority"],
        strategy=doc["strategy"],
        reps=tuple(Rep(r["user_id"], r["capacity"], bool(r.get("skip", False))) for r in doc.get("reps", [])),
        regions=frozenset(doc.get("regions", [])),
        industries=frozenset(doc.get("industries", [])),
        size_min=doc.get("size_min"),
        size_max=doc.get("size_max"),
        cursor=doc.get("cursor", 0),
    )


MAX_TERRITORIES = 1000
"""Assignment reads every territory once per transaction: a sales organisation has tens, not thousands."""


async def load_territories(uow: UnitOfWork) -> list[Territory]:
    """Every territory, by priority, as this transaction sees them."""
    cursor = uow.db[TERRITORIES].find({}, session=uow.session).sort([("priority", ASCENDING), ("_id", ASCENDING)])
    return [territory_from_document(d) for d in await cursor.to_list(MAX_TERRITORIES)]


async def move_cursors(uow: UnitOfWork, cursors: Mapping[str, int]) -> None:
    """Store the round-robin cursors a batch moved, in its transaction (a concurrent assignment in the same
    territory is a write conflict: the transaction is retried on the cursor the other one left)."""
    for territory_id, cursor in sorted(cursors.items()):
        await uow.db[TERRITORIES].update_one({"_id": territory_id}, {"$set": {"cursor": cursor}}, session=uow.session)
