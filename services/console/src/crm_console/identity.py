"""Who the console's user is: a session cookie holding their token, and the development sign-in that mints one.

The console never decides what a user may see: it calls the services with the user's own credential (a bearer
token or an API key), so every scope and row-level rule is the services'. It reads the user's scopes, from the
services' `/v1/auth/whoami`, only to leave out pages and buttons that would be refused anyway.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from itsdangerous import BadSignature, URLSafeTimedSerializer

from crm_shared.security.development import check_password

COOKIE = "crm_console"


@dataclass(frozen=True)
class User:
    """A signed-in user, as the session cookie carries them."""

    subject: str
    display_name: str
    scopes: frozenset[str]
    credential: str
    """The bearer token or API key sent to the services on the user's behalf."""
    csrf: str
    kind: str = "token"

    def may(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    def may_any(self, *scopes: str) -> bool:
        return any(self.may(scope) for scope in scopes)


class Sessions:
    def __init__(self, secret: str, max_age_seconds: int) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="crm-console-session")
        self.max_age = max_age_seconds

    def dump(self, user: User) -> str:
        return self._serializer.dumps(
            {
                "sub": user.subject,
                "name": user.display_name,
                "scopes": sorted(user.scopes),
                "cred": user.credential,
                "csrf": user.csrf,
                "kind": user.kind,
            }
        )

    def load(self, cookie: str | None) -> User | None:
        if not cookie:
            return None
        try:
            data = self._serializer.loads(cookie, max_age=self.max_age)
        except BadSignature:
            return None
        try:
            return User(
                subject=str(data["sub"]),
                display_name=str(data["name"]),
                scopes=frozenset(data["scopes"]),
                credential=str(data["cred"]),
                csrf=str(data["csrf"]),
                kind=str(data["kind"]),
            )
        except (KeyError, TypeError):
            return None


def new_csrf() -> str:
    return secrets.token_urlsafe(24)


class PasswordSignIn:
    """The development identity provider: users from a JSON file, tokens signed with a key the services trust."""

    def __init__(self, key_file: Path, users_file: Path, issuer: str, audience: str, lifetime_seconds: int) -> None:
        self._key = key_file.read_text()
        self._users = {u["username"]: u for u in json.loads(users_file.read_text())["users"]}
        self._issuer = issuer
        self._audience = audience
        self._lifetime = lifetime_seconds

    @property
    def usernames(self) -> list[str]:
        return sorted(self._users)

    def roles(self) -> list[tuple[str, str]]:
        return [(name, str(self._users[name].get("role", ""))) for name in self.usernames]

    def sign_in(self, username: str, password: str) -> tuple[str, str] | None:
        """(token, display name), or None when the name or the password is wrong."""
        user = self._users.get(username)
        if user is None:
            # The same work either way, so the answer's time does not tell which names exist.
            check_password(next(iter(self._users.values()))["password"], password)
            return None
        if not check_password(user["password"], password):
            return None
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": username,
            "iat": now,
            "exp": now + self._lifetime,
            "name": user.get("display_name", username),
            "scope": " ".join(user.get("scopes", [])),
        }
        for claim in ("crm_team", "crm_territories", "crm_groups"):
            if user.get(claim):
                claims[claim] = list(user[claim])
        return jwt.encode(claims, self._key, algorithm="ES256"), str(claims["name"])
