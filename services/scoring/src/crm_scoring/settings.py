import json
from decimal import Decimal
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from crm_scoring.domain import FormulaInputs, Thresholds
from crm_scoring.fitting import FitLimits
from crm_shared.money import RateTableSettings
from crm_shared.settings import SERVICES, ServiceSettings

NonNegative = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]


class ClvInputs(BaseModel):
    """The source's formula inputs for one product line (A, B, C, E of the ATM example)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    A: NonNegative = Field(description="Gross margin per unit.")
    B: NonNegative = Field(description="Service and spare-parts revenue per unit over the years.")
    C: NonNegative = Field(description="Units the customer may buy in its lifetime.")
    E: NonNegative = Field(description="Customers it may refer.")

    @property
    def formula_inputs(self) -> FormulaInputs:
        return FormulaInputs(self.A, self.B, self.C, self.E)


DEFAULT_CLV_INPUTS = {"default": ClvInputs(A=Decimal(100), B=Decimal(50), C=Decimal(10), E=Decimal(1))}


class ScoringSettings(ServiceSettings, RateTableSettings):
    """Environment: CRM_SCORING_PORT, CRM_SCORING_HOST, CRM_SCORING_DB, CRM_SCORING_HIGH_VALUE_MONETARY,
    CRM_SCORING_STABLE_AFTER_ORDERS, CRM_SCORING_HIGH_VALUE_REVENUE_SHARE, CRM_SCORING_MIN_POPULATION,
    CRM_SCORING_POPULATION_INTERVAL_SECONDS, CRM_SCORING_AT_RISK_DAYS, CRM_SCORING_LOST_DAYS,
    CRM_SCORING_DECAY_INTERVAL_SECONDS, CRM_SCORING_MIN_FIT_CUSTOMERS, CRM_SCORING_MIN_FIT_REPEAT_BUYERS,
    CRM_SCORING_FIT_MAX_RELATIVE_ERROR, CRM_SCORING_FIT_HOLDOUT_SHARE, CRM_SCORING_FIT_MIN_HOLDOUT_PURCHASES,
    CRM_SCORING_FIT_MAX_HOLDOUT_ERROR, CRM_SCORING_CHURN_HORIZON_DAYS, CRM_SCORING_POPULATION_TOLERANCE,
    CRM_SCORING_CLV_HORIZON_WEEKS,
    CRM_SCORING_ANNUAL_DISCOUNT_RATE, CRM_SCORING_CLV_INPUTS, plus the shared CRM_* settings, among them the
    platform's rate table (CRM_REPORTING_CURRENCY, CRM_EXCHANGE_RATES) the money scores are converted with."""

    model_config = SettingsConfigDict(env_prefix="CRM_SCORING_", extra="ignore", frozen=True)

    service_name: str = "scoring"
    port: int = SERVICES["scoring"]
    high_value_monetary: Decimal = Field(
        default=Decimal(1000),
        gt=0,
        allow_inf_nan=False,
        description="Net order value, in the reporting currency, from which a customer is high_value while the "
        "population is too small.",
    )
    stable_after_orders: int = Field(
        default=9,
        ge=2,
        le=10_000,
        description="Orders from which a customer is stable rather than repeat.",
    )
    high_value_revenue_share: float = Field(
        default=0.8, gt=0, le=1, description="Revenue share the high-value customers make together (80/20)."
    )
    min_population: int = Field(
        default=20, ge=1, le=10_000_000, description="Buyers needed before RFM and the 80/20 threshold apply."
    )
    population_interval_seconds: float = Field(
        default=300, gt=0, le=7 * 86400, description="How often the population statistics are recomputed."
    )
    at_risk_days: int = Field(default=90, ge=1, le=36_500, description="Days without an order to be at_risk.")
    lost_days: int = Field(default=180, ge=2, le=36_500, description="Days without an order to be lost.")
    decay_interval_seconds: float = Field(
        default=60, gt=0, le=86400, description="How often the customers due for time decay are rescored."
    )
    min_fit_customers: int = Field(
        default=50, ge=2, le=10_000_000, description="Buyers needed to fit the MBG/NBD and Gamma-Gamma models."
    )
    min_fit_repeat_buyers: int = Field(
        default=20, ge=1, le=10_000_000, description="Customers who bought again on a later day needed to fit."
    )
    fit_max_relative_error: float = Field(
        default=1.0,
        gt=0,
        le=100,
        description="Largest standard error of a fitted parameter, as a share of its value, for the fit to be used.",
    )
    fit_holdout_share: float = Field(
        default=0.25,
        gt=0,
        lt=1,
        description="Share of the period, at its end, a fit is checked on after fitting on the rest.",
    )
    fit_min_holdout_purchases: int = Field(
        default=10, ge=1, le=10_000_000, description="Purchases the holdout needs for the check to be made."
    )
    fit_max_holdout_error: float = Field(
        default=0.3,
        gt=0,
        le=10,
        description="Largest error of the holdout purchases predicted, as a share of those made, for the fit to pass.",
    )
    churn_horizon_days: int = Field(
        default=90,
        ge=1,
        le=3650,
        description="With fitted models, churn risk is the probability of no purchase in this many days.",
    )
    population_tolerance: float = Field(
        default=0.05,
        ge=0,
        lt=1,
        description="How far a recomputed statistic or model parameter must move, as a share of its value (of its "
        "age for a recency cut), to replace the one in force.",
    )
    clv_horizon_weeks: float = Field(default=52, gt=0, le=520, description="Horizon of the lifetime value.")
    annual_discount_rate: float = Field(default=0.1, ge=0, le=1, description="Discount rate of the lifetime value.")
    clv_inputs: Annotated[dict[str, ClvInputs], NoDecode] = Field(
        default_factory=lambda: dict(DEFAULT_CLV_INPUTS),
        description='The formula lifetime value\'s A, B, C, E per product line, as JSON with a "default" entry.',
    )

    @field_validator("clv_inputs", mode="before")
    @classmethod
    def _clv_inputs_json(cls, value: object) -> object:
        return json.loads(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.lost_days <= self.at_risk_days:
            raise ValueError(f"lost_days ({self.lost_days}) must be greater than at_risk_days ({self.at_risk_days})")
        if "default" not in self.clv_inputs:
            raise ValueError('clv_inputs needs a "default" entry')
        return self

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(
            high_value_monetary=self.high_value_monetary,
            stable_after_orders=self.stable_after_orders,
            at_risk_days=self.at_risk_days,
            lost_days=self.lost_days,
            clv_horizon_weeks=self.clv_horizon_weeks,
            annual_discount_rate=self.annual_discount_rate,
            high_value_revenue_share=self.high_value_revenue_share,
            min_population=self.min_population,
            churn_horizon_days=self.churn_horizon_days,
            population_tolerance=self.population_tolerance,
            fit_limits=FitLimits(
                min_customers=self.min_fit_customers,
                min_repeat_buyers=self.min_fit_repeat_buyers,
                max_relative_error=self.fit_max_relative_error,
                holdout_share=self.fit_holdout_share,
                min_holdout_purchases=self.fit_min_holdout_purchases,
                max_holdout_error=self.fit_max_holdout_error,
            ),
            exchange_rates=self.rate_table,
        )

    def formula_inputs(self, product_line: str | None) -> tuple[str, FormulaInputs]:
        """The product line whose inputs apply ("default" when it has none of its own) and those inputs."""
        line = product_line if product_line in self.clv_inputs else "default"
        return line, self.clv_inputs[line].formula_inputs
