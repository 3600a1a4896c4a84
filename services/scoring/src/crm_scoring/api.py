"""REST API of scoring: a customer's scores with the facts and thresholds behind them, and their segment changes.

Reads need scores:read, recomputing the population and fitting the models scores:run. A scope is all that is
checked: scoring knows customers by id from events, not who owns them, so it has no row-level access.
"""

from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from crm_scoring import domain, handlers, population, repository
from crm_scoring.population import Population
from crm_scoring.repository import CustomerScores
from crm_scoring.settings import ClvInputs, ScoringSettings
from crm_shared.api import Cursor, IdInPath, Limit, Page, keyset_page
from crm_shared.events import Dimension, ScoreSnapshot, SegmentDimension, utc_now
from crm_shared.money import ExchangeRates
from crm_shared.security import audited, requires
from crm_shared.service import Problem, StoreDep, get_runtime

router = APIRouter(prefix="/v1", tags=["scores"])


def get_thresholds(request: Request) -> domain.Thresholds:
    settings = get_runtime(request).settings
    return settings.thresholds if isinstance(settings, ScoringSettings) else handlers.DEFAULT_THRESHOLDS


def get_settings(request: Request) -> ScoringSettings:
    settings = get_runtime(request).settings
    return settings if isinstance(settings, ScoringSettings) else ScoringSettings()


ThresholdsDep = Annotated[domain.Thresholds, Depends(get_thresholds)]
SettingsDep = Annotated[ScoringSettings, Depends(get_settings)]


class MbgNbdView(BaseModel):
    r: float = Field(description="Shape of the purchase rates' gamma distribution.")
    alpha: float = Field(description="Scale of the purchase rates' gamma distribution, in weeks.")
    a: float = Field(description="Beta distribution of the drop-out probability after each purchase: a.")
    b: float = Field(description="Beta distribution of the drop-out probability after each purchase: b.")
    log_likelihood: float


class GammaGammaView(BaseModel):
    p: float
    q: float
    v: float = Field(description="In the reporting currency.")
    log_likelihood: float


class ModelsView(BaseModel):
    """The fitted customer-base models in force (time unit: weeks): MBG/NBD for purchases and drop-out, Gamma-Gamma
    for the spend per purchase, every purchase counted, the first included."""

    model_version: str
    fitted_at: datetime
    customers: int = Field(description="Customers the models were fitted on.")
    repeat_buyers: int = Field(description="Customers who bought again on a later day.")
    mbgnbd: MbgNbdView
    gamma_gamma: GammaGammaView

    @classmethod
    def of(cls, models: population.FittedModels) -> "ModelsView":
        mbg, gg = models.mbgnbd, models.gamma_gamma
        return cls(
            model_version=models.model_version,
            fitted_at=models.fitted_at,
            customers=models.customers,
            repeat_buyers=models.repeat_buyers,
            mbgnbd=MbgNbdView(r=mbg.r, alpha=mbg.alpha, a=mbg.a, b=mbg.b, log_likelihood=mbg.log_likelihood),
            gamma_gamma=GammaGammaView(p=gg.p, q=gg.q, v=gg.v, log_likelihood=gg.log_likelihood),
        )


class QualityView(BaseModel):
    """How far the fit can be trusted, from the likelihood's shape at the parameters."""

    gradient: float = Field(description="Largest slope of the mean log-likelihood along the parameters' logs.")
    maximum: bool = Field(description="Whether the Hessian is negative definite there (a maximum).")
    relative_errors: dict[str, float] | None = Field(description="Each parameter's standard error over its value.")
    standard_errors: dict[str, float] | None = Field(description="Each parameter's standard error, from the Hessian.")


class HoldoutView(BaseModel):
    """MBG/NBD fitted up to calibration_end, its predicted purchases after it against those made."""

    calibration_end: str
    holdout_weeks: float
    customers: int
    predicted_purchases: float
    actual_purchases: int
    relative_error: float | None


class FitView(BaseModel):
    """One fit and what became of it."""

    fit_id: str
    status: Literal["adopted", "within_tolerance", "refused"] = Field(
        description="adopted: in force now; within_tolerance: passed every check but moved no parameter by more than "
        "CRM_SCORING_POPULATION_TOLERANCE, so the models in force stay; refused: see refusals."
    )
    refusals: list[str] = Field(description="Why the fit was refused; empty otherwise.")
    moved: list[str] = Field(description="The parameters that moved beyond the tolerance.")
    model_version: str | None
    fitted_at: datetime
    data_end: str = Field(description="The newest order's day the fit saw.")
    customers: int
    repeat_buyers: int
    mbgnbd: MbgNbdView | None
    gamma_gamma: GammaGammaView | None
    quality: dict[str, QualityView | None]
    holdout: HoldoutView | None

    @classmethod
    def of(cls, doc: dict[str, Any]) -> "FitView":
        return cls(fit_id=doc["_id"], **{k: v for k, v in doc.items() if k in cls.model_fields and k != "fit_id"})


class ModelsReport(BaseModel):
    in_force: ModelsView | None = Field(description="The models the scores use; None: the scores use the rules.")
    fits: list[FitView] = Field(description="The newest fits first, refused ones included.")


class LastRefreshView(BaseModel):
    at: datetime
    customers: int = Field(description="Customers with a counted order at the time.")
    adopted: bool = Field(description="Whether the recomputed statistics replaced those in force.")
    moved: list[str] = Field(description="What moved beyond CRM_SCORING_POPULATION_TOLERANCE.")
    rescored: int = Field(description="Customers rescored: those whose segments the move could change.")
    relabelled: int = Field(description="Customers the move could not change, labelled with the new version.")
    fit: str | None = Field(description="What became of the fit made with it (see GET /v1/models).")


class PopulationThresholdsView(BaseModel):
    """The population statistics in force: what RFM, the 80/20 value tier and the value quadrant compare with."""

    version: str
    computed_at: datetime | None
    customers: int = Field(description="Customers with at least one counted order.")
    in_force: bool = Field(description="Whether there are enough of them (CRM_SCORING_MIN_POPULATION).")
    revenue_share: float
    high_value_monetary: Decimal | None = Field(
        description="80/20 threshold: the monetary value of the smallest set of top customers making revenue_share."
    )
    recency_cuts: list[datetime] = Field(description="Last-order times at the 20/40/60/80% quintile cuts.")
    frequency_cuts: list[int]
    monetary_cuts: list[Decimal]
    median_frequency: int | None
    median_average_order_value: Decimal | None
    models: ModelsView | None
    exchange_rates: str | None = Field(
        description="The rate table the money figures were converted with: the reporting currency, then each "
        "currency's rate (None for statistics computed before scoring converted currencies).",
        examples=["EUR: EUR=1, USD=0.92"],
    )
    last_refresh: LastRefreshView | None = Field(
        default=None, description="The last scheduled or requested recomputation, whether or not it was adopted."
    )

    @classmethod
    def of(
        cls, pop: population.Population, computed_at: datetime | None, doc: dict[str, Any] | None = None
    ) -> "PopulationThresholdsView":
        return cls(
            version=pop.version,
            computed_at=computed_at,
            customers=pop.customers,
            in_force=pop.in_force,
            revenue_share=pop.revenue_share,
            high_value_monetary=pop.high_value_monetary,
            recency_cuts=list(pop.recency_cuts),
            frequency_cuts=list(pop.frequency_cuts),
            monetary_cuts=list(pop.monetary_cuts),
            median_frequency=pop.median_frequency,
            median_average_order_value=pop.median_average_order_value,
            models=ModelsView.of(pop.models) if pop.models else None,
            exchange_rates=pop.exchange_rates,
            last_refresh=LastRefreshView(**doc["last_refresh"]) if doc and doc.get("last_refresh") else None,
        )


class FormulaLifetimeValueView(BaseModel):
    """The source's formula: D = C x (A + B), F = E x D, G = D + F (D's formula is our reading of a cut-off
    source: C units each bringing margin A plus service revenue B)."""

    product_line: str = Field(description="The product line whose inputs apply ('default' when none of its own).")
    inputs: ClvInputs = Field(description="A, B and C of the product line; E as given by referrals_from.")
    referrals_from: domain.ReferralsSource = Field(
        description="Where E comes from: 'own_referrals' (the customer's referral count, once they have referred) "
        "or 'settings' (the product line's configured E)."
    )
    D: Decimal = Field(description="Lifetime margin of the customer's own purchases.")
    F: Decimal = Field(description="Value of the customers it may refer.")
    G: Decimal = Field(description="Total: D + F.")


class ChurnBaseView(BaseModel):
    fewer_than_two_orders: float
    repeat: float
    stable: float


class ThresholdsView(BaseModel):
    """The rules the scores were computed with."""

    high_value_monetary: Decimal = Field(
        description="Net order value, in the reporting currency, from which a customer is high_value while the "
        "population is not in force."
    )
    stable_after_orders: int = Field(description="Orders from which a customer is stable rather than repeat.")
    at_risk_days: int = Field(description="Days without an order from which a customer is at_risk.")
    lost_days: int = Field(description="Days without an order from which a customer is lost.")
    min_population: int = Field(description="Buyers needed before RFM and the 80/20 threshold apply.")
    clv_horizon_weeks: float
    annual_discount_rate: float
    churn_medium_from: float = Field(description="Churn risk from which the band is medium.")
    churn_high_from: float = Field(description="Churn risk from which the band is high.")
    churn_base: ChurnBaseView = Field(
        description="Without fitted models: churn risk before complaints and surveys, by order count."
    )
    churn_floor: dict[str, float] = Field(
        description="Without fitted models: the least churn risk of an at_risk or lost customer, before penalties."
    )
    churn_horizon_days: int = Field(
        description="With fitted models: churn risk is the probability of no purchase in this many days."
    )
    population_tolerance: float = Field(
        description="How far a recomputed statistic or model parameter must move, as a share of its value, to "
        "replace the one in force."
    )
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
            at_risk_days=thresholds.at_risk_days,
            lost_days=thresholds.lost_days,
            min_population=thresholds.min_population,
            clv_horizon_weeks=thresholds.clv_horizon_weeks,
            annual_discount_rate=thresholds.annual_discount_rate,
            churn_medium_from=domain.CHURN_MEDIUM_FROM,
            churn_high_from=domain.CHURN_HIGH_FROM,
            churn_base=ChurnBaseView(
                fewer_than_two_orders=float(domain.CHURN_BASE_FEW_ORDERS),
                repeat=float(domain.CHURN_BASE_REPEAT),
                stable=float(domain.CHURN_BASE_STABLE),
            ),
            churn_floor={k: float(v) for k, v in domain.CHURN_FLOOR.items()},
            churn_horizon_days=thresholds.churn_horizon_days,
            population_tolerance=thresholds.population_tolerance,
            churn_per_complaint={k: float(v) for k, v in domain.CHURN_PER_COMPLAINT.items()},
            churn_per_bad_survey=float(domain.CHURN_PER_BAD_SURVEY),
            bad_csat_at_most=domain.BAD_CSAT_AT_MOST,
            bad_nps_at_most=domain.BAD_NPS_AT_MOST,
            complaint_satisfaction={k: float(v) for k, v in domain.COMPLAINT_SATISFACTION.items()},
        )


class OrderInput(BaseModel):
    order_id: str
    placed_at: datetime | None = Field(description="None while only a payment, refund or cancellation is known.")
    currency: str | None = Field(
        description="The order's currency, which its total and refunds are in; before the order arrives, that of "
        "the refunds and payments known for it."
    )
    total: Decimal | None = Field(description="In the order's currency.")
    refunded: Decimal = Field(description="In the order's currency.")
    net_value: Decimal | None = Field(
        description="Total less refunds (capped at the total), in the order's currency; None until the order is "
        "placed, or once it is cancelled."
    )
    exchange_rate: Decimal | None = Field(
        description="Units of the reporting currency one unit of the order's currency is worth; None when the rate "
        "table has none."
    )
    converted_net_value: Decimal | None = Field(
        description="net_value in the reporting currency: what monetary value adds up. None when the order does not "
        "count."
    )
    cancelled: bool
    counts: bool = Field(
        description="Whether the order counts towards the scores: placed, not cancelled, and in a currency the rate "
        "table has a rate for."
    )
    not_counted_because: str | None = Field(description="Why the order does not count; None when it does.")

    @classmethod
    def of(cls, order: domain.OrderFacts, rates: ExchangeRates) -> "OrderInput":
        placed = order.placed
        currency = order.money_currency
        converted = domain.value_in(order, rates)
        reason: str | None = None
        if placed is None:
            reason = "the order has not arrived yet (only a payment, refund or cancellation is known)"
        elif order.cancelled_at is not None:
            reason = "the order was cancelled"
        elif converted is None:
            reason = rates.unknown_currency_reason(placed.currency)
        return cls(
            order_id=order.order_id,
            placed_at=placed.at if placed else None,
            currency=currency,
            total=placed.total if placed else None,
            refunded=order.refunded,
            net_value=order.net_value if order.counts else None,
            exchange_rate=rates.rate(currency) if currency is not None and rates.knows(currency) else None,
            converted_net_value=converted,
            cancelled=order.cancelled_at is not None,
            counts=converted is not None,
            not_counted_because=reason,
        )


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
    reporting_currency: str = Field(
        description="The currency the money scores are in: each order's net value is converted into it.",
        examples=["EUR"],
    )
    orders: list[OrderInput]
    complaints: list[ComplaintInput]
    surveys: list[SurveyInput]

    @classmethod
    def of(cls, facts: domain.CustomerFacts, rates: ExchangeRates) -> "Inputs":
        # Placed orders oldest first, then those whose order has not arrived yet.
        orders = sorted(
            facts.orders.values(),
            key=lambda o: (o.placed is None, o.placed.at.isoformat() if o.placed else "", o.order_id),
        )
        return cls(
            reporting_currency=rates.reporting_currency,
            orders=[OrderInput.of(o, rates) for o in orders],
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


class RealisedValueView(BaseModel):
    """What the customer has spent: the brief's realised value."""

    amount: Decimal = Field(description="The sum of the counted orders' net values (refunds deducted).")
    orders: int = Field(description="The counted orders.")
    first_order_at: datetime | None
    last_order_at: datetime | None


class ForecastValueView(BaseModel):
    """What the models expect the customer to spend over the horizon, discounted: the brief's potential value.
    amount = discounted_purchases x expected_spend; expected_spend = own_spend_weight x mean_spend + (1 -
    own_spend_weight) x population_mean_spend (the Gamma-Gamma posterior, every purchase counted, the first
    included); time in weeks from the first order."""

    amount: Decimal
    model_version: str
    purchases: int = Field(description="Purchase days, the first included (same-day orders are one purchase).")
    repeat_purchases: int = Field(description="x: purchases after the first.")
    weeks_to_last_purchase: float = Field(description="t_x: weeks from the first purchase to the last.")
    weeks_observed: float = Field(description="T: weeks from the first purchase to the time scored as of.")
    mean_spend: Decimal = Field(description="The customer's own mean spend per purchase.")
    probability_alive: float = Field(description="MBG/NBD P(alive).")
    no_purchase_probability: float = Field(description="MBG/NBD P(no purchase in the churn horizon).")
    churn_horizon_days: int
    expected_purchases_90d: float
    discounted_purchases: float = Field(description="Expected purchases over the horizon, each discounted.")
    horizon_weeks: float
    annual_discount_rate: float
    population_mean_spend: Decimal = Field(description="Gamma-Gamma p v / (q - 1).")
    own_spend_weight: float = Field(description="p n / (p n + q - 1), n = purchases: the weight of mean_spend.")
    expected_spend: Decimal = Field(description="Expected spend per future purchase.")


class CustomerValueView(BaseModel):
    """The customer's value three ways, side by side, each with its inputs (money in the reporting currency)."""

    realised: RealisedValueView
    forecast: ForecastValueView | None = Field(description="None without fitted models in force, or orders.")
    forecast_unavailable_because: str | None
    formula: FormulaLifetimeValueView = Field(description="The source's formula: the brief's model value.")


def _customer_value_of(
    customer: CustomerScores,
    thresholds: domain.Thresholds,
    pop: population.Population | None,
    formula: FormulaLifetimeValueView,
) -> CustomerValueView:
    scores = customer.scores
    purchases = [(p.at, v) for p, v in domain.counted_orders(customer.facts, thresholds.exchange_rates)]
    realised = RealisedValueView(
        amount=scores.monetary,
        orders=scores.frequency,
        first_order_at=scores.first_order_at,
        last_order_at=scores.last_order_at,
    )
    model = domain.forecast(purchases, customer.scored_as_of, thresholds, pop) if pop is not None else None
    reason: str | None = None
    if model is None:
        if pop is None or pop.models is None:
            reason = "no fitted models are in force (see GET /v1/models): the scores use the rules"
        elif not purchases:
            reason = "the customer has no counted order"
        else:
            reason = "the models give no finite value for this customer"
    forecast = (
        ForecastValueView(
            amount=model.lifetime_value, **{k: v for k, v in asdict(model).items() if k != "lifetime_value"}
        )
        if model
        else None
    )
    return CustomerValueView(realised=realised, forecast=forecast, forecast_unavailable_because=reason, formula=formula)


class ScoresView(BaseModel):
    customer_id: str
    reporting_currency: str = Field(
        description="The currency of every money score (monetary, average order value, expected spend, lifetime "
        "value): each order's net value converted through the platform's rate table (CRM_EXCHANGE_RATES).",
        examples=["EUR"],
    )
    recency_days: int | None = Field(description="Whole days since the last counted order, as of now.")
    frequency: int = Field(description="Orders placed, not cancelled, and in a currency with an exchange rate.")
    monetary: Decimal = Field(
        description="Net value of those orders (refunds deducted), each converted into the reporting currency.",
        examples=["1500.00"],
    )
    average_order_value: Decimal = Field(description="In the reporting currency.", examples=["1500.00"])
    first_order_at: datetime | None
    last_order_at: datetime | None
    value_tier: domain.ValueTier
    lifecycle_stage: domain.LifecycleStage
    churn_risk: float = Field(
        ge=0,
        le=1,
        description="With fitted models, the probability of no purchase in the churn horizon (MBG/NBD); without, a "
        "base by order count raised by an at_risk or lost stage. Plus the complaint and bad-survey penalties.",
    )
    churn_risk_band: domain.ChurnRiskBand
    satisfaction: float | None = Field(description="In [0, 1]; None without any survey or complaint.")
    satisfaction_by_dimension: dict[Dimension, float | None]
    rfm_score: str | None = Field(description="R, F and M quintiles (5 best); None until the population is in force.")
    rfm_segment: population.RfmSegment | None
    value_quadrant: population.ValueQuadrant | None = Field(
        description="Corner of the average-order-value x frequency plane against the population's medians."
    )
    loyalty_stage: domain.LoyaltyStage
    probability_alive: float | None = Field(description="MBG/NBD P(alive); None without fitted models.")
    expected_purchases_90d: float | None
    expected_average_spend: Decimal | None = Field(
        description="Gamma-Gamma expected spend per purchase, the customer's own purchases counted (the first too)."
    )
    lifetime_value: Decimal | None = Field(description="Discounted expected spend over the configured horizon.")
    formula_lifetime_value: FormulaLifetimeValueView
    value: CustomerValueView = Field(description="Realised, forecast and formula value side by side.")
    interactions: int = Field(description="Logged interactions (calls, visits, emails, web sessions).")
    last_interaction_at: datetime | None
    referrals: int = Field(description="Customers this customer referred.")
    referral_ids: list[str] = Field(description="The ids of those referrals, sorted.")
    next_review_at: datetime | None = Field(description="When time alone will move the lifecycle stage next.")
    population_version: str | None
    population: PopulationThresholdsView | None = Field(description="The population statistics in force.")
    model_version: str
    scored_as_of: datetime = Field(description="The newest fact's time: every score but recency is as of then.")
    updated_at: datetime
    thresholds: ThresholdsView
    inputs: Inputs

    @classmethod
    def of(
        cls,
        customer: CustomerScores,
        settings: ScoringSettings,
        now: datetime,
        pop: PopulationThresholdsView | None = None,
        population_in_force: Population | None = None,
    ) -> "ScoresView":
        scores = customer.scores
        facts = customer.facts
        line, configured = settings.formula_inputs(domain.main_product_line(facts))
        formula_inputs, referrals_from = domain.formula_inputs_for(facts, configured)
        formula = domain.formula_lifetime_value(formula_inputs)
        rates = settings.rate_table
        formula_view = FormulaLifetimeValueView(
            product_line=line,
            inputs=settings.clv_inputs[line].model_copy(update={"E": formula_inputs.referrals}),
            referrals_from=referrals_from,
            D=formula.own,
            F=formula.referred,
            G=formula.total,
        )
        value = _customer_value_of(customer, settings.thresholds, population_in_force, formula_view)
        return cls(
            customer_id=customer.facts.customer_id,
            reporting_currency=rates.reporting_currency,
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
            rfm_score=scores.rfm_score,
            rfm_segment=scores.rfm_segment,
            value_quadrant=scores.value_quadrant,
            loyalty_stage=scores.loyalty_stage,
            probability_alive=scores.probability_alive,
            expected_purchases_90d=scores.expected_purchases_90d,
            expected_average_spend=scores.expected_average_spend,
            lifetime_value=scores.lifetime_value,
            formula_lifetime_value=formula_view,
            value=value,
            interactions=len(facts.interactions),
            last_interaction_at=facts.last_interaction_at,
            referrals=len(facts.referrals),
            referral_ids=sorted(facts.referrals),
            next_review_at=scores.next_review_at,
            population_version=customer.population_version,
            population=pop,
            model_version=customer.model_version,
            scored_as_of=customer.scored_as_of,
            updated_at=customer.updated_at,
            thresholds=ThresholdsView.of(settings.thresholds),
            inputs=Inputs.of(customer.facts, rates),
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
    responses={404: {"description": "Scoring has seen no order, ticket, interaction or referral of this customer"}},
    dependencies=[requires("scores:read")],
)
async def customer_scores(store: StoreDep, settings: SettingsDep, customer_id: IdInPath) -> ScoresView:
    customer = await handlers.find_customer(store, customer_id)
    if customer is None:
        raise Problem(
            404,
            "Customer not scored",
            f"scoring has seen no order, ticket, interaction or referral of customer {customer_id}",
        )
    found = await handlers.current_population(store)
    pop = PopulationThresholdsView.of(found[0], found[1].get("computed_at"), found[1]) if found else None
    return ScoresView.of(customer, settings, utc_now(), pop, found[0] if found else None)


@router.get(
    "/customers/{customer_id}/segment-changes",
    response_model=Page[SegmentChangeView],
    summary="A customer's segment changes, oldest first",
    dependencies=[requires("scores:read")],
)
async def segment_changes(
    store: StoreDep, customer_id: IdInPath, limit: Limit = 50, cursor: Cursor = None
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


# ---------------------------------------------------------------- population

population_router = APIRouter(prefix="/v1", tags=["population"])


class RefreshedView(BaseModel):
    population: PopulationThresholdsView = Field(description="The statistics in force after the refresh.")
    adopted: bool = Field(description="Whether the recomputed statistics replaced those in force.")
    moved: list[str] = Field(description="What moved beyond CRM_SCORING_POPULATION_TOLERANCE (empty: nothing did).")
    rescored: int = Field(description="Customers rescored: only those whose segments the change could move.")
    segment_changes: int = Field(description="Segment changes published by the rescoring.")
    fit: FitView | None = Field(description="The fit made with the refresh, when one was made.")


async def _fit_view(store: StoreDep, outcome: handlers.FitOutcome | None) -> FitView | None:
    if outcome is None:
        return None
    doc = await store.db[repository.MODEL_PARAMS].find_one({"_id": outcome.fit_id})
    return FitView.of(doc) if doc else None


@population_router.post(
    "/population/refresh",
    response_model=RefreshedView,
    summary="Recompute the population statistics now (and fit the models); adopt them if they moved",
    dependencies=[requires("scores:run"), Depends(audited)],
)
async def refresh_population(store: StoreDep, thresholds: ThresholdsDep) -> RefreshedView:
    result = await handlers.refresh_population(store, thresholds, utc_now())
    found = await handlers.current_population(store)
    return RefreshedView(
        population=PopulationThresholdsView.of(result.population, result.computed_at, found[1] if found else None),
        adopted=result.adopted,
        moved=result.moved,
        rescored=result.rescored,
        segment_changes=len(result.changes),
        fit=await _fit_view(store, result.fit),
    )


class FittedView(BaseModel):
    fit: FitView
    in_force: ModelsView | None = Field(description="The models the scores use after the fit.")
    rescored: int = Field(description="Customers rescored because the models or the statistics changed.")


@population_router.post(
    "/models/fit",
    response_model=FittedView,
    summary="Fit MBG/NBD and Gamma-Gamma on every customer's orders now, check the fit, and rescore if adopted",
    responses={
        409: {
            "description": "The fit was refused (too few customers or repeat buyers, no clear maximum, absurd or "
            "uncertain parameters, a failed holdout check): every reason is in detail; the models in force stay"
        }
    },
    dependencies=[requires("scores:run"), Depends(audited)],
)
async def fit_models(store: StoreDep, thresholds: ThresholdsDep) -> FittedView:
    result = await handlers.refresh_population(store, thresholds, utc_now())
    assert result.fit is not None
    if result.fit.status == "refused":
        raise Problem(409, "The fit was refused", "; ".join(result.fit.fit.refusals))
    fit = await _fit_view(store, result.fit)
    assert fit is not None
    models = result.population.models
    return FittedView(fit=fit, in_force=ModelsView.of(models) if models else None, rescored=result.rescored)


@population_router.get(
    "/models",
    response_model=ModelsReport,
    summary="The models in force and the recent fits, with their checks and why any was refused",
    dependencies=[requires("scores:read")],
)
async def models_report(
    store: StoreDep, limit: Annotated[int, Query(ge=1, le=100, description="How many fits to list.")] = 20
) -> ModelsReport:
    found = await handlers.current_population(store)
    in_force = found[0].models if found else None
    fits = [FitView.of(doc) for doc in await handlers.recent_fits(store, limit)]
    return ModelsReport(in_force=ModelsView.of(in_force) if in_force else None, fits=fits)


class SurveyFiguresView(BaseModel):
    csat_answers: int
    csat_satisfied: int = Field(description="CSAT answers of 4 or 5.")
    csat_percent: float | None = Field(description="csat_satisfied / csat_answers x 100; None without answers.")
    nps_answers: int
    promoters: int = Field(description="NPS answers of 9 or 10.")
    passives: int = Field(description="NPS answers of 7 or 8.")
    detractors: int = Field(description="NPS answers of 0 to 6.")
    nps: float | None = Field(description="% promoters - % detractors, from -100 to 100; None without answers.")

    @classmethod
    def of(cls, figures: domain.SurveyFigures) -> "SurveyFiguresView":
        return cls(**asdict(figures))


class SatisfactionView(BaseModel):
    """CSAT and NPS over every customer's stored survey answers, the latest answer per survey id."""

    overall: SurveyFiguresView
    by_dimension: dict[Dimension, SurveyFiguresView]


class DistributionView(BaseModel):
    """How many customers are in each segment of each dimension."""

    customers: int
    value_tier: dict[str, int]
    lifecycle_stage: dict[str, int]
    rfm_segment: dict[str, int] = Field(description="Customers without an RFM segment are counted as 'none'.")
    churn_risk_band: dict[str, int]
    loyalty_stage: dict[str, int]
    satisfaction: SatisfactionView
    population: PopulationThresholdsView | None


@population_router.get(
    "/population",
    response_model=DistributionView,
    summary="Customers by segment",
    dependencies=[requires("scores:read")],
)
async def population_distribution(store: StoreDep) -> DistributionView:
    projection = {"segments": 1, "scores.loyalty_stage": 1, "facts.surveys": 1}
    docs = await store.db[repository.CUSTOMERS].find({}, projection).to_list(None)
    counts: dict[str, Counter[str]] = {
        k: Counter() for k in ("value_tier", "lifecycle_stage", "rfm_segment", "churn_risk_band", "loyalty_stage")
    }
    for doc in docs:
        segments = doc["segments"]
        for key in ("value_tier", "lifecycle_stage", "churn_risk_band"):
            counts[key][segments[key]] += 1
        counts["rfm_segment"][segments.get("rfm_segment") or "none"] += 1
        counts["loyalty_stage"][doc["scores"].get("loyalty_stage", "stranger")] += 1
    overall, by_dimension = domain.base_satisfaction(
        domain.Survey(**survey) for doc in docs for survey in doc.get("facts", {}).get("surveys", [])
    )
    found = await handlers.current_population(store)
    return DistributionView(
        customers=len(docs),
        **{k: dict(sorted(v.items())) for k, v in counts.items()},
        satisfaction=SatisfactionView(
            overall=SurveyFiguresView.of(overall),
            by_dimension={d: SurveyFiguresView.of(f) for d, f in by_dimension.items()},
        ),
        population=PopulationThresholdsView.of(found[0], found[1].get("computed_at"), found[1]) if found else None,
    )


class ParetoPoint(BaseModel):
    customer_share: float
    revenue_share: float


class ParetoView(BaseModel):
    customers: int = Field(description="Customers with at least one counted order.")
    reporting_currency: str = Field(description="The currency revenue is in.", examples=["EUR"])
    revenue: Decimal
    top_20_percent_revenue_share: float | None
    curve: list[ParetoPoint] = Field(description="Revenue share of the top customers at each 5% of customers.")


@population_router.get(
    "/population/pareto",
    response_model=ParetoView,
    summary="The revenue share of the top customers (80/20)",
    dependencies=[requires("scores:read")],
)
async def pareto(store: StoreDep, settings: SettingsDep) -> ParetoView:
    docs = store.db[repository.CUSTOMERS].find({"scores.frequency": {"$gte": 1}}, {"scores.monetary": 1})
    monetary = [d["scores"]["monetary"] for d in await docs.to_list(None)]
    curve = population.pareto_curve(monetary)
    top = next((share for at, share in curve if at == 0.2), None)
    return ParetoView(
        customers=len(monetary),
        reporting_currency=settings.reporting_currency,
        revenue=sum(monetary, Decimal(0)),
        top_20_percent_revenue_share=top,
        curve=[ParetoPoint(customer_share=a, revenue_share=b) for a, b in curve],
    )


class MovementView(BaseModel):
    period: str = Field(examples=["2026-11"])
    new: int = Field(description="Customers who placed their first order (prospect to first_time_buyer).")
    lost: int
    reactivated: int


@population_router.get(
    "/population/movements",
    response_model=list[MovementView],
    summary="New, lost and reactivated customers per period, from the lifecycle changes",
    dependencies=[requires("scores:read")],
)
async def movements(
    store: StoreDep,
    period: Annotated[Literal["day", "week", "month"], Query(description="The period to count by.")] = "month",
) -> list[MovementView]:
    query = {"dimension": "lifecycle_stage", "new": {"$in": ["first_time_buyer", "lost", "reactivated"]}}
    docs = await store.db[repository.SEGMENT_CHANGES].find(query, {"old": 1, "new": 1, "changed_at": 1}).to_list(None)
    rows: dict[str, Counter[str]] = {}
    for doc in docs:
        at: datetime = doc["changed_at"]
        if doc["new"] == "first_time_buyer" and doc["old"] != "prospect":
            continue
        key = {"day": f"{at:%Y-%m-%d}", "week": f"{at:%G-W%V}", "month": f"{at:%Y-%m}"}[period]
        kind = "new" if doc["new"] == "first_time_buyer" else doc["new"]
        rows.setdefault(key, Counter())[kind] += 1
    return [
        MovementView(period=k, new=v["new"], lost=v["lost"], reactivated=v["reactivated"])
        for k, v in sorted(rows.items())
    ]


class TierMoveView(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_tier: domain.ValueTier | None = Field(
        alias="from", description="The tier left; None when the customer had no tier before (an entry)."
    )
    to_tier: domain.ValueTier = Field(alias="to", description="The tier reached.")
    move: domain.TierMove = Field(
        description="upgrade or downgrade by the tiers' order, potential < low_value < high_value (potential to a "
        "higher tier is a first counted order); entered for a move from no tier."
    )
    customers: int = Field(description="Distinct customers who made this move in the period.")


class TierMovementView(BaseModel):
    """The moves between value tiers in one period (UTC); a period without a value-tier change is left out."""

    period: str = Field(examples=["2026-11"], description="YYYY-MM-DD, YYYY-Www (ISO week) or YYYY-MM, in UTC.")
    upgrades: int = Field(
        description="Sum of `customers` over the moves up: a customer who moved up twice in the period "
        "(potential to low_value to high_value) counts twice."
    )
    downgrades: int = Field(description="Sum of `customers` over the moves down.")
    entered: int = Field(description="Sum of `customers` over the moves from no tier; neither up nor down.")
    moves: list[TierMoveView] = Field(description="Every move made in the period, by the tiers' order (from, to).")


PERIOD_FORMATS = {"day": "%Y-%m-%d", "week": "%G-W%V", "month": "%Y-%m"}
"""$dateToString formats giving the same period keys as /population/movements."""
INVALID_RANGE = "Invalid range"


def _as_utc(at: datetime | None, name: str) -> datetime | None:
    if at is None:
        return None
    if at.utcoffset() is None:
        raise Problem(422, INVALID_RANGE, f"`{name}` is an RFC 3339 time with an offset (e.g. Z)")
    try:
        return at.astimezone(UTC)
    except OverflowError as exc:
        raise Problem(422, INVALID_RANGE, f"`{name}` is a time between the years 1 and 9999, in UTC") from exc


@population_router.get(
    "/population/tier-movements",
    response_model=list[TierMovementView],
    summary="Moves between value tiers per period, oldest first, from the value-tier changes",
    responses={422: {"description": "An unknown period, a time without offset, or `to` not after `from`"}},
    dependencies=[requires("scores:read")],
)
async def tier_movements(
    store: StoreDep,
    period: Annotated[Literal["day", "week", "month"], Query(description="The period to count by (UTC).")] = "month",
    start: Annotated[
        datetime | None, Query(alias="from", description="Changes at or after this time, RFC 3339 with an offset.")
    ] = None,
    end: Annotated[
        datetime | None, Query(alias="to", description="Changes before this time, RFC 3339 with an offset.")
    ] = None,
) -> list[TierMovementView]:
    begin, finish = _as_utc(start, "from"), _as_utc(end, "to")
    if begin is not None and finish is not None and finish <= begin:
        raise Problem(422, INVALID_RANGE, "`to` must be after `from`")
    when: dict[str, datetime] = {}
    if begin is not None:
        when["$gte"] = begin
    if finish is not None:
        when["$lt"] = finish
    tiers: list[str | None] = list(domain.VALUE_TIERS)
    pipeline: list[dict[str, Any]] = [
        # The tier filter is a stage of its own: SecantusDB plans a collection scan for a $match naming fields
        # outside by_dimension, and uses the index for one on (dimension, changed_at) alone.
        {"$match": {"dimension": "value_tier", **({"changed_at": when} if when else {})}},
        {"$match": {"new": {"$in": tiers}, "old": {"$in": [None, *tiers]}}},
        {
            "$group": {
                "_id": {
                    "period": {"$dateToString": {"format": PERIOD_FORMATS[period], "date": "$changed_at"}},
                    "old": {"$ifNull": ["$old", None]},
                    "new": "$new",
                },
                "customers": {"$addToSet": "$customer_id"},
            }
        },
        {"$project": {"customers": {"$size": "$customers"}}},
    ]
    rows: dict[str, list[TierMoveView]] = {}
    async for row in await store.db[repository.SEGMENT_CHANGES].aggregate(pipeline):
        old, new = row["_id"]["old"], row["_id"]["new"]
        if old == new:
            continue
        move = TierMoveView(from_tier=old, to_tier=new, move=domain.tier_move(old, new), customers=row["customers"])
        rows.setdefault(row["_id"]["period"], []).append(move)

    def rank(move: TierMoveView) -> tuple[int, int]:
        before = -1 if move.from_tier is None else domain.VALUE_TIERS.index(move.from_tier)
        return before, domain.VALUE_TIERS.index(move.to_tier)

    def total(moves: list[TierMoveView], kind: domain.TierMove) -> int:
        return sum(m.customers for m in moves if m.move == kind)

    return [
        TierMovementView(
            period=key,
            upgrades=total(moves, "upgrade"),
            downgrades=total(moves, "downgrade"),
            entered=total(moves, "entered"),
            moves=sorted(moves, key=rank),
        )
        for key, moves in sorted(rows.items())
    ]
