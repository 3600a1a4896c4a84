"""The console's settings (`CRM_CONSOLE_*`), refused at start-up when wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from crm_shared.platform import CONSOLE_PORT
from crm_shared.settings import SERVICES


class ConsoleSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_CONSOLE_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=CONSOLE_PORT, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", validation_alias=AliasChoices("CRM_LOG_LEVEL")
    )
    customer_url: str = f"http://127.0.0.1:{SERVICES['customer']}"
    sales_url: str = f"http://127.0.0.1:{SERVICES['sales']}"
    support_url: str = f"http://127.0.0.1:{SERVICES['support']}"
    scoring_url: str = f"http://127.0.0.1:{SERVICES['scoring']}"
    marketing_url: str = f"http://127.0.0.1:{SERVICES['marketing']}"
    session_secret: SecretStr = Field(
        description="Signs the session cookie (at least 32 characters); `crm run` makes one.",
    )
    session_minutes: int = Field(default=480, ge=5, le=24 * 60, description="How long a sign-in lasts.")
    secure_cookies: bool = Field(
        default=False, description="Send the session cookie over HTTPS only: set it behind TLS."
    )
    identity_key_file: Path | None = Field(
        default=None,
        description="Development identity: the PEM private key (ES256) whose public key the services trust "
        "(CRM_AUTH_JWT_PUBLIC_KEY_FILE). With CRM_CONSOLE_USERS_FILE it enables sign-in by name and password.",
    )
    users_file: Path | None = Field(
        default=None, description="Development identity: the users, their password hashes and their claims (JSON)."
    )
    token_issuer: str = Field(
        default="crm-console-dev", validation_alias=AliasChoices("CRM_AUTH_JWT_ISSUER", "CRM_CONSOLE_TOKEN_ISSUER")
    )
    token_audience: str = Field(
        default="crm", validation_alias=AliasChoices("CRM_AUTH_JWT_AUDIENCE", "CRM_CONSOLE_TOKEN_AUDIENCE")
    )
    request_timeout_seconds: float = Field(default=10, gt=0, le=120)

    @field_validator("session_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 32:
            raise ValueError("CRM_CONSOLE_SESSION_SECRET must be at least 32 characters")
        return value

    @field_validator("identity_key_file", "users_file")
    @classmethod
    def _exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @model_validator(mode="after")
    def _identity_complete(self) -> Self:
        if (self.identity_key_file is None) != (self.users_file is None):
            raise ValueError("set both CRM_CONSOLE_IDENTITY_KEY_FILE and CRM_CONSOLE_USERS_FILE, or neither")
        return self

    @property
    def password_sign_in(self) -> bool:
        return self.identity_key_file is not None

    def service_urls(self) -> dict[str, str]:
        return {name: str(getattr(self, f"{name}_url")).rstrip("/") for name in SERVICES}
