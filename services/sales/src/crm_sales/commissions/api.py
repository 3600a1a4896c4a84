"""REST API of commissions: plans per owner or territory, and each owner's statement per period (computed
until it is closed, fixed after)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Self

from fastapi import APIRouter, Body, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from crm_sales.commissions import domain, handlers
from crm_sales.web import parse_period, rates_of
from crm_shared.api import IdInPath
from crm_shared.events import utc_now
from crm_shared.problems import Problem
from crm_shared.security import Principal, TerritoryId, UserId, requires
from crm_shared.service import StoreDep

router = APIRouter(prefix="/v1", tags=["commissions"])

CommissionReader = Annotated[Principal, requires("commissions:read")]

Rate = Annotated[Decimal, Field(ge=0, le=1, max_digits=7, decimal_places=6, description="0.05 is 5%.")]


class TierBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    from_quota: Annotated[Decimal, Field(gt=0, le=100, max_digits=6, decimal_places=4)] = Field(
        description="Where the tier starts, as a share of quota: 1 is the quota, 1.5 half as much again."
    )
    rate: Rate


class PlanBody(BaseModel):
    """A plan for one owner or one territory (an owner's own plan wins over their territory's)."""

    model_config = ConfigDict(extra="forbid")

    owner_id: UserId | None = None
    territory: TerritoryId | None = None
    base_rate: Rate
    tiers: list[TierBody] = Field(
        default_factory=list, max_length=10, description="Rising: each starts above the last."
    )

    @model_validator(mode="after")
    def _one_holder(self) -> Self:
        if (self.owner_id is None) == (self.territory is None):
            raise ValueError("a plan is for one owner or one territory: give exactly one of owner_id, territory")
        return self

    def plan(self, plan_id: str) -> domain.Plan:
        return domain.Plan(
            plan_id=plan_id,
            base_rate=self.base_rate,
            tiers=tuple(domain.Tier(t.from_quota, t.rate) for t in self.tiers),
            owner_id=self.owner_id,
            territory=self.territory,
        )


class PlanView(PlanBody):
    plan_id: str

    @classmethod
    def of(cls, p: domain.Plan) -> PlanView:
        return cls(
            plan_id=p.plan_id,
            owner_id=p.owner_id,
            territory=p.territory,
            base_rate=p.base_rate,
            tiers=[TierBody(from_quota=t.from_quota, rate=t.rate) for t in p.tiers],
        )


PLAN_EXAMPLE = {
    "territory": "north",
    "base_rate": "0.05",
    "tiers": [{"from_quota": "1", "rate": "0.08"}, {"from_quota": "1.5", "rate": "0.10"}],
}


@router.put(
    "/commission-plans/{plan_id}",
    response_model=PlanView,
    summary="Define or replace a commission plan: a base rate, and higher rates above shares of the quota",
    responses={409: {"description": "Another plan is for this owner or territory"}, 422: {"description": "Invalid"}},
    dependencies=[requires("commissions:write")],
)
async def put_plan(
    store: StoreDep, plan_id: IdInPath, body: Annotated[PlanBody, Body(examples=[PLAN_EXAMPLE])]
) -> PlanView:
    try:
        plan = body.plan(plan_id)
    except domain.PlanInvalid as exc:
        raise Problem(422, "Plan invalid", str(exc)) from exc
    try:
        return PlanView.of(await handlers.define_plan(store, plan, utc_now()))
    except handlers.PlanConflict as exc:
        raise Problem(409, "Plan conflict", str(exc)) from exc


@router.get(
    "/commission-plans",
    response_model=list[PlanView],
    summary="Every commission plan, by id",
    dependencies=[requires("commissions:read")],
)
async def list_plans(store: StoreDep) -> list[PlanView]:
    return [PlanView.of(p) for p in await handlers.plans(store)]


class ClawbackView(BaseModel):
    order_id: str
    refunded: Decimal
    period: str = Field(description="The closed statement that paid commission on this revenue.")
    rate: Decimal = Field(description="That statement's effective rate.")
    amount: Decimal = Field(description="refunded x rate: taken back.")


class StatementView(BaseModel):
    owner_id: str
    period: str
    currency: str = Field(description="The reporting currency.")
    plan_id: str | None = Field(description="The plan applied; null when none applies (nothing is earned).")
    paid: Decimal = Field(description="Payments in the period on the orders the owner sold.")
    refunded: Decimal = Field(description="Refunds in the period of revenue no closed statement paid on.")
    revenue: Decimal = Field(description="paid - refunded.")
    quota: Decimal | None
    commission: Decimal
    clawbacks: list[ClawbackView]
    payable: Decimal = Field(description="commission - the clawbacks.")
    effective_rate: Decimal
    closed_at: datetime | None = Field(description="Null while the statement is open and may change.")

    @classmethod
    def of(cls, answer: handlers.StatementAnswer, currency: str) -> StatementView:
        s = answer.statement
        return cls(
            owner_id=s.owner_id,
            period=s.period,
            currency=currency,
            plan_id=s.plan_id,
            paid=s.paid,
            refunded=s.refunded,
            revenue=s.revenue,
            quota=s.quota,
            commission=s.commission,
            clawbacks=[ClawbackView(**c.__dict__, amount=c.amount) for c in s.clawbacks],
            payable=s.payable,
            effective_rate=s.effective_rate,
            closed_at=answer.closed_at,
        )


STATEMENT_ACCESS: dict[int | str, dict[str, Any]] = {
    404: {"description": "Not a statement the caller sees (their own, or their team's)"},
    422: {"description": "Not a period"},
}


@router.get(
    "/commission-statements/{owner_id}/{period}",
    response_model=StatementView,
    summary="An owner's commission statement for a period (a year, quarter or month)",
    description="Commission on the paid revenue, net of refunds, of the orders the owner sold (a won "
    "opportunity or an accepted quote names them), by their plan, with the tiers above their quota for the "
    "period; a refund of revenue a closed statement paid on is clawed back at that statement's effective rate.",
    responses=STATEMENT_ACCESS,
)
async def get_statement(
    request: Request, principal: CommissionReader, store: StoreDep, owner_id: IdInPath, period: IdInPath
) -> StatementView:
    if not (principal.sees_all_records or owner_id == principal.id or owner_id in principal.team):
        raise Problem(404, "Statement not found", f"no statement of {owner_id} the caller sees")
    rates = rates_of(request)
    answer = await handlers.compute(store, owner_id, parse_period(period), rates)
    return StatementView.of(answer, rates.reporting_currency)


@router.post(
    "/commission-statements/{owner_id}/{period}/close",
    response_model=StatementView,
    summary="Close an owner's statement for a period that is over: it is paid out and changes no more",
    responses={409: {"description": "The period is not over"}, 422: {"description": "Not a period"}},
    dependencies=[requires("commissions:write")],
)
async def close_statement(request: Request, store: StoreDep, owner_id: IdInPath, period: IdInPath) -> StatementView:
    rates = rates_of(request)
    try:
        answer = await handlers.close(store, owner_id, parse_period(period), rates, utc_now())
    except handlers.PeriodNotOver as exc:
        raise Problem(409, "Period not over", str(exc)) from exc
    return StatementView.of(answer, rates.reporting_currency)
