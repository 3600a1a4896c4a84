"""The marketing database.

`contact_preferences` (consents only, no personal data), `campaigns` (one per journey, plus planned
campaigns with a budget; an archived one keeps its `archived_at` and enrols nobody), `enrolments`,
`contact_locks` (one per customer, written by every enrolment so two concurrent enrolments of one
customer conflict and the frequency cap holds),
`orders` (the order facts marketing needs for attribution), `conversions`, `segments` (named rule
definitions), `customer_attributes` (what segment rules read: scores, consents, last order),
`leads` (the qualified leads handed to sales), `interactions` (the logged interactions engagement
counts, one per customer and interaction id) and `engagement` (one per customer, written with each
new interaction so two concurrent interactions of one customer conflict and neither is missed).
`merged_contact_preferences` and `merged_customer_attributes` hold the documents of customers merged into
another, put aside until an unmerge (crm_marketing.identity).

A consumer batch reads with the `*_of` / `*_for` functions below, one read per collection over the
batch's customers, orders and campaigns, and writes with `write`: the operations the `*_write`
functions build, one bulk write per collection.
"""

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel, InsertOne, ReplaceOne, UpdateMany, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from crm_marketing.domain import Consent, ContactPreferences, Enrolment, Fact, Preferred
from crm_marketing.engagement import ENGAGEMENT_SEGMENT, Interaction
from crm_marketing.journeys import Journey
from crm_shared.events import ScoreSnapshot
from crm_shared.identity import ORIGIN
from crm_shared.store import IndexSpec, UnitOfWork, find_any

CONTACT_PREFERENCES = "contact_preferences"
CAMPAIGNS = "campaigns"
ENROLMENTS = "enrolments"
CONTACT_LOCKS = "contact_locks"
ORDERS = "orders"
CONVERSIONS = "conversions"
SEGMENTS = "segments"
LEADS = "leads"
ATTRIBUTES = "customer_attributes"
INTERACTIONS = "interactions"
ENGAGEMENT = "engagement"
MERGED_PREFERENCES = "merged_contact_preferences"
MERGED_ATTRIBUTES = "merged_customer_attributes"

INDEXES = (
    IndexSpec(
        ENROLMENTS,
        IndexModel([("campaign_id", ASCENDING), ("enrolled_at", DESCENDING), ("_id", DESCENDING)], name="by_campaign"),
    ),
    # Once per customer, journey and episode: the enrolment's id derives from the three, whatever path it came
    # by. Nothing unique on the three: a survivor of a merge keeps its own enrolment and the merged id's in one
    # episode (both happened); a new enrolment looks the customer's up first (Ledger.enrolled), by this index.
    IndexSpec(
        ENROLMENTS,
        IndexModel([("customer_id", ASCENDING), ("enrolled_at", DESCENDING), ("_id", DESCENDING)], name="by_customer"),
    ),
    IndexSpec(CAMPAIGNS, IndexModel([("journey", ASCENDING), ("starts_at", DESCENDING)], name="by_journey_and_start")),
    IndexSpec(ORDERS, IndexModel([("customer_id", ASCENDING), ("ordered_at", ASCENDING)], name="by_customer")),
    IndexSpec(CONVERSIONS, IndexModel([("campaign_id", ASCENDING), ("group", ASCENDING)], name="by_campaign")),
    # A batch finds the conversions of its orders (to know which exist, and which a cancellation withdraws).
    IndexSpec(CONVERSIONS, IndexModel([("order_id", ASCENDING)], name="by_order")),
    # A merge, an unmerge and an erasure find a customer's conversions.
    IndexSpec(CONVERSIONS, IndexModel([("customer_id", ASCENDING)], name="by_customer")),
    IndexSpec(ATTRIBUTES, IndexModel([("value_tier", ASCENDING)], name="by_value_tier")),
    IndexSpec(ATTRIBUTES, IndexModel([("lifecycle_stage", ASCENDING)], name="by_lifecycle_stage")),
    IndexSpec(INTERACTIONS, IndexModel([("customer_id", ASCENDING), ("at", ASCENDING)], name="by_customer")),
    # A customer is handed over once per segment, also when it took over a merged id's lead.
    IndexSpec(LEADS, IndexModel([("customer_id", ASCENDING), ("segment_id", ASCENDING)], name="by_customer")),
)

RETIRED_INDEXES = ((ENROLMENTS, "one_per_episode"),)
"""Indexes dropped at start-up: unique on customer, journey and episode, it refused a merge (see above)."""

Write = InsertOne[dict[str, Any]] | ReplaceOne[dict[str, Any]] | UpdateOne | UpdateMany
"""One operation of a bulk write."""

WRITE_CONFLICT = 112


async def drop_retired_indexes(db: AsyncDatabase[dict[str, Any]]) -> list[str]:
    """Drop the RETIRED_INDEXES still there; the names of those dropped."""
    dropped = []
    for collection, name in RETIRED_INDEXES:
        if name in await db[collection].index_information():
            await db[collection].drop_index(name)
            dropped.append(f"{collection}.{name}")
    return dropped


async def _find(
    uow: UnitOfWork,
    collection: str,
    clauses: Sequence[dict[str, Any]],
    projection: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The documents matching any of `clauses` (`find_any`: a query per clause, never one `$or`)."""
    return await find_any(uow.db[collection], clauses, projection, session=uow.session)


def _ids(values: Iterable[str]) -> list[str]:
    return sorted(set(values))


async def write(uow: UnitOfWork, writes: Mapping[str, Sequence[Write]]) -> None:
    """One ordered bulk write per collection.

    A second enrolment in an episode raises DuplicateKeyError, as a single insert would, so the store takes
    it for a concurrent copy of the batch. A spend that no longer finds the amount the batch read is a write
    conflict: the transaction is retried on what the other writer committed.
    """
    for collection, operations in writes.items():
        if not operations:
            continue
        try:
            result = await uow.db[collection].bulk_write(list(operations), ordered=True, session=uow.session)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if errors and all(e.get("code") == 11000 for e in errors):
                raise DuplicateKeyError(errors[0].get("errmsg", "duplicate key"), 11000, errors[0]) from exc
            raise
        if collection == CAMPAIGNS and result.matched_count + result.upserted_count != len(operations):
            raise OperationFailure(
                "a campaign's spent amount changed during the transaction",
                WRITE_CONFLICT,
                {"errorLabels": ["TransientTransactionError"]},
            )


# ---------------------------------------------------------------- contact preferences


def _fact(fact: Fact) -> dict[str, Any]:
    return {"at": fact.at, "event_id": fact.event_id}


def preferences_to_document(prefs: ContactPreferences) -> dict[str, Any]:
    return {
        "_id": prefs.customer_id,
        "consents": {c: {"granted": k.granted, **_fact(k.fact)} for c, k in prefs.consents.items()},
        "preferred": {"channel": prefs.preferred.channel, **_fact(prefs.preferred.fact)} if prefs.preferred else None,
        # Denormalised for readers; always derived from the facts above.
        "granted": list(prefs.granted),
        "refused": list(prefs.refused),
        "preferred_channel": prefs.preferred_channel,
    }


def preferences_from_document(doc: dict[str, Any]) -> ContactPreferences:
    preferred = doc.get("preferred")
    return ContactPreferences(
        customer_id=doc["_id"],
        consents={
            channel: Consent(c["granted"], Fact(c["at"], c["event_id"])) for channel, c in doc["consents"].items()
        },
        preferred=Preferred(preferred["channel"], Fact(preferred["at"], preferred["event_id"])) if preferred else None,
    )


async def preferences_of(
    uow: UnitOfWork, customer_ids: Iterable[str], collection: str = CONTACT_PREFERENCES
) -> dict[str, ContactPreferences]:
    """The preferences marketing knows of these customers, by customer (of merged ones: MERGED_PREFERENCES)."""
    ids = _ids(customer_ids)
    docs = await _find(uow, collection, [{"_id": {"$in": ids}}] if ids else [])
    return {d["_id"]: preferences_from_document(d) for d in docs}


def preferences_write(prefs: ContactPreferences) -> Write:
    return ReplaceOne({"_id": prefs.customer_id}, preferences_to_document(prefs), upsert=True)


# ---------------------------------------------------------------- campaigns

JOURNEY_CAMPAIGN_DEFAULTS: dict[str, Any] = {
    "spent": Decimal(0),
    "cost_per_contact": Decimal(0),
    "budget": None,
    "currency": "EUR",
}
"""What a journey's own campaign starts with: it is budget-less."""


def journey_campaign_document(journey: Journey) -> dict[str, Any]:
    return {
        "kind": "journey",
        "name": journey.name,
        "objective": journey.description,
        "journey": journey.name,
        "trigger": {
            "type": journey.trigger,
            "dimension": journey.dimension,
            "new_value": journey.new_value,
            "requires_value_tier": journey.requires_value_tier,
        },
    }


def journey_campaign_write(journey: Journey) -> Write:
    """The journey's own campaign exists and describes the journey as configured now."""
    return UpdateOne(
        {"_id": journey.campaign},
        {"$set": journey_campaign_document(journey), "$setOnInsert": JOURNEY_CAMPAIGN_DEFAULTS},
        upsert=True,
    )


async def campaigns_for(
    uow: UnitOfWork, campaign_ids: Iterable[str], journeys: Iterable[str], start: datetime, end: datetime
) -> dict[str, dict[str, Any]]:
    """These campaigns, and the planned campaigns, not archived, running one of `journeys` at some time from
    `start` to `end`."""
    ids, names = _ids(campaign_ids), _ids(journeys)
    clauses: list[dict[str, Any]] = []
    if ids:
        clauses.append({"_id": {"$in": ids}})
    if names:
        clauses.append(
            {
                "kind": "planned",
                "journey": {"$in": names},
                "starts_at": {"$lte": end},
                "ends_at": {"$gt": start},
                "archived_at": None,
            }
        )
    return {d["_id"]: d for d in await _find(uow, CAMPAIGNS, clauses)}


def spend_write(campaign_id: str, spent_before: Decimal | None, cost: Decimal) -> Write:
    """Spend `cost` from the campaign, provided it still holds the spent amount the batch decided on."""
    return UpdateOne({"_id": campaign_id, "spent": spent_before}, {"$inc": {"spent": cost}})


async def archive_campaign(db: AsyncDatabase[dict[str, Any]], campaign_id: str, at: datetime) -> None:
    """Archive a planned campaign; the first archiving's time stays."""
    await db[CAMPAIGNS].update_one(
        {"_id": campaign_id, "kind": "planned", "archived_at": None}, {"$set": {"archived_at": at}}
    )


async def live_campaigns_on_segment(db: AsyncDatabase[dict[str, Any]], segment_id: str) -> list[str]:
    """The ids of the campaigns, not archived, whose audience is the segment."""
    docs = await db[CAMPAIGNS].find({"segment_id": segment_id, "archived_at": None}, {"_id": 1}).to_list(None)
    return sorted(d["_id"] for d in docs)


# ---------------------------------------------------------------- segments


async def count_matching(
    db: AsyncDatabase[dict[str, Any]], collection: str, filters: Mapping[str, Mapping[str, Any]]
) -> dict[str, int]:
    """How many documents of the collection match each filter, by the filter's key: one `$facet` aggregation,
    one pass over the collection for them all, rather than a count per filter."""
    if not filters:
        return {}
    keys = list(filters)
    # Facet names are positional: a key (a segment id) may hold a '.', which a field name may not.
    facets = {f"f{i}": [{"$match": dict(filters[key])}, {"$count": "n"}] for i, key in enumerate(keys)}
    row = await (await db[collection].aggregate([{"$facet": facets}])).next()
    return {key: row[f"f{i}"][0]["n"] if row[f"f{i}"] else 0 for i, key in enumerate(keys)}


async def delete_segment(db: AsyncDatabase[dict[str, Any]], segment_id: str) -> bool:
    """True when there was such a segment; by id only, so even a definition no longer accepted goes."""
    return (await db[SEGMENTS].delete_one({"_id": segment_id})).deleted_count == 1


# ---------------------------------------------------------------- enrolments


def enrolment_to_document(enrolment: Enrolment) -> dict[str, Any]:
    return {
        "_id": enrolment.enrolment_id,
        "customer_id": enrolment.customer_id,
        "campaign_id": enrolment.campaign_id,
        "journey": enrolment.journey,
        "episode": enrolment.episode,
        "channel": enrolment.channel,
        "status": enrolment.status,
        "reason": enrolment.reason,
        "trigger_event_id": enrolment.trigger_event_id,
        "enrolled_at": enrolment.enrolled_at,
        "cost": enrolment.cost,
        "frequency_capped": enrolment.frequency_capped,
        **({ORIGIN: enrolment.origin_customer_id} if enrolment.origin_customer_id else {}),
    }


def enrolment_from_document(doc: dict[str, Any]) -> Enrolment:
    return Enrolment(
        enrolment_id=doc["_id"],
        customer_id=doc["customer_id"],
        campaign_id=doc["campaign_id"],
        journey=doc["journey"],
        episode=doc["episode"],
        channel=doc.get("channel"),
        status=doc["status"],
        reason=doc.get("reason"),
        trigger_event_id=doc["trigger_event_id"],
        enrolled_at=doc["enrolled_at"],
        cost=doc.get("cost", Decimal(0)),
        frequency_capped=doc.get("frequency_capped", True),
        origin_customer_id=doc.get(ORIGIN),
    )


async def enrolments_for(
    uow: UnitOfWork,
    episodes: Iterable[tuple[str, str, str]],
    customer_ids: Iterable[str],
    statuses: Sequence[str],
    start: datetime,
    end: datetime,
) -> list[Enrolment]:
    """The enrolments in these episodes (customer, journey, episode), and the customers' enrolments in
    `statuses` from `start` to `end`."""
    wanted, customers = set(episodes), _ids(customer_ids)
    found: dict[str, dict[str, Any]] = {}
    if wanted:
        # By customer and journey (a few enrolments each), not by id: a survivor's enrolment in an episode may
        # be one filed under a merged id first, whose id derives from that id.
        in_journeys = {
            "customer_id": {"$in": _ids(c for c, _, _ in wanted)},
            "journey": {"$in": _ids(j for _, j, _ in wanted)},
        }
        for doc in await _find(uow, ENROLMENTS, [in_journeys]):
            if (doc["customer_id"], doc["journey"], doc["episode"]) in wanted:
                found[doc["_id"]] = doc
    if customers:
        clause = {
            "customer_id": {"$in": customers},
            "status": {"$in": list(statuses)},
            "enrolled_at": {"$gte": start, "$lte": end},
        }
        for doc in await _find(uow, ENROLMENTS, [clause]):
            found.setdefault(doc["_id"], doc)
    return [enrolment_from_document(d) for d in found.values()]


def enrolment_write(enrolment: Enrolment) -> Write:
    """An insert, never checked first: the id, derived from customer, journey and episode, refuses a second
    enrolment in the same episode."""
    return InsertOne(enrolment_to_document(enrolment))


def contact_lock_write(customer_id: str, enrolments: int) -> Write:
    """The customer's lock document, so a concurrent enrolment of the same customer conflicts and retries."""
    return UpdateOne({"_id": customer_id}, {"$inc": {"enrolments": enrolments}}, upsert=True)


# ---------------------------------------------------------------- orders and conversions


async def orders_for(
    uow: UnitOfWork,
    order_ids: Iterable[str] = (),
    customer_ids: Iterable[str] = (),
    start: datetime | None = None,
    end: datetime | None = None,
) -> dict[str, dict[str, Any]]:
    """These orders, and the customers' orders placed from `start` to `end`, by id."""
    ids, customers = _ids(order_ids), _ids(customer_ids)
    clauses: list[dict[str, Any]] = []
    if ids:
        clauses.append({"_id": {"$in": ids}})
    if customers:
        clauses.append({"customer_id": {"$in": customers}, "ordered_at": {"$gte": start, "$lte": end}})
    return {d["_id"]: d for d in await _find(uow, ORDERS, clauses)}


def order_write(order: dict[str, Any]) -> Write:
    return ReplaceOne({"_id": order["_id"]}, order, upsert=True)


async def conversions_of(uow: UnitOfWork, order_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The conversions of these orders (their order and whether withdrawn), by id."""
    ids = _ids(order_ids)
    docs = await _find(uow, CONVERSIONS, [{"order_id": {"$in": ids}}] if ids else [], {"order_id": 1, "cancelled": 1})
    return {d["_id"]: d for d in docs}


def conversion_write(conversion: dict[str, Any]) -> Write:
    """An upsert, so the order path and the enrolment path never both insert."""
    return UpdateOne(
        {"_id": conversion["_id"]}, {"$setOnInsert": {k: v for k, v in conversion.items() if k != "_id"}}, upsert=True
    )


def withdraw_conversions_write(order_ids: Iterable[str]) -> Write:
    """Mark the conversions of these cancelled orders withdrawn."""
    return UpdateMany({"order_id": {"$in": _ids(order_ids)}, "cancelled": {"$ne": True}}, {"$set": {"cancelled": True}})


# ---------------------------------------------------------------- customer attributes (what segments read)


async def attributes_of(
    uow: UnitOfWork, customer_ids: Iterable[str], fields: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """These fields of the customers' attributes, by customer."""
    ids = _ids(customer_ids)
    docs = await _find(uow, ATTRIBUTES, [{"_id": {"$in": ids}}] if ids else [], {f: 1 for f in fields})
    return {d["_id"]: d for d in docs}


def scores_write(customer_id: str, scores: ScoreSnapshot, at: datetime) -> Write:
    return UpdateOne(
        {"_id": customer_id},
        {
            "$set": {
                "value_tier": scores.value_tier,
                "lifecycle_stage": scores.lifecycle_stage,
                "rfm_segment": scores.rfm_segment,
                "churn_risk_band": scores.churn_risk_band,
                "satisfaction": scores.satisfaction,
                "scores_at": at,
            }
        },
        upsert=True,
    )


def consents_write(prefs: ContactPreferences) -> Write:
    return UpdateOne(
        {"_id": prefs.customer_id},
        {"$set": {"granted": list(prefs.granted), "preferred_channel": prefs.preferred_channel}},
        upsert=True,
    )


def last_order_write(customer_id: str, at: datetime) -> Write:
    return UpdateOne({"_id": customer_id}, {"$max": {"last_order_at": at}}, upsert=True)


async def record_lead(uow: UnitOfWork, lead_id: str, customer_id: str, segment_id: str, at: datetime) -> bool:
    """Keep the lead; False when the customer was handed over for the segment before (under a merged id too)."""
    if await uow.db[LEADS].find_one({"customer_id": customer_id, "segment_id": segment_id}, session=uow.session):
        return False
    await uow.db[LEADS].insert_one(
        {"_id": lead_id, "customer_id": customer_id, "segment_id": segment_id, "handed_over_at": at},
        session=uow.session,
    )
    return True


# ---------------------------------------------------------------- engagement


def interaction_key(customer_id: str, interaction_id: str) -> str:
    # Neither id may contain '|', so the key is unambiguous.
    return f"{customer_id}|{interaction_id}"


def interaction_from_document(doc: dict[str, Any]) -> Interaction:
    return Interaction(interaction_id=doc["interaction_id"], kind=doc["kind"], at=doc["at"])


async def interactions_for(
    uow: UnitOfWork, keys: Iterable[str], customer_ids: Iterable[str], start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """These interactions (by key), and the customers' interactions from `start` to `end`."""
    ids, customers = _ids(keys), _ids(customer_ids)
    clauses: list[dict[str, Any]] = []
    if ids:
        clauses.append({"_id": {"$in": ids}})
    if customers:
        clauses.append({"customer_id": {"$in": customers}, "at": {"$gte": start, "$lte": end}})
    return await _find(uow, INTERACTIONS, clauses)


def interaction_write(
    customer_id: str, interaction: Interaction, channel: str, event_id: str, origin: Mapping[str, str]
) -> Write:
    """The interaction kept as a fact, once; `origin`: `identity.origin_fields` of its event."""
    return UpdateOne(
        {"_id": interaction_key(customer_id, interaction.interaction_id)},
        {
            "$setOnInsert": {
                "customer_id": customer_id,
                "interaction_id": interaction.interaction_id,
                "kind": interaction.kind,
                "channel": channel,
                "at": interaction.at,
                "event_id": event_id,
                **origin,
            }
        },
        upsert=True,
    )


def engagement_write(customer_id: str, interactions: int, latest_at: datetime) -> Write:
    return UpdateOne(
        {"_id": customer_id},
        {"$inc": {"interactions": interactions}, "$max": {"latest_at": latest_at}},
        upsert=True,
    )


async def interactions_between(
    db: AsyncDatabase[dict[str, Any]],
    customer_id: str,
    start: datetime,
    end: datetime,
    session: AsyncClientSession | None = None,
) -> list[Interaction]:
    """The customer's interactions from `start` to `end`, both included, oldest first."""
    docs = await (
        db[INTERACTIONS]
        .find({"customer_id": customer_id, "at": {"$gte": start, "$lte": end}}, session=session)
        .sort([("at", ASCENDING), ("interaction_id", ASCENDING)])
        .to_list(None)
    )
    return [interaction_from_document(d) for d in docs]


async def latest_interaction_at(db: AsyncDatabase[dict[str, Any]], customer_id: str) -> datetime | None:
    doc = await db[ENGAGEMENT].find_one({"_id": customer_id}, {"latest_at": 1})
    return doc.get("latest_at") if doc else None


async def handed_over_by_engagement(uow: UnitOfWork, customer_ids: Iterable[str]) -> set[str]:
    """Which of these customers hold an engagement lead (their own, or one of an id merged into them)."""
    ids = _ids(customer_ids)
    clauses = [{"customer_id": {"$in": ids}, "segment_id": ENGAGEMENT_SEGMENT}] if ids else []
    return {d["customer_id"] for d in await _find(uow, LEADS, clauses, {"customer_id": 1})}


async def engagement_lead_of(db: AsyncDatabase[dict[str, Any]], customer_id: str) -> dict[str, Any] | None:
    """The customer's first engagement lead (a survivor of a merge may hold the merged id's too)."""
    docs = await (
        db[LEADS]
        .find({"customer_id": customer_id, "segment_id": ENGAGEMENT_SEGMENT})
        .sort([("handed_over_at", ASCENDING), ("_id", ASCENDING)])
        .limit(1)
        .to_list(1)
    )
    return docs[0] if docs else None


def engagement_lead_write(
    lead_id: str, customer_id: str, at: datetime, score: int, interaction_ids: list[str], origin: Mapping[str, str]
) -> Write:
    """The lead, kept once: an insert-if-absent, so a customer is handed over once."""
    return UpdateOne(
        {"_id": lead_id},
        {
            "$setOnInsert": {
                "customer_id": customer_id,
                "segment_id": ENGAGEMENT_SEGMENT,
                "handed_over_at": at,
                "engagement_score": score,
                "interaction_ids": interaction_ids,
                **origin,
            }
        },
        upsert=True,
    )
