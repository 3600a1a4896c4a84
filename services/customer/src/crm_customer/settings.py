from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from crm_customer.identity.service import AUTO_MERGE_RULES, PRIVACY_SERVICES
from crm_customer.identity.survivorship import Rules
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
    survivorship: str = Field(
        default="",
        description="Survivorship rules of a merge that differ from the defaults, `field=rule` separated by "
        "commas (e.g. `name=most_recent,attributes.points=sum`); rules: survivor, first_non_empty, most_recent, "
        "oldest, union, sum.",
    )
    auto_merge: str = Field(
        default=",".join(AUTO_MERGE_RULES),
        description="The strong identifiers that merge a new customer into an existing one at sign-up, among "
        "`email` and `phone`, separated by commas; empty: never automatically.",
    )
    privacy_services: str = Field(
        default=",".join(PRIVACY_SERVICES),
        description="The services that must confirm an erasure and answer an export before it is complete.",
    )

    @field_validator("survivorship")
    @classmethod
    def _known_rules(cls, value: str) -> str:
        Rules.parse(value)  # raises with the field or rule it does not know
        return value

    @field_validator("auto_merge")
    @classmethod
    def _known_identifiers(cls, value: str) -> str:
        unknown = sorted(set(_listed(value)) - set(AUTO_MERGE_RULES))
        if unknown:
            raise ValueError(f"unknown identifiers {', '.join(unknown)}; the strong identifiers are email, phone")
        return value

    @field_validator("privacy_services")
    @classmethod
    def _known_services(cls, value: str) -> str:
        unknown = sorted(set(_listed(value)) - set(PRIVACY_SERVICES))
        if unknown or not _listed(value):
            raise ValueError(
                f"unknown services {', '.join(unknown) or '(none given)'}; the services are "
                f"{', '.join(PRIVACY_SERVICES)}"
            )
        return value

    @property
    def survivorship_rules(self) -> Rules:
        return Rules.parse(self.survivorship)

    @property
    def auto_merge_rules(self) -> tuple[str, ...]:
        return _listed(self.auto_merge)

    @property
    def privacy_service_names(self) -> tuple[str, ...]:
        return _listed(self.privacy_services)


def _listed(value: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))


def match_secret_of(settings: ServiceSettings) -> bytes | None:
    """The match-key secret the customer runtime was built with (None when unset)."""
    return settings.match_secret if isinstance(settings, MatchingSettings) else None
