"""The sales database's `activities` collection: one document per activity, the fields of `Activity` (`_id` the
activity id), plus the owner and territory that decide who sees it."""

from collections.abc import Mapping
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel

from crm_sales.activities.domain import Activity
from crm_shared.store import IndexSpec, UnitOfWork

ACTIVITIES = "activities"

_NEWEST_DUE = [("due_at", DESCENDING), ("_id", DESCENDING)]

INDEXES = (
    IndexSpec(ACTIVITIES, IndexModel(_NEWEST_DUE, name="newest_due_first")),
    # An owner's calendar for a date range, and their overdue tasks.
    IndexSpec(ACTIVITIES, IndexModel([("owner_id", ASCENDING), *_NEWEST_DUE], name="by_owner_due")),
    IndexSpec(ACTIVITIES, IndexModel([("territory", ASCENDING), *_NEWEST_DUE], name="by_territory_due")),
    IndexSpec(ACTIVITIES, IndexModel([("customer_id", ASCENDING), *_NEWEST_DUE], name="by_customer_due")),
    IndexSpec(ACTIVITIES, IndexModel([("status", ASCENDING), ("due_at", ASCENDING)], name="by_status_due")),
)

FIELDS = (
    "kind",
    "title",
    "due_at",
    "created_at",
    "duration_minutes",
    "owner_id",
    "territory",
    "customer_id",
    "lead_id",
    "opportunity_id",
    "account_id",
    "notes",
    "status",
    "outcome",
    "completed_at",
    "cancelled_at",
)


def to_document(activity: Activity) -> dict[str, Any]:
    return {"_id": activity.activity_id, **{f: getattr(activity, f) for f in FIELDS}}


def from_document(doc: Mapping[str, Any]) -> Activity:
    fields: dict[str, Any] = {f: doc[f] for f in FIELDS if f in doc}
    return Activity(activity_id=doc["_id"], **fields)


async def get_activity(uow: UnitOfWork, query: dict[str, Any]) -> Activity | None:
    doc = await uow.db[ACTIVITIES].find_one(query, session=uow.session)
    return from_document(doc) if doc else None


async def insert_activity(uow: UnitOfWork, activity: Activity, origin: Mapping[str, str] | None = None) -> None:
    """Insert the activity; `origin`: the id it was asked for when it is filed under a merge's survivor."""
    await uow.db[ACTIVITIES].insert_one({**to_document(activity), **(origin or {})}, session=uow.session)


async def save_activity(uow: UnitOfWork, activity: Activity) -> None:
    # Set, not replaced: what an identity merge noted on it (origin_customer_id) stays.
    fields = {k: v for k, v in to_document(activity).items() if k != "_id"}
    await uow.db[ACTIVITIES].update_one({"_id": activity.activity_id}, {"$set": fields}, session=uow.session)
