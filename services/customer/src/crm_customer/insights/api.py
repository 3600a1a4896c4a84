"""REST API of the summary card and the customer analysis, from the service's own projection of every service's
events (the timeline) and its profiles; nothing is asked of another service.

The analysis covers the customers the caller sees: every customer id with events for an API key or a manager of
all records; for a person, the registered customers they own, their team owns or of their territories (as the
timeline and the profiles do).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field

from crm_customer import api as customer_api
from crm_customer.insights import analysis, summary
from crm_customer.insights import repository as reads
from crm_customer.insights.analysis import DEFAULT_LAPSE_DAYS, Dimension, Period
from crm_customer.insights.timeline_query import as_utc
from crm_shared.api import IdInPath
from crm_shared.events import utc_now
from crm_shared.problems import Problem
from crm_shared.service import StoreDep

router = APIRouter(prefix="/v1", tags=["customer insights"])

CustomerReader = customer_api.CustomerReader
DEFAULT_PERIODS = 12
MAX_HORIZON = 60


# ---------------------------------------------------------------- summary card


class MoneyView(BaseModel):
    currency: str = Field(examples=["EUR"])
    amount: Decimal = Field(examples=["1500.00"])


def _money(totals: Mapping[str, Decimal]) -> list[MoneyView]:
    return [MoneyView(currency=c, amount=a) for c, a in totals.items()]


class ScoresView(BaseModel):
    """The scores of the newest segment change (scoring publishes one whenever the customer crosses a boundary)."""

    as_of: datetime = Field(description="The time of that segment change.")
    value_tier: str = Field(examples=["high_value"])
    lifecycle_stage: str = Field(examples=["first_time_buyer"])
    monetary: Decimal = Field(description="Realised value: orders net of refunds and cancellations, then.")
    lifetime_value: Decimal | None = Field(description="Forecast discounted spend over the horizon; null: no model.")
    churn_risk: float = Field(ge=0, le=1)
    churn_risk_band: str = Field(examples=["low"])
    satisfaction: float | None = Field(description="0 to 1; null without answers or complaints.")
    rfm_segment: str | None
    loyalty_stage: str | None


class LastOrderView(BaseModel):
    order_id: str
    placed_at: datetime
    total: Decimal
    currency: str
    channel: str | None
    status: summary.OrderStatus = Field(description="What happened to it since, as its events tell.")
    refunded: Decimal


class OpenTicketView(BaseModel):
    ticket_id: str
    opened_at: datetime | None = Field(description="Null when only later changes of it are on the timeline.")
    kind: str | None = Field(examples=["complaint"])
    priority: str | None
    channel: str | None
    status: str = Field(examples=["open"])
    sla_policy_id: str | None
    sla_state: summary.SlaState = Field(
        description="breached: a timer breached; warned: a timer is about to breach (warned, neither met nor "
        "breached since); running: under a policy, nothing due soon; none: no SLA policy."
    )
    warned_timers: list[str] = Field(examples=[["first_response"]], description="Timers warned of, still due.")
    breached_timers: list[str] = Field(examples=[["resolution"]])
    due_at: datetime | None = Field(description="The earliest due time of the timers warned of.")


class OpenOpportunityView(BaseModel):
    opportunity_id: str
    name: str | None
    stage: str | None
    amount: Decimal | None
    currency: str | None
    probability: float | None
    forecast_category: str | None
    expected_close: str | None = Field(examples=["2027-01-31"])
    owner_id: str | None
    opened_at: datetime | None


class SummaryView(BaseModel):
    customer_id: str
    owner_id: str | None = Field(description="The owner of the profile; null when unassigned or not signed up.")
    territory: str | None
    scores: ScoresView | None = Field(description="Null before scoring published a segment change.")
    orders: int = Field(description="Orders placed and not cancelled.")
    realised_value: list[MoneyView] = Field(description="Those orders net of refunds, per currency, now.")
    last_order: LastOrderView | None
    open_tickets: list[OpenTicketView] = Field(description="New, open or pending, newest first.")
    open_opportunities: list[OpenOpportunityView] = Field(description="Neither won nor lost, newest first.")
    open_pipeline: list[MoneyView] = Field(description="The open opportunities' amounts, per currency.")

    @classmethod
    def of(cls, card: summary.Summary) -> SummaryView:
        last = card.last_order
        return cls(
            customer_id=card.customer_id,
            owner_id=card.owner_id,
            territory=card.territory,
            scores=ScoresView(**card.scores.__dict__) if card.scores else None,
            orders=card.orders,
            realised_value=_money(card.realised_value),
            last_order=LastOrderView(
                order_id=last.order_id,
                placed_at=last.placed_at,
                total=last.total,
                currency=last.currency,
                channel=last.channel,
                status=last.status,
                refunded=last.refunded,
            )
            if last and last.placed_at and last.total is not None and last.currency
            else None,
            open_tickets=[
                OpenTicketView(
                    ticket_id=t.ticket_id,
                    opened_at=t.opened_at,
                    kind=t.kind,
                    priority=t.priority,
                    channel=t.channel,
                    status=t.status,
                    sla_policy_id=t.sla_policy_id,
                    sla_state=t.sla_state,
                    warned_timers=sorted({timer for timer, _ in t.warned}),
                    breached_timers=sorted({timer for timer, _ in t.breached}),
                    due_at=min(t.warned.values(), default=None),
                )
                for t in card.open_tickets
            ],
            open_opportunities=[OpenOpportunityView(**o.__dict__) for o in card.open_opportunities],
            open_pipeline=_money(card.open_pipeline),
        )


@router.get(
    "/customers/{customer_id}/summary",
    response_model=SummaryView,
    summary="The customer's summary card: value tier, lifecycle stage, value, churn band, satisfaction, open "
    "tickets with their SLA state, the last order, open opportunities and the owner",
    description="From the service's own projection of every service's events (the 360 timeline) and the profile; "
    "the scores are those of the newest segment change.",
    responses={404: {"description": f"Only for a person: {customer_api.NOT_SEEN}"}},
)
async def customer_summary(store: StoreDep, principal: CustomerReader, customer_id: IdInPath) -> SummaryView:
    await customer_api._must_see(store, principal, customer_id)
    types = summary.ORDER_TYPES | summary.TICKET_TYPES | summary.OPPORTUNITY_TYPES
    card = summary.summarize(
        customer_id,
        segment_change=await reads.newest_segment_change(store.db, customer_id),
        entries=await reads.entries_of(store.db, customer_id, types),
        profile=await reads.owner_of(store.db, customer_id),
    )
    return SummaryView.of(card)


# ---------------------------------------------------------------- analysis

INVALID_RANGE = "Invalid range"
INVALID: dict[int | str, dict[str, Any]] = {
    422: {"description": "An invalid range (no offset, `to` not after `from`, too many periods) or parameter"}
}


From = Annotated[
    datetime | None,
    Query(
        alias="from",
        description="Inclusive, RFC 3339 with an offset; by default the start of the last 12 periods (months for "
        "cohorts), the current one included.",
    ),
]
To = Annotated[datetime | None, Query(alias="to", description="Exclusive; now by default, and never after now.")]


def _range(start: datetime | None, end: datetime | None, period: Period) -> tuple[datetime, datetime, datetime]:
    """[from, to) clipped to now, and now; `from` by default the start of the period 11 periods before now's."""
    now = utc_now()
    finish = min(as_utc(end, "to", INVALID_RANGE) or now, now)
    begin = as_utc(start, "from", INVALID_RANGE) or analysis.periods_back(now, period, DEFAULT_PERIODS)
    if finish <= begin:
        raise Problem(422, INVALID_RANGE, "`to` must be after `from`, and `from` before now")
    return begin, finish, now


class PeriodView(BaseModel):
    period: str = Field(examples=["2026-11"], description="YYYY-MM, YYYY-Qn or YYYY (UTC).")
    start: datetime
    end: datetime = Field(description="Exclusive.")


class ActivityRow(PeriodView):
    active: int = Field(description="Customers who ordered in the period.")
    new: int = Field(description="Customers whose first order is in the period.")
    reactivated: int = Field(
        description="Customers who ordered in the period more than `lapse_days` after their order before."
    )
    lost: int = Field(
        description="Customers whose silence passed `lapse_days` in the period: an order at t, none in "
        "(t, t + lapse_days], and t + lapse_days in the period (before now)."
    )
    lapsed: int = Field(
        description="At the period's end (or now), customers who had ordered but not within `lapse_days`."
    )


class ActivityView(BaseModel):
    period: Period
    lapse_days: int
    as_of: datetime
    rows: list[ActivityRow]


@router.get(
    "/analysis/customers/activity",
    response_model=ActivityView,
    summary="New, active, reactivated, lost and lapsed customers per month, quarter or year",
    description="An order counts from the time it was placed unless it was cancelled. Periods are whole calendar "
    "periods (UTC): the first is the one `from` falls in. Over the customers the caller sees.",
    responses=INVALID,
)
async def customer_activity(
    store: StoreDep,
    principal: CustomerReader,
    period: Annotated[Period, Query(description="The length of a period.")] = "month",
    start: From = None,
    end: To = None,
    lapse_days: Annotated[
        int, Query(ge=1, le=3650, description="The gap after an order that makes a customer lost.")
    ] = DEFAULT_LAPSE_DAYS,
) -> ActivityView:
    begin, finish, now = _range(start, end, period)
    spans = _spans(begin, finish, period)
    customers = await reads.customers_seen(store.db, principal)
    times = analysis.order_times(await reads.counted_orders(store.db, customers))
    rows = analysis.activity(times, spans, timedelta(days=lapse_days), now)
    return ActivityView(
        period=period,
        lapse_days=lapse_days,
        as_of=now,
        rows=[
            ActivityRow(
                period=r.period.label,
                start=r.period.start,
                end=r.period.end,
                active=r.active,
                new=r.new,
                reactivated=r.reactivated,
                lost=r.lost,
                lapsed=r.lapsed,
            )
            for r in rows
        ],
    )


def _spans(begin: datetime, finish: datetime, period: Period) -> list[analysis.Span]:
    try:
        return analysis.periods(begin, finish, period)
    except analysis.TooManyPeriods as exc:
        raise Problem(422, INVALID_RANGE, str(exc)) from exc


class ShareRow(BaseModel):
    key: str | None = Field(examples=["high_value"], description="The value; null: not known for these customers.")
    customers: int
    share: float = Field(description="Of all the customers counted, 0 to 1.")


class DistributionView(BaseModel):
    by: Dimension
    customers: int = Field(description="The registered customers the caller sees.")
    rows: list[ShareRow] = Field(description="Most customers first; null (not known) last.")


_SCORE_DIMENSIONS = ("value_tier", "lifecycle_stage")


@router.get(
    "/analysis/customers/distribution",
    response_model=DistributionView,
    summary="Registered customers by value tier, lifecycle stage, region, country, industry, sign-up channel or "
    "company size",
    description="value_tier and lifecycle_stage: as of each customer's newest segment change (null: not scored "
    "yet). region and country: of the first address that has one. industry and company_size: an organisation's "
    "(null for a person). channel: the channel they signed up in.",
    responses=INVALID,
)
async def customer_distribution(
    store: StoreDep,
    principal: CustomerReader,
    by: Annotated[Dimension, Query(description="What to count the customers by.")] = "value_tier",
) -> DistributionView:
    if by in _SCORE_DIMENSIONS:
        profiles = await reads.profiles_seen(store.db, principal, ("_id",))
        ids = None if principal.sees_all_records else [p["_id"] for p in profiles]
        scores = analysis.latest_by_customer(await reads.segment_scores(store.db, ids, (by,)))
        keys = [scores.get(p["_id"], {}).get(by) for p in profiles]
    else:
        key_of = analysis.PROFILE_KEYS[by]
        profiles = await reads.profiles_seen(store.db, principal, _PROFILE_FIELDS[by])
        keys = [key_of(p) for p in profiles]
    rows = analysis.distribution(keys)
    return DistributionView(
        by=by, customers=len(keys), rows=[ShareRow(key=r.key, customers=r.customers, share=r.share) for r in rows]
    )


_PROFILE_FIELDS: dict[str, tuple[str, ...]] = {
    "region": ("addresses.region",),
    "country": ("addresses.country",),
    "industry": ("industry",),
    "channel": ("channel",),
    "company_size": ("company_size",),
}


class RetentionCell(BaseModel):
    month: int = Field(description="Months after the cohort's own (0).")
    customers: int = Field(description="Of the cohort, those who ordered in that month.")
    share: float


class CohortRow(BaseModel):
    cohort: str = Field(examples=["2026-01"], description="The month of the first order, YYYY-MM (UTC).")
    customers: int
    months: list[RetentionCell] = Field(description="Month 0 to `months` after, never beyond the current month.")


class CohortsView(BaseModel):
    months: int
    as_of: datetime
    cohorts: list[CohortRow] = Field(description="Oldest first; months without a first order are left out.")


Horizon = Annotated[int, Query(ge=1, le=MAX_HORIZON, description="How many months after the first to follow.")]


async def _cohorts(
    store: StoreDep, principal: CustomerReader, start: From = None, end: To = None, months: Horizon = 12
) -> tuple[int, datetime, list[analysis.Cohort]]:
    begin, finish, now = _range(start, end, "month")
    customers = await reads.customers_seen(store.db, principal)
    times = analysis.order_times(await reads.counted_orders(store.db, customers))
    return months, now, analysis.cohorts(times, analysis.month_start(begin), finish, months, now)


Cohorts = Annotated[tuple[int, datetime, list[analysis.Cohort]], Depends(_cohorts)]


@router.get(
    "/analysis/customers/cohorts",
    response_model=CohortsView,
    summary="Cohort retention: for each month's new customers (by first order), the share ordering k months later",
    description="The cohorts whose month begins in [from, to) (the month `from` falls in included; by default the "
    "last 12 months). Over the customers the caller sees; cancelled orders do not count.",
    responses=INVALID,
)
async def cohort_retention(cohorts: Cohorts) -> CohortsView:
    months, now, rows = cohorts
    return CohortsView(
        months=months,
        as_of=now,
        cohorts=[
            CohortRow(
                cohort=r.cohort,
                customers=r.customers,
                months=[RetentionCell(month=m.month, customers=m.customers, share=m.share) for m in r.months],
            )
            for r in rows
        ],
    )


@router.get(
    "/analysis/customers/cohorts.png",
    response_class=Response,
    summary="Cohort retention as a PNG heat map (the same table as /v1/analysis/customers/cohorts)",
    responses={200: {"content": {"image/png": {}}, "description": "The heat map"}, **INVALID},
)
async def cohort_retention_chart(cohorts: Cohorts) -> Response:
    # matplotlib takes a while to import: only this route needs it.
    from crm_customer.insights.heatmap import cohort_heatmap

    months, _, rows = cohorts
    return Response(cohort_heatmap(rows, months), media_type="image/png")
