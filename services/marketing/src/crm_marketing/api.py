"""REST API of marketing: journeys, campaigns, enrolments and the consents marketing knows."""

from dataclasses import asdict
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from crm_marketing import domain, repository
from crm_shared.api import Cursor, Limit, Page, decode_cursor, encode_cursor, keyset_page
from crm_shared.events import Channel, SegmentDimension
from crm_shared.service import Problem, StoreDep
from crm_shared.store import Store

router = APIRouter(prefix="/v1", tags=["marketing"])


class JourneyView(BaseModel):
    name: str = Field(examples=["service-recovery"])
    campaign_id: str
    dimension: SegmentDimension
    new_value: str = Field(examples=["high"])
    requires_value_tier: str | None = Field(examples=["high_value"])
    description: str
    channel_rules: str

    @classmethod
    def of(cls, journey: domain.Journey) -> "JourneyView":
        return cls(
            name=journey.name,
            campaign_id=journey.campaign_id,
            dimension=journey.dimension,
            new_value=journey.new_value,
            requires_value_tier=journey.requires_value_tier,
            description=journey.description,
            channel_rules=journey.channel_rules,
        )


class CampaignTrigger(BaseModel):
    dimension: SegmentDimension
    new_value: str
    requires_value_tier: str | None


class CampaignView(BaseModel):
    campaign_id: str
    name: str
    objective: str
    journey: str
    trigger: CampaignTrigger
    channel_rules: str

    @classmethod
    def of(cls, doc: dict[str, Any]) -> "CampaignView":
        return cls(campaign_id=doc["_id"], **{k: v for k, v in doc.items() if k != "_id"})


class EnrolmentView(BaseModel):
    enrolment_id: str
    customer_id: str
    campaign_id: str
    journey: str
    episode: str = Field(description="The segment-changed event that opened this journey episode.")
    channel: Channel | None
    status: domain.EnrolmentStatus
    reason: str | None = Field(examples=["customer refused every channel"])
    trigger_event_id: str
    enrolled_at: datetime

    @classmethod
    def of(cls, enrolment: domain.Enrolment) -> "EnrolmentView":
        return cls(**asdict(enrolment))


class ContactPreferencesView(BaseModel):
    customer_id: str
    granted: list[Channel]
    refused: list[Channel]
    preferred_channel: Channel | None

    @classmethod
    def of(cls, prefs: domain.ContactPreferences) -> "ContactPreferencesView":
        return cls(
            customer_id=prefs.customer_id,
            granted=list(prefs.granted),
            refused=list(prefs.refused),
            preferred_channel=prefs.preferred_channel,
        )


@router.get("/journeys", response_model=list[JourneyView], summary="The configured triggered journeys")
async def journeys() -> list[JourneyView]:
    return [JourneyView.of(j) for j in domain.DEFAULT_JOURNEYS]


@router.get(
    "/campaigns",
    response_model=Page[CampaignView],
    summary="Campaigns, by id (one per journey, created at its first enrolment)",
)
async def campaigns(store: StoreDep, limit: Limit = 50, cursor: Cursor = None) -> Page[CampaignView]:
    query: dict[str, Any] = {}
    after = decode_cursor(cursor)
    if after is not None:
        query["_id"] = {"$gt": str(after.get("campaign_id", ""))}
    docs = await store.db[repository.CAMPAIGNS].find(query).sort("_id", 1).limit(limit + 1).to_list(limit + 1)
    items = [CampaignView.of(d) for d in docs[:limit]]
    next_cursor = encode_cursor({"campaign_id": items[-1].campaign_id}) if len(docs) > limit else None
    return Page[CampaignView](items=items, next_cursor=next_cursor)


async def _enrolment_page(store: Store, query: dict[str, Any], limit: int, cursor: str | None) -> Page[EnrolmentView]:
    docs, next_cursor = await keyset_page(
        store.db[repository.ENROLMENTS], query, time_field="enrolled_at", limit=limit, cursor=cursor, newest_first=True
    )
    items = [EnrolmentView.of(repository.enrolment_from_document(d)) for d in docs]
    return Page[EnrolmentView](items=items, next_cursor=next_cursor)


@router.get(
    "/campaigns/{campaign_id}/enrolments",
    response_model=Page[EnrolmentView],
    summary="A campaign's enrolments, newest first",
    responses={404: {"description": "No such campaign"}},
)
async def campaign_enrolments(
    store: StoreDep, campaign_id: str, limit: Limit = 50, cursor: Cursor = None
) -> Page[EnrolmentView]:
    configured = any(j.campaign_id == campaign_id for j in domain.DEFAULT_JOURNEYS)
    if not configured and await store.db[repository.CAMPAIGNS].find_one({"_id": campaign_id}) is None:
        raise Problem(404, "Campaign not found", f"no campaign {campaign_id}")
    return await _enrolment_page(store, {"campaign_id": campaign_id}, limit, cursor)


@router.get(
    "/customers/{customer_id}/enrolments",
    response_model=Page[EnrolmentView],
    summary="A customer's enrolments, newest first",
)
async def customer_enrolments(
    store: StoreDep, customer_id: str, limit: Limit = 50, cursor: Cursor = None
) -> Page[EnrolmentView]:
    return await _enrolment_page(store, {"customer_id": customer_id}, limit, cursor)


@router.get(
    "/customers/{customer_id}/contact-preferences",
    response_model=ContactPreferencesView,
    summary="The channels the customer granted or refused, as marketing knows them",
    responses={404: {"description": "Marketing has no consent on record for this customer"}},
)
async def contact_preferences(store: StoreDep, customer_id: str) -> ContactPreferencesView:
    doc = await store.db[repository.CONTACT_PREFERENCES].find_one({"_id": customer_id})
    if doc is None:
        raise Problem(404, "No consent on record", f"marketing has no consent on record for {customer_id}")
    return ContactPreferencesView.of(repository.preferences_from_document(doc))
