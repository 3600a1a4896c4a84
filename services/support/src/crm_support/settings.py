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
    CRM_SUPPORT_SLA_POLL_SECONDS, CRM_SUPPORT_NPS_INTERVAL_DAYS, CRM_SUPPORT_NPS_POLL_SECONDS, plus the shared
    CRM_* settings."""

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

    nps_interval_days: float = Field(
        default=90,
        ge=0,
        le=3 * 366,
        allow_inf_nan=False,
        description="How often each customer is asked for an NPS answer (0: never); the first request comes "
        "this long after scoring first gives them a value tier.",
    )
    nps_poll_seconds: float = Field(
        default=60, gt=0, le=24 * 3600, allow_inf_nan=False, description="How often NPS requests due are sent."
    )

    @property
    def nps_interval(self) -> timedelta | None:
        return timedelta(days=self.nps_interval_days) if self.nps_interval_days > 0 else None

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
