from datetime import timedelta
from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from crm_shared.settings import SERVICES, ServiceSettings
from crm_support.domain import SlaTargets

# A year: longer is a typo, and timedelta would overflow long before infinity.
_MAX_SLA_HOURS = 24 * 366


class SupportSettings(ServiceSettings):
    """Environment: CRM_SUPPORT_PORT, CRM_SUPPORT_HOST, CRM_SUPPORT_DB, CRM_SUPPORT_SLA_{HIGH,MEDIUM,LOW}_HOURS,
    CRM_SUPPORT_SLA_POLL_SECONDS, plus the shared CRM_* settings."""

    model_config = SettingsConfigDict(env_prefix="CRM_SUPPORT_", extra="ignore", frozen=True)

    service_name: str = "support"
    port: int = SERVICES["support"]
    sla_high_hours: float = Field(
        default=4, gt=0, le=_MAX_SLA_HOURS, allow_inf_nan=False, description="Response target, high severity."
    )
    sla_medium_hours: float = Field(
        default=24, gt=0, le=_MAX_SLA_HOURS, allow_inf_nan=False, description="Response target, medium."
    )
    sla_low_hours: float = Field(
        default=72, gt=0, le=_MAX_SLA_HOURS, allow_inf_nan=False, description="Response target, low severity."
    )

    sla_poll_seconds: float = Field(
        default=5,
        gt=0,
        le=3600,
        allow_inf_nan=False,
        description="How often the escalation worker looks for SLA warnings and breaches due.",
    )

    @model_validator(mode="after")
    def _more_severe_is_not_slower(self) -> Self:
        if not self.sla_high_hours <= self.sla_medium_hours <= self.sla_low_hours:
            raise ValueError(
                "SLA targets must not grow with severity: expected high <= medium <= low hours, got "
                f"{self.sla_high_hours} / {self.sla_medium_hours} / {self.sla_low_hours}"
            )
        return self

    @property
    def sla_targets(self) -> SlaTargets:
        return SlaTargets(
            high=timedelta(hours=self.sla_high_hours),
            medium=timedelta(hours=self.sla_medium_hours),
            low=timedelta(hours=self.sla_low_hours),
        )
