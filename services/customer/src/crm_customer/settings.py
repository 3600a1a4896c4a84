from pydantic_settings import SettingsConfigDict

from crm_shared.settings import SERVICES, ServiceSettings


class CustomerSettings(ServiceSettings):
    """Environment: CRM_CUSTOMER_PORT, CRM_CUSTOMER_HOST, CRM_CUSTOMER_DB, plus the shared CRM_* settings."""

    model_config = SettingsConfigDict(env_prefix="CRM_CUSTOMER_", extra="ignore", frozen=True)

    service_name: str = "customer"
    port: int = SERVICES["customer"]
