"""The marketing database: `contact_preferences` (consents only, no personal data), `campaigns`, `enrolments`."""

from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel

from crm_marketing.domain import Consent, ContactPreferences, Enrolment, Fact, Journey, Preferred
from crm_shared.store import IndexSpec, UnitOfWork

CONTACT_PREFERENCES = "contact_preferences"
CAMPAIGNS = "campaigns"
ENROLMENTS = "enrolments"

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


def campaign_document(journey: Journey) -> dict[str, Any]:
    return {
        "name": journey.name,
        "objective": journey.description,
        "journey": journey.name,
        "trigger": {
            "dimension": journey.dimension,
            "new_value": journey.new_value,
            "requires_value_tier": journey.requires_value_tier,
        },
        "channel_rules": journey.channel_rules,
    }


async def ensure_campaign(uow: UnitOfWork, journey: Journey) -> None:
    """The journey's campaign exists and describes the journey as configured now."""
    await uow.db[CAMPAIGNS].update_one(
        {"_id": journey.campaign_id}, {"$set": campaign_document(journey)}, upsert=True, session=uow.session
    )


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
    )


async def insert_enrolment(uow: UnitOfWork, enrolment: Enrolment) -> None:
    """Insert, never check first: the unique index refuses a second enrolment in the same episode."""
    await uow.db[ENROLMENTS].insert_one(enrolment_to_document(enrolment), session=uow.session)
