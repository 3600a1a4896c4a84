from datetime import timedelta

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from crm_marketing.domain import Policy
from crm_marketing.journeys import DEFAULT_JOURNEYS, Journey, check_journeys
from crm_shared.settings import SERVICES, ServiceSettings


class MarketingSettings(ServiceSettings):
    """Environment: CRM_MARKETING_PORT, CRM_MARKETING_HOST, CRM_MARKETING_DB, the journeys and contact rules
    below (CRM_MARKETING_JOURNEYS, CRM_MARKETING_HOLDOUT_SHARE, ...), plus the shared CRM_* settings."""

    model_config = SettingsConfigDict(env_prefix="CRM_MARKETING_", extra="ignore", frozen=True)

    service_name: str = "marketing"
    port: int = SERVICES["marketing"]
    journeys: tuple[Journey, ...] = Field(
        default=DEFAULT_JOURNEYS,
        description="The triggered journeys, as a JSON list; replaces the defaults entirely.",
    )
    holdout_share: float = Field(
        default=0.10, ge=0, lt=1, description="Share of each journey's customers held out (not contacted)."
    )
    max_contacts_per_period: int = Field(
        default=3, ge=0, le=1000, description="Contacts per customer per cap period, across every capped journey."
    )
    cap_period_days: int = Field(default=7, ge=1, le=366)
    attribution_days: int = Field(default=30, ge=1, le=366, description="An order this long after enrolment counts.")

    @field_validator("journeys")
    @classmethod
    def _unique_names(cls, journeys: tuple[Journey, ...]) -> tuple[Journey, ...]:
        return check_journeys(journeys)

    @property
    def policy(self) -> Policy:
        return Policy(
            holdout_share=self.holdout_share,
            max_contacts_per_period=self.max_contacts_per_period,
            cap_period=timedelta(days=self.cap_period_days),
            attribution_window=timedelta(days=self.attribution_days),
        )
