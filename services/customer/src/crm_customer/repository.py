"""The customer database: `customers` (profiles), `personal_keys` (each customer's key for the personal fields
sealed in events), `interactions`, `referrals` and `timeline` (the 360 view)."""

import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import replace
from datetime import date, datetime
from typing import Any, Literal

from pymongo import ASCENDING, IndexModel, InsertOne, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from crm_customer.domain import Assignment, Details, Interaction, PersonalKey, Profile, Referral, TimelineEntry
from crm_customer.insights.timeline import depths_by_time
from crm_customer.profiles.domain import name_prefixes
from crm_shared import identity
from crm_shared.api import cursor_id, cursor_time, decode_cursor, encode_cursor, invalid_cursor
from crm_shared.events import CloudEvent, CustomerReferred, InteractionLogged, utc_now
from crm_shared.matching import normalise_email, normalise_phone
from crm_shared.store import DEADLETTERS, IndexSpec, UnitOfWork, as_stored

CUSTOMERS = "customers"
INTERACTIONS = "interactions"
REFERRALS = "referrals"
TIMELINE = "timeline"
PERSONAL_KEYS = "personal_keys"

INDEXES = (
    IndexSpec(
        TIMELINE,
        IndexModel([("customer_id", ASCENDING), ("time", ASCENDING), ("_id", ASCENDING)], name="by_customer_in_time"),
    ),
    IndexSpec(INTERACTIONS, IndexModel([("customer_id", ASCENDING), ("logged_at", ASCENDING)], name="by_customer")),
    IndexSpec(REFERRALS, IndexModel([("customer_id", ASCENDING), ("referred_at", ASCENDING)], name="by_customer")),
    IndexSpec(
        "consent_history",
        IndexModel([("customer_id", ASCENDING), ("at", ASCENDING), ("_id", ASCENDING)], name="by_customer_in_time"),
    ),
    # An erasure finds the customer's kept dead-letter originals by their Kafka key, the customer id.
    IndexSpec(DEADLETTERS, IndexModel([("key", ASCENDING)], name="by_key")),
)


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
        "kind": details.kind,
        # Search keys, derived here so that an erasure, which empties the personal fields, empties them too.
        "search_name": name_prefixes(details.name),
        "search_email": _normalised(normalise_email, details.email),
        "search_phone": _normalised(normalise_phone, details.phone),
        "registered_at": profile.registered_at,
        "registered_by": profile.registered_by,
        "consents_changed_at": dict(profile.consents_changed_at),
        "service_consents": dict(details.service_consents),
        "service_consents_changed_at": dict(profile.service_consents_changed_at),
        "erased_at": profile.erased_at,
    }


def _normalised(normalise: Callable[[str | None], str | None], value: str | None) -> str | None:
    try:
        return normalise(value)
    except ValueError:
        return None  # not searchable by it; the profile keeps it as given


def profile_from_document(doc: dict[str, Any]) -> Profile:
    return Profile(
        customer_id=doc["_id"],
        details=Details(
            name=doc.get("name"),
            email=doc.get("email"),
            phone=doc.get("phone"),
            channel=doc["channel"],
            consents=dict(doc.get("consents", {})),
            preferred_channel=doc.get("preferred_channel"),
            kind=doc.get("kind", "person"),
            service_consents=dict(doc.get("service_consents") or {}),
        ),
        registered_at=doc["registered_at"],
        registered_by=doc["registered_by"],
        consents_changed_at=dict(doc.get("consents_changed_at", {})),
        service_consents_changed_at=dict(doc.get("service_consents_changed_at") or {}),
        erased_at=doc.get("erased_at"),
    )


async def get_profile(uow: UnitOfWork, customer_id: str, *, where: dict[str, Any] | None = None) -> Profile | None:
    """The profile, when there is one (and `where`, a filter on `_id` narrowed to what a caller sees, selects it)."""
    doc = await uow.db[CUSTOMERS].find_one(where or {"_id": customer_id}, session=uow.session)
    return profile_from_document(doc) if doc else None


def profile_as_stored(profile: Profile) -> Profile:
    """The profile as a later read will see it (times in milliseconds)."""
    return replace(
        profile,
        registered_at=as_stored(profile.registered_at),
        consents_changed_at={c: as_stored(at) for c, at in profile.consents_changed_at.items()},
        service_consents_changed_at={c: as_stored(at) for c, at in profile.service_consents_changed_at.items()},
        erased_at=as_stored(profile.erased_at) if profile.erased_at else None,
    )


def _profile_fields(profile: Profile) -> dict[str, Any]:
    """The `$set` of a profile change: every field of the profile, so the assignment beside it stays."""
    return {"$set": {k: v for k, v in profile_to_document(profile).items() if k != "_id"}}


def _new_customer(profile: Profile) -> dict[str, Any]:
    """A new customer's document: unassigned, so only those who see every record see it until assigned."""
    return {**profile_to_document(profile), **assignment_to_document(Assignment())}


async def save_profile(uow: UnitOfWork, profile: Profile) -> None:
    await uow.db[CUSTOMERS].update_one({"_id": profile.customer_id}, _profile_fields(profile), session=uow.session)


async def get_profiles(uow: UnitOfWork, customer_ids: Iterable[str]) -> dict[str, Profile]:
    """The stored profiles among `customer_ids`, by id."""
    docs = await uow.find_ids(CUSTOMERS, customer_ids)
    return {doc["_id"]: profile_from_document(doc) for doc in docs}


async def save_profiles(uow: UnitOfWork, new: Iterable[Profile], changed: Iterable[Profile]) -> None:
    """Insert the `new` profiles (unassigned) and update the `changed` ones, in one bulk write."""
    writes: list[InsertOne[dict[str, Any]] | UpdateOne] = [InsertOne(_new_customer(p)) for p in new]
    writes += [UpdateOne({"_id": p.customer_id}, _profile_fields(p)) for p in changed]
    if writes:
        await uow.db[CUSTOMERS].bulk_write(writes, ordered=False, session=uow.session)


# ---------------------------------------------------------------- consent history

CONSENT_HISTORY = "consent_history"


def consent_history_entry(
    event: CloudEvent[Any], channel: str, purpose: str, granted: bool, *, effective: bool = True
) -> dict[str, Any]:
    """One consent fact as received: the channel, purpose and answer, its own time and source, the event it came
    in, and whether it took effect (a fact older than the channel's last one on record does not)."""
    return {
        "_id": f"{event.id}:{purpose}:{channel}",
        "customer_id": event.customer_id,
        **identity.origin_fields(event),
        "channel": channel,
        "purpose": purpose,
        "granted": granted,
        "at": as_stored(event.time),
        "source": event.source,
        "event_id": event.id,
        "event_type": event.type,
        "effective": effective,
        "recorded_at": as_stored(utc_now()),
    }


async def insert_consent_history(uow: UnitOfWork, entries: Sequence[dict[str, Any]]) -> None:
    if entries:
        await uow.db[CONSENT_HISTORY].insert_many(list(entries), ordered=False, session=uow.session)


# ---------------------------------------------------------------- personal keys and erasure


def personal_key_to_document(key: PersonalKey) -> dict[str, Any]:
    return {"_id": key.customer_id, "key_id": key.key_id, "key": key.key, "created_at": key.created_at}


def personal_key_from_document(doc: dict[str, Any]) -> PersonalKey:
    return PersonalKey(
        customer_id=doc["_id"], key_id=doc["key_id"], key=bytes(doc["key"]), created_at=doc["created_at"]
    )


async def get_personal_keys(uow: UnitOfWork, customer_ids: Iterable[str]) -> dict[str, PersonalKey]:
    """The keys of the customers among `customer_ids` that have one, by customer id."""
    docs = await uow.find_ids(PERSONAL_KEYS, customer_ids)
    return {doc["_id"]: personal_key_from_document(doc) for doc in docs}


async def insert_personal_keys(uow: UnitOfWork, keys: Collection[PersonalKey]) -> None:
    """Insert the new keys in one write; a key made concurrently for the same customer fails the transaction,
    which is then run again and finds it."""
    if keys:
        docs = [personal_key_to_document(k) for k in keys]
        await uow.db[PERSONAL_KEYS].insert_many(docs, ordered=False, session=uow.session)


async def find_personal_key(db: AsyncDatabase[dict[str, Any]], customer_id: str) -> PersonalKey | None:
    doc = await db[PERSONAL_KEYS].find_one({"_id": customer_id})
    return personal_key_from_document(doc) if doc else None


async def destroy_personal_key(uow: UnitOfWork, customer_id: str) -> str | None:
    """Delete the customer's key: the id of the key destroyed, None when there was none."""
    doc = await uow.db[PERSONAL_KEYS].find_one_and_delete(
        {"_id": customer_id}, projection={"key_id": 1}, session=uow.session
    )
    return doc["key_id"] if doc else None


def _dead_letters_of(customer_id: str) -> dict[str, Any]:
    """The customer's kept dead letters: keyed by the customer id, or (a record refused for a Kafka key that
    was not its subject) whose JSON text names the customer as subject or customer_id."""
    named = rf'"(subject|customer_id)"\s*:\s*"{re.escape(customer_id)}"'
    return {"$or": [{"key": customer_id}, {"original_text": {"$regex": named}}]}


async def erase_dead_letter_originals(uow: UnitOfWork, customer_id: str, at: datetime) -> int:
    """Remove the originals (bytes, text and base64 copy) of the customer's kept dead letters; the letters
    stay, with their reason, topic, partition and offset. How many letters lost their original."""
    erased = {
        "original": None,
        "original_kept_in": None,
        "original_text": None,
        "original_value_base64": None,
        "original_erased_at": at,
    }
    query = {"$and": [_dead_letters_of(customer_id), {"original_erased_at": None}]}
    result = await uow.db[DEADLETTERS].update_many(query, {"$set": erased}, session=uow.session)
    return result.modified_count


# ---------------------------------------------------------------- assignment


def assignment_to_document(assignment: Assignment) -> dict[str, Any]:
    return {"owner_id": assignment.owner_id, "territory": assignment.territory}


async def assign(db: AsyncDatabase[dict[str, Any]], customer: dict[str, Any], assignment: Assignment) -> bool:
    """Set the owner and territory of the customer `customer` (an `_id` filter, narrowed to what the caller
    sees) selects; False when it selects none."""
    result = await db[CUSTOMERS].update_one(customer, {"$set": assignment_to_document(assignment)})
    return result.matched_count == 1


# ---------------------------------------------------------------- interactions


def interaction_to_document(interaction: Interaction) -> dict[str, Any]:
    return {
        "_id": interaction.interaction_id,
        **interaction.logged.model_dump(mode="python", exclude={"interaction_id"}),
        "logged_at": interaction.logged_at,
        "event_id": interaction.event_id,
        **_origin(interaction.logged.customer_id, interaction.origin),
    }


def _origin(customer_id: str, origin: str | None) -> dict[str, str]:
    """The id a record was first filed under, when not its customer's (crm_shared.identity)."""
    return {identity.ORIGIN: origin} if origin and origin != customer_id else {}


def interaction_from_document(doc: dict[str, Any]) -> Interaction:
    logged = InteractionLogged(
        interaction_id=doc["_id"],
        customer_id=doc["customer_id"],
        kind=doc["kind"],
        channel=doc["channel"],
        summary=doc.get("summary"),
    )
    return Interaction(logged, doc["logged_at"], doc["event_id"])


def interaction_as_stored(interaction: Interaction) -> Interaction:
    """The interaction as a later read will see it."""
    return replace(interaction, logged_at=as_stored(interaction.logged_at))


async def get_interactions(uow: UnitOfWork, interaction_ids: Iterable[str]) -> dict[str, Interaction]:
    """The stored interactions among `interaction_ids`, by id."""
    docs = await uow.find_ids(INTERACTIONS, interaction_ids)
    return {doc["_id"]: interaction_from_document(doc) for doc in docs}


async def insert_interactions(uow: UnitOfWork, interactions: Collection[Interaction]) -> None:
    """Insert the new interactions in one write."""
    if interactions:
        docs = [interaction_to_document(i) for i in interactions]
        await uow.db[INTERACTIONS].insert_many(docs, ordered=False, session=uow.session)


# ---------------------------------------------------------------- referrals


def referral_to_document(referral: Referral) -> dict[str, Any]:
    return {
        "_id": referral.referral_id,
        **referral.referred.model_dump(mode="python", exclude={"referral_id"}),
        "referred_at": referral.referred_at,
        "event_id": referral.event_id,
        **_origin(referral.referred.customer_id, referral.origin),
    }


def referral_from_document(doc: dict[str, Any]) -> Referral:
    referred = CustomerReferred(
        referral_id=doc["_id"],
        customer_id=doc["customer_id"],
        referred_customer_id=doc["referred_customer_id"],
        channel=doc.get("channel"),
    )
    return Referral(referred, doc["referred_at"], doc["event_id"])


def referral_as_stored(referral: Referral) -> Referral:
    """The referral as a later read will see it."""
    return replace(referral, referred_at=as_stored(referral.referred_at))


async def get_referrals(uow: UnitOfWork, referral_ids: Iterable[str]) -> dict[str, Referral]:
    """The stored referrals among `referral_ids`, by id."""
    docs = await uow.find_ids(REFERRALS, referral_ids)
    return {doc["_id"]: referral_from_document(doc) for doc in docs}


async def insert_referrals(uow: UnitOfWork, referrals: Collection[Referral]) -> None:
    """Insert the new referrals in one write."""
    if referrals:
        docs = [referral_to_document(r) for r in referrals]
        await uow.db[REFERRALS].insert_many(docs, ordered=False, session=uow.session)


# ---------------------------------------------------------------- timeline


def entry_to_document(entry: TimelineEntry) -> dict[str, Any]:
    return {
        "_id": entry.event_id,
        "customer_id": entry.customer_id,
        "type": entry.type,
        "time": entry.time,
        "source": entry.source,
        "summary": entry.summary,
        "data": _storable(dict(entry.data)),
        "cause": entry.cause,
        **_origin(entry.customer_id, entry.origin),
    }


def _storable(value: Any) -> Any:
    """The payload as BSON holds it: a date (a quote's `valid_until`, an opportunity's `expected_close`) as its
    ISO text, as the API shows it; BSON has datetimes only."""
    if isinstance(value, dict):
        return {k: _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    return value


def entry_from_document(doc: dict[str, Any]) -> TimelineEntry:
    return TimelineEntry(
        event_id=doc["_id"],
        customer_id=doc["customer_id"],
        type=doc["type"],
        time=doc["time"],
        source=doc["source"],
        summary=doc["summary"],
        data=doc.get("data", {}),
        cause=doc.get("cause"),
        origin=doc.get(identity.ORIGIN),
    )


DUPLICATE_KEY = 11000


async def record_entries(db: AsyncDatabase[dict[str, Any]], entries: Sequence[TimelineEntry]) -> set[str]:
    """Write each entry unless its event is already on the timeline, in one bulk insert; the event ids written.

    No transaction: an entry is a function of its event alone, keyed by the event id, and nothing is
    emitted with it, so a redelivery (or a concurrent copy) writes the same document or nothing. The unique
    _id refuses an entry that is there already; an unordered insert writes the others (about a third of
    what an upsert each costs the embedded database).
    """
    if not entries:
        return set()
    try:
        await db[TIMELINE].insert_many([entry_to_document(e) for e in entries], ordered=False)
    except BulkWriteError as exc:
        details = exc.details
        errors = details.get("writeErrors", [])
        if details.get("writeConcernErrors") or any(error.get("code") != DUPLICATE_KEY for error in errors):
            raise
        refused = {error["index"] for error in errors}
        return {e.event_id for i, e in enumerate(entries) if i not in refused}
    return {e.event_id for e in entries}


TimelineOrder = Literal["newest", "oldest"]


async def timeline_page(
    db: AsyncDatabase[dict[str, Any]],
    customer_id: str,
    *,
    limit: int,
    cursor: str | None = None,
    types: Collection[str] | None = None,
    channel: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    order: TimelineOrder = "oldest",
) -> tuple[list[TimelineEntry], str | None]:
    """A page of the entries of these event types, with this `data.channel`, of event times in [start, end),
    newest or oldest first; at one time a cause before what it caused, then by event id (crm_customer.insights.
    timeline). The cursor of the next page, (time, depth, event id), stays right while new entries arrive.

    Every entry of a time a page reaches is read, since their order depends on all of them: the entries of the
    cursor's time, then the next `limit` + 1 beyond it, then the rest of the last time those reach.
    """
    query = _timeline_query(customer_id, types, channel, start, end)
    newest_first = order == "newest"
    after = decode_cursor(cursor)
    resume = (cursor_time(after), _cursor_depth(after), cursor_id(after)) if after is not None else None
    docs: list[dict[str, Any]] = []
    beyond = query
    if resume is not None:
        docs = await _entries_at(db, query, resume[0])
        # Flat filters, never $and: the embedded database plans an index only for a flat one. The resume bound is
        # inside any window the query has, so it narrows the window's bound on its side.
        bound = {"$lt" if newest_first else "$gt": resume[0]}
        beyond = {**query, "time": {**query.get("time", {}), **bound}}
    direction = -1 if newest_first else 1
    found = db[TIMELINE].find(beyond).sort([("time", direction), ("_id", direction)])
    later = await found.limit(limit + 1).to_list(limit + 1)
    if len(later) > limit:
        last_at = later[-1]["time"]
        later = [d for d in later if d["time"] != last_at] + await _entries_at(db, query, last_at)
    docs += later
    depths = await _depths(db, customer_id, docs, complete=set(query) == {"customer_id"})
    # Two stable sorts: within a time by depth and id, then the times as asked.
    docs.sort(key=lambda d: (depths[d["_id"]], d["_id"]))
    docs.sort(key=lambda d: d["time"], reverse=newest_first)
    if resume is not None:
        at, depth, event_id = resume
        docs = [d for d in docs if d["time"] != at or (depths[d["_id"]], d["_id"]) > (depth, event_id)]
    if len(docs) <= limit:
        return [entry_from_document(d) for d in docs], None
    end_doc = docs[limit - 1]
    position = {"at": end_doc["time"].isoformat(), "depth": depths[end_doc["_id"]], "id": end_doc["_id"]}
    return [entry_from_document(d) for d in docs[:limit]], encode_cursor(position)


def _timeline_query(
    customer_id: str,
    types: Collection[str] | None,
    channel: str | None,
    start: datetime | None,
    end: datetime | None,
) -> dict[str, Any]:
    query: dict[str, Any] = {"customer_id": customer_id}
    if types is not None:
        query["type"] = {"$in": sorted(types)}
    if channel is not None:
        query["data.channel"] = channel
    window = {op: at for op, at in (("$gte", start), ("$lt", end)) if at is not None}
    if window:
        query["time"] = window
    return query


MAX_CURSOR_DEPTH = 10_000


def _cursor_depth(after: dict[str, Any]) -> int:
    """The depth a page resumes after; 0 in a cursor of before cause order, which held time and id only."""
    depth = after.get("depth", 0)
    if not isinstance(depth, int) or isinstance(depth, bool) or not 0 <= depth <= MAX_CURSOR_DEPTH:
        raise invalid_cursor("`depth` is not a depth")
    return depth


async def _entries_at(db: AsyncDatabase[dict[str, Any]], query: dict[str, Any], at: datetime) -> list[dict[str, Any]]:
    """The query's entries of one time (a time the query's window holds: it came from its results)."""
    return await db[TIMELINE].find({**query, "time": at}).to_list(None)


async def _depths(
    db: AsyncDatabase[dict[str, Any]], customer_id: str, docs: list[dict[str, Any]], *, complete: bool
) -> dict[str, int]:
    """Each entry's depth among all the customer's entries of its time: those read, when nothing was filtered
    out (every time read was read whole), else every entry of those times, whatever the filters."""
    if complete:
        links = [(d["_id"], d["time"], d.get("cause")) for d in docs]
    else:
        times = sorted({d["time"] for d in docs})
        query = {"customer_id": customer_id, "time": {"$in": times}}
        found = await db[TIMELINE].find(query, {"time": 1, "cause": 1}).to_list(None) if times else []
        links = [(d["_id"], d["time"], d.get("cause")) for d in found]
    return depths_by_time(links)
