"""The customer database: `customers` (profiles), `interactions`, `referrals` and `timeline` (the 360 view)."""

from dataclasses import replace
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from crm_customer.domain import Details, Interaction, Profile, Referral, TimelineEntry
from crm_shared.api import keyset_page
from crm_shared.events import CustomerReferred, InteractionLogged
from crm_shared.store import IndexSpec, UnitOfWork

CUSTOMERS = "customers"
INTERACTIONS = "interactions"
REFERRALS = "referrals"
TIMELINE = "timeline"

INDEXES = (
    IndexSpec(
        TIMELINE,
        IndexModel([("customer_id", ASCENDING), ("time", ASCENDING), ("_id", ASCENDING)], name="by_customer_in_time"),
    ),
    IndexSpec(INTERACTIONS, IndexModel([("customer_id", ASCENDING), ("logged_at", ASCENDING)], name="by_customer")),
    IndexSpec(REFERRALS, IndexModel([("customer_id", ASCENDING), ("referred_at", ASCENDING)], name="by_customer")),
)


def as_stored(at: datetime) -> datetime:
    """The time as MongoDB keeps it (milliseconds), so a fresh answer equals a later read."""
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


# ---------------------------------------------------------------- profiles


def profile_to_document(profile: Profile) -> dict[str, Any]:
    details = profile.details
    return {
        "_id": profile.customer_id,
        "name": details.name,
        "email": details.email,
        "phone": details.phone,
        "channel": details.channel,
        "consents": dict(details.consents),
        "preferred_channel": details.preferred_channel,
        "registered_at": profile.registered_at,
        "registered_by": profile.registered_by,
        "consents_changed_at": dict(profile.consents_changed_at),
    }


def profile_from_document(doc: dict[str, Any]) -> Profile:
    return Profile(
        customer_id=doc["_id"],
        details=Details(
            name=doc["name"],
            email=doc.get("email"),
            phone=doc.get("phone"),
            channel=doc["channel"],
            consents=dict(doc.get("consents", {})),
            preferred_channel=doc.get("preferred_channel"),
        ),
        registered_at=doc["registered_at"],
        registered_by=doc["registered_by"],
        consents_changed_at=dict(doc.get("consents_changed_at", {})),
    )


async def get_profile(uow: UnitOfWork, customer_id: str) -> Profile | None:
    doc = await uow.db[CUSTOMERS].find_one({"_id": customer_id}, session=uow.session)
    return profile_from_document(doc) if doc else None


async def insert_profile(uow: UnitOfWork, profile: Profile) -> Profile:
    """Insert the profile; returns it as a later read will see it."""
    await uow.db[CUSTOMERS].insert_one(profile_to_document(profile), session=uow.session)
    return replace(profile, registered_at=as_stored(profile.registered_at))


async def save_profile(uow: UnitOfWork, profile: Profile) -> None:
    await uow.db[CUSTOMERS].replace_one({"_id": profile.customer_id}, profile_to_document(profile), session=uow.session)


# ---------------------------------------------------------------- interactions


def interaction_to_document(interaction: Interaction) -> dict[str, Any]:
    return {
        "_id": interaction.interaction_id,
        **interaction.logged.model_dump(mode="python", exclude={"interaction_id"}),
        "logged_at": interaction.logged_at,
        "event_id": interaction.event_id,
    }


def interaction_from_document(doc: dict[str, Any]) -> Interaction:
    logged = InteractionLogged(
        interaction_id=doc["_id"],
        customer_id=doc["customer_id"],
        kind=doc["kind"],
        channel=doc["channel"],
        summary=doc.get("summary"),
    )
    return Interaction(logged, doc["logged_at"], doc["event_id"])


async def get_interaction(uow: UnitOfWork, interaction_id: str) -> Interaction | None:
    doc = await uow.db[INTERACTIONS].find_one({"_id": interaction_id}, session=uow.session)
    return interaction_from_document(doc) if doc else None


async def insert_interaction(uow: UnitOfWork, interaction: Interaction) -> Interaction:
    """Insert the interaction; returns it as a later read will see it."""
    await uow.db[INTERACTIONS].insert_one(interaction_to_document(interaction), session=uow.session)
    return replace(interaction, logged_at=as_stored(interaction.logged_at))


# ---------------------------------------------------------------- referrals


def referral_to_document(referral: Referral) -> dict[str, Any]:
    return {
        "_id": referral.referral_id,
        **referral.referred.model_dump(mode="python", exclude={"referral_id"}),
        "referred_at": referral.referred_at,
        "event_id": referral.event_id,
    }


def referral_from_document(doc: dict[str, Any]) -> Referral:
    referred = CustomerReferred(
        referral_id=doc["_id"],
        customer_id=doc["customer_id"],
        referred_customer_id=doc["referred_customer_id"],
        channel=doc.get("channel"),
    )
    return Referral(referred, doc["referred_at"], doc["event_id"])


async def get_referral(uow: UnitOfWork, referral_id: str) -> Referral | None:
    doc = await uow.db[REFERRALS].find_one({"_id": referral_id}, session=uow.session)
    return referral_from_document(doc) if doc else None


async def insert_referral(uow: UnitOfWork, referral: Referral) -> Referral:
    """Insert the referral; returns it as a later read will see it."""
    await uow.db[REFERRALS].insert_one(referral_to_document(referral), session=uow.session)
    return replace(referral, referred_at=as_stored(referral.referred_at))


# ---------------------------------------------------------------- timeline


def entry_to_document(entry: TimelineEntry) -> dict[str, Any]:
    return {
        "_id": entry.event_id,
        "customer_id": entry.customer_id,
        "type": entry.type,
        "time": entry.time,
        "source": entry.source,
        "summary": entry.summary,
        "data": dict(entry.data),
    }


def entry_from_document(doc: dict[str, Any]) -> TimelineEntry:
    return TimelineEntry(
        event_id=doc["_id"],
        customer_id=doc["customer_id"],
        type=doc["type"],
        time=doc["time"],
        source=doc["source"],
        summary=doc["summary"],
        data=doc.get("data", {}),
    )


async def record_entry(db: AsyncDatabase[dict[str, Any]], entry: TimelineEntry) -> bool:
    """Write the entry unless its event is already on the timeline; True when it was new.

    No transaction: the entry is a function of the event alone, keyed by the event id, and nothing
    is emitted with it, so a redelivery (or a concurrent copy) writes the same document or nothing.
    """
    try:
        result = await db[TIMELINE].update_one(
            {"_id": entry.event_id}, {"$setOnInsert": entry_to_document(entry)}, upsert=True
        )
    except DuplicateKeyError:
        # Two concurrent upserts of the same event: the other one inserted it.
        return False
    return result.upserted_id is not None


async def timeline_page(
    db: AsyncDatabase[dict[str, Any]],
    customer_id: str,
    *,
    limit: int,
    cursor: str | None = None,
    event_type: str | None = None,
) -> tuple[list[TimelineEntry], str | None]:
    """A page of entries in event-time order (ties by event id), and the cursor of the next page."""
    query: dict[str, Any] = {"customer_id": customer_id}
    if event_type is not None:
        query["type"] = event_type
    docs, next_cursor = await keyset_page(
        db[TIMELINE], query, time_field="time", limit=limit, cursor=cursor, newest_first=False
    )
    return [entry_from_document(d) for d in docs], next_cursor
