"""The public event contract: a CloudEvents 1.0 envelope (structured JSON mode) and versioned payloads.

Every event type is `crm.<entity>.<what happened>.v<major>`. A payload change that breaks a consumer
gets a new major version and a new type; additive changes keep the type. The Kafka key of every event
is the customer id, which is also the envelope's `subject` and the payload's `customer_id`.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Generic, Literal, Self, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    WithJsonSchema,
    model_validator,
)

from crm_shared.matching import MAX_MATCH_KEYS, MatchKey
from crm_shared.personal import ClearOrSealed

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


# ---------------------------------------------------------------- money

_PLAIN_DECIMAL = re.compile(r"^[0-9]{1,10}(\.[0-9]{1,4})?$")
MONEY_PATTERN = r"^[0-9]{1,10}(\.[0-9]{1,4})?$"
MAX_AMOUNT = Decimal("1000000000")


def _plain_amount(value: Any) -> Decimal:
    """A decimal string such as "129.90": digits, no sign, exponent, '_' or spaces.

    A JSON number is refused rather than rounded: a fraction has already lost precision in the JSON
    parser, so the amount on record would not be the amount sent.
    """
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("amount must be a finite number")
        text = format(value, "f")
    elif isinstance(value, str):
        text = value
    else:
        raise ValueError('amount must be a decimal string such as "129.90"')
    if not _PLAIN_DECIMAL.match(text):
        raise ValueError(
            f'amount must be a plain decimal string such as "129.90": digits, at most 4 decimal places, '
            f"no sign, exponent, '_' or spaces; got {text[:40]!r}"
        )
    # Leading zeros go ("0012.50" is 12.50); the scale the sender chose (12.50, not 12.5) stays.
    amount = Decimal(text)
    if amount > MAX_AMOUNT:
        raise ValueError(f"amount must be at most {MAX_AMOUNT}")
    return amount


Money = Annotated[
    Decimal,
    BeforeValidator(_plain_amount),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": MONEY_PATTERN,
            "description": "A non-negative amount as a decimal string: digits, at most 4 decimal places, "
            "at most 1000000000.",
            "examples": ["129.90"],
        }
    ),
]

# ---------------------------------------------------------------- times

_RFC3339 = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[Tt](?P<time>\d{2}:\d{2}:\d{2})(?P<fraction>\.\d{1,9})?(?P<offset>[Zz]|[+-]\d{2}:\d{2})$"
)
LATEST_PLANNED_TIME = datetime(2200, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class TimeWindow:
    """The times an event may carry: not before `earliest`, at most `max_clock_skew` ahead of this clock.

    A time far in the future would outrank every later fact (a consent granted "in 9999" would beat
    every refusal), and one outside what Python and BSON hold breaks arithmetic downstream.
    """

    earliest: datetime = datetime(1900, 1, 1, tzinfo=UTC)
    max_clock_skew: timedelta = timedelta(minutes=5)


_time_window = TimeWindow()


def configure_time_window(window: TimeWindow) -> None:
    """Set the window this process validates event times against (a service does it at start-up)."""
    global _time_window
    _time_window = window


def time_window() -> TimeWindow:
    return _time_window


def _rfc3339(value: Any) -> datetime:
    """An RFC 3339 timestamp with its offset ("2026-11-24T10:00:00Z"); epoch numbers and local times are refused."""
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("time must carry its UTC offset")
        return value
    if not isinstance(value, str):
        raise ValueError('time must be an RFC 3339 string such as "2026-11-24T10:00:00Z"')
    match = _RFC3339.match(value)
    if match is None:
        raise ValueError(
            f'time must be an RFC 3339 timestamp with an offset, such as "2026-11-24T10:00:00Z"; got {value[:40]!r}'
        )
    fraction = (match["fraction"] or "")[:7]  # microseconds: the digits beyond are below what is stored
    offset = "+00:00" if match["offset"] in ("Z", "z") else match["offset"]
    try:
        return datetime.fromisoformat(f"{match['date']}T{match['time']}{fraction}{offset}")
    except ValueError as exc:
        raise ValueError(f"time {value[:40]!r} is not a valid date and time: {exc}") from None


def _in_window(at: datetime, latest: datetime) -> datetime:
    earliest = _time_window.earliest
    if at < earliest:
        raise ValueError(f"time {at.isoformat()} is before {earliest.isoformat()}, the earliest time accepted")
    if at > latest:
        raise ValueError(f"time {at.isoformat()} is after {latest.isoformat()}, the latest time accepted")
    # Milliseconds, as MongoDB keeps them: the time on the bus is the time every service stores.
    return at.astimezone(UTC).replace(microsecond=at.microsecond // 1000 * 1000)


def _event_time(at: datetime) -> datetime:
    latest = utc_now() + _time_window.max_clock_skew
    try:
        return _in_window(at, latest)
    except ValueError:
        if at > latest:
            raise ValueError(
                f"time {at.isoformat()} is in the future: at most {_time_window.max_clock_skew} ahead of "
                f"this service's clock ({utc_now().isoformat(timespec='seconds')}) is accepted"
            ) from None
        raise


def _planned_time(at: datetime) -> datetime:
    return _in_window(at, LATEST_PLANNED_TIME)


EventTime = Annotated[AwareDatetime, BeforeValidator(_rfc3339), AfterValidator(_event_time)]
"""When something happened: RFC 3339, within the time window, normalised to UTC and milliseconds."""
PlannedTime = Annotated[AwareDatetime, BeforeValidator(_rfc3339), AfterValidator(_planned_time)]
"""When something is planned to happen (a campaign's end): RFC 3339, from the earliest time to 2199."""


def check_time(at: datetime) -> datetime:
    """`at` if MongoDB and Python can store and compute with it (the planned window), else ValueError."""
    return _planned_time(at)


# ---------------------------------------------------------------- text

# C0 and C1 controls (newline and tab allowed in free text), and the bidirectional embeddings,
# overrides and isolates that make a name display other than it is stored.
_BIDI = "\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c"
_LINE_FORBIDDEN = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}]")
_TEXT_FORBIDDEN = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}]")


def _single_line(value: str) -> str:
    if _LINE_FORBIDDEN.search(value):
        raise ValueError("must not contain control characters or bidirectional-override characters")
    if value != value.strip():
        raise ValueError("must not start or end with spaces")
    return value


def _free_text(value: str) -> str:
    if _TEXT_FORBIDDEN.search(value):
        raise ValueError("must not contain control characters (other than newline and tab) or bidirectional overrides")
    return value


Line = Annotated[str, AfterValidator(_single_line)]
"""One line of text a person reads: a name, a product line."""
Text = Annotated[str, AfterValidator(_free_text)]
"""Free text: a summary, a comment, a reason."""


Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code.", examples=["EUR"])]
Channel = Literal["web", "pos", "call_centre", "email", "phone", "sms", "face_to_face", "partner", "post"]
ConsentPurpose = Literal["marketing", "service"]
"""What a consent is for: marketing (campaigns, journeys) or service (messages about the customer's orders and
tickets). A consent stated without a purpose is a marketing consent."""
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
    """A line of an order or a quote: its net amount is quantity x unit price - discount."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sku: EntityId
    quantity: Annotated[int, Field(gt=0, le=1_000_000)]
    unit_price: Money
    discount: Money = Field(default=Decimal(0), description="Off the line's gross amount (not per unit).")
    unit_cost: Money | None = Field(default=None, description="What one unit costs the seller, for margins.")

    @property
    def gross(self) -> Decimal:
        return self.unit_price * self.quantity

    @property
    def net(self) -> Decimal:
        return self.gross - self.discount

    @model_validator(mode="after")
    def _discount_within_line(self) -> Self:
        if self.discount > self.gross:
            raise ValueError(f"discount {self.discount} on {self.sku} exceeds the line's amount {self.gross}")
        return self


class OrderPlaced(Payload):
    """A customer placed an order in a channel."""

    order_id: EntityId
    currency: Currency
    total: Money
    lines: list[OrderLine] = Field(default_factory=list, max_length=1000)
    channel: Channel = "web"
    product_line: Line | None = Field(default=None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def _total_matches_lines(self) -> Self:
        if self.lines:
            lines_sum = sum((line.net for line in self.lines), Decimal(0))
            if lines_sum != self.total:
                raise ValueError(f"total {self.total} does not equal the sum of the lines net of discounts {lines_sum}")
        return self


class OrderPaid(Payload):
    order_id: EntityId
    currency: Currency
    amount: Money


class OrderCancelled(Payload):
    order_id: EntityId
    reason: Text | None = Field(default=None, max_length=500)


class OrderRefunded(Payload):
    order_id: EntityId
    currency: Currency
    amount: Money
    reason: Text | None = Field(default=None, max_length=500)


class ComplaintFiled(Payload):
    """A customer complained: about the product, the service or the people (BRIEF.md section 3)."""

    complaint_id: EntityId
    dimension: Dimension
    severity: Literal["low", "medium", "high"]
    summary: Text = Field(min_length=1, max_length=2000)
    channel: Channel = "call_centre"
    order_id: EntityId | None = None
    group: EntityId | None = Field(
        default=None,
        description="The support group (queue) the channel routes the complaint to; its agents see it. "
        "Null: unrouted until assigned.",
        examples=["billing"],
    )


class SurveyAnswered(Payload):
    """A satisfaction survey answer: CSAT on 1-5 or NPS on 0-10."""

    survey_id: EntityId
    kind: Literal["csat", "nps"]
    score: int
    dimension: Dimension = "service"
    comment: Text | None = Field(default=None, max_length=2000)
    ticket_id: EntityId | None = Field(
        default=None, description="The ticket a CSAT survey asks about (crm.survey.requested.v1 names it)."
    )
    agent_id: EntityId | None = Field(
        default=None, description="The agent the answer is about; by default the ticket's assignee."
    )

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
    purpose: ConsentPurpose = "marketing"


class CustomerRegistered(Payload):
    """A customer signed up in a channel. Personal data travels only in this event: name, email and phone
    come in clear from the channel (crm.ingest.customers, read only by the customer service, or its API) and
    leave the customer service sealed with the customer's key (crm.customer.events): erasing the customer
    destroys the key, and every copy becomes unreadable. POST /v1/personal-data/unseal opens a sealed field."""

    name: ClearOrSealed[Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_single_line)]] = Field(
        description="In clear from a channel; sealed on crm.customer.events."
    )
    email: (
        ClearOrSealed[Annotated[str, Field(max_length=320, pattern=r"^[^@\s]+@[^@\s]+$"), AfterValidator(_single_line)]]
        | None
    ) = Field(default=None, description="In clear from a channel; sealed on crm.customer.events.")
    phone: ClearOrSealed[Annotated[str, Field(max_length=40, pattern=r"^\+?[0-9()][0-9 ()./-]{2,39}$")]] | None = Field(
        default=None, description="In clear from a channel; sealed on crm.customer.events."
    )
    channel: Channel = "web"
    consents: list[ChannelConsent] = Field(default_factory=list, max_length=16)
    preferred_channel: Channel | None = Field(default=None, description="Must be a channel granted in `consents`.")
    kind: Literal["person", "organisation"] = Field(
        default="person", description="A person, or an organisation (an account, with contacts); `name` is its name."
    )

    @model_validator(mode="after")
    def _preferred_is_granted(self) -> Self:
        if self.preferred_channel is not None and not any(
            c.channel == self.preferred_channel and c.granted and c.purpose == "marketing" for c in self.consents
        ):
            raise ValueError(
                f"preferred_channel {self.preferred_channel} must be a channel the customer granted in consents "
                "(for marketing)"
            )
        return self


class InteractionLogged(Payload):
    """A touch that is neither an order nor a ticket: a call, a visit, an email, a web session."""

    interaction_id: EntityId
    kind: Literal["call", "visit", "email", "web", "chat", "meeting"]
    channel: Channel
    summary: Text | None = Field(default=None, max_length=2000)


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
    changed_at: EventTime
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
    """A customer granted or refused one channel for one purpose (marketing unless stated); optionally, for
    marketing, it became the preferred channel."""

    channel: Channel
    granted: bool
    preferred_channel: Channel | None = Field(
        default=None, description="None leaves the preferred channel as it was; else a channel the customer granted."
    )
    purpose: ConsentPurpose = Field(
        default="marketing",
        description="marketing: campaigns and journeys may use the channel; service: messages about the customer's "
        "own orders and tickets may (allowed unless refused).",
    )

    @model_validator(mode="after")
    def _not_preferring_a_refusal(self) -> Self:
        if self.preferred_channel == self.channel and not self.granted:
            raise ValueError(f"{self.channel} cannot become the preferred channel while it is refused")
        if self.preferred_channel is not None and self.purpose != "marketing":
            raise ValueError("the preferred channel is a marketing choice: name it with a marketing consent")
        return self


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
    enrolled_at: EventTime
    ordered_at: EventTime


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


# ---------------------------------------------------------------- sales force automation

OwnerId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=255,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@|\-]*$",
        description="A sales person, as their token's subject names them.",
        examples=["rep-17"],
    ),
]
LeadSource = Literal["field_visit", "directory_import", "inbound", "campaign", "referral", "marketing", "other"]
"""Where a lead came from; `marketing` is a lead marketing qualified (crm.lead.qualified.v1)."""
ForecastCategory = Literal["pipeline", "best_case", "commit", "closed", "omitted"]
ActivityKind = Literal["call", "meeting", "visit", "email", "task", "reminder"]
Probability = Annotated[float, Field(ge=0, le=1)]


class LeadConverted(Payload):
    """A lead became a customer with an opportunity: `customer_id` is the customer it registered or matched."""

    lead_id: EntityId
    source: LeadSource
    new_customer: bool = Field(
        description="True when the conversion registered the customer (crm.customer.registered.v1 on "
        "crm.ingest.customers); false when the lead matched a customer sales already knew."
    )
    account_id: EntityId | None = Field(default=None, description="The organisation the contact works for.")
    opportunity_id: EntityId | None = None
    owner_id: OwnerId | None = None


class OpportunityOpened(Payload):
    """A sales opportunity was opened for a customer (and their account), in a pipeline's first stage or another."""

    opportunity_id: EntityId
    pipeline_id: EntityId
    stage: EntityId
    name: Line = Field(min_length=1, max_length=200)
    amount: Money
    currency: Currency
    expected_close: date | None = None
    probability: Probability
    forecast_category: ForecastCategory
    owner_id: OwnerId | None = None
    account_id: EntityId | None = None
    lead_id: EntityId | None = None
    source: LeadSource | None = None


class OpportunityStageChanged(Payload):
    """An open opportunity moved from one stage of its pipeline to another."""

    opportunity_id: EntityId
    pipeline_id: EntityId
    from_stage: EntityId
    to_stage: EntityId
    probability: Probability
    forecast_category: ForecastCategory
    amount: Money
    currency: Currency


class OpportunityWon(Payload):
    """An opportunity was won; `order_id` names the order it became, if any."""

    opportunity_id: EntityId
    pipeline_id: EntityId
    amount: Money
    currency: Currency
    reason: Text | None = Field(default=None, max_length=500)
    order_id: EntityId | None = None


class OpportunityLost(Payload):
    """An opportunity was lost, with the reason."""

    opportunity_id: EntityId
    pipeline_id: EntityId
    amount: Money
    currency: Currency
    reason: Text = Field(min_length=1, max_length=500)


class OrderFulfilled(Payload):
    """An order was fulfilled: shipped or handed over, with where to track it."""

    order_id: EntityId
    carrier: Line | None = Field(default=None, max_length=100)
    tracking_number: Line | None = Field(default=None, max_length=100)
    location: Line | None = Field(default=None, max_length=200, description="Where the order is, in words.")


class ActivityScheduled(Payload):
    """A call, meeting, visit, email, task or reminder with a customer was planned."""

    activity_id: EntityId
    kind: ActivityKind
    title: Line = Field(min_length=1, max_length=200)
    due_at: PlannedTime
    owner_id: OwnerId | None = None
    lead_id: EntityId | None = None
    opportunity_id: EntityId | None = None
    account_id: EntityId | None = None


class ActivityCompleted(Payload):
    """An activity with a customer was done, with its outcome: for scoring, a call, meeting, visit or email is an
    interaction."""

    activity_id: EntityId
    kind: ActivityKind
    title: Line = Field(min_length=1, max_length=200)
    outcome: Text | None = Field(default=None, max_length=2000)
    owner_id: OwnerId | None = None
    opportunity_id: EntityId | None = None


class QuoteSent(Payload):
    """A quote was sent to the customer."""

    quote_id: EntityId
    opportunity_id: EntityId | None = None
    currency: Currency
    total: Money = Field(description="Net of discounts, taxes included.")
    valid_until: date


class QuoteAccepted(Payload):
    """The customer accepted a quote; it became order `order_id`."""

    quote_id: EntityId
    opportunity_id: EntityId | None = None
    order_id: EntityId
    currency: Currency
    total: Money


class QuoteRejected(Payload):
    """The customer rejected a quote."""

    quote_id: EntityId
    opportunity_id: EntityId | None = None
    reason: Text | None = Field(default=None, max_length=500)


TicketKind = Literal["request", "complaint", "question"]
TicketPriority = Literal["low", "normal", "high", "urgent"]
TicketStatus = Literal["new", "open", "pending", "resolved", "closed"]
SlaTimer = Literal["first_response", "next_response", "resolution"]


class SurveyRequested(Payload):
    """Support asks the customer for a survey answer: a CSAT (1-5) when a ticket is resolved. A channel system sends
    it and returns the answer as crm.survey.answered.v1 with the same survey_id and ticket_id."""

    survey_id: EntityId
    kind: Literal["csat", "nps"]
    ticket_id: EntityId | None = None
    agent_id: EntityId | None = None


class TicketOpened(Payload):
    """A ticket was opened: a service request, complaint or question (a complaint filed opens one of kind
    complaint under the complaint's id). Its subject and messages stay in support: they are free text about a
    person."""

    ticket_id: EntityId
    kind: TicketKind
    channel: Channel
    priority: TicketPriority
    category: Dimension | None = Field(default=None, description="What it is about: product, service or people.")
    order_id: EntityId | None = None
    product: EntityId | None = None
    group: EntityId | None = None
    sla_policy_id: EntityId | None = Field(default=None, description="The SLA policy in force; null for none.")


class TicketStatusChanged(Payload):
    """A ticket moved in its lifecycle (new, open, pending, resolved, closed); `reopened` when it left resolved
    or closed."""

    ticket_id: EntityId
    old: TicketStatus
    new: TicketStatus
    reopened: bool = False
    by: Literal["customer", "agent", "system"] = "agent"


class TicketAssigned(Payload):
    """A ticket was given to a group and/or an agent (null: none)."""

    ticket_id: EntityId
    group: EntityId | None = None
    assignee_id: EntityId | None = None


class TicketReplied(Payload):
    """A message was added to a ticket: a public reply (of the customer or an agent) or an agent's internal note.
    The text stays in support."""

    ticket_id: EntityId
    post_id: EntityId
    author: Literal["customer", "agent"]
    public: bool


class SlaWarned(Payload):
    """A ticket's SLA timer is about to breach (the policy's warning lead time before its due time)."""

    ticket_id: EntityId
    timer: SlaTimer
    cycle: int = Field(default=1, ge=0, description="Next response: which wait (1 the first); otherwise 1.")
    policy_id: EntityId
    due_at: PlannedTime


class SlaBreached(Payload):
    """A ticket's SLA timer breached, and whom it was escalated to."""

    ticket_id: EntityId
    timer: SlaTimer
    cycle: int = Field(default=1, ge=0, description="Next response: which wait (1 the first); otherwise 1.")
    policy_id: EntityId
    due_at: PlannedTime
    escalated_to_group: EntityId | None = None
    escalated_to: EntityId | None = Field(default=None, description="The manager escalated to; null for none.")


class VisitScheduled(Payload):
    """An on-site visit for a ticket was booked on a technician's first free slot with the skill asked for."""

    visit_id: EntityId
    ticket_id: EntityId
    technician_id: EntityId
    skill: EntityId
    starts_at: PlannedTime
    ends_at: PlannedTime
    contract_id: EntityId | None = Field(default=None, description="The service contract it is under, if any.")


class PartUsedInVisit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    part: EntityId
    quantity: int = Field(ge=1, le=10_000)


class VisitStatusChanged(Payload):
    """A visit was dispatched, completed (with the time spent and the parts used) or cancelled."""

    visit_id: EntityId
    ticket_id: EntityId
    technician_id: EntityId
    status: Literal["dispatched", "completed", "cancelled"]
    minutes_spent: int | None = Field(default=None, ge=0, description="Completed: the time spent on site.")
    parts: list[PartUsedInVisit] = Field(default_factory=list, max_length=200)
    installed_product: EntityId | None = Field(
        default=None, description="Completed: the serial number of the installed product worked on, when known."
    )


class AttributeMoney(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    amount: Annotated[str, Field(pattern=r"^-?[0-9]{1,15}(\.[0-9]{1,4})?$")]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


AttributeValue = bool | float | Annotated[str, Field(max_length=1000)] | AttributeMoney
"""A custom attribute's value as published: boolean, number, string (also dates, YYYY-MM-DD, and enums), money."""


class CustomerProfileUpdated(Payload):
    """A customer's profile changed beyond sign-up: `changed` names every field that changed, and the fields that
    are not personal data are given as they are now (addresses, birthday, personal events, external ids and
    attributes declared personal never leave the customer service)."""

    changed: list[Annotated[str, Field(max_length=64)]] = Field(min_length=1, max_length=50)
    tags: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(default_factory=list, max_length=100)
    industry: Annotated[str, Field(max_length=100)] | None = None
    company_type: Annotated[str, Field(max_length=100)] | None = None
    company_size: Literal["1-9", "10-49", "50-249", "250-999", "1000+"] | None = None
    attributes: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")], AttributeValue] = Field(
        default_factory=dict, max_length=200, description="The attributes that are not personal data, as they are now."
    )


class AccountContactChanged(Payload):
    """A person's roles at an organisation (the account, `customer_id`) changed: none left means they are no
    longer its contact."""

    contact_id: CustomerId
    roles: list[Literal["buyer", "decision_maker", "technical_contact", "billing", "user"]] = Field(max_length=5)


class CustomerMatchKeysChanged(Payload):
    """The match keys of a customer (keyed hashes of their normalised email and phone, crm_shared.matching) as
    they stand now: set when they sign up, emptied when their personal data is erased. Each event replaces the
    set the one before it gave; a service that matches new records against customers keeps the newest."""

    match_keys: list[MatchKey] = Field(default_factory=list, max_length=MAX_MATCH_KEYS)
    reason: Literal["registered", "erased"] = Field(
        description="registered: the keys of the details the customer signed up with; erased: none are left."
    )

    @model_validator(mode="after")
    def _erased_has_none(self) -> Self:
        if self.reason == "erased" and self.match_keys:
            raise ValueError("an erasure leaves no match keys")
        return self


# ---------------------------------------------------------------- identity and privacy

IdentityService = Literal["customer", "sales", "support", "scoring", "marketing"]


class CustomerMerged(Payload):
    """`merged_id` is now `customer_id` (the survivor): every service moves what it holds about `merged_id` under
    the survivor, keeps which records came from it (so the merge can be undone), and treats events that still
    name `merged_id` as the survivor's. Published by the customer service; each service answers with
    crm.identity.applied.v1 on crm.identity.answers."""

    merge_id: EntityId
    merged_id: CustomerId
    decided_by: Literal["automatic", "confirmed"] = Field(
        description="automatic: an exact match on a strong identifier; confirmed: a person confirmed a proposal."
    )
    evidence: list[Annotated[str, Field(max_length=200)]] = Field(
        default_factory=list,
        max_length=20,
        description="Why they are one (the rules that matched, e.g. 'email', 'name 93'); never the values.",
    )

    @model_validator(mode="after")
    def _two_customers(self) -> Self:
        if self.merged_id == self.customer_id:
            raise ValueError("a customer cannot be merged into itself")
        return self


class CustomerUnmerged(Payload):
    """The merge `merge_id` of `merged_id` into `customer_id` is undone: every service gives back to `merged_id`
    what came from it, and what arrived for it since (events that named it), and keeps the rest with the
    survivor."""

    merge_id: EntityId
    merged_id: CustomerId


class CustomerErased(Payload):
    """The customer's personal data is to be removed everywhere: each service deletes or clears what identifies
    the person (free texts, contact details), keeps aggregates (revenue, counts) under `pseudonym` instead of the
    customer id, and confirms with crm.identity.applied.v1 (request `erasure`)."""

    erasure_id: EntityId
    pseudonym: CustomerId = Field(description="The id the kept aggregates go under; nothing links it to the person.")


class CustomerExportRequested(Payload):
    """Someone asked for everything held about the customer: each service answers with its records, in one or
    more crm.identity.exported.v1 on crm.identity.answers."""

    request_id: EntityId


class IdentityApplied(Payload):
    """What one service did about a merge, an unmerge or an erasure (`request_id`: the merge or erasure id)."""

    request_id: EntityId
    request: Literal["merge", "unmerge", "erasure"]
    service: IdentityService
    records: int = Field(ge=0, description="Records moved (merge, unmerge) or cleared (erasure).")
    kept: int = Field(default=0, ge=0, description="Records kept under the pseudonym (erasure).")


class ExportAnswered(Payload):
    """One part of a service's answer to an export request: its records about the customer by collection, as
    JSON. A service answers with `parts` parts, numbered from 1; an answer with no records is one empty part."""

    request_id: EntityId
    service: IdentityService
    part: int = Field(ge=1)
    parts: int = Field(ge=1, le=10_000)
    records: dict[Annotated[str, Field(max_length=64)], list[dict[str, Any]]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _part_in_range(self) -> Self:
        if self.part > self.parts:
            raise ValueError(f"part {self.part} of {self.parts}")
        return self


# ---------------------------------------------------------------- envelope

DataT = TypeVar("DataT", bound=Payload)


class CloudEvent(BaseModel, Generic[DataT]):
    """CloudEvents 1.0, structured JSON mode, with two extension attributes for tracing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: Line = Field(min_length=1, max_length=200, description="Unique per event; a retry reuses it.")
    source: Line = Field(min_length=1, max_length=500, examples=["/channels/webshop"])
    type: str
    time: EventTime = Field(
        description="The business time, RFC 3339 with an offset; not before the earliest time accepted (1900 by "
        "default) nor more than the clock skew (5 minutes by default) ahead."
    )
    subject: CustomerId
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str | None = None
    correlationid: Line | None = Field(default=None, max_length=200, description="Shared by every event of one flow.")
    causationid: Line | None = Field(
        default=None, max_length=200, description="The id of the event that caused this one."
    )
    originalsubject: CustomerId | None = Field(
        default=None,
        description="The customer id the event named when it was first received, when a service filed it under "
        "another (the survivor of a merge): kept so that an unmerge gives it back to the right customer.",
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

    @property
    def origin_customer_id(self) -> str:
        """The customer id the event named first: `originalsubject` when it was filed under a survivor since."""
        return self.originalsubject or self.subject

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
            # A fact republished about the customer its cause was filed under keeps the id the cause named.
            originalsubject=cause.originalsubject
            if cause is not None and cause.originalsubject and cause.subject == data.customer_id
            else None,
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


class OrderFulfilledEvent(CloudEvent[OrderFulfilled]):
    """An order was fulfilled."""

    TYPE: ClassVar[str] = "crm.order.fulfilled.v1"
    type: Literal["crm.order.fulfilled.v1"] = "crm.order.fulfilled.v1"


class LeadConvertedEvent(CloudEvent[LeadConverted]):
    """A lead was converted into a customer and an opportunity."""

    TYPE: ClassVar[str] = "crm.lead.converted.v1"
    type: Literal["crm.lead.converted.v1"] = "crm.lead.converted.v1"


class OpportunityOpenedEvent(CloudEvent[OpportunityOpened]):
    """An opportunity was opened."""

    TYPE: ClassVar[str] = "crm.opportunity.opened.v1"
    type: Literal["crm.opportunity.opened.v1"] = "crm.opportunity.opened.v1"


class OpportunityStageChangedEvent(CloudEvent[OpportunityStageChanged]):
    """An opportunity changed stage."""

    TYPE: ClassVar[str] = "crm.opportunity.stage_changed.v1"
    type: Literal["crm.opportunity.stage_changed.v1"] = "crm.opportunity.stage_changed.v1"


class OpportunityWonEvent(CloudEvent[OpportunityWon]):
    """An opportunity was won."""

    TYPE: ClassVar[str] = "crm.opportunity.won.v1"
    type: Literal["crm.opportunity.won.v1"] = "crm.opportunity.won.v1"


class OpportunityLostEvent(CloudEvent[OpportunityLost]):
    """An opportunity was lost."""

    TYPE: ClassVar[str] = "crm.opportunity.lost.v1"
    type: Literal["crm.opportunity.lost.v1"] = "crm.opportunity.lost.v1"


class ActivityScheduledEvent(CloudEvent[ActivityScheduled]):
    """An activity with a customer was scheduled."""

    TYPE: ClassVar[str] = "crm.activity.scheduled.v1"
    type: Literal["crm.activity.scheduled.v1"] = "crm.activity.scheduled.v1"


class ActivityCompletedEvent(CloudEvent[ActivityCompleted]):
    """An activity with a customer was completed."""

    TYPE: ClassVar[str] = "crm.activity.completed.v1"
    type: Literal["crm.activity.completed.v1"] = "crm.activity.completed.v1"


class QuoteSentEvent(CloudEvent[QuoteSent]):
    """A quote was sent."""

    TYPE: ClassVar[str] = "crm.quote.sent.v1"
    type: Literal["crm.quote.sent.v1"] = "crm.quote.sent.v1"


class QuoteAcceptedEvent(CloudEvent[QuoteAccepted]):
    """A quote was accepted."""

    TYPE: ClassVar[str] = "crm.quote.accepted.v1"
    type: Literal["crm.quote.accepted.v1"] = "crm.quote.accepted.v1"


class QuoteRejectedEvent(CloudEvent[QuoteRejected]):
    """A quote was rejected."""

    TYPE: ClassVar[str] = "crm.quote.rejected.v1"
    type: Literal["crm.quote.rejected.v1"] = "crm.quote.rejected.v1"


class SurveyRequestedEvent(CloudEvent[SurveyRequested]):
    """A survey answer is asked for."""

    TYPE: ClassVar[str] = "crm.survey.requested.v1"
    type: Literal["crm.survey.requested.v1"] = "crm.survey.requested.v1"


class TicketOpenedEvent(CloudEvent[TicketOpened]):
    """A ticket was opened."""

    TYPE: ClassVar[str] = "crm.ticket.opened.v1"
    type: Literal["crm.ticket.opened.v1"] = "crm.ticket.opened.v1"


class TicketStatusChangedEvent(CloudEvent[TicketStatusChanged]):
    """A ticket changed status."""

    TYPE: ClassVar[str] = "crm.ticket.status_changed.v1"
    type: Literal["crm.ticket.status_changed.v1"] = "crm.ticket.status_changed.v1"


class TicketAssignedEvent(CloudEvent[TicketAssigned]):
    """A ticket was assigned."""

    TYPE: ClassVar[str] = "crm.ticket.assigned.v1"
    type: Literal["crm.ticket.assigned.v1"] = "crm.ticket.assigned.v1"


class TicketRepliedEvent(CloudEvent[TicketReplied]):
    """A message was added to a ticket."""

    TYPE: ClassVar[str] = "crm.ticket.replied.v1"
    type: Literal["crm.ticket.replied.v1"] = "crm.ticket.replied.v1"


class SlaWarnedEvent(CloudEvent[SlaWarned]):
    """An SLA timer is about to breach."""

    TYPE: ClassVar[str] = "crm.sla.warned.v1"
    type: Literal["crm.sla.warned.v1"] = "crm.sla.warned.v1"


class SlaBreachedEvent(CloudEvent[SlaBreached]):
    """An SLA timer breached and was escalated."""

    TYPE: ClassVar[str] = "crm.sla.breached.v1"
    type: Literal["crm.sla.breached.v1"] = "crm.sla.breached.v1"


class CustomerMatchKeysChangedEvent(CloudEvent[CustomerMatchKeysChanged]):
    """A customer's match keys are set, or gone with their personal data."""

    TYPE: ClassVar[str] = "crm.customer.match_keys_changed.v1"
    type: Literal["crm.customer.match_keys_changed.v1"] = "crm.customer.match_keys_changed.v1"


class VisitScheduledEvent(CloudEvent[VisitScheduled]):
    """An on-site visit was booked."""

    TYPE: ClassVar[str] = "crm.visit.scheduled.v1"
    type: Literal["crm.visit.scheduled.v1"] = "crm.visit.scheduled.v1"


class VisitStatusChangedEvent(CloudEvent[VisitStatusChanged]):
    """A visit was dispatched, completed or cancelled."""

    TYPE: ClassVar[str] = "crm.visit.status_changed.v1"
    type: Literal["crm.visit.status_changed.v1"] = "crm.visit.status_changed.v1"


class CustomerProfileUpdatedEvent(CloudEvent[CustomerProfileUpdated]):
    """A customer's profile changed beyond sign-up."""

    TYPE: ClassVar[str] = "crm.customer.profile_updated.v1"
    type: Literal["crm.customer.profile_updated.v1"] = "crm.customer.profile_updated.v1"


class AccountContactChangedEvent(CloudEvent[AccountContactChanged]):
    """A contact's roles at an account changed."""

    TYPE: ClassVar[str] = "crm.account.contact_changed.v1"
    type: Literal["crm.account.contact_changed.v1"] = "crm.account.contact_changed.v1"


class CustomerMergedEvent(CloudEvent[CustomerMerged]):
    """One customer was merged into another."""

    TYPE: ClassVar[str] = "crm.customer.merged.v1"
    type: Literal["crm.customer.merged.v1"] = "crm.customer.merged.v1"


class CustomerUnmergedEvent(CloudEvent[CustomerUnmerged]):
    """A merge was undone."""

    TYPE: ClassVar[str] = "crm.customer.unmerged.v1"
    type: Literal["crm.customer.unmerged.v1"] = "crm.customer.unmerged.v1"


class CustomerErasedEvent(CloudEvent[CustomerErased]):
    """A customer's personal data is to be erased in every service."""

    TYPE: ClassVar[str] = "crm.customer.erased.v1"
    type: Literal["crm.customer.erased.v1"] = "crm.customer.erased.v1"


class CustomerExportRequestedEvent(CloudEvent[CustomerExportRequested]):
    """Everything held about a customer is asked for."""

    TYPE: ClassVar[str] = "crm.customer.export_requested.v1"
    type: Literal["crm.customer.export_requested.v1"] = "crm.customer.export_requested.v1"


class IdentityAppliedEvent(CloudEvent[IdentityApplied]):
    """A service applied a merge, an unmerge or an erasure."""

    TYPE: ClassVar[str] = "crm.identity.applied.v1"
    type: Literal["crm.identity.applied.v1"] = "crm.identity.applied.v1"


class ExportAnsweredEvent(CloudEvent[ExportAnswered]):
    """A part of a service's answer to an export request."""

    TYPE: ClassVar[str] = "crm.identity.exported.v1"
    type: Literal["crm.identity.exported.v1"] = "crm.identity.exported.v1"


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
        OrderFulfilledEvent,
        LeadConvertedEvent,
        OpportunityOpenedEvent,
        OpportunityStageChangedEvent,
        OpportunityWonEvent,
        OpportunityLostEvent,
        ActivityScheduledEvent,
        ActivityCompletedEvent,
        QuoteSentEvent,
        QuoteAcceptedEvent,
        QuoteRejectedEvent,
        CustomerMatchKeysChangedEvent,
        TicketOpenedEvent,
        TicketStatusChangedEvent,
        TicketAssignedEvent,
        TicketRepliedEvent,
        SlaWarnedEvent,
        SlaBreachedEvent,
        SurveyRequestedEvent,
        VisitScheduledEvent,
        VisitStatusChangedEvent,
        CustomerProfileUpdatedEvent,
        AccountContactChangedEvent,
        CustomerMergedEvent,
        CustomerUnmergedEvent,
        CustomerErasedEvent,
        CustomerExportRequestedEvent,
        IdentityAppliedEvent,
        ExportAnsweredEvent,
    )
}

# What may arrive on each ingest topic, as one discriminated union per topic.
OrderIngest = Annotated[
    OrderPlacedEvent | OrderPaidEvent | OrderCancelledEvent | OrderRefundedEvent | OrderFulfilledEvent,
    Field(discriminator="type"),
]
SalesEvent = Annotated[
    OrderPlacedEvent
    | OrderPaidEvent
    | OrderCancelledEvent
    | OrderRefundedEvent
    | OrderFulfilledEvent
    | LeadConvertedEvent
    | OpportunityOpenedEvent
    | OpportunityStageChangedEvent
    | OpportunityWonEvent
    | OpportunityLostEvent
    | ActivityScheduledEvent
    | ActivityCompletedEvent
    | QuoteSentEvent
    | QuoteAcceptedEvent
    | QuoteRejectedEvent,
    Field(discriminator="type"),
]
"""What sales publishes on crm.sales.events."""
TicketIngest = Annotated[
    ComplaintFiledEvent | SurveyAnsweredEvent,
    Field(discriminator="type"),
]
SupportEvent = Annotated[
    ComplaintFiledEvent
    | SurveyAnsweredEvent
    | TicketOpenedEvent
    | TicketStatusChangedEvent
    | TicketAssignedEvent
    | TicketRepliedEvent
    | SlaWarnedEvent
    | SlaBreachedEvent
    | SurveyRequestedEvent
    | VisitScheduledEvent
    | VisitStatusChangedEvent,
    Field(discriminator="type"),
]
"""What support publishes on crm.support.events."""
CustomerIngest = Annotated[
    CustomerRegisteredEvent | InteractionLoggedEvent | ConsentChangedEvent | CustomerReferredEvent,
    Field(discriminator="type"),
]
CustomerEvent = Annotated[
    CustomerRegisteredEvent
    | InteractionLoggedEvent
    | ConsentChangedEvent
    | CustomerReferredEvent
    | CustomerMatchKeysChangedEvent
    | CustomerProfileUpdatedEvent
    | AccountContactChangedEvent
    | CustomerMergedEvent
    | CustomerUnmergedEvent
    | CustomerErasedEvent
    | CustomerExportRequestedEvent,
    Field(discriminator="type"),
]
"""What the customer service publishes on crm.customer.events."""
IdentityAnswer = Annotated[IdentityAppliedEvent | ExportAnsweredEvent, Field(discriminator="type")]
"""What every service publishes on crm.identity.answers."""
IDENTITY_REQUESTS: tuple[type[CloudEvent[Any]], ...] = (
    CustomerMergedEvent,
    CustomerUnmergedEvent,
    CustomerErasedEvent,
    CustomerExportRequestedEvent,
)
"""The requests every service applies to what it holds about a customer (crm_shared.identity)."""
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
    | CustomerReferredEvent
    | OrderFulfilledEvent
    | LeadConvertedEvent
    | OpportunityOpenedEvent
    | OpportunityStageChangedEvent
    | OpportunityWonEvent
    | OpportunityLostEvent
    | ActivityScheduledEvent
    | ActivityCompletedEvent
    | QuoteSentEvent
    | QuoteAcceptedEvent
    | QuoteRejectedEvent
    | CustomerMatchKeysChangedEvent
    | TicketOpenedEvent
    | TicketStatusChangedEvent
    | TicketAssignedEvent
    | TicketRepliedEvent
    | SlaWarnedEvent
    | SlaBreachedEvent
    | SurveyRequestedEvent
    | VisitScheduledEvent
    | VisitStatusChangedEvent
    | CustomerProfileUpdatedEvent
    | AccountContactChangedEvent
    | CustomerMergedEvent
    | CustomerUnmergedEvent
    | CustomerErasedEvent
    | CustomerExportRequestedEvent
    | IdentityAppliedEvent
    | ExportAnsweredEvent,
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


PERSONAL_FIELDS = frozenset({"name", "email", "phone"})
"""Payload fields that identify a person: kept only by the customer service, never in logs or dead letters."""


class DeadLetter(BaseModel):
    """A record a service rejected, with the reason and where it came from.

    Dead letters are read by people and by external systems, so a letter is small and holds no personal
    data: the text shows the record with name, email and phone masked, cut at 16 KiB; the original
    bytes travel only when they are at most 64 KiB and nothing was masked. The whole original is kept
    in the rejecting service's own database (`original_kept_in`), where replaying tools can fetch it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    letter_id: str = Field(
        description="<topic>:<partition>:<offset>:<consumer group>:<first 16 hex digits of the value's SHA-256>; "
        "unique per rejected record, the same for a redelivery of it."
    )
    reason: str = Field(max_length=2000)
    service: str
    consumer_group: str | None
    source_topic: str
    partition: int
    offset: int
    key: str | None = Field(description="The original key, decoded as UTF-8 where possible.")
    event_id: str | None = Field(description="The envelope id, when the record parsed that far.")
    failed_at: AwareDatetime
    original_size: int = Field(ge=0, description="Bytes in the original value.")
    original_sha256: str = Field(description="Hex SHA-256 of the original value, to match it with the kept copy.")
    original_text: str | None = Field(
        description="The original as JSON text with personal fields masked, cut at 16 KiB; None when it is not "
        "JSON (it could hold personal data that cannot be found to mask)."
    )
    original_redacted: bool = Field(description="Personal fields were masked in `original_text`.")
    original_truncated: bool = Field(description="`original_text` was cut.")
    original_value_base64: str | None = Field(
        description="The original value bytes, base64-encoded, when at most 64 KiB, JSON and with nothing masked."
    )
    original_kept_in: str | None = Field(
        default=None,
        description="Where the whole original is kept: '<database>.deadletters', document `letter_id`; None when "
        "it could not be kept (database unreachable, or over 15 MiB).",
    )
