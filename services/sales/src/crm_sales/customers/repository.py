"""The sales database's `customer_match_keys` collection: per customer (`_id` the customer id) the newest match
keys the customer service published (`match_keys`, keyed hashes of their email and phone; never the values) and
when they were published (`time`). An erasure leaves the document with no keys, so an older set arriving late
does not bring them back."""

from collections.abc import Iterable, Mapping
from datetime import datetime

from pymongo import ASCENDING, IndexModel

from crm_shared.store import IndexSpec, UnitOfWork, find_any, upsert_newest

CUSTOMER_MATCH_KEYS = "customer_match_keys"

INDEXES = (IndexSpec(CUSTOMER_MATCH_KEYS, IndexModel([("match_keys", ASCENDING)], name="by_match_key")),)


async def save_newest(uow: UnitOfWork, newest: Mapping[str, tuple[list[str], datetime]]) -> None:
    """Keep each customer's keys unless the stored ones are newer: one bulk write."""
    await upsert_newest(
        uow,
        CUSTOMER_MATCH_KEYS,
        {customer: ({"match_keys": keys}, at) for customer, (keys, at) in newest.items()},
        time_field="time",
    )


async def customers_of(uow: UnitOfWork, keys: Iterable[str]) -> dict[str, str]:
    """Match key -> the customer id it belongs to (the smallest id when two customers share one)."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    found = await find_any(
        uow.db[CUSTOMER_MATCH_KEYS],
        [{"match_keys": {"$in": wanted}}],
        {"match_keys": 1},
        session=uow.session,
    )
    owner: dict[str, str] = {}
    for doc in sorted(found, key=lambda d: str(d["_id"])):
        for key in doc.get("match_keys", []):
            if key in wanted:
                owner.setdefault(key, doc["_id"])
    return owner
