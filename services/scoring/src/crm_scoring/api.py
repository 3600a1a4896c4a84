"""REST API of scoring: a customer's scores with the facts and thresholds behind them, and their segment changes."""

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from crm_scoring import domain, handlers, repository
from crm_scoring.repository import CustomerScores
from crm_scoring.settings import ScoringSettings
from crm_shared.api import Cursor, Limit, Page, keyset_page
from crm_shared.events import Dimension, ScoreSnapshot, SegmentDimension, utc_now
from crm_shared.service import Problem, StoreDep, get_runtime

router = APIRouter(prefix="/v1", tags=["scores"])


def get_thresholds(request: Request) -> domain.Thresholds:
    settings = get_runtime(request).settings
    return settings.thresholds if isinstance(settings, ScoringSettings) else handlers.DEFAULT_THRESHOLDS


ThresholdsDep = Annotated[domain.Thresholds, Depends(get_thresholds)]


class ChurnBaseView(BaseModel):
    fewer_than_two_orders: float
    repeat: float
    stable: float


class ThresholdsView(BaseModel):
    """The rules the scores were computed with."""

    high_value_monetary: Decimal = Field(description="Net order value from which a customer is high_value.")
    stable_after_orders: int = Field(description="Orders from which a customer is stable rather than repeat.")
    churn_medium_from: float = Field(description="Churn risk from which the band is medium.")
    churn_high_from: float = Field(description="Churn risk from which the band is high.")
    churn_base: ChurnBaseView = Field(description="Churn risk before complaints and surveys, by order count.")
    churn_per_complaint: dict[domain.Severity, float] = Field(description="Churn risk added per complaint.")
    churn_per_bad_survey: float
    bad_csat_at_most: int
    bad_nps_at_most: int
    complaint_satisfaction: dict[domain.Severity, float] = Field(
        description="The satisfaction signal of a complaint, by severity (CSAT s gives (s-1)/4, NPS s gives s/10)."
    )

    @classmethod
    def of(cls, thresholds: domain.Thresholds) -> "ThresholdsView":
        return cls(
            high_value_monetary=thresholds.high_value_monetary,
            stable_after_orders=thresholds.stable_after_orders,
            churn_medium_from=domain.CHURN_MEDIUM_FROM,
            churn_high_from=domain.CHURN_HIGH_FROM,
            churn_base=ChurnBaseView(
                fewer_than_two_orders=float(domain.CHURN_BASE_FEW_ORDERS),
                repeat=float(domain.CHURN_BASE_REPEAT),
                stable=float(domain.CHURN_BASE_STABLE),
            ),
            churn_per_complaint={k: float(v) for k, v in domain.CHURN_PER_COMPLAINT.items()},
            churn_per_bad_survey=float(domain.CHURN_PER_BAD_SURVEY),
            bad_csat_at_most=domain.BAD_CSAT_AT_MOST,
            bad_nps_at_most=domain.BAD_NPS_AT_MOST,
            complaint_satisfaction={k: float(v) for k, v in domain.COMPLAINT_SATISFACTION.items()},
        )


class OrderInput(BaseModel):
    order_id: str
    placed_at: datetime | None = Field(description="None while only a payment, refund or cancellation is known.")
    total: Decimal | None
    currency: str | None
    refunded: Decimal
    cancelled: bool
    counts: bool = Field(description="Whether the order counts towards the scores: placed and not cancelled.")


class ComplaintInput(BaseModel):
    complaint_id: str
    severity: domain.Severity
    dimension: Dimension
    filed_at: datetime


class SurveyInput(BaseModel):
    survey_id: str
    kind: domain.SurveyKind
    score: int
    dimension: Dimension
    answered_at: datetime
    bad: bool = Field(description="Whether it adds to the churn risk (CSAT <= 2, NPS <= 6).")


class Inputs(BaseModel):
    orders: list[OrderInput]
    complaints: list[ComplaintInput]
    surveys: list[SurveyInput]

    @classmethod
    def of(cls, facts: domain.CustomerFacts) -> "Inputs":
        # Placed orders oldest first, then those whose order has not arrived yet.
        orders = sorted(
            facts.orders.values(),
            key=lambda o: (o.placed is None, o.placed.at.isoformat() if o.placed else "", o.order_id),
        )
        return cls(
            orders=[
                OrderInput(
                    order_id=o.order_id,
                    placed_at=o.placed.at if o.placed else None,
                    total=o.placed.total if o.placed else None,
                    currency=o.placed.currency if o.placed else None,
                    refunded=o.refunded,
                    cancelled=o.cancelled_at is not None,
                    counts=o.counts,
                )
                for o in orders
            ],
            complaints=[
                ComplaintInput(complaint_id=c.complaint_id, severity=c.severity, dimension=c.dimension, filed_at=c.at)
                for c in sorted(facts.complaints.values(), key=lambda c: (c.at, c.complaint_id))
            ],
            surveys=[
                SurveyInput(
                    survey_id=s.survey_id,
                    kind=s.kind,
                    score=s.score,
                    dimension=s.dimension,
                    answered_at=s.at,
                    bad=domain.is_bad(s),
                )
                for s in sorted(facts.surveys.values(), key=lambda s: (s.at, s.survey_id))
            ],
        )


class ScoresView(BaseModel):
    customer_id: str
    recency_days: int | None = Field(description="Whole days since the last counted order, as of now.")
    frequency: int = Field(description="Orders placed and not cancelled.")
    monetary: Decimal = Field(description="Net value of those orders (refunds deducted).", examples=["1500.00"])
    average_order_value: Decimal = Field(examples=["1500.00"])
    first_order_at: datetime | None
    last_order_at: datetime | None
    value_tier: domain.ValueTier
    lifecycle_stage: domain.LifecycleStage
    churn_risk: float = Field(ge=0, le=1)
    churn_risk_band: domain.ChurnRiskBand
    satisfaction: float | None = Field(description="In [0, 1]; None without any survey or complaint.")
    satisfaction_by_dimension: dict[Dimension, float | None]
    model_version: str
    scored_as_of: datetime = Field(description="The newest fact's time: every score but recency is as of then.")
    updated_at: datetime
    thresholds: ThresholdsView
    inputs: Inputs

    @classmethod
    def of(cls, customer: CustomerScores, thresholds: domain.Thresholds, now: datetime) -> "ScoresView":
        scores = customer.scores
        return cls(
            customer_id=customer.facts.customer_id,
            recency_days=domain.recency_days(scores.last_order_at, now),
            frequency=scores.frequency,
            monetary=scores.monetary,
            average_order_value=scores.average_order_value,
            first_order_at=scores.first_order_at,
            last_order_at=scores.last_order_at,
            value_tier=scores.value_tier,
            lifecycle_stage=scores.lifecycle_stage,
            churn_risk=scores.churn_risk,
            churn_risk_band=scores.churn_risk_band,
            satisfaction=scores.satisfaction,
            satisfaction_by_dimension=dict(scores.satisfaction_by_dimension),
            model_version=customer.model_version,
            scored_as_of=customer.scored_as_of,
            updated_at=customer.updated_at,
            thresholds=ThresholdsView.of(thresholds),
            inputs=Inputs.of(customer.facts),
        )


class SegmentChangeView(BaseModel):
    event_id: str = Field(description="The id of the crm.segment.changed.v1 event published for this change.")
    dimension: SegmentDimension
    old: str | None
    new: str
    changed_at: datetime
    caused_by: str = Field(description="The id of the event that caused the change.")
    model_version: str
    scores: ScoreSnapshot

    @classmethod
    def of(cls, doc: dict[str, Any]) -> "SegmentChangeView":
        return cls(event_id=doc["_id"], **{k: v for k, v in doc.items() if k not in ("_id", "customer_id")})


@router.get(
    "/customers/{customer_id}/scores",
    response_model=ScoresView,
    summary="A customer's scores, with the facts and thresholds behind them",
    responses={404: {"description": "Scoring has seen no order or ticket of this customer"}},
)
async def customer_scores(store: StoreDep, thresholds: ThresholdsDep, customer_id: str) -> ScoresView:
    customer = await handlers.find_customer(store, customer_id)
    if customer is None:
        raise Problem(404, "Customer not scored", f"scoring has seen no order or ticket of customer {customer_id}")
    return ScoresView.of(customer, thresholds, utc_now())


@router.get(
    "/customers/{customer_id}/segment-changes",
    response_model=Page[SegmentChangeView],
    summary="A customer's segment changes, oldest first",
)
async def segment_changes(
    store: StoreDep, customer_id: str, limit: Limit = 50, cursor: Cursor = None
) -> Page[SegmentChangeView]:
    docs, next_cursor = await keyset_page(
        store.db[repository.SEGMENT_CHANGES],
        {"customer_id": customer_id},
        time_field="changed_at",
        limit=limit,
        cursor=cursor,
        newest_first=False,
    )
    items = [SegmentChangeView.of(d) for d in docs]
    return Page[SegmentChangeView](items=items, next_cursor=next_cursor)
