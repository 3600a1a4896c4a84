"""The public event contract: a CloudEvents 1.0 envelope (structured JSON mode) and versioned payloads.

Every event type is `crm.<entity>.<what happened>.v<major>`. A payload change that breaks a consumer
gets a new major version and a new type; additive changes keep the type. The Kafka key of every event
is the customer id, which is also the envelope's `subject` and the payload's `customer_id`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Generic, Literal, Self, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    model_validator,
)

# Namespace for ids derived from other ids, so a retry derives the same id again.
_ID_NAMESPACE = uuid.UUID("6f1c2d1e-8c44-4d8e-9a57-4c3b3f0b6a10")

CustomerId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]*$",
        description="The customer's id: letters, digits, '_', '.', ':' and '-'. Also the Kafka key.",
        examples=["C-1001"],
    ),
]
EntityId = Annotated[
    str,
    Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]*$", examples=["O-5001"]),
]


def _at_most_four_decimal_places(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError("amount must be a finite number")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -4:
        raise ValueError("amount has more than 4 decimal places")
    return value


Money = Annotated[
    Decimal,
    Field(
        ge=0,
        le=Decimal("1000000000"),
        description="A non-negative amount, as a JSON string or number.",
        examples=["129.90"],
    ),
    AfterValidator(_at_most_four_decimal_places),
]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code.", examples=["EUR"])]
Channel = Literal["web", "pos", "call_centre", "email", "phone", "sms", "face_to_face", "partner"]
Dimension = Literal["product", "service", "people"]


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_event_id() -> str:
    return str(uuid.uuid4())


def derived_event_id(*parts: str) -> str:
    """An event id that is the same every time it is derived from the same parts (e.g. the cause's id)."""
    return str(uuid.uuid5(_ID_NAMESPACE, "|".join(parts)))


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    customer_id: CustomerId


# ---------------------------------------------------------------- payloads


class OrderLine(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sku: EntityId
    quantity: Annotated[int, Field(gt=0, le=1_000_000)]
    unit_price: Money


class OrderPlaced(Payload):
    """A customer placed an order in a channel."""

    order_id: EntityId
    currency: Currency
    total: Money
    lines: list[OrderLine] = Field(default_factory=list, max_length=1000)
    channel: Channel = "web"
    product_line: str | None = Field(default=None, max_length=64)

    @model_validator(mode="after")
    def _total_matches_lines(self) -> Self:
        if self.lines:
            lines_sum = sum((line.unit_price * line.quantity for line in self.lines), Decimal(0))
            if lines_sum != self.total:
                raise ValueError(f"total {self.total} does not equal the sum of the lines {lines_sum}")
        return self


class OrderPaid(Payload):
    order_id: EntityId
    currency: Currency
    amount: Money


class OrderCancelled(Payload):
    order_id: EntityId
    reason: str | None = Field(default=None, max_length=500)


class OrderRefunded(Payload):
    order_id: EntityId
    currency: Currency
    amount: Money
    reason: str | None = Field(default=None, max_length=500)


class ComplaintFiled(Payload):
    """A customer complained: about the product, the service or the people (BRIEF.md section 3)."""

    complaint_id: EntityId
    dimension: Dimension
    severity: Literal["low", "medium", "high"]
    summary: str = Field(min_length=1, max_length=2000)
    channel: Channel = "call_centre"
    order_id: EntityId | None = None


class SurveyAnswered(Payload):
    """A satisfaction survey answer: CSAT on 1-5 or NPS on 0-10."""

    survey_id: EntityId
    kind: Literal["csat", "nps"]
    score: int
    dimension: Dimension = "service"
    comment: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _score_in_scale(self) -> Self:
        low, high = (1, 5) if self.kind == "csat" else (0, 10)
        if not low <= self.score <= high:
            raise ValueError(f"a {self.kind} score must be between {low} and {high}, got {self.score}")
        return self


class ChannelConsent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: Channel
    granted: bool


class CustomerRegistered(Payload):
    """A customer signed up in a channel. Personal data travels only in this event and the customer service."""

    name: str = Field(min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    phone: str | None = Field(default=None, max_length=40)
    channel: Channel = "web"
    consents: list[ChannelConsent] = Field(default_factory=list, max_length=16)
    preferred_channel: Channel | None = None


class InteractionLogged(Payload):
    """A touch that is neither an order nor a ticket: a call, a visit, an email, a web session."""

    interaction_id: EntityId
    kind: Literal["call", "visit", "email", "web", "chat", "meeting"]
    channel: Channel
    summary: str | None = Field(default=None, max_length=2000)


class CustomerReferred(Payload):
    """A customer referred someone: `customer_id` is the referrer (and the Kafka key)."""

    referral_id: EntityId
    referred_customer_id: CustomerId = Field(description="The customer who was referred.")
    channel: Channel | None = None

    @model_validator(mode="after")
    def _not_oneself(self) -> Self:
        if self.referred_customer_id == self.customer_id:
            raise ValueError(f"customer {self.customer_id} cannot refer themselves")
        return self


SegmentDimension = Literal["value_tier", "lifecycle_stage", "rfm_segment", "churn_risk_band"]


class ScoreSnapshot(BaseModel):
    """The scores behind a segment decision, as they stood when it was taken."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    recency_days: int | None = Field(description="Days since the last order, None before the first.")
    frequency: int = Field(ge=0, description="Orders that were not cancelled.")
    monetary: Decimal = Field(description="Order value net of refunds and cancellations.")
    average_order_value: Decimal
    value_tier: str
    lifecycle_stage: str
    churn_risk: float = Field(ge=0, le=1)
    churn_risk_band: str
    satisfaction: float | None = Field(ge=0, le=1)
    rfm_score: str | None = Field(
        default=None, pattern=r"^[1-5]{3}$", description="Recency, frequency and monetary quintile scores, e.g. '545'."
    )
    rfm_segment: str | None = Field(default=None, description="The named RFM segment, e.g. 'champions'.")
    loyalty_stage: str | None = Field(default=None, description="stranger, prospect, buyer, satisfied or advocate.")
    probability_alive: float | None = Field(default=None, ge=0, le=1, description="BG/NBD P(still a customer).")
    lifetime_value: Decimal | None = Field(default=None, description="Forecast discounted spend over the horizon.")


class SegmentChanged(Payload):
    """A customer crossed a boundary on one dimension. Never published when nothing changed."""

    dimension: SegmentDimension
    old: str | None = Field(description="None when the customer had no value yet on this dimension.")
    new: str
    scores: ScoreSnapshot
    model_version: str
    changed_at: AwareDatetime
    caused_by: str = Field(description="The id of the event that caused the change, or 'decay:<date>'.")


class CampaignEnrolled(Payload):
    """A customer was enrolled in a campaign or triggered journey (once per journey episode)."""

    enrolment_id: str
    campaign_id: str
    journey: str
    episode: str = Field(description="What makes this enrolment unique for the customer and journey.")
    channel: Channel | None = Field(description="None when the customer was held out or not contactable.")
    status: Literal["contacted", "holdout", "skipped"]
    reason: str | None = None
    trigger_event_id: str


class ConsentChanged(Payload):
    """A customer granted or refused one channel; optionally it became the preferred channel."""

    channel: Channel
    granted: bool
    preferred_channel: Channel | None = Field(default=None, description="None leaves the preferred channel as it was.")


class CampaignContacted(Payload):
    """Marketing asked for the customer to be contacted in a campaign, on a channel they granted."""

    enrolment_id: str
    campaign_id: str
    journey: str
    channel: Channel
    cost: Money = Field(description="What the contact spent from the campaign's budget.")


class CampaignConverted(Payload):
    """An order by an enrolled customer (contacted or held out) within the campaign's attribution window."""

    enrolment_id: str
    campaign_id: str
    journey: str
    group: Literal["treated", "holdout"]
    order_id: EntityId
    currency: Currency
    revenue: Money
    enrolled_at: AwareDatetime
    ordered_at: AwareDatetime


class LeadQualified(Payload):
    """Marketing hands a qualified lead to sales for follow-up: a member of a lead segment, or a prospect
    whose logged interactions reached marketing's engagement threshold."""

    lead_id: str
    segment_id: str = Field(
        description="The marketing segment whose rules qualified the lead, or 'engagement' when the prospect's "
        "engagement score qualified it.",
        examples=["hot-prospects", "engagement"],
    )
    reason: str = Field(
        max_length=500,
        description="For the sales person: the segment's name, or the engagement score and the interactions behind it.",
    )
    value_tier: str | None = None
    lifecycle_stage: str | None = None


# ---------------------------------------------------------------- envelope

DataT = TypeVar("DataT", bound=Payload)


class CloudEvent(BaseModel, Generic[DataT]):
    """CloudEvents 1.0, structured JSON mode, with two extension attributes for tracing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1, max_length=200, description="Unique per event; a retry reuses it.")
    source: str = Field(min_length=1, max_length=500, examples=["/channels/webshop"])
    type: str
    time: AwareDatetime
    subject: CustomerId
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str | None = None
    correlationid: str | None = Field(default=None, max_length=200, description="Shared by every event of one flow.")
    causationid: str | None = Field(
        default=None, max_length=200, description="The id of the event that caused this one."
    )
    data: DataT

    TYPE: ClassVar[str] = ""

    @model_validator(mode="after")
    def _subject_is_the_customer(self) -> Self:
        if self.subject != self.data.customer_id:
            raise ValueError(f"subject {self.subject!r} must equal data.customer_id {self.data.customer_id!r}")
        return self

    @property
    def customer_id(self) -> str:
        return self.subject

    @classmethod
    def create(
        cls,
        data: DataT,
        *,
        source: str,
        id: str | None = None,
        time: datetime | None = None,
        cause: CloudEvent[Any] | None = None,
    ) -> Self:
        """A new event; `cause` carries the correlation id forward and becomes the causation id."""
        return cls(
            id=id or new_event_id(),
            source=source,
            type=cls.TYPE,
            time=time or utc_now(),
            subject=data.customer_id,
            correlationid=(cause.correlationid or cause.id) if cause else None,
            causationid=cause.id if cause else None,
            data=data,
        )

    def to_bytes(self) -> bytes:
        """The structured-mode JSON: absent optional attributes are left out; `data` is kept whole,
        since a payload field that is required but nullable must travel as null."""
        envelope = self.model_dump(mode="json")
        return json.dumps(
            {k: v for k, v in envelope.items() if v is not None or k == "data"}, separators=(",", ":")
        ).encode()


class OrderPlacedEvent(CloudEvent[OrderPlaced]):
    """An order was placed."""

    TYPE: ClassVar[str] = "crm.order.placed.v1"
    type: Literal["crm.order.placed.v1"] = "crm.order.placed.v1"


class OrderPaidEvent(CloudEvent[OrderPaid]):
    """An order was paid."""

    TYPE: ClassVar[str] = "crm.order.paid.v1"
    type: Literal["crm.order.paid.v1"] = "crm.order.paid.v1"


class OrderCancelledEvent(CloudEvent[OrderCancelled]):
    """An order was cancelled."""

    TYPE: ClassVar[str] = "crm.order.cancelled.v1"
    type: Literal["crm.order.cancelled.v1"] = "crm.order.cancelled.v1"


class OrderRefundedEvent(CloudEvent[OrderRefunded]):
    """An order was refunded, in part or in full."""

    TYPE: ClassVar[str] = "crm.order.refunded.v1"
    type: Literal["crm.order.refunded.v1"] = "crm.order.refunded.v1"


class ComplaintFiledEvent(CloudEvent[ComplaintFiled]):
    """A complaint was filed."""

    TYPE: ClassVar[str] = "crm.complaint.filed.v1"
    type: Literal["crm.complaint.filed.v1"] = "crm.complaint.filed.v1"


class SurveyAnsweredEvent(CloudEvent[SurveyAnswered]):
    """A satisfaction survey was answered."""

    TYPE: ClassVar[str] = "crm.survey.answered.v1"
    type: Literal["crm.survey.answered.v1"] = "crm.survey.answered.v1"


class CustomerRegisteredEvent(CloudEvent[CustomerRegistered]):
    """A customer signed up."""

    TYPE: ClassVar[str] = "crm.customer.registered.v1"
    type: Literal["crm.customer.registered.v1"] = "crm.customer.registered.v1"


class InteractionLoggedEvent(CloudEvent[InteractionLogged]):
    """A call, visit, email or web touch was logged."""

    TYPE: ClassVar[str] = "crm.interaction.logged.v1"
    type: Literal["crm.interaction.logged.v1"] = "crm.interaction.logged.v1"


class SegmentChangedEvent(CloudEvent[SegmentChanged]):
    """A customer crossed a segment boundary."""

    TYPE: ClassVar[str] = "crm.segment.changed.v1"
    type: Literal["crm.segment.changed.v1"] = "crm.segment.changed.v1"


class CampaignEnrolledEvent(CloudEvent[CampaignEnrolled]):
    """A customer was enrolled in a campaign or journey."""

    TYPE: ClassVar[str] = "crm.campaign.enrolled.v1"
    type: Literal["crm.campaign.enrolled.v1"] = "crm.campaign.enrolled.v1"


class ConsentChangedEvent(CloudEvent[ConsentChanged]):
    """A customer changed a channel consent."""

    TYPE: ClassVar[str] = "crm.customer.consent_changed.v1"
    type: Literal["crm.customer.consent_changed.v1"] = "crm.customer.consent_changed.v1"


class CampaignContactedEvent(CloudEvent[CampaignContacted]):
    """A customer is to be contacted in a campaign."""

    TYPE: ClassVar[str] = "crm.campaign.contacted.v1"
    type: Literal["crm.campaign.contacted.v1"] = "crm.campaign.contacted.v1"


class CampaignConvertedEvent(CloudEvent[CampaignConverted]):
    """An enrolled customer ordered within the attribution window."""

    TYPE: ClassVar[str] = "crm.campaign.converted.v1"
    type: Literal["crm.campaign.converted.v1"] = "crm.campaign.converted.v1"


class LeadQualifiedEvent(CloudEvent[LeadQualified]):
    """Marketing handed a qualified lead to sales."""

    TYPE: ClassVar[str] = "crm.lead.qualified.v1"
    type: Literal["crm.lead.qualified.v1"] = "crm.lead.qualified.v1"


class CustomerReferredEvent(CloudEvent[CustomerReferred]):
    """A customer referred someone."""

    TYPE: ClassVar[str] = "crm.customer.referred.v1"
    type: Literal["crm.customer.referred.v1"] = "crm.customer.referred.v1"


EVENT_TYPES: Mapping[str, type[CloudEvent[Any]]] = {
    cls.TYPE: cls
    for cls in (
        OrderPlacedEvent,
        OrderPaidEvent,
        OrderCancelledEvent,
        OrderRefundedEvent,
        ComplaintFiledEvent,
        SurveyAnsweredEvent,
        CustomerRegisteredEvent,
        InteractionLoggedEvent,
        SegmentChangedEvent,
        CampaignEnrolledEvent,
        ConsentChangedEvent,
        CampaignContactedEvent,
        CampaignConvertedEvent,
        LeadQualifiedEvent,
        CustomerReferredEvent,
    )
}

# What may arrive on each ingest topic, as one discriminated union per topic.
OrderIngest = Annotated[
    OrderPlacedEvent | OrderPaidEvent | OrderCancelledEvent | OrderRefundedEvent,
    Field(discriminator="type"),
]
TicketIngest = Annotated[
    ComplaintFiledEvent | SurveyAnsweredEvent,
    Field(discriminator="type"),
]
CustomerIngest = Annotated[
    CustomerRegisteredEvent | InteractionLoggedEvent | ConsentChangedEvent | CustomerReferredEvent,
    Field(discriminator="type"),
]
AnyEvent = Annotated[
    OrderPlacedEvent
    | OrderPaidEvent
    | OrderCancelledEvent
    | OrderRefundedEvent
    | ComplaintFiledEvent
    | SurveyAnsweredEvent
    | CustomerRegisteredEvent
    | InteractionLoggedEvent
    | SegmentChangedEvent
    | CampaignEnrolledEvent
    | ConsentChangedEvent
    | CampaignContactedEvent
    | CampaignConvertedEvent
    | LeadQualifiedEvent
    | CustomerReferredEvent,
    Field(discriminator="type"),
]
MarketingEvent = Annotated[
    CampaignEnrolledEvent | CampaignContactedEvent | CampaignConvertedEvent | LeadQualifiedEvent,
    Field(discriminator="type"),
]
ANY_EVENT: TypeAdapter[Any] = TypeAdapter(AnyEvent)


def parse_event(raw: bytes | str | dict[str, Any]) -> CloudEvent[Any]:
    """Parse any event of the catalog; raises pydantic.ValidationError with a precise message."""
    if isinstance(raw, dict):
        return ANY_EVENT.validate_python(raw)  # type: ignore[no-any-return]
    return ANY_EVENT.validate_json(raw)  # type: ignore[no-any-return]


class DeadLetter(BaseModel):
    """A record a service rejected, with everything needed to inspect and replay it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reason: str
    service: str
    consumer_group: str | None
    source_topic: str
    partition: int
    offset: int
    key: str | None = Field(description="The original key, decoded as UTF-8 where possible.")
    original_value_base64: str = Field(description="The original value bytes, base64-encoded.")
    original_text: str | None = Field(description="The original value as UTF-8 text, when it decodes.")
    event_id: str | None = Field(description="The envelope id, when the record parsed that far.")
    failed_at: AwareDatetime
