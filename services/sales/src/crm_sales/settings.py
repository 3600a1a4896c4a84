from pydantic_settings import SettingsConfigDict

from crm_shared.matching import MatchingSettings
from crm_shared.money import RateTableSettings
from crm_shared.settings import SERVICES, ServiceSettings


class SalesSettings(ServiceSettings, RateTableSettings, MatchingSettings):
    """Environment: CRM_SALES_PORT, CRM_SALES_HOST, CRM_SALES_DB, plus the shared CRM_* settings, among them the
    platform's rate table (CRM_REPORTING_CURRENCY, CRM_EXCHANGE_RATES): sales refuses orders, payments and refunds
    in a currency the table has no rate for, since scoring could not score them; and the platform's match-key
    secret (CRM_MATCH_KEY_SECRET), to check new leads against the customer service's customers."""

    model_config = SettingsConfigDict(env_prefix="CRM_SALES_", extra="ignore", frozen=True)

    service_name: str = "sales"
    port: int = SERVICES["sales"]


def sales_settings(settings: ServiceSettings) -> SalesSettings:
    """The settings a sales runtime was built with."""
    if not isinstance(settings, SalesSettings):
        raise TypeError(f"expected the sales settings, got {type(settings).__name__}")
    return settings
