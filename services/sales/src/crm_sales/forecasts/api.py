"""REST API of forecasts: a period's forecast for the caller, their team, some owners or a territory; quotas;
snapshots of the forecast and, once their period is over, how far each was from the revenue paid."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field

from crm_sales.forecasts import handlers
from crm_sales.web import parse_period, rates_of
from crm_shared.api import IdInPath
from crm_shared.events import ForecastCategory, Money, utc_now
from crm_shared.problems import Problem
from crm_shared.security import Principal, TerritoryId, UserId, requires
from crm_shared.service import StoreDep

router = APIRouter(prefix="/v1", tags=["forecasts"])

ForecastReader = Annotated[Principal, requires("forecasts:read")]
ForecastWriter = Annotated[Principal, requires("forecasts:write")]

PeriodQuery = Annotated[
    str, Query(min_length=4, max_length=7, description="A year (2027), a quarter (2027-Q1) or a month (2027-01).")
]
Owners = Annotated[
    list[UserId] | None,
    Query(
        alias="owner_id",
        max_length=200,
        description="Whose forecast (repeat for a team); a person's own and their team's by default, everyone's "
        "for those who see every record.",
    ),
]
TerritoryQuery = Annotated[TerritoryId | None, Query(description="Only this territory's opportunities.")]
ACCESS: dict[int | str, dict[str, Any]] = {
    403: {"description": "An owner or territory the caller does not see"},
    422: {"description": "Not a period"},
}


def scope_for(principal: Principal, owners: list[str] | None, territory: str | None) -> handlers.Scope:
    """What the caller may forecast: those who see every record anything; a person their own and their team's
    opportunities, and those of their territories."""
    asked = tuple(sorted(set(owners))) if owners else None
    if principal.sees_all_records:
        return handlers.Scope(asked, territory)
    if territory is not None:
        if territory not in principal.territories:
            raise Problem(403, "Territory not allowed", f"{principal.id} does not see territory {territory}")
        return handlers.Scope(asked, territory)
    allowed = {principal.id, *principal.team}
    if asked is None:
        return handlers.Scope(tuple(sorted(allowed)), None)
    hidden = sorted(set(asked) - allowed)
    if hidden:
        raise Problem(403, "Owner not allowed", f"{principal.id} sees only their own and their team's forecast")
    return handlers.Scope(asked, None)


class CategoryView(BaseModel):
    count: int
    amount: Decimal
    weighted: Decimal = Field(description="amount x probability, per opportunity, rounded to cents.")


class ForecastView(BaseModel):
    period: str
    starts: datetime
    ends: datetime = Field(description="Exclusive.")
    owners: list[str] | None = Field(description="Whose opportunities; null for everyone's.")
    territory: str | None
    currency: str = Field(description="The reporting currency every amount is in.")
    categories: dict[ForecastCategory, CategoryView] = Field(
        description="Open opportunities expected to close in the period, per forecast category; `closed` holds "
        "those won in it."
    )
    weighted_pipeline: Decimal = Field(description="Sum of amount x probability of the open ones not omitted.")
    closed_won: Decimal
    won_count: int
    commit: Decimal = Field(description="closed_won + the commit category.")
    best_case: Decimal = Field(description="commit + the best-case category.")
    quota: Decimal | None = Field(description="The owners' quotas summed; null when none was set.")
    attainment: Decimal | None = Field(description="closed_won / quota.")
    gap: Decimal | None = Field(description="What closed_won lacks to reach the quota.")
    unpriced: list[str] = Field(description="Opportunities left out: no exchange rate for their currency.")

    @classmethod
    def of(cls, computed: handlers.Computed, scope: handlers.Scope) -> ForecastView:
        f = computed.forecast
        return cls(
            period=f.period.name,
            starts=f.period.start_at,
            ends=f.period.end_at,
            owners=list(scope.owners) if scope.owners is not None else None,
            territory=scope.territory,
            currency=computed.currency,
            categories={c: CategoryView(**t.__dict__) for c, t in f.categories.items()},
            weighted_pipeline=f.weighted_pipeline,
            closed_won=f.closed_won,
            won_count=f.won_count,
            commit=f.commit,
            best_case=f.best_case,
            quota=f.quota,
            attainment=f.attainment,
            gap=f.gap,
            unpriced=list(computed.unpriced),
        )


@router.get(
    "/forecasts",
    response_model=ForecastView,
    summary="A period's forecast: weighted pipeline, totals per forecast category, closed-won against the quota",
    description="Open opportunities count in the period of their expected close date, won ones in that of their "
    "close; amounts are converted to the reporting currency. A person forecasts their own and their team's "
    "opportunities (`owner_id` narrows it) or a territory of theirs.",
    responses=ACCESS,
)
async def get_forecast(
    request: Request,
    principal: ForecastReader,
    store: StoreDep,
    period: PeriodQuery,
    owners: Owners = None,
    territory: TerritoryQuery = None,
) -> ForecastView:
    scope = scope_for(principal, owners, territory)
    computed = await handlers.compute(store, parse_period(period), scope, rates_of(request))
    return ForecastView.of(computed, scope)


class QuotaBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: Money = Field(description="In the reporting currency.")


class QuotaView(BaseModel):
    owner_id: str
    period: str
    amount: Decimal
    currency: str
    updated_at: datetime


@router.put(
    "/quotas/{owner_id}/{period}",
    response_model=QuotaView,
    summary="Set an owner's quota for a period (in the reporting currency)",
    responses={422: {"description": "Not a period, or not an amount"}},
    dependencies=[requires("forecasts:write")],
)
async def put_quota(
    request: Request,
    store: StoreDep,
    owner_id: IdInPath,
    period: IdInPath,
    body: Annotated[QuotaBody, Body(examples=[{"amount": "120000.00"}])],
) -> QuotaView:
    parsed, now = parse_period(period), utc_now()
    await handlers.set_quota(store, owner_id, parsed, body.amount, now)
    currency = rates_of(request).reporting_currency
    return QuotaView(owner_id=owner_id, period=parsed.name, amount=body.amount, currency=currency, updated_at=now)


@router.get(
    "/quotas",
    response_model=list[QuotaView],
    summary="Quotas, by period and owner (a person sees their own and their team's)",
    responses=ACCESS,
)
async def list_quotas(
    request: Request,
    principal: ForecastReader,
    store: StoreDep,
    owners: Owners = None,
    period: Annotated[str | None, Query(max_length=7)] = None,
) -> list[QuotaView]:
    if period is not None:
        period = parse_period(period).name
    scope = scope_for(principal, owners, None)
    currency = rates_of(request).reporting_currency
    return [
        QuotaView(**{k: d[k] for k in ("owner_id", "period", "amount", "updated_at")}, currency=currency)
        for d in await handlers.quotas(store, owners=scope.owners, period=period)
    ]


class SnapshotBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    period: str = Field(min_length=4, max_length=7, examples=["2027-Q1"])
    owner_id: list[UserId] | None = Field(default=None, max_length=200, description="Whose; as for GET /forecasts.")
    territory: TerritoryId | None = None


class SnapshotView(BaseModel):
    snapshot_id: str
    period: str
    owners: list[str] | None
    territory: str | None
    taken_at: datetime
    weighted_pipeline: Decimal
    closed_won: Decimal
    commit: Decimal
    best_case: Decimal
    currency: str


@router.post(
    "/forecasts/snapshots",
    response_model=SnapshotView,
    status_code=status.HTTP_201_CREATED,
    summary="Keep the forecast as it is now, to measure it against what is paid once the period is over",
    responses=ACCESS,
)
async def take_snapshot(
    request: Request,
    principal: ForecastWriter,
    store: StoreDep,
    body: Annotated[SnapshotBody, Body(examples=[{"period": "2027-Q1"}])],
) -> SnapshotView:
    scope = scope_for(principal, body.owner_id, body.territory)
    snapshot = await handlers.take_snapshot(store, parse_period(body.period), scope, rates_of(request), utc_now())
    return SnapshotView(snapshot_id=snapshot.pop("_id"), **snapshot)


class AccuracyView(BaseModel):
    period: str
    forecast_at: datetime
    forecast: Decimal = Field(description="What was won when the snapshot was taken, plus the weighted pipeline.")
    forecast_commit: Decimal
    actual_paid: Decimal = Field(description="Payments less refunds in the period, of the same owners' orders.")
    error: Decimal | None = Field(description="(forecast - actual) / actual: above 0 too high; null if none paid.")


@router.get(
    "/forecasts/accuracy",
    response_model=list[AccuracyView],
    summary="Forecast accuracy: each snapshot of a period that is over, beside the revenue actually paid in it",
    description="The scope (owners, territory) picks the snapshots taken for exactly that scope; newest first.",
    responses=ACCESS,
)
async def get_accuracy(
    request: Request,
    principal: ForecastReader,
    store: StoreDep,
    owners: Owners = None,
    territory: TerritoryQuery = None,
) -> list[AccuracyView]:
    scope = scope_for(principal, owners, territory)
    found = await handlers.accuracy(store, scope, rates_of(request), utc_now())
    return [
        AccuracyView(
            period=a.period.name,
            forecast_at=a.forecast_at,
            forecast=a.forecast_total,
            forecast_commit=a.forecast_commit,
            actual_paid=a.actual_paid,
            error=a.error,
        )
        for a in found
    ]
