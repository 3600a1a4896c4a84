"""OAuth2 bearer tokens: JWTs signed by the identity provider, checked for signature, issuer, audience and expiry."""

from __future__ import annotations

import asyncio
from typing import Any

import jwt

from crm_shared.security.keys import AuthFailure
from crm_shared.security.principal import Principal
from crm_shared.security.settings import AuthSettings


class TokenVerifier:
    def __init__(self, settings: AuthSettings) -> None:
        self._issuer = settings.auth_jwt_issuer
        self._audience = settings.auth_jwt_audience
        self._leeway = settings.auth_jwt_leeway_seconds
        self._jwks = jwt.PyJWKClient(settings.auth_jwks_url, cache_keys=True) if settings.auth_jwks_url else None
        self._key: Any = None
        self.enabled = settings.tokens_enabled
        if settings.auth_jwt_secret is not None:
            self._key = settings.auth_jwt_secret.get_secret_value()
            self._algorithms = ["HS256"]
        else:
            if settings.auth_jwt_public_key_file is not None:
                self._key = settings.auth_jwt_public_key_file.read_text()
            self._algorithms = [a.strip() for a in settings.auth_jwt_algorithms.split(",") if a.strip()]

    async def verify(self, token: str) -> Principal:
        if not self.enabled:
            raise AuthFailure("bearer tokens are not configured on this service; use an API key")
        try:
            # The JWKS client fetches over blocking HTTP (and caches): keep it off the event loop.
            key = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token) if self._jwks else None
            claims = jwt.decode(
                token,
                key.key if key is not None else self._key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthFailure("the token has expired") from exc
        except (jwt.PyJWTError, ValueError) as exc:
            raise AuthFailure(f"the token is not valid: {exc}") from exc
        return principal_of(claims)


def _strings(claims: dict[str, Any], name: str) -> frozenset[str]:
    value = claims.get(name) or []
    if isinstance(value, str):
        value = value.split()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AuthFailure(f"the token's {name} claim must be a list of strings")
    return frozenset(value)


def principal_of(claims: dict[str, Any]) -> Principal:
    """Scopes from `scope` (space-separated, RFC 8693) or `scp` (a list); row-level claims `crm_*`."""
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise AuthFailure("the token has no subject")
    return Principal(
        kind="token",
        id=subject,
        scopes=_strings(claims, "scope") | _strings(claims, "scp"),
        team=_strings(claims, "crm_team"),
        territories=_strings(claims, "crm_territories"),
        groups=_strings(claims, "crm_groups"),
    )
