"""REST API of pipelines and opportunities: define pipelines; open, change, move, win and lose opportunities;
the win probability learned from this tenant's closed opportunities beside each stage's default."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Self

from fastapi import APIRouter, Body, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from crm_sales.opportunities import domain, handlers, repository
from crm_sales.orders import handlers as orders
from crm_sales.web import currency_not_accepted, owner_for, rates_of
from crm_shared.api import Cursor, IdempotencyKey, IdInPath, Limit, Page, command_event_id, keyset_page
from crm_shared.events import (
    Channel,
    Currency,
    CustomerId,
    EntityId,
    ForecastCategory,
    LeadSource,
    Line,
    Money,
    OrderLine,
    Text,
    utc_now,
)
from crm_shared.problems import Problem
from crm_shared.security import Principal, TerritoryId, UserId, requires
from crm_shared.service import StoreDep

router = APIRouter(prefix="/v1", tags=["opportunities"])

OpportunityReader = Annotated[Principal, requires("opportunities:read")]
OpportunityWriter = Annotated[Principal, requires("opportunities:write")]

NO_SUCH_OPPORTUNITY: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such opportunity, or not one the caller sees"}
}
REFUSED: dict[int | str, dict[str, Any]] = {
    409: {"description": "The opportunity is closed, or the change contradicts its pipeline (the detail says how)"}
}


def opportunity_not_found(opportunity_id: str) -> Problem:
    """The same answer for an opportunity that is missing and one the caller may not see."""
    return Problem(404, "Opportunity not found", f"no opportunity {opportunity_id}")


def refused(exc: domain.OpportunityRefused) -> Problem:
    if isinstance(exc, domain.OpportunityClosed):
        return Problem(409, "Opportunity closed", str(exc))
    return Problem(409, "Opportunity change refused", str(exc))


# ---------------------------------------------------------------- pipelines

StageKey = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]*$")]


class StageBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage_id: StageKey
    name: Line = Field(min_length=1, max_length=100)
    probability: float = Field(ge=0, le=1, description="The stage's default win probability.")
    forecast_category: domain.StageCategory = Field(
        description="Where an open opportunity in this stage counts in the forecast (`closed` is for won ones)."
    )
    requires: list[domain.RequiredField] = Field(
        default_factory=list, max_length=3, description="What an opportunity must have to enter the stage."
    )


class PipelineBody(BaseModel):
    """A pipeline: its stages in order. Replacing one may not drop a stage that open opportunities are in."""

    model_config = ConfigDict(extra="forbid")

    name: Line = Field(min_length=1, max_length=100)
    stages: list[StageBody] = Field(min_length=1, max_length=30)

    def pipeline(self, pipeline_id: str) -> domain.Pipeline:
        return domain.Pipeline(
            pipeline_id,
            self.name,
            tuple(
                domain.Stage(s.stage_id, s.name, s.probability, s.forecast_category, tuple(dict.fromkeys(s.requires)))
                for s in self.stages
            ),
        )


class PipelineView(BaseModel):
    pipeline_id: str
    name: str
    stages: list[StageBody]

    @classmethod
    def of(cls, pipeline: domain.Pipeline) -> PipelineView:
        return cls(
            pipeline_id=pipeline.pipeline_id,
            name=pipeline.name,
            stages=[
                StageBody(
                    stage_id=s.stage_id,
                    name=s.name,
                    probability=s.probability,
                    forecast_category=s.forecast_category,
                    requires=list(s.requires),
                )
                for s in pipeline.stages
            ],
        )


PIPELINE_EXAMPLE = {
    "name": "Renewals",
    "stages": [
        {"stage_id": "due", "name": "Due", "probability": 0.5, "forecast_category": "pipeline"},
        {
            "stage_id": "agreed",
            "name": "Agreed",
            "probability": 0.9,
            "forecast_category": "commit",
            "requires": ["amount", "expected_close"],
        },
    ],
}


@router.get(
    "/pipelines",
    response_model=list[PipelineView],
    summary="Every pipeline, by id (the built-in `new-business` among them until replaced)",
    dependencies=[requires("opportunities:read")],
)
async def list_pipelines(store: StoreDep) -> list[PipelineView]:
    return [PipelineView.of(p) for p in await handlers.pipelines(store)]


@router.get(
    "/pipelines/{pipeline_id}",
    response_model=PipelineView,
    summary="One pipeline",
    responses={404: {"description": "No such pipeline"}},
    dependencies=[requires("opportunities:read")],
)
async def get_pipeline(store: StoreDep, pipeline_id: IdInPath) -> PipelineView:
    pipeline = await handlers.find_pipeline(store, pipeline_id)
    if pipeline is None:
        raise Problem(404, "Pipeline not found", f"no pipeline {pipeline_id}")
    return PipelineView.of(pipeline)


@router.put(
    "/pipelines/{pipeline_id}",
    response_model=PipelineView,
    summary="Define a pipeline, or replace one",
    description="Stages are in order; each has a default win probability, a forecast category and the fields "
    "an opportunity must have to enter it. A stage that open opportunities are in cannot be dropped (409).",
    responses={
        409: {"description": "A dropped stage holds open opportunities (the problem lists them)"},
        422: {"description": "Invalid: no stages, a stage id twice, a probability outside 0..1"},
    },
    dependencies=[requires("opportunities:write")],
)
async def put_pipeline(
    store: StoreDep,
    pipeline_id: IdInPath,
    body: Annotated[PipelineBody, Body(examples=[PIPELINE_EXAMPLE])],
) -> PipelineView:
    try:
        pipeline = body.pipeline(pipeline_id)
    except domain.PipelineRefused as exc:
        raise Problem(422, "Pipeline invalid", str(exc)) from exc
    try:
        return PipelineView.of(await handlers.define_pipeline(store, pipeline, utc_now()))
    except handlers.PipelineInUse as exc:
        raise Problem(409, "Pipeline in use", str(exc), open_in_stages=exc.stages) from exc


class StageProbabilityView(BaseModel):
    stage_id: str
    default_probability: float = Field(description="The stage's configured probability.")
    learned_probability: float | None = Field(
        description="The share won among closed opportunities that were in the stage; null when none were."
    )
    sample_size: int = Field(description="Closed (won or lost) opportunities that were in the stage.")
    won: int
    basis: domain.ProbabilityBasis = Field(
        description="`learned` when the sample reached the minimum, `default` otherwise."
    )
    probability: float = Field(description="The one used: the learned share on a learned basis, else the default.")

    @classmethod
    def of(cls, p: domain.StageProbability) -> StageProbabilityView:
        return cls(**p.__dict__, probability=p.probability)


class ProbabilitiesView(BaseModel):
    pipeline_id: str
    source: LeadSource | None
    amount_min: Decimal | None
    amount_max: Decimal | None
    min_days_in_stage: float | None
    currency: str = Field(description="The reporting currency the amount band is in.")
    min_sample: int
    stages: list[StageProbabilityView]


@router.get(
    "/pipelines/{pipeline_id}/probabilities",
    response_model=ProbabilitiesView,
    summary="Each stage's win probability learned from this tenant's closed opportunities, beside its default",
    description="Per stage, the share won among the closed opportunities that were ever in it, with the sample "
    "size; below `min_sample` the stage's default stands. The evidence can be narrowed: `source` to one lead "
    "source, `amount_min`/`amount_max` to an amount band (reporting currency, max exclusive), "
    "`min_days_in_stage` to those that spent at least that long in the stage.",
    responses={404: {"description": "No such pipeline"}},
    dependencies=[requires("opportunities:read")],
)
async def get_probabilities(
    store: StoreDep,
    pipeline_id: IdInPath,
    request: Request,
    source: Annotated[LeadSource | None, Query()] = None,
    amount_min: Annotated[Money | None, Query()] = None,
    amount_max: Annotated[Money | None, Query()] = None,
    min_days_in_stage: Annotated[float | None, Query(ge=0, le=36_500)] = None,
    min_sample: Annotated[int, Query(ge=1, le=10_000)] = domain.DEFAULT_MIN_SAMPLE,
) -> ProbabilitiesView:
    if amount_min is not None and amount_max is not None and amount_min >= amount_max:
        raise Problem(422, "Invalid amount band", "amount_min must be below amount_max")
    evidence = handlers.Evidence(source, amount_min, amount_max, min_days_in_stage)
    rates = rates_of(request)
    try:
        pipeline, stages = await handlers.probabilities(
            store, pipeline_id, rates, evidence=evidence, min_sample=min_sample
        )
    except handlers.UnknownPipeline as exc:
        raise Problem(404, "Pipeline not found", f"no pipeline {pipeline_id}") from exc
    return ProbabilitiesView(
        pipeline_id=pipeline.pipeline_id,
        source=source,
        amount_min=amount_min,
        amount_max=amount_max,
        min_days_in_stage=min_days_in_stage,
        currency=rates.reporting_currency,
        min_sample=min_sample,
        stages=[StageProbabilityView.of(s) for s in stages],
    )


# ---------------------------------------------------------------- opportunities


class LineBody(OrderLine):
    """A product line: quantity x unit price - discount (off the line)."""


class OpportunityBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: CustomerId
    name: Line = Field(min_length=1, max_length=200)
    amount: Money = Field(description="Equal to the lines' sum net of discounts when lines are given.")
    currency: Currency
    pipeline_id: EntityId = domain.DEFAULT_PIPELINE_ID
    stage: StageKey | None = Field(default=None, description="The pipeline's first stage when absent.")
    expected_close: date | None = None
    owner_id: UserId | None = Field(
        default=None, description="The owning sales person; the caller (a person) when absent."
    )
    territory: TerritoryId | None = None
    account_id: EntityId | None = None
    source: LeadSource | None = None
    lines: list[LineBody] = Field(default_factory=list, max_length=200)

    def new(self, owner_id: str | None) -> handlers.NewOpportunity:
        return handlers.NewOpportunity(
            customer_id=self.customer_id,
            name=self.name,
            amount=self.amount,
            currency=self.currency,
            pipeline_id=self.pipeline_id,
            stage=self.stage,
            expected_close=self.expected_close,
            owner_id=owner_id,
            territory=self.territory,
            account_id=self.account_id,
            source=self.source,
            lines=tuple(OrderLine(**line.model_dump()) for line in self.lines),
        )


class StageVisitView(BaseModel):
    stage: str
    entered_at: datetime
    left_at: datetime | None


class OpportunityView(BaseModel):
    opportunity_id: str
    customer_id: str
    name: str
    pipeline_id: str
    stage: str
    status: domain.OpportunityStatus
    amount: Decimal
    currency: str
    probability: float = Field(description="The stage's probability (1 when won, 0 when lost).")
    forecast_category: ForecastCategory
    category_overridden: bool
    expected_close: date | None
    owner_id: str | None
    territory: str | None
    account_id: str | None
    lead_id: str | None
    source: LeadSource | None
    opened_at: datetime
    closed_at: datetime | None
    reason: str | None = Field(description="Why it was won or lost.")
    order_id: str | None = Field(description="The order a won opportunity became.")
    lines: list[OrderLine]
    stage_history: list[StageVisitView]
    learned: StageProbabilityView | None = Field(
        default=None,
        description="On GET of an open opportunity: its stage's win probability learned from the closed "
        "opportunities that stayed in the stage at least as long as it has (`days_in_stage`), with the sample.",
    )
    days_in_stage: float | None = Field(default=None, description="On GET of an open one: its age in its stage.")

    @classmethod
    def of(cls, o: domain.Opportunity, learned: tuple[domain.StageProbability, float] | None = None) -> OpportunityView:
        fields = {k: v for k, v in o.__dict__.items() if k not in ("lines", "stage_history")}
        return cls(
            **fields,
            lines=list(o.lines),
            stage_history=[StageVisitView(**v.__dict__) for v in o.stage_history],
            learned=StageProbabilityView.of(learned[0]) if learned else None,
            days_in_stage=round(learned[1], 2) if learned else None,
        )


OPPORTUNITY_EXAMPLE = {
    "customer_id": "C-1001",
    "name": "Espresso machines for the new branch",
    "amount": "2400.00",
    "currency": "EUR",
    "expected_close": "2027-01-31",
    "lines": [{"sku": "ESP-2", "quantity": 2, "unit_price": "1250.00", "discount": "100.00"}],
}


@router.post(
    "/opportunities",
    response_model=OpportunityView,
    status_code=status.HTTP_201_CREATED,
    summary="Open an opportunity (crm.opportunity.opened.v1)",
    responses={
        200: {"description": "Already opened with this Idempotency-Key"},
        404: {"description": "No such pipeline"},
        409: {"description": "The Idempotency-Key opened another opportunity, or the stage refuses it"},
        422: {"description": "Invalid: amount not the lines' sum, unknown currency, a field the stage requires"},
    },
)
async def open_opportunity(
    request: Request,
    principal: OpportunityWriter,
    store: StoreDep,
    response: Response,
    body: Annotated[OpportunityBody, Body(examples=[OPPORTUNITY_EXAMPLE])],
    idempotency_key: IdempotencyKey = None,
) -> OpportunityView:
    opportunity_id = f"O-{command_event_id('sales/opportunities', idempotency_key)}"
    new = body.new(owner_for(principal, body.owner_id, doing="open opportunities"))
    try:
        opportunity, created = await handlers.open_opportunity(
            store, new, opportunity_id, utc_now(), rates=rates_of(request)
        )
    except handlers.UnknownPipeline as exc:
        raise Problem(404, "Pipeline not found", f"no pipeline {exc}") from exc
    except handlers.OpportunityIdTaken as exc:
        raise Problem(409, "Idempotency-Key reused", str(exc)) from exc
    except orders.CurrencyNotAccepted as exc:
        raise currency_not_accepted(exc) from exc
    except domain.OpportunityRefused as exc:
        raise Problem(422, "Opportunity invalid", str(exc)) from exc
    if not created:
        response.status_code = status.HTTP_200_OK
    return OpportunityView.of(opportunity)


@router.get(
    "/opportunities",
    response_model=Page[OpportunityView],
    summary="Opportunities the caller sees, newest first",
    description="A person sees the opportunities they or their team own and those of their territories.",
)
async def list_opportunities(
    principal: OpportunityReader,
    store: StoreDep,
    customer_id: Annotated[CustomerId | None, Query()] = None,
    account_id: Annotated[EntityId | None, Query()] = None,
    owner_id: Annotated[UserId | None, Query()] = None,
    pipeline_id: Annotated[EntityId | None, Query()] = None,
    stage: Annotated[StageKey | None, Query()] = None,
    state: Annotated[domain.OpportunityStatus | None, Query(alias="status")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[OpportunityView]:
    query = handlers.listing_query(
        customer_id=customer_id,
        account_id=account_id,
        owner_id=owner_id,
        pipeline_id=pipeline_id,
        stage=stage,
        status=state,
    )
    docs, next_cursor = await keyset_page(
        store.db[repository.OPPORTUNITIES],
        handlers.seen_by(principal, query),
        time_field="opened_at",
        limit=limit,
        cursor=cursor,
        newest_first=True,
    )
    return Page[OpportunityView](
        items=[OpportunityView.of(repository.from_document(d)) for d in docs], next_cursor=next_cursor
    )


@router.get(
    "/opportunities/{opportunity_id}",
    response_model=OpportunityView,
    summary="One opportunity, with its stage history and its stage's learned win probability",
    responses=NO_SUCH_OPPORTUNITY,
)
async def get_opportunity(
    request: Request, principal: OpportunityReader, store: StoreDep, opportunity_id: IdInPath
) -> OpportunityView:
    opportunity = await handlers.find_opportunity(store, opportunity_id, principal=principal)
    if opportunity is None:
        raise opportunity_not_found(opportunity_id)
    learned = await handlers.stage_probability(store, opportunity, rates_of(request), utc_now())
    return OpportunityView.of(opportunity, learned)


def _no_defaults(schema: dict[str, Any]) -> None:
    for field in schema.get("properties", {}).values():
        field.pop("default", None)
    schema["minProperties"] = 1


class OpportunityUpdate(BaseModel):
    """What to change on an open opportunity: the fields sent are set, the others stay. At least one."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_no_defaults)

    amount: Money | SkipJsonSchema[None] = None
    lines: list[LineBody] | SkipJsonSchema[None] = None
    expected_close: date | None = None
    owner_id: UserId | None = None
    territory: TerritoryId | None = None
    forecast_category: domain.StageCategory | SkipJsonSchema[None] = Field(
        default=None, description="Overrides the stage's category until the next stage change."
    )

    @model_validator(mode="after")
    def _changes_something(self) -> Self:
        if not self.model_fields_set:
            raise ValueError(
                "send at least one of amount, lines, expected_close, owner_id, territory, forecast_category"
            )
        for name in ("amount", "lines", "forecast_category"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self

    def changes(self) -> handlers.Changes:
        sent = self.model_fields_set
        return handlers.Changes(
            amount=self.amount,
            lines=tuple(OrderLine(**line.model_dump()) for line in self.lines) if self.lines is not None else None,
            expected_close=self.expected_close if "expected_close" in sent else domain.KEEP,
            owner_id=self.owner_id if "owner_id" in sent else domain.KEEP,
            territory=self.territory if "territory" in sent else domain.KEEP,
            forecast_category=self.forecast_category,
        )


@router.patch(
    "/opportunities/{opportunity_id}",
    response_model=OpportunityView,
    summary="Change an open opportunity's amount, lines, close date, owner, territory or forecast category",
    responses={**NO_SUCH_OPPORTUNITY, **REFUSED},
)
async def change_opportunity(
    principal: OpportunityWriter,
    store: StoreDep,
    opportunity_id: IdInPath,
    update: Annotated[OpportunityUpdate, Body(examples=[{"amount": "2600.00", "expected_close": "2027-02-15"}])],
) -> OpportunityView:
    try:
        changed = await handlers.change_opportunity(store, opportunity_id, update.changes(), principal=principal)
    except domain.OpportunityRefused as exc:
        raise refused(exc) from exc
    if changed is None:
        raise opportunity_not_found(opportunity_id)
    return OpportunityView.of(changed)


class MoveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage: StageKey
    forecast_category: domain.StageCategory | None = Field(
        default=None, description="Overrides the stage's forecast category."
    )


@router.post(
    "/opportunities/{opportunity_id}/stage",
    response_model=OpportunityView,
    summary="Move an open opportunity to a stage of its pipeline (crm.opportunity.stage_changed.v1)",
    description="The stage history records when it left the stage it was in and entered the new one; the "
    "probability and forecast category become the new stage's. A stage that requires a field the opportunity "
    "lacks refuses it with 409 naming the field.",
    responses={**NO_SUCH_OPPORTUNITY, **REFUSED},
)
async def move_opportunity(
    principal: OpportunityWriter,
    store: StoreDep,
    opportunity_id: IdInPath,
    body: Annotated[MoveBody, Body(examples=[{"stage": "propose"}])],
) -> OpportunityView:
    try:
        moved = await handlers.move_opportunity(
            store, opportunity_id, body.stage, utc_now(), principal=principal, forecast_category=body.forecast_category
        )
    except domain.OpportunityRefused as exc:
        raise refused(exc) from exc
    if moved is None:
        raise opportunity_not_found(opportunity_id)
    return OpportunityView.of(moved)


class WinBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Text | None = Field(default=None, max_length=500)
    place_order: bool = Field(
        default=False,
        description="Also place the order of its lines (crm.order.placed.v1, order id `SO-<opportunity id>`).",
    )
    channel: Channel = Field(default="face_to_face", description="The order's channel.")


@router.post(
    "/opportunities/{opportunity_id}/win",
    response_model=OpportunityView,
    summary="Win an opportunity (crm.opportunity.won.v1), optionally as its order",
    description="Winning a won opportunity again answers it as it is.",
    responses={
        **NO_SUCH_OPPORTUNITY,
        409: {"description": "The opportunity is lost, or an order was asked of one without lines"},
        422: {"description": "The currency is not one scoring can value"},
    },
)
async def win_opportunity(
    request: Request,
    principal: OpportunityWriter,
    store: StoreDep,
    opportunity_id: IdInPath,
    body: Annotated[WinBody, Body(examples=[{"reason": "best service offer", "place_order": True}])],
) -> OpportunityView:
    try:
        won = await handlers.win_opportunity(
            store,
            opportunity_id,
            utc_now(),
            principal=principal,
            rates=rates_of(request),
            reason=body.reason,
            place_order=body.place_order,
            channel=body.channel,
        )
    except domain.OpportunityRefused as exc:
        raise refused(exc) from exc
    except orders.CurrencyNotAccepted as exc:
        raise currency_not_accepted(exc) from exc
    if won is None:
        raise opportunity_not_found(opportunity_id)
    return OpportunityView.of(won)


class LoseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Text = Field(min_length=1, max_length=500, description="Why it was lost.")


@router.post(
    "/opportunities/{opportunity_id}/lose",
    response_model=OpportunityView,
    summary="Lose an opportunity, with the reason (crm.opportunity.lost.v1)",
    description="Losing a lost opportunity again answers it as it is.",
    responses={**NO_SUCH_OPPORTUNITY, 409: {"description": "The opportunity is won"}},
)
async def lose_opportunity(
    principal: OpportunityWriter,
    store: StoreDep,
    opportunity_id: IdInPath,
    body: Annotated[LoseBody, Body(examples=[{"reason": "chose a competitor on price"}])],
) -> OpportunityView:
    try:
        lost = await handlers.lose_opportunity(
            store, opportunity_id, utc_now(), principal=principal, reason=body.reason
        )
    except domain.OpportunityRefused as exc:
        raise refused(exc) from exc
    if lost is None:
        raise opportunity_not_found(opportunity_id)
    return OpportunityView.of(lost)
