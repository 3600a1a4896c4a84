"""The shared CRM_AUTH_* settings: how callers are authenticated and limited, refused at start-up when wrong."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Self

from limits import parse_many
from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings


def _auth(name: str) -> AliasChoices:
    return AliasChoices(f"CRM_AUTH_{name}")


def check_rate_limit(value: str) -> str:
    """A limits expression such as `100/second;2000/minute`."""
    try:
        parse_many(value)
    except ValueError as exc:
        raise ValueError(f"expected a rate limit such as '100/second;2000/minute', got {value!r}") from exc
    return value


class AuthSettings(BaseSettings):
    """Mixed into ServiceSettings: the same for every service."""

    auth_admin_key_sha256: str | None = Field(
        default=None,
        validation_alias=_auth("ADMIN_KEY_SHA256"),
        description="SHA-256 (hex) of the bootstrap admin API key `crm_bootstrap_<secret>`; `crm run` makes one.",
    )
    auth_jwt_issuer: str | None = Field(default=None, validation_alias=_auth("JWT_ISSUER"))
    auth_jwt_audience: str | None = Field(default=None, validation_alias=_auth("JWT_AUDIENCE"))
    auth_jwks_url: str | None = Field(
        default=None, validation_alias=_auth("JWKS_URL"), description="The identity provider's JWKS document."
    )
    auth_jwt_public_key_file: Path | None = Field(
        default=None, validation_alias=_auth("JWT_PUBLIC_KEY_FILE"), description="A PEM public key instead of JWKS."
    )
    auth_jwt_secret: SecretStr | None = Field(
        default=None,
        validation_alias=_auth("JWT_SECRET"),
        description="An HS256 shared secret instead of a public key: development only, any holder can mint tokens.",
    )
    auth_jwt_algorithms: str = Field(default="RS256,ES256", validation_alias=_auth("JWT_ALGORITHMS"))
    auth_jwt_leeway_seconds: int = Field(default=30, ge=0, le=300, validation_alias=_auth("JWT_LEEWAY_SECONDS"))
    auth_rate_limit: str = Field(
        default="100/second;3000/minute",
        validation_alias=_auth("RATE_LIMIT"),
        description="Requests per API key or token subject, unless the key sets its own.",
    )

    @field_validator("auth_admin_key_sha256")
    @classmethod
    def _hex_digest(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[0-9a-f]{64}", value):
            raise ValueError("expected the hex SHA-256 of the admin key (64 lower-case hex digits)")
        return value

    @field_validator("auth_rate_limit")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        return check_rate_limit(value)

    @field_validator("auth_jwt_public_key_file")
    @classmethod
    def _key_file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @model_validator(mode="after")
    def _tokens_fully_configured(self) -> Self:
        sources = [s for s in (self.auth_jwks_url, self.auth_jwt_public_key_file, self.auth_jwt_secret) if s]
        if len(sources) > 1:
            raise ValueError("set one of CRM_AUTH_JWKS_URL, CRM_AUTH_JWT_PUBLIC_KEY_FILE, CRM_AUTH_JWT_SECRET")
        if sources and not (self.auth_jwt_issuer and self.auth_jwt_audience):
            raise ValueError("bearer tokens need CRM_AUTH_JWT_ISSUER and CRM_AUTH_JWT_AUDIENCE to be checked")
        if self.auth_jwt_secret is not None and len(self.auth_jwt_secret.get_secret_value()) < 32:
            raise ValueError("CRM_AUTH_JWT_SECRET must be at least 32 characters")
        return self

    @property
    def tokens_enabled(self) -> bool:
        return bool(self.auth_jwks_url or self.auth_jwt_public_key_file or self.auth_jwt_secret)
