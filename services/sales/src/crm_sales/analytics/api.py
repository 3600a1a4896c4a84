"""REST API of the conversion analytics: lead to first order by source and owner, win rate per stage and
pipeline velocity, and revenue by account (80/20)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from crm_sales.analytics import domain, handlers
from crm_sales.forecasts.api import Owners, scope_for
from crm_sales.forecasts.domain import Period
from crm_sales.web import parse_period, rates_of
from crm_shared.api import IdInPath
from crm_shared.problems import Problem
from crm_shared.security import Principal, requires
from crm_shared.service import StoreDep

router = APIRouter(prefix="/v1", tags=["analytics"])

AnalyticsReader = Annotated[Principal, requires("forecasts:read")]
PeriodQuery = Annotated[
    str | None,
    Query(max_length=7, description="A year (2027), a quarter (2027-Q1) or a month (2027-01); all time when absent."),
]
ACCESS: dict[int | str, dict[str, Any]] = {
    403: {"description": "An owner the caller does not see"},
    422: {"description": "Not a period"},
}


def _period(text: str | None) -> Period | None:
    return parse_period(text) if text is not None else None


def _owners(principal: Principal, owners: list[str] | None) -> tuple[str, ...] | None:
    return scope_for(principal, owners, None).owners


class ConversionRowView(BaseModel):
    key: str | None = Field(description="The source or the owner; null for leads without an owner.")
    leads: int
    converted: int
    with_order: int = Field(description="Leads whose customer placed an order since the lead arrived.")
    conversion_rate: Decimal | None = Field(description="with_order / leads.")
    median_days_to_first_order: float | None


class LeadConversionView(BaseModel):
    period: str | None
    owners: list[str] | None
    by_source: list[ConversionRowView]
    by_owner: list[ConversionRowView]


@router.get(
    "/analytics/lead-conversion",
    response_model=LeadConversionView,
    summary="Lead to first order, by source and by owner, with the median days it took",
    description="The leads that arrived in the period: how many converted, how many of their customers placed "
    "an order since, and the median days from lead to first order. A person sees their own and their team's.",
    responses=ACCESS,
)
async def lead_conversion(
    principal: AnalyticsReader, store: StoreDep, period: PeriodQuery = None, owners: Owners = None
) -> LeadConversionView:
    scope, window = _owners(principal, owners), _period(period)
    outcomes = await handlers.lead_outcomes(store, scope, window)
    return LeadConversionView(
        period=window.name if window else None,
        owners=list(scope) if scope is not None else None,
        by_source=[ConversionRowView(**r.__dict__) for r in domain.conversion(outcomes, lambda o: o.source)],
        by_owner=[ConversionRowView(**r.__dict__) for r in domain.conversion(outcomes, lambda o: o.owner_id)],
    )


class StageRateView(BaseModel):
    stage_id: str
    reached: int = Field(description="Closed opportunities that were in the stage.")
    won: int
    win_rate: Decimal | None


class VelocityView(BaseModel):
    open_count: int
    win_rate: Decimal | None
    average_won_amount: Decimal | None
    average_cycle_days: Decimal | None
    per_day: Decimal | None = Field(description="open x win rate x average won amount / average cycle days.")


class PipelineAnalyticsView(BaseModel):
    pipeline_id: str
    period: str | None
    owners: list[str] | None
    currency: str
    closed: int
    stages: list[StageRateView]
    velocity: VelocityView


@router.get(
    "/analytics/pipelines/{pipeline_id}",
    response_model=PipelineAnalyticsView,
    summary="Win rate per stage and pipeline velocity, from the opportunities closed (in the period)",
    responses={**ACCESS, 404: {"description": "No such pipeline"}},
)
async def pipeline_analytics(
    request: Request,
    principal: AnalyticsReader,
    store: StoreDep,
    pipeline_id: IdInPath,
    period: PeriodQuery = None,
    owners: Owners = None,
) -> PipelineAnalyticsView:
    scope, window = _owners(principal, owners), _period(period)
    rates = rates_of(request)
    found = await handlers.pipeline(store, pipeline_id, scope, window, rates)
    if found is None:
        raise Problem(404, "Pipeline not found", f"no pipeline {pipeline_id}")
    stage_ids, closed, open_count = found
    return PipelineAnalyticsView(
        pipeline_id=pipeline_id,
        period=window.name if window else None,
        owners=list(scope) if scope is not None else None,
        currency=rates.reporting_currency,
        closed=len(closed),
        stages=[StageRateView(**r.__dict__) for r in domain.stage_rates(closed, stage_ids)],
        velocity=VelocityView(**domain.velocity(closed, open_count).__dict__),
    )


class AccountRevenueView(BaseModel):
    account_id: str
    name: str
    revenue: Decimal
    share: Decimal | None
    cumulative_share: Decimal | None


class ParetoView(BaseModel):
    period: str | None
    owners: list[str] | None
    currency: str
    total: Decimal
    top_fifth_share: Decimal | None = Field(description="The revenue share of the top 20% of accounts.")
    accounts_for_80_percent: int = Field(description="How few accounts make 80% of the revenue.")
    accounts: list[AccountRevenueView] = Field(description="Largest first; at most `limit`.")


@router.get(
    "/analytics/account-revenue",
    response_model=ParetoView,
    summary="Revenue by account, largest first: the 80/20 view",
    description="An account's revenue is its contacts' orders (placed in the period), not cancelled, net of "
    "refunds, in the reporting currency.",
    responses=ACCESS,
)
async def account_revenue(
    request: Request,
    principal: AnalyticsReader,
    store: StoreDep,
    period: PeriodQuery = None,
    owners: Owners = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> ParetoView:
    scope, window = _owners(principal, owners), _period(period)
    rates = rates_of(request)
    revenue, names = await handlers.account_revenue(store, scope, window, rates)
    found = domain.pareto(revenue, names)
    return ParetoView(
        period=window.name if window else None,
        owners=list(scope) if scope is not None else None,
        currency=rates.reporting_currency,
        total=found.total,
        top_fifth_share=found.top_fifth_share,
        accounts_for_80_percent=found.accounts_for_80_percent,
        accounts=[AccountRevenueView(**a.__dict__) for a in found.accounts[:limit]],
    )
