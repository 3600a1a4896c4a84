"""The credential check every route but /healthz, /readyz and /metrics runs: who, which scope, how often.

`requires("customers:read")` as a route's dependency (or `Annotated[Principal, requires(...)]` as a
parameter when the route needs the caller, for row-level access). It answers 401 with
`WWW-Authenticate` for a missing or invalid credential, 403 for a missing scope, 429 with
`Retry-After` over the caller's rate limit; failures are audited.
"""

from __future__ import annotations

import math
import time
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes
from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from crm_shared.problems import Problem
from crm_shared.security import audit
from crm_shared.security.keys import AuthFailure, KeyTable, key_id_of
from crm_shared.security.principal import SCOPES, Principal
from crm_shared.security.settings import AuthSettings
from crm_shared.security.tokens import TokenVerifier

API_KEY_HEADER = "X-API-Key"

api_key_scheme = APIKeyHeader(
    name=API_KEY_HEADER,
    scheme_name="ApiKey",
    auto_error=False,
    description="A channel system's API key, `crm_<key id>_<secret>` (also accepted as `Authorization: Bearer`).",
)
bearer_scheme = HTTPBearer(
    scheme_name="BearerToken",
    bearerFormat="JWT",
    auto_error=False,
    description="An OAuth2 access token from the identity provider: scopes in `scope` or `scp`; row-level "
    "claims `crm_team`, `crm_territories`, `crm_groups`.",
)


class RateLimits:
    """Moving-window limits per caller, in this process (each instance limits what reaches it)."""

    def __init__(self, default: str) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._default = parse_many(default)
        self._parsed: dict[str, list[RateLimitItem]] = {}

    async def retry_after(self, principal: Principal) -> int | None:
        """Seconds to wait when the caller is over a limit (the request is not counted), else None."""
        items = self._default
        if principal.rate_limit:
            items = self._parsed.setdefault(principal.rate_limit, parse_many(principal.rate_limit))
        name = f"{principal.kind}:{principal.id}"
        for item in items:
            if not await self._limiter.hit(item, name):
                stats = await self._limiter.get_window_stats(item, name)
                return max(1, math.ceil(stats.reset_time - time.time()))
        return None


class Guard:
    """The keys, token verifier and rate limits of one service process."""

    def __init__(self, settings: AuthSettings) -> None:
        self.keys = KeyTable(settings.auth_admin_key_sha256)
        self.tokens = TokenVerifier(settings)
        self.limits = RateLimits(settings.auth_rate_limit)

    async def identify(self, api_key: str | None, bearer: str | None) -> Principal:
        if api_key:
            return self.keys.verify(api_key)
        if bearer:
            # An API key is also accepted as a bearer credential, for clients that can only send Authorization.
            return self.keys.verify(bearer) if bearer.startswith("crm_") else await self.tokens.verify(bearer)
        raise AuthFailure("no credential: send an API key in X-API-Key or a bearer token in Authorization")


def _challenge(error: str | None = None, description: str | None = None, scope: str | None = None) -> str:
    parts = ['realm="crm"']
    if error:
        parts.append(f'error="{error}"')
    if description:
        parts.append('error_description="' + description.replace('"', "'") + '"')
    if scope:
        parts.append(f'scope="{scope}"')
    params = ", ".join(parts)
    return f"Bearer {params}, ApiKey {parts[0]}"


def _presented(api_key: str | None, bearer: HTTPAuthorizationCredentials | None) -> str | None:
    """Whose credential failed, for the audit log: a key's id is not secret; a bad token names nobody."""
    presented = api_key or (bearer.credentials if bearer else "")
    if not presented.startswith("crm_"):
        return "token:unverified" if presented else None
    try:
        return f"key:{key_id_of(presented)}:unverified"
    except AuthFailure:
        return "key:malformed"


def route_name(request: Request) -> str:
    route = request.scope.get("route")
    path = getattr(route, "path", None) or request.url.path
    return f"{request.method} {path}"


async def authenticate(
    request: Request,
    security: SecurityScopes,
    api_key: Annotated[str | None, Depends(api_key_scheme)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    guard: Guard = request.app.state.runtime.guard
    action = route_name(request)
    try:
        principal = await guard.identify(api_key, bearer.credentials if bearer else None)
    except AuthFailure as exc:
        error = "invalid_token" if (api_key or bearer) else None
        audit.note(request.scope, action, principal=_presented(api_key, bearer), reason=str(exc))
        raise Problem(401, "Unauthorized", str(exc), headers={"WWW-Authenticate": _challenge(error, str(exc))}) from exc
    missing = [scope for scope in security.scopes if not principal.allows(scope)]
    if missing:
        detail = f"this credential lacks the scope {' and '.join(missing)}"
        if principal.read_only:
            detail += " (the API key is read-only)"
        audit.note(request.scope, action, principal=principal.audit_name, reason=detail)
        challenge = _challenge("insufficient_scope", detail, " ".join(missing))
        raise Problem(403, "Forbidden", detail, headers={"WWW-Authenticate": challenge})
    wait = await guard.limits.retry_after(principal)
    if wait is not None:
        raise Problem(
            429,
            "Too Many Requests",
            f"over this caller's rate limit; retry in {wait} s",
            headers={"Retry-After": str(wait)},
        )
    request.state.principal = principal
    return principal


def requires(scope: str) -> Any:
    """The dependency of a route that needs `scope` (any valid credential when empty)."""
    if scope and scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}: add it to crm_shared.security.principal.SCOPES")
    return Security(authenticate, scopes=[scope] if scope else [])


def audited(request: Request) -> None:
    """A route dependency: record this call in the audit log whatever its outcome."""
    principal: Principal | None = getattr(request.state, "principal", None)
    audit.note(request.scope, route_name(request), principal=principal.audit_name if principal else None)


def check_event_type(request: Request, principal: Principal, event_type: str) -> None:
    """403 (audited) when an API key may not submit this event type."""
    if not principal.may_submit(event_type):
        detail = f"this API key may not submit {event_type} events"
        audit.note(request.scope, route_name(request), principal=principal.audit_name, reason=detail)
        raise Problem(403, "Forbidden", detail)
