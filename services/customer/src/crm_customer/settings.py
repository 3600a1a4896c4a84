from pydantic_settings import SettingsConfigDict

from crm_shared.matching import MatchingSettings
from crm_shared.settings import SERVICES, ServiceSettings


class CustomerSettings(ServiceSettings, MatchingSettings):
    """Environment: CRM_CUSTOMER_PORT, CRM_CUSTOMER_HOST, CRM_CUSTOMER_DB, plus the shared CRM_* settings, among
    them the platform's match-key secret (CRM_MATCH_KEY_SECRET): with it the customer service publishes each
    customer's match keys, so sales finds a new lead who is a customer already."""

    model_config = SettingsConfigDict(env_prefix="CRM_CUSTOMER_", extra="ignore", frozen=True)

    service_name: str = "customer"
    port: int = SERVICES["customer"]


def match_secret_of(settings: ServiceSettings) -> bytes | None:
    """The match-key secret the customer runtime was built with (None when unset)."""
    return settings.match_secret if isinstance(settings, MatchingSettings) else None
