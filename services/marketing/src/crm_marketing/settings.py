from pydantic_settings import SettingsConfigDict

from crm_shared.settings import SERVICES, ServiceSettings


class MarketingSettings(ServiceSettings):
    """Environment: CRM_MARKETING_PORT, CRM_MARKETING_HOST, CRM_MARKETING_DB, plus the shared CRM_* settings."""

    model_config = SettingsConfigDict(env_prefix="CRM_MARKETING_", extra="ignore", frozen=True)

    service_name: str = "marketing"
    port: int = SERVICES["marketing"]
