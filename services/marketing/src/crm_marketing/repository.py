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
"""

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from crm_marketing.domain import Consent, ContactPreferences, Enrolment, Fact, Preferred
from crm_marketing.engagement import ENGAGEMENT_SEGMENT, Interaction
from crm_marketing.journeys import Journey
from crm_shared.events import ScoreSnapshot
from crm_shared.store import IndexSpec, UnitOfWork

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

INDEXES = (
    # Exactly once per customer, journey and episode, whatever path the enrolment came by.
    IndexSpec(
        ENROLMENTS,
        IndexModel(
            [("customer_id", ASCENDING), ("journey", ASCENDING), ("episode", ASCENDING)],
            unique=True,
            name="one_per_episode",
        ),
    ),
    IndexSpec(
        ENROLMENTS,
        IndexModel([("campaign_id", ASCENDING), ("enrolled_at", DESCENDING), ("_id", DESCENDING)], name="by_campaign"),
    ),
    IndexSpec(
        ENROLMENTS,
        IndexModel([("customer_id", ASCENDING), ("enrolled_at", DESCENDING), ("_id", DESCENDING)], name="by_customer"),
    ),
    IndexSpec(CAMPAIGNS, IndexModel([("journey", ASCENDING), ("starts_at", DESCENDING)], name="by_journey_and_start")),
    IndexSpec(ORDERS, IndexModel([("customer_id", ASCENDING), ("ordered_at", ASCENDING)], name="by_customer")),
    IndexSpec(CONVERSIONS, IndexModel([("campaign_id", ASCENDING), ("group", ASCENDING)], name="by_campaign")),
    IndexSpec(ATTRIBUTES, IndexModel([("value_tier", ASCENDING)], name="by_value_tier")),
    IndexSpec(ATTRIBUTES, IndexModel([("lifecycle_stage", ASCENDING)], name="by_lifecycle_stage")),
    IndexSpec(INTERACTIONS, IndexModel([("customer_id", ASCENDING), ("at", ASCENDING)], name="by_customer")),
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


async def get_preferences(uow: UnitOfWork, customer_id: str) -> ContactPreferences | None:
    doc = await uow.db[CONTACT_PREFERENCES].find_one({"_id": customer_id}, session=uow.session)
    return preferences_from_document(doc) if doc else None


async def save_preferences(uow: UnitOfWork, prefs: ContactPreferences) -> None:
    await uow.db[CONTACT_PREFERENCES].replace_one(
        {"_id": prefs.customer_id}, preferences_to_document(prefs), upsert=True, session=uow.session
    )


# ---------------------------------------------------------------- campaigns


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


async def ensure_journey_campaign(uow: UnitOfWork, journey: Journey) -> None:
    """The journey's own campaign exists and describes the journey as configured now."""
    await uow.db[CAMPAIGNS].update_one(
        {"_id": journey.campaign},
        {
            "$set": journey_campaign_document(journey),
            "$setOnInsert": {"spent": Decimal(0), "cost_per_contact": Decimal(0), "budget": None, "currency": "EUR"},
        },
        upsert=True,
        session=uow.session,
    )


async def active_campaign(uow: UnitOfWork, journey: str, at: datetime) -> dict[str, Any] | None:
    """The planned campaign running this journey at `at` (the latest started, when several overlap), unless archived."""
    return await uow.db[CAMPAIGNS].find_one(
        {
            "kind": "planned",
            "journey": journey,
            "starts_at": {"$lte": at},
            "ends_at": {"$gt": at},
            "archived_at": None,
        },
        sort=[("starts_at", DESCENDING), ("_id", ASCENDING)],
        session=uow.session,
    )


async def live_campaign(uow: UnitOfWork, campaign_id: str) -> dict[str, Any] | None:
    """The campaign as this transaction sees it, unless archived."""
    return await uow.db[CAMPAIGNS].find_one({"_id": campaign_id, "archived_at": None}, session=uow.session)


async def archive_campaign(db: AsyncDatabase[dict[str, Any]], campaign_id: str, at: datetime) -> None:
    """Archive a planned campaign; the first archiving's time stays."""
    await db[CAMPAIGNS].update_one(
        {"_id": campaign_id, "kind": "planned", "archived_at": None}, {"$set": {"archived_at": at}}
    )


async def live_campaigns_on_segment(db: AsyncDatabase[dict[str, Any]], segment_id: str) -> list[str]:
    """The ids of the campaigns, not archived, whose audience is the segment."""
    docs = await db[CAMPAIGNS].find({"segment_id": segment_id, "archived_at": None}, {"_id": 1}).to_list(None)
    return sorted(d["_id"] for d in docs)


async def spend(uow: UnitOfWork, campaign: dict[str, Any], cost: Decimal) -> bool:
    """Spend `cost` from the campaign's budget unless what is left is less: atomic, never overspent."""
    if cost == 0:
        return True
    budget: Decimal | None = campaign.get("budget")
    query: dict[str, Any] = {"_id": campaign["_id"]}
    if budget is not None:
        query["spent"] = {"$lte": budget - cost}
    result = await uow.db[CAMPAIGNS].update_one(query, {"$inc": {"spent": cost}}, session=uow.session)
    return result.modified_count == 1


# ---------------------------------------------------------------- segments


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
    )


async def enrolment_exists(uow: UnitOfWork, enrolment_id: str) -> bool:
    return await uow.db[ENROLMENTS].find_one({"_id": enrolment_id}, {"_id": 1}, session=uow.session) is not None


async def lock_contacts(uow: UnitOfWork, customer_id: str) -> None:
    """Write the customer's lock document, so a concurrent enrolment of the same customer conflicts and retries."""
    await uow.db[CONTACT_LOCKS].update_one(
        {"_id": customer_id}, {"$inc": {"enrolments": 1}}, upsert=True, session=uow.session
    )


async def recent_capped_contacts(uow: UnitOfWork, customer_id: str, at: datetime, period: timedelta) -> int:
    """Capped contacts of the customer in the period that ends at `at`."""
    return await uow.db[ENROLMENTS].count_documents(
        {
            "customer_id": customer_id,
            "status": "contacted",
            "frequency_capped": {"$ne": False},
            "enrolled_at": {"$gt": at - period, "$lte": at},
        },
        session=uow.session,
    )


async def insert_enrolment(uow: UnitOfWork, enrolment: Enrolment) -> None:
    """Insert, never check first: the unique index refuses a second enrolment in the same episode."""
    await uow.db[ENROLMENTS].insert_one(enrolment_to_document(enrolment), session=uow.session)


async def attributable_enrolments(
    uow: UnitOfWork, customer_id: str, ordered_at: datetime, window: timedelta
) -> list[Enrolment]:
    docs = await (
        uow.db[ENROLMENTS]
        .find(
            {
                "customer_id": customer_id,
                "status": {"$in": ["contacted", "holdout"]},
                "enrolled_at": {"$gte": ordered_at - window, "$lt": ordered_at},
            },
            session=uow.session,
        )
        .to_list(None)
    )
    return [enrolment_from_document(d) for d in docs]


# ---------------------------------------------------------------- orders and conversions


async def record_order(
    uow: UnitOfWork, order_id: str, customer_id: str, currency: str, total: Decimal, at: datetime
) -> dict[str, Any]:
    """The order as marketing knows it now (a cancellation may have arrived first)."""
    await uow.db[ORDERS].update_one(
        {"_id": order_id},
        {"$set": {"customer_id": customer_id, "currency": currency, "total": total, "ordered_at": at}},
        upsert=True,
        session=uow.session,
    )
    doc = await uow.db[ORDERS].find_one({"_id": order_id}, session=uow.session)
    assert doc is not None
    return doc


async def cancel_order(uow: UnitOfWork, order_id: str, customer_id: str, at: datetime) -> int:
    """Mark the order cancelled, and its conversions with it; returns how many conversions it withdrew."""
    await uow.db[ORDERS].update_one(
        {"_id": order_id},
        {"$set": {"cancelled_at": at}, "$setOnInsert": {"customer_id": customer_id}},
        upsert=True,
        session=uow.session,
    )
    result = await uow.db[CONVERSIONS].update_many(
        {"order_id": order_id, "cancelled": {"$ne": True}}, {"$set": {"cancelled": True}}, session=uow.session
    )
    return result.modified_count


async def orders_after(
    uow: UnitOfWork, customer_id: str, enrolled_at: datetime, window: timedelta
) -> list[dict[str, Any]]:
    """Orders, not cancelled, placed in the attribution window after an enrolment."""
    return await (
        uow.db[ORDERS]
        .find(
            {
                "customer_id": customer_id,
                "ordered_at": {"$gt": enrolled_at, "$lte": enrolled_at + window},
                "cancelled_at": None,
            },
            session=uow.session,
        )
        .to_list(None)
    )


async def insert_conversion(uow: UnitOfWork, conversion: dict[str, Any]) -> bool:
    """True when the conversion is new; an upsert, so the order path and the enrolment path never both insert."""
    result = await uow.db[CONVERSIONS].update_one(
        {"_id": conversion["_id"]},
        {"$setOnInsert": {k: v for k, v in conversion.items() if k != "_id"}},
        upsert=True,
        session=uow.session,
    )
    return result.upserted_id is not None


# ---------------------------------------------------------------- customer attributes (what segments read)


async def record_scores(uow: UnitOfWork, customer_id: str, scores: ScoreSnapshot, at: datetime) -> None:
    """Keep the newest snapshot's segments, by the change's own time, so any arrival order agrees."""
    doc = await uow.db[ATTRIBUTES].find_one({"_id": customer_id}, {"scores_at": 1}, session=uow.session)
    if doc is not None and doc.get("scores_at") is not None and doc["scores_at"] > at:
        return
    await uow.db[ATTRIBUTES].update_one(
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
        session=uow.session,
    )


async def record_consents(uow: UnitOfWork, prefs: ContactPreferences) -> None:
    await uow.db[ATTRIBUTES].update_one(
        {"_id": prefs.customer_id},
        {"$set": {"granted": list(prefs.granted), "preferred_channel": prefs.preferred_channel}},
        upsert=True,
        session=uow.session,
    )


async def record_last_order(uow: UnitOfWork, customer_id: str, at: datetime) -> None:
    await uow.db[ATTRIBUTES].update_one(
        {"_id": customer_id}, {"$max": {"last_order_at": at}}, upsert=True, session=uow.session
    )


async def record_lead(uow: UnitOfWork, lead_id: str, customer_id: str, segment_id: str, at: datetime) -> None:
    await uow.db[LEADS].insert_one(
        {"_id": lead_id, "customer_id": customer_id, "segment_id": segment_id, "handed_over_at": at},
        session=uow.session,
    )


# ---------------------------------------------------------------- engagement


def _interaction_key(customer_id: str, interaction_id: str) -> str:
    # Neither id may contain '|', so the key is unambiguous.
    return f"{customer_id}|{interaction_id}"


async def record_interaction(
    uow: UnitOfWork, customer_id: str, interaction: Interaction, channel: str, event_id: str
) -> bool:
    """Keep the interaction as a fact; False when it was kept before (a duplicate counts once)."""
    result = await uow.db[INTERACTIONS].update_one(
        {"_id": _interaction_key(customer_id, interaction.interaction_id)},
        {
            "$setOnInsert": {
                "customer_id": customer_id,
                "interaction_id": interaction.interaction_id,
                "kind": interaction.kind,
                "channel": channel,
                "at": interaction.at,
                "event_id": event_id,
            }
        },
        upsert=True,
        session=uow.session,
    )
    if result.upserted_id is None:
        return False
    await uow.db[ENGAGEMENT].update_one(
        {"_id": customer_id},
        {"$inc": {"interactions": 1}, "$max": {"latest_at": interaction.at}},
        upsert=True,
        session=uow.session,
    )
    return True


def interaction_from_document(doc: dict[str, Any]) -> Interaction:
    return Interaction(interaction_id=doc["interaction_id"], kind=doc["kind"], at=doc["at"])


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


async def customer_standing(uow: UnitOfWork, customer_id: str) -> dict[str, Any]:
    """What marketing knows of the customer's lifecycle: scoring's stage and the last order, if any."""
    doc = await uow.db[ATTRIBUTES].find_one(
        {"_id": customer_id}, {"lifecycle_stage": 1, "value_tier": 1, "last_order_at": 1}, session=uow.session
    )
    return doc or {}


async def insert_engagement_lead(
    uow: UnitOfWork, lead_id: str, customer_id: str, at: datetime, score: int, interaction_ids: list[str]
) -> bool:
    """True when the lead is new: one atomic insert-if-absent, so a customer is handed over once."""
    result = await uow.db[LEADS].update_one(
        {"_id": lead_id},
        {
            "$setOnInsert": {
                "customer_id": customer_id,
                "segment_id": ENGAGEMENT_SEGMENT,
                "handed_over_at": at,
                "engagement_score": score,
                "interaction_ids": interaction_ids,
            }
        },
        upsert=True,
        session=uow.session,
    )
    return result.upserted_id is not None
