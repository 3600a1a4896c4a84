import json
from datetime import timedelta
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from crm_marketing.domain import Policy
from crm_marketing.engagement import DEFAULT_WEIGHTS, EngagementRule, InteractionKind
from crm_marketing.journeys import DEFAULT_JOURNEYS, Journey, check_journeys
from crm_shared.settings import SERVICES, ServiceSettings


class MarketingSettings(ServiceSettings):
    """Environment: CRM_MARKETING_PORT, CRM_MARKETING_HOST, CRM_MARKETING_DB, the journeys, contact rules and
    lead engagement below (CRM_MARKETING_JOURNEYS, CRM_MARKETING_HOLDOUT_SHARE, ...,
    CRM_MARKETING_LEAD_ENGAGEMENT_WEIGHTS), plus the shared CRM_* settings."""

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
    lead_engagement_weights: Annotated[dict[InteractionKind, Annotated[int, Field(ge=0, le=1000)]], NoDecode] = Field(
        default_factory=lambda: dict(DEFAULT_WEIGHTS),
        description='Points per logged interaction kind, as a JSON object, e.g. {"meeting": 3, "web": 1}; '
        "kinds left out keep their default weight.",
    )
    lead_qualified_score: int = Field(
        default=5, ge=1, le=100_000, description="The engagement score that hands a prospect to sales as a lead."
    )
    lead_engagement_days: int = Field(
        default=30, ge=1, le=366, description="Interactions this many days before the latest one count."
    )

    @field_validator("journeys")
    @classmethod
    def _unique_names(cls, journeys: tuple[Journey, ...]) -> tuple[Journey, ...]:
        return check_journeys(journeys)

    @field_validator("lead_engagement_weights", mode="before")
    @classmethod
    def _json_object(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f'expected a JSON object of weights such as {{"meeting": 3}}: {exc}') from None

    @field_validator("lead_engagement_weights")
    @classmethod
    def _over_the_defaults(cls, weights: dict[InteractionKind, int]) -> dict[InteractionKind, int]:
        return {**DEFAULT_WEIGHTS, **weights}

    @property
    def engagement(self) -> EngagementRule:
        return EngagementRule(
            weights=self.lead_engagement_weights,
            threshold=self.lead_qualified_score,
            window=timedelta(days=self.lead_engagement_days),
        )

    @property
    def policy(self) -> Policy:
        return Policy(
            holdout_share=self.holdout_share,
            max_contacts_per_period=self.max_contacts_per_period,
            cap_period=timedelta(days=self.cap_period_days),
            attribution_window=timedelta(days=self.attribution_days),
        )
