from decimal import Decimal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from crm_scoring.domain import Thresholds
from crm_shared.settings import SERVICES, ServiceSettings


class ScoringSettings(ServiceSettings):
    """Environment: CRM_SCORING_PORT, CRM_SCORING_HOST, CRM_SCORING_DB, CRM_SCORING_HIGH_VALUE_MONETARY,
    CRM_SCORING_STABLE_AFTER_ORDERS, plus the shared CRM_* settings."""

    model_config = SettingsConfigDict(env_prefix="CRM_SCORING_", extra="ignore", frozen=True)

    service_name: str = "scoring"
    port: int = SERVICES["scoring"]
    high_value_monetary: Decimal = Field(
        default=Decimal(1000),
        gt=0,
        allow_inf_nan=False,
        description="Net order value from which a customer is high_value.",
    )
    stable_after_orders: int = Field(
        default=9,
        ge=2,
        le=10_000,
        description="Orders from which a customer is stable rather than repeat.",
    )

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(high_value_monetary=self.high_value_monetary, stable_after_orders=self.stable_after_orders)
