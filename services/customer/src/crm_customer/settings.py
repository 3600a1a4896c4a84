from pydantic import Field
from pydantic_settings import SettingsConfigDict

from crm_customer.profiles.duplicates import DEFAULT_NAME_THRESHOLD
from crm_shared.matching import MatchingSettings
from crm_shared.settings import SERVICES, ServiceSettings


class CustomerSettings(ServiceSettings, MatchingSettings):
    """Environment: CRM_CUSTOMER_PORT, CRM_CUSTOMER_HOST, CRM_CUSTOMER_DB, CRM_CUSTOMER_DUPLICATE_NAME_THRESHOLD,
    plus the shared CRM_* settings, among
    them the platform's match-key secret (CRM_MATCH_KEY_SECRET): with it the customer service publishes each
    customer's match keys, so sales finds a new lead who is a customer already."""

    model_config = SettingsConfigDict(env_prefix="CRM_CUSTOMER_", extra="ignore", frozen=True)

    service_name: str = "customer"
    port: int = SERVICES["customer"]
    duplicate_name_threshold: float = Field(
        default=DEFAULT_NAME_THRESHOLD,
        ge=50,
        le=100,
        allow_inf_nan=False,
        description="How alike two names must be (0-100, rapidfuzz token-sort ratio) for a duplicate proposal.",
    )


def match_secret_of(settings: ServiceSettings) -> bytes | None:
    """The match-key secret the customer runtime was built with (None when unset)."""
    return settings.match_secret if isinstance(settings, MatchingSettings) else None
