"""The development identity `crm run` makes: a signing key the services trust, and a few users to sign in as.

In production people sign in at the organisation's identity provider and the services check its tokens
(CRM_AUTH_JWKS_URL); this stands in for it on a developer's machine, so the web console has someone to sign in.
Nothing here is needed by a service: they only get the public key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

ISSUER = "crm-console-dev"
AUDIENCE = "crm"
IDENTITY_DIR = "console"
"""Under the data directory: identity-key.pem (private), identity-key.pub.pem, users.json, password and the
console's session-secret."""

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}

SALES = ("customers:read", "orders:read", "leads:read", "leads:write", "opportunities:read", "opportunities:write")
SALES_MORE = ("activities:read", "activities:write", "quotes:read", "quotes:write", "forecasts:read", "scores:read")
SERVICE = ("customers:read", "tickets:read", "tickets:write", "surveys:read", "scores:read", "interactions:read")
MARKETING = ("customers:read", "campaigns:read", "campaigns:write", "segments:read", "segments:write", "scores:read")

DEMO_USERS: tuple[dict[str, Any], ...] = (
    {
        "username": "admin",
        "display_name": "Olu Operator",
        "scopes": ["admin"],
        "role": "operator: every page, API keys, dead letters",
    },
    {
        "username": "rep-1",
        "display_name": "Rita Rep",
        "scopes": [*SALES, *SALES_MORE],
        "crm_territories": ["north"],
        "role": "sales rep: her customers, leads, pipeline, activities and quotes",
    },
    {
        "username": "manager-1",
        "display_name": "Max Manager",
        "scopes": [
            "records:all",
            *SALES,
            *SALES_MORE,
            "forecasts:write",
            *SERVICE,
            "consents:write",
            "customers:merge",
        ],
        "crm_team": ["rep-1"],
        "role": "sales manager: every record, forecasts and quotas, consents and merges",
    },
    {
        "username": "agent-1",
        "display_name": "Aino Agent",
        "scopes": ["records:all", *SERVICE, "consents:write"],
        "crm_groups": ["support"],
        "role": "service agent: the ticket queue, and a caller's consents",
    },
    {
        "username": "marketer-1",
        "display_name": "Mia Marketer",
        "scopes": ["records:all", *MARKETING],
        "role": "marketer: segments and campaign results",
    },
)


def hash_password(password: str) -> str:
    """`scrypt$<n>$<r>$<p>$<salt>$<hash>`, base64: a memory-hard hash, from the standard library."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(stored: str, password: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        computed = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), dklen=32, n=int(n), r=int(r), p=int(p)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(computed, base64.b64decode(digest))


@dataclass(frozen=True)
class DevelopmentIdentity:
    key_file: Path
    public_key_file: Path
    users_file: Path
    password_file: Path
    session_secret_file: Path

    @classmethod
    def under(cls, data_dir: Path) -> DevelopmentIdentity:
        base = data_dir / IDENTITY_DIR
        return cls(
            base / "identity-key.pem",
            base / "identity-key.pub.pem",
            base / "users.json",
            base / "password",
            base / "session-secret",
        )

    def ensure(self) -> str:
        """Make the key pair, the users and their password on first use; the password either way."""
        self.key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.key_file.exists():
            key = ec.generate_private_key(ec.SECP256R1())
            _write_private(
                self.key_file,
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ),
            )
            self.public_key_file.write_bytes(
                key.public_key().public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            )
        if not self.password_file.exists() or not self.users_file.exists():
            password = secrets.token_urlsafe(12)
            users = [{**user, "password": hash_password(password)} for user in DEMO_USERS]
            _write_private(self.users_file, json.dumps({"users": users}, indent=2).encode())
            _write_private(self.password_file, password.encode())
        return self.password_file.read_text().strip()

    def session_secret(self) -> str:
        """The console's cookie-signing secret, made on first use: sessions survive a restart."""
        self.session_secret_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.session_secret_file.exists():
            _write_private(self.session_secret_file, secrets.token_urlsafe(32).encode())
        return self.session_secret_file.read_text().strip()

    def service_env(self) -> Mapping[str, str]:
        """What the services need to trust the console's tokens."""
        return {
            "CRM_AUTH_JWT_PUBLIC_KEY_FILE": str(self.public_key_file),
            "CRM_AUTH_JWT_ISSUER": ISSUER,
            "CRM_AUTH_JWT_AUDIENCE": AUDIENCE,
        }

    def console_env(self, *, sign_in: bool) -> Mapping[str, str]:
        """The console's session secret, and with `sign_in` the key and users of password sign-in."""
        session = {"CRM_CONSOLE_SESSION_SECRET": self.session_secret()}
        if not sign_in:
            return session
        return {
            **session,
            "CRM_CONSOLE_IDENTITY_KEY_FILE": str(self.key_file),
            "CRM_CONSOLE_USERS_FILE": str(self.users_file),
            "CRM_CONSOLE_TOKEN_ISSUER": ISSUER,
            "CRM_CONSOLE_TOKEN_AUDIENCE": AUDIENCE,
        }


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
