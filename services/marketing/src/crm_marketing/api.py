"""REST API of marketing: journeys, campaigns and their results, segments, enrolments, consents and engagement.

Each route needs its campaigns:* or segments:* scope; exporting a segment's members (customer ids in bulk)
needs segments:export and is audited. A scope is all that is checked: marketing does not know who owns a
customer, so it has no row-level access.
"""

import csv
import io
from dataclasses import asdict
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, Self

import bson
from fastapi import APIRouter, Body, Depends, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pymongo.errors import DuplicateKeyError

from crm_marketing import domain, engagement, handlers, repository
from crm_marketing.journeys import Journey
from crm_marketing.segments import MAX_DEPTH, MAX_GROUP_MEMBERS, MAX_IN_VALUES, MAX_RULES, MAX_VALUES, Group, to_filter
from crm_marketing.settings import MarketingSettings
from crm_shared.api import Cursor, IdInPath, Limit, Page, cursor_id, decode_cursor, encode_cursor, keyset_page
from crm_shared.events import Channel, Currency, EntityId, Line, Money, PlannedTime, Text, utc_now
from crm_shared.security import audited, requires
from crm_shared.service import Problem, StoreDep, get_runtime
from crm_shared.store import Store

router = APIRouter(prefix="/v1", tags=["marketing"])


def get_settings(request: Request) -> MarketingSettings:
    settings = get_runtime(request).settings
    assert isinstance(settings, MarketingSettings)
    return settings


SettingsDep = Annotated[MarketingSettings, Depends(get_settings)]


class JourneyView(Journey):
    campaign_id: str
    channel_rules: str

    @classmethod
    def of(cls, journey: Journey) -> "JourneyView":
        order = ", ".join(domain.CHANNEL_FALLBACK_ORDER)
        return cls(
            **{**journey.model_dump(), "campaign_id": journey.campaign},
            channel_rules=f"the customer's preferred channel if granted, else the first granted of: {order}; "
            "never a refused channel",
        )


class CampaignPlan(BaseModel):
    """A campaign with a budget, each contact spending cost_per_contact. Its audience is a journey (the
    campaign takes the journey's enrolments between its dates) or a segment (launched on demand)."""

    model_config = ConfigDict(extra="forbid")

    campaign_id: EntityId = Field(examples=["win-back-2026-q4"])
    name: Line = Field(min_length=1, max_length=200)
    objective: Text = Field(min_length=1, max_length=1000)
    journey: str | None = Field(
        default=None, description="Audience: the customers this configured journey enrols.", examples=["win-back"]
    )
    segment_id: EntityId | None = Field(
        default=None, description="Audience: the segment's members when the campaign is launched."
    )
    channel: Channel | None = Field(
        default=None, description="Only this channel, when the customer granted it; None: the journey's rules."
    )
    offer: Text | None = Field(default=None, max_length=500, examples=["15% off the next order"])
    starts_at: PlannedTime
    ends_at: PlannedTime = Field(description="After starts_at.")
    currency: Currency = "EUR"
    budget: Money
    cost_per_contact: Money

    @model_validator(mode="after")
    def _ends_after_start(self) -> Self:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        if (self.journey is None) == (self.segment_id is None):
            raise ValueError("the audience is exactly one of journey or segment_id")
        return self


CAMPAIGN_EXAMPLE = {
    "campaign_id": "win-back-2026-q4",
    "name": "Win-back Q4",
    "objective": "Bring lost customers back before the year ends.",
    "journey": "win-back",
    "channel": "email",
    "offer": "15% off the next order",
    "starts_at": "2026-10-01T00:00:00Z",
    "ends_at": "2027-01-01T00:00:00Z",
    "currency": "EUR",
    "budget": "500.00",
    "cost_per_contact": "0.40",
}


class CampaignView(BaseModel):
    campaign_id: str
    kind: str = Field(default="journey", description="'journey' (a journey's own campaign, no budget) or 'planned'.")
    name: str
    objective: str
    journey: str | None = None
    segment_id: str | None = None
    channel: Channel | None = None
    offer: str | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    # Defaults for the journey campaigns marketing recorded before campaigns had budgets.
    currency: str = "EUR"
    budget: Decimal | None = None
    cost_per_contact: Decimal = Decimal(0)
    spent: Decimal = Decimal(0)
    archived_at: datetime | None = Field(
        default=None, description="When the campaign was archived (DELETE): it enrols nobody from then on."
    )

    @classmethod
    def of(cls, doc: dict[str, Any]) -> "CampaignView":
        fields = cls.model_fields.keys()
        return cls(campaign_id=doc["_id"], **{k: v for k, v in doc.items() if k in fields})


class EnrolmentView(BaseModel):
    enrolment_id: str
    customer_id: str
    campaign_id: str
    journey: str
    episode: str = Field(description="The segment-changed event or the complaint that opened this journey episode.")
    channel: Channel | None
    status: domain.EnrolmentStatus
    reason: str | None = Field(examples=["customer refused every channel", "frequency cap", "budget exhausted"])
    trigger_event_id: str
    enrolled_at: datetime
    cost: Decimal
    frequency_capped: bool

    @classmethod
    def of(cls, enrolment: domain.Enrolment) -> "EnrolmentView":
        return cls(**asdict(enrolment))


class GroupView(BaseModel):
    enrolled: int = Field(description="Customers contacted (treated) or held out (holdout).")
    converted: int = Field(description="Of those, customers with at least one attributed order.")
    orders: int
    revenue: Decimal = Field(description="Attributed order value in the campaign's currency.")
    conversion_rate: float | None
    revenue_per_customer: Decimal | None

    @classmethod
    def of(cls, group: domain.GroupOutcome) -> "GroupView":
        return cls(
            enrolled=group.enrolled,
            converted=group.converted,
            orders=group.orders,
            revenue=group.revenue,
            conversion_rate=group.conversion_rate,
            revenue_per_customer=group.revenue_per_customer.quantize(Decimal("0.01"))
            if group.revenue_per_customer is not None
            else None,
        )


class ResultsView(BaseModel):
    campaign_id: str
    currency: str
    attribution_days: int
    contacted: int
    holdout: int
    skipped: int
    treated_group: GroupView
    holdout_group: GroupView
    uplift: float | None = Field(description="Treated minus holdout conversion rate; null without a holdout.")
    uplift_ci_low: float | None = Field(
        description="Lower bound of the uplift's 95% confidence interval: Newcombe's hybrid score interval (1998, "
        "method 10) of the difference of the two conversion rates, from each group's Wilson score interval; null "
        "without contacts in both groups.",
        examples=[0.0524],
    )
    uplift_ci_high: float | None = Field(
        description="Upper bound of the uplift's 95% confidence interval (Newcombe's hybrid score interval); null "
        "without contacts in both groups.",
        examples=[0.3339],
    )
    incremental_revenue: Decimal | None = Field(
        description="(Treated - holdout revenue per customer) x contacted customers."
    )
    cost: Decimal
    roi: float | None = Field(description="(incremental revenue - cost) / cost; null when nothing was spent.")


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


# ---------------------------------------------------------------- journeys


@router.get(
    "/journeys",
    response_model=list[JourneyView],
    summary="The configured triggered journeys",
    dependencies=[requires("campaigns:read")],
)
async def journeys(settings: SettingsDep) -> list[JourneyView]:
    return [JourneyView.of(j) for j in settings.journeys]


# ---------------------------------------------------------------- campaigns


@router.get(
    "/campaigns",
    response_model=Page[CampaignView],
    summary="Campaigns, by id: each journey's own (created at its first enrolment) and the planned ones",
    dependencies=[requires("campaigns:read")],
)
async def campaigns(store: StoreDep, limit: Limit = 50, cursor: Cursor = None) -> Page[CampaignView]:
    query: dict[str, Any] = {}
    after = decode_cursor(cursor)
    if after is not None:
        query["_id"] = {"$gt": cursor_id(after, "campaign_id")}
    docs = await store.db[repository.CAMPAIGNS].find(query).sort("_id", 1).limit(limit + 1).to_list(limit + 1)
    items = [CampaignView.of(d) for d in docs[:limit]]
    next_cursor = encode_cursor({"campaign_id": items[-1].campaign_id}) if len(docs) > limit else None
    return Page[CampaignView](items=items, next_cursor=next_cursor)


def _plan_document(plan: CampaignPlan) -> dict[str, Any]:
    return {"_id": plan.campaign_id, "kind": "planned", **plan.model_dump(exclude={"campaign_id"}), "spent": Decimal(0)}


def _same_plan(doc: dict[str, Any], plan: CampaignPlan) -> bool:
    wanted = _plan_document(plan)
    return all(doc.get(k) == v for k, v in wanted.items() if k != "spent")


@router.post(
    "/campaigns",
    response_model=CampaignView,
    status_code=status.HTTP_201_CREATED,
    summary="Plan a campaign that runs a journey between two dates within a budget",
    responses={
        200: {"description": "Already planned with this content"},
        409: {"description": "The campaign id is taken by another campaign"},
        422: {"description": "Invalid plan, or an unknown journey"},
    },
    dependencies=[requires("campaigns:write")],
)
async def plan_campaign(
    store: StoreDep,
    settings: SettingsDep,
    response: Response,
    plan: Annotated[CampaignPlan, Body(examples=[CAMPAIGN_EXAMPLE])],
) -> CampaignView:
    names = [j.name for j in settings.journeys]
    if plan.journey is not None and plan.journey not in names:
        raise Problem(422, "Unknown journey", f"journey {plan.journey!r} is not one of: {', '.join(names)}")
    if plan.segment_id is not None and await store.db[repository.SEGMENTS].find_one({"_id": plan.segment_id}) is None:
        raise Problem(422, "Unknown segment", f"no segment {plan.segment_id}")
    if plan.campaign_id in {j.campaign for j in settings.journeys}:
        raise Problem(409, "Campaign id taken", f"{plan.campaign_id} is a journey's own campaign")
    try:
        await store.db[repository.CAMPAIGNS].insert_one(_plan_document(plan))
    except DuplicateKeyError:
        existing = await store.db[repository.CAMPAIGNS].find_one({"_id": plan.campaign_id})
        if existing is None or not _same_plan(existing, plan):
            raise Problem(409, "Campaign id taken", f"campaign {plan.campaign_id} exists with other content") from None
        response.status_code = status.HTTP_200_OK
        return CampaignView.of(existing)
    return CampaignView.of(await _campaign(store, plan.campaign_id))


async def _campaign(store: Store, campaign_id: str) -> dict[str, Any]:
    doc = await store.db[repository.CAMPAIGNS].find_one({"_id": campaign_id})
    if doc is None:
        raise Problem(404, "Campaign not found", f"no campaign {campaign_id}")
    return doc


@router.get(
    "/campaigns/{campaign_id}",
    response_model=CampaignView,
    summary="One campaign, with what it has spent",
    responses={404: {"description": "No such campaign"}},
    dependencies=[requires("campaigns:read")],
)
async def get_campaign(store: StoreDep, campaign_id: IdInPath) -> CampaignView:
    return CampaignView.of(await _campaign(store, campaign_id))


@router.delete(
    "/campaigns/{campaign_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Archive a planned campaign: it enrols nobody from then on; its enrolments and results stay readable",
    description="Archived, not deleted: the enrolments, conversions and results refer to it. Archiving again "
    "changes nothing; the id stays taken. A journey's own campaign is not archived: its journey is configured.",
    responses={
        404: {"description": "No such campaign"},
        409: {"description": "A journey's own campaign"},
    },
    dependencies=[requires("campaigns:write")],
)
async def archive_campaign(store: StoreDep, settings: SettingsDep, campaign_id: IdInPath) -> Response:
    campaign = await _campaign(store, campaign_id)
    if campaign.get("kind") != "planned" or campaign_id in {j.campaign for j in settings.journeys}:
        raise Problem(
            409,
            "A journey's own campaign",
            f"{campaign_id} is the campaign of a configured journey; change the journeys (CRM_MARKETING_JOURNEYS) "
            "to stop it",
        )
    await repository.archive_campaign(store.db, campaign_id, utc_now())
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/campaigns/{campaign_id}/results",
    response_model=ResultsView,
    summary="Contacted vs holdout: conversions, revenue, conversion rates, uplift with its 95% interval, cost and ROI",
    responses={404: {"description": "No such campaign"}},
    dependencies=[requires("campaigns:read")],
)
async def campaign_results(store: StoreDep, settings: SettingsDep, campaign_id: IdInPath) -> ResultsView:
    campaign = await _campaign(store, campaign_id)
    currency = campaign.get("currency", "EUR")
    counts = {s: 0 for s in ("contacted", "holdout", "skipped")}
    cost = Decimal(0)
    async for row in await store.db[repository.ENROLMENTS].aggregate(
        [
            {"$match": {"campaign_id": campaign_id}},
            {"$group": {"_id": "$status", "n": {"$sum": 1}, "cost": {"$sum": "$cost"}}},
        ]
    ):
        counts[row["_id"]] = row["n"]
        cost += row["cost"] or Decimal(0)
    by_group: dict[str, dict[str, Any]] = {}
    async for row in await store.db[repository.CONVERSIONS].aggregate(
        [
            {"$match": {"campaign_id": campaign_id, "cancelled": {"$ne": True}}},
            {
                "$group": {
                    "_id": "$group",
                    "customers": {"$addToSet": "$enrolment_id"},
                    "orders": {"$sum": 1},
                    "revenue": {"$sum": {"$cond": [{"$eq": ["$currency", currency]}, "$revenue", 0]}},
                }
            },
        ]
    ):
        by_group[row["_id"]] = row

    def outcome(group: str, enrolled: int) -> domain.GroupOutcome:
        row = by_group.get(group, {})
        return domain.GroupOutcome(
            enrolled=enrolled,
            converted=len(row.get("customers", [])),
            orders=row.get("orders", 0),
            revenue=Decimal(row.get("revenue", 0)),
        )

    results = domain.CampaignResults(
        outcome("treated", counts["contacted"]), outcome("holdout", counts["holdout"]), cost
    )
    interval = results.uplift_interval
    return ResultsView(
        campaign_id=campaign_id,
        currency=currency,
        attribution_days=settings.attribution_days,
        contacted=counts["contacted"],
        holdout=counts["holdout"],
        skipped=counts["skipped"],
        treated_group=GroupView.of(results.treated),
        holdout_group=GroupView.of(results.holdout),
        uplift=results.uplift,
        uplift_ci_low=interval[0] if interval else None,
        uplift_ci_high=interval[1] if interval else None,
        incremental_revenue=results.incremental_revenue,
        cost=cost,
        roi=results.roi,
    )


class LaunchView(BaseModel):
    campaign_id: str
    enrolled: dict[domain.EnrolmentStatus, int] = Field(description="New enrolments of this launch, by status.")
    already_enrolled: int = Field(description="Members enrolled by an earlier launch.")


@router.post(
    "/campaigns/{campaign_id}/launch",
    response_model=LaunchView,
    summary="Enrol the campaign segment's current members (once each; a relaunch enrols newcomers only)",
    responses={
        404: {"description": "No such campaign"},
        409: {"description": "Not a segment campaign, not running, archived, or its segment is gone or unusable"},
    },
    dependencies=[requires("campaigns:write")],
)
async def launch_campaign(store: StoreDep, settings: SettingsDep, campaign_id: IdInPath) -> LaunchView:
    campaign = await _campaign(store, campaign_id)
    if campaign.get("segment_id") is None:
        raise Problem(409, "Not a segment campaign", f"campaign {campaign_id} enrols as its journey triggers")
    if campaign.get("archived_at") is not None:
        raise Problem(409, "Campaign archived", f"campaign {campaign_id} was archived at {campaign['archived_at']}")
    now = utc_now()
    if not campaign["starts_at"] <= now < campaign["ends_at"]:
        raise Problem(
            409,
            "Campaign not running",
            f"campaign {campaign_id} runs from {campaign['starts_at']} to {campaign['ends_at']}",
        )
    try:
        segment = await _segment(store, campaign["segment_id"])
    except Problem as problem:
        if problem.status != 404:
            raise
        raise Problem(
            409, "Segment gone", f"campaign {campaign_id}'s segment {campaign['segment_id']} was deleted"
        ) from None
    try:
        report = await handlers.launch_campaign(store, campaign, segment.definition, now, settings.policy)
    except handlers.CampaignArchived:
        raise Problem(
            409,
            "Campaign archived",
            f"campaign {campaign_id} was archived during the launch; the members enrolled before stay enrolled",
        ) from None
    return LaunchView(campaign_id=campaign_id, enrolled=report.enrolled, already_enrolled=report.already_enrolled)


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
    dependencies=[requires("campaigns:read")],
)
async def campaign_enrolments(
    store: StoreDep, settings: SettingsDep, campaign_id: IdInPath, limit: Limit = 50, cursor: Cursor = None
) -> Page[EnrolmentView]:
    configured = any(j.campaign == campaign_id for j in settings.journeys)
    if not configured:
        await _campaign(store, campaign_id)
    return await _enrolment_page(store, {"campaign_id": campaign_id}, limit, cursor)


# ---------------------------------------------------------------- customers


@router.get(
    "/customers/{customer_id}/enrolments",
    response_model=Page[EnrolmentView],
    summary="A customer's enrolments, newest first",
    dependencies=[requires("campaigns:read")],
)
async def customer_enrolments(
    store: StoreDep, customer_id: IdInPath, limit: Limit = 50, cursor: Cursor = None
) -> Page[EnrolmentView]:
    return await _enrolment_page(store, {"customer_id": customer_id}, limit, cursor)


@router.get(
    "/customers/{customer_id}/contact-preferences",
    response_model=ContactPreferencesView,
    summary="The channels the customer granted or refused, as marketing knows them",
    responses={404: {"description": "Marketing has no consent on record for this customer"}},
    dependencies=[requires("campaigns:read")],
)
async def contact_preferences(store: StoreDep, customer_id: IdInPath) -> ContactPreferencesView:
    doc = await store.db[repository.CONTACT_PREFERENCES].find_one({"_id": customer_id})
    if doc is None:
        raise Problem(404, "No consent on record", f"marketing has no consent on record for {customer_id}")
    return ContactPreferencesView.of(repository.preferences_from_document(doc))


class InteractionView(BaseModel):
    interaction_id: str
    kind: engagement.InteractionKind
    at: datetime
    points: int = Field(description="What the interaction kind weighs now.")


class EngagementView(BaseModel):
    customer_id: str
    score: int = Field(description="Points of the interactions within window_days before the latest one.")
    threshold: int = Field(description="The score that hands a prospect to sales as a qualified lead.")
    window_days: int
    interactions_counted: int
    interactions: list[InteractionView] = Field(description="The interactions counted, oldest first.")
    latest_interaction_at: datetime | None
    qualified_at: datetime | None = Field(
        description="When the engagement reached the threshold and the prospect was handed to sales; null before."
    )
    lead_id: str | None = None


@router.get(
    "/customers/{customer_id}/engagement",
    response_model=EngagementView,
    summary="The customer's engagement score from logged interactions, and when it qualified them as a lead",
    responses={200: {"description": "A customer with no interaction logged has score 0"}},
    dependencies=[requires("campaigns:read")],
)
async def customer_engagement(store: StoreDep, settings: SettingsDep, customer_id: IdInPath) -> EngagementView:
    rule = settings.engagement
    latest = await repository.latest_interaction_at(store.db, customer_id)
    facts = (
        await repository.interactions_between(store.db, customer_id, latest - rule.window, latest)
        if latest is not None
        else []
    )
    current = engagement.current_engagement(facts, rule)
    lead = await repository.engagement_lead_of(store.db, customer_id)
    return EngagementView(
        customer_id=customer_id,
        score=current.score,
        threshold=rule.threshold,
        window_days=settings.lead_engagement_days,
        interactions_counted=len(current.counted),
        interactions=[
            InteractionView(interaction_id=i.interaction_id, kind=i.kind, at=i.at, points=rule.weight(i.kind))
            for i in current.counted
        ],
        latest_interaction_at=latest,
        qualified_at=lead["handed_over_at"] if lead else None,
        lead_id=lead["_id"] if lead else None,
    )


# ---------------------------------------------------------------- segments


SEGMENT_EXAMPLE = {
    "segment_id": "high-value-email-at-risk",
    "name": "High value, reachable by email, at risk",
    "definition": {
        "all": [
            {"field": "value_tier", "op": "eq", "value": "high_value"},
            {"field": "consent", "op": "contains", "value": "email"},
            {
                "any": [
                    {"field": "churn_risk_band", "op": "in", "value": ["medium", "high"]},
                    {"field": "last_order_at", "op": "not_within_days", "value": 90},
                ]
            },
        ]
    },
}


class SegmentDefinition(BaseModel):
    """A named segment: a typed rule definition, evaluated on marketing's projection of every customer."""

    model_config = ConfigDict(extra="forbid")

    segment_id: EntityId
    name: Line = Field(min_length=1, max_length=200)
    description: Text | None = Field(default=None, max_length=1000)
    definition: Group = Field(
        description="{'all'|'any': [rules or groups]}; a rule is {field, op, value}. Fields: value_tier, "
        "lifecycle_stage, rfm_segment, churn_risk_band (ops eq, ne, in, not_in); satisfaction 0-1 (eq, ne, gt, "
        "gte, lt, lte); consent: the granted channels (contains, not_contains); preferred_channel, region (eq, ne, "
        "in, not_in); last_order_at (gt, gte, lt, lte with an RFC 3339 time from 1900 to 2199; within_days, "
        f"not_within_days with a number of days). Limits: at most {MAX_RULES} rules and {MAX_VALUES} values in all, "
        f"{MAX_GROUP_MEMBERS} members per group, {MAX_IN_VALUES} values per in/not_in list, groups nested "
        f"{MAX_DEPTH} deep; no group or list is empty."
    )


class SegmentView(SegmentDefinition):
    count: int = Field(description="Customers in the segment now.")
    as_of: datetime


class SegmentListItem(BaseModel):
    """A segment as GET /v1/segments/{segment_id} shows it; one stored under rules no longer accepted is listed
    with why, and no definition or count, so it can be found and deleted."""

    segment_id: str
    name: str
    description: str | None = None
    definition: Group | None = Field(description="Null when the stored definition is no longer accepted.")
    count: int | None = Field(description="Customers in the segment now; null when its definition is unusable.")
    as_of: datetime = Field(description="When the page was counted (every segment of a page at the same time).")
    unusable: str | None = Field(
        default=None,
        description="Why the stored definition is no longer accepted: delete the segment and define it again.",
    )


SegmentLimit = Annotated[int, Query(ge=1, le=100, description="Page size: each segment of the page is counted.")]


class MemberView(BaseModel):
    customer_id: str
    value_tier: str | None = None
    lifecycle_stage: str | None = None
    rfm_segment: str | None = None
    churn_risk_band: str | None = None
    satisfaction: float | None = None
    granted: list[Channel] = Field(default_factory=list)
    preferred_channel: Channel | None = None
    region: str | None = None
    last_order_at: datetime | None = None

    @classmethod
    def of(cls, doc: dict[str, Any]) -> "MemberView":
        fields = cls.model_fields.keys()
        return cls(customer_id=doc["_id"], **{k: v for k, v in doc.items() if k in fields and v is not None})


MEMBER_COLUMNS = list(MemberView.model_fields)


def _segment_document(segment: SegmentDefinition) -> dict[str, Any]:
    return {"_id": segment.segment_id, **segment.model_dump(mode="json", exclude={"segment_id"})}


def _segment_filter(segment: SegmentDefinition, now: datetime) -> dict[str, Any]:
    """The definition's filter, proven to encode, so a definition that would fail every read is never stored."""
    query = to_filter(segment.definition, now)
    try:
        bson.encode(query)
    except (bson.errors.InvalidDocument, OverflowError) as exc:
        raise ValueError(f"the definition does not compile to a MongoDB filter: {exc}") from None
    return query


class UnusableSegment(Exception):
    """A segment stored under older rules (or limits) that no longer hold; the message says which."""


def _stored_segment(doc: dict[str, Any], now: datetime) -> tuple[SegmentDefinition, dict[str, Any]]:
    """The stored segment checked again as if defined now, with its filter; UnusableSegment when it fails."""
    try:
        segment = SegmentDefinition(segment_id=doc["_id"], **{k: v for k, v in doc.items() if k != "_id"})
        return segment, _segment_filter(segment, now)
    except (ValidationError, ValueError) as exc:
        errors = exc.errors() if isinstance(exc, ValidationError) else [{"loc": (), "msg": str(exc)}]
        raise UnusableSegment(
            "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:3])
        ) from None


async def _segment(store: Store, segment_id: str) -> SegmentDefinition:
    """The stored segment, checked again as if defined now: one stored under older rules (or limits) that no
    longer hold answers 409, saying why, rather than failing every read; it can still be deleted."""
    doc = await store.db[repository.SEGMENTS].find_one({"_id": segment_id})
    if doc is None:
        raise Problem(404, "Segment not found", f"no segment {segment_id}")
    try:
        segment, _ = _stored_segment(doc, utc_now())
    except UnusableSegment as exc:
        raise Problem(
            409,
            "Segment definition unusable",
            f"segment {segment_id} is stored with a definition that is no longer accepted ({exc}); "
            f"delete it (DELETE /v1/segments/{segment_id}) and define it again",
        ) from None
    return segment


async def _segment_view(store: Store, segment: SegmentDefinition) -> SegmentView:
    now = utc_now()
    count = await store.db[repository.ATTRIBUTES].count_documents(_segment_filter(segment, now))
    return SegmentView(**segment.model_dump(), count=count, as_of=now)


@router.post(
    "/segments",
    response_model=SegmentView,
    status_code=status.HTTP_201_CREATED,
    summary="Define a named segment with the rule language",
    responses={
        200: {"description": "Already defined with this content"},
        409: {"description": "The segment id is taken by another definition"},
        422: {
            "description": "A rule names an unknown field, an operator the field does not take, or a bad value; "
            "an empty group or list; or the definition is over a limit"
        },
    },
    dependencies=[requires("segments:write")],
)
async def define_segment(
    store: StoreDep, response: Response, segment: Annotated[SegmentDefinition, Body(examples=[SEGMENT_EXAMPLE])]
) -> SegmentView:
    if segment.segment_id == engagement.ENGAGEMENT_SEGMENT:
        raise Problem(
            409, "Segment id taken", f"{engagement.ENGAGEMENT_SEGMENT} names the leads qualified by engagement"
        )
    try:
        _segment_filter(segment, utc_now())
    except ValueError as exc:
        raise Problem(422, "Invalid segment definition", f"definition: {exc}") from None
    document = _segment_document(segment)
    try:
        await store.db[repository.SEGMENTS].insert_one(document)
    except DuplicateKeyError:
        existing = await _segment(store, segment.segment_id)
        if _segment_document(existing) != document:
            raise Problem(
                409, "Segment id taken", f"segment {segment.segment_id} exists with another definition"
            ) from None
        response.status_code = status.HTTP_200_OK
    return await _segment_view(store, segment)


@router.get(
    "/segments",
    response_model=Page[SegmentListItem],
    summary="The segments by id, a page at a time, each with how many customers are in it now",
    description="Counts are live, computed for each page when it is read: one pass over the customers counts "
    "every segment of the page, so a page is at most 100 segments (20 by default). A segment stored under rules "
    "no longer accepted is listed with `unusable` saying why, and no count.",
    dependencies=[requires("segments:read")],
)
async def segments(store: StoreDep, limit: SegmentLimit = 20, cursor: Cursor = None) -> Page[SegmentListItem]:
    query: dict[str, Any] = {}
    after = decode_cursor(cursor)
    if after is not None:
        query["_id"] = {"$gt": cursor_id(after, "segment_id")}
    docs = await store.db[repository.SEGMENTS].find(query).sort("_id", 1).limit(limit + 1).to_list(limit + 1)
    now = utc_now()
    checked: list[tuple[dict[str, Any], SegmentDefinition | None, str | None]] = []
    filters: dict[str, dict[str, Any]] = {}
    for doc in docs[:limit]:
        try:
            segment, filters[doc["_id"]] = _stored_segment(doc, now)
            checked.append((doc, segment, None))
        except UnusableSegment as exc:
            checked.append((doc, None, str(exc)))
    counts = await repository.count_matching(store.db, repository.ATTRIBUTES, filters)
    items = [
        SegmentListItem(**segment.model_dump(), count=counts[segment.segment_id], as_of=now)
        if segment is not None
        else SegmentListItem(
            segment_id=doc["_id"],
            name=str(doc.get("name", "")),
            description=doc["description"] if isinstance(doc.get("description"), str) else None,
            definition=None,
            count=None,
            as_of=now,
            unusable=reason,
        )
        for doc, segment, reason in checked
    ]
    next_cursor = encode_cursor({"segment_id": items[-1].segment_id}) if len(docs) > limit else None
    return Page[SegmentListItem](items=items, next_cursor=next_cursor)


@router.get(
    "/segments/{segment_id}",
    response_model=SegmentView,
    summary="A segment's definition and how many customers are in it now",
    responses={
        404: {"description": "No such segment"},
        409: {"description": "Stored under rules no longer accepted: delete it and define it again"},
    },
    dependencies=[requires("segments:read")],
)
async def get_segment(store: StoreDep, segment_id: IdInPath) -> SegmentView:
    return await _segment_view(store, await _segment(store, segment_id))


@router.delete(
    "/segments/{segment_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a segment (even one stored under rules no longer accepted); the leads it handed over stay",
    description="Refused while a campaign that is not archived has it as its audience: archive the campaign "
    "first. The id can then be defined again; its members handed over before count as handed over.",
    responses={
        404: {"description": "No such segment"},
        409: {"description": "The audience of a campaign that is not archived"},
    },
    dependencies=[requires("segments:write")],
)
async def delete_segment(store: StoreDep, segment_id: IdInPath) -> Response:
    campaigns = await repository.live_campaigns_on_segment(store.db, segment_id)
    if campaigns:
        raise Problem(
            409,
            "Segment in use",
            f"segment {segment_id} is the audience of campaign {', '.join(campaigns)}; archive "
            f"{'it' if len(campaigns) == 1 else 'them'} first (DELETE /v1/campaigns/{{id}})",
        )
    if not await repository.delete_segment(store.db, segment_id):
        raise Problem(404, "Segment not found", f"no segment {segment_id}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/segments/{segment_id}/members",
    response_model=Page[MemberView],
    summary="The segment's members by customer id, a page at a time, as JSON or CSV",
    description="A bulk export of customer ids: it needs the segments:export scope, and every call (each page) "
    "is recorded in the audit log, allowed or not.",
    responses={
        200: {
            "content": {"text/csv": {}},
            "description": "JSON page, or CSV with the next page's cursor in the `Link` header (rel=next)",
        },
        404: {"description": "No such segment"},
        409: {"description": "Stored under rules no longer accepted: delete it and define it again"},
    },
    dependencies=[requires("segments:export"), Depends(audited)],
)
async def segment_members(
    store: StoreDep,
    request: Request,
    segment_id: IdInPath,
    format: Annotated[Literal["json", "csv"], Query(description="json (default) or csv")] = "json",
    limit: Annotated[int, Query(ge=1, le=5000, description="Page size.")] = 500,
    cursor: Cursor = None,
) -> Any:
    segment = await _segment(store, segment_id)
    query = _segment_filter(segment, utc_now())
    after = decode_cursor(cursor)
    if after is not None:
        query = {"$and": [query, {"_id": {"$gt": cursor_id(after, "customer_id")}}]}
    docs = await store.db[repository.ATTRIBUTES].find(query).sort("_id", 1).limit(limit + 1).to_list(limit + 1)
    members = [MemberView.of(d) for d in docs[:limit]]
    next_cursor = encode_cursor({"customer_id": members[-1].customer_id}) if len(docs) > limit else None
    if format == "json":
        return Page[MemberView](items=members, next_cursor=next_cursor)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=MEMBER_COLUMNS)
    writer.writeheader()
    for member in members:
        row = member.model_dump(mode="json")
        row["granted"] = " ".join(row["granted"])
        writer.writerow(row)
    headers = {}
    if next_cursor is not None:
        url = request.url.include_query_params(cursor=next_cursor)
        headers["Link"] = f'<{url}>; rel="next"'
    return Response(out.getvalue(), media_type="text/csv", headers=headers)


class HandOverView(BaseModel):
    segment_id: str
    handed_over: int = Field(description="Members handed to sales as qualified leads now.")
    already_handed_over: int = Field(description="Members handed over from this segment before.")


@router.post(
    "/segments/{segment_id}/hand-over",
    response_model=HandOverView,
    summary="Hand the segment's current members to sales as qualified leads (crm.lead.qualified.v1), once each",
    responses={
        404: {"description": "No such segment"},
        409: {"description": "Stored under rules no longer accepted: delete it and define it again"},
    },
    dependencies=[requires("segments:write")],
)
async def hand_over(store: StoreDep, segment_id: IdInPath) -> HandOverView:
    segment = await _segment(store, segment_id)
    new, already = await handlers.hand_over_leads(store, segment_id, segment.name, segment.definition, utc_now())
    return HandOverView(segment_id=segment_id, handed_over=new, already_handed_over=already)
