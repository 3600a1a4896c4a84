from pydantic_settings import SettingsConfigDict

from crm_shared.settings import SERVICES, ServiceSettings


class SalesSettings(ServiceSettings):
    """Environment: CRM_SALES_PORT, CRM_SALES_HOST, CRM_SALES_DB, plus the shared CRM_* settings."""

    model_config = SettingsConfigDict(env_prefix="CRM_SALES_", extra="ignore", frozen=True)

    service_name: str = "sales"
    port: int = SERVICES["sales"]
