"""Match keys: how a service finds that a new record is a person the customer service knows, without holding
their email or phone.

The customer service publishes, for each customer, the keyed hashes of their normalised email and phone
(`crm.customer.match_keys_changed.v1` on crm.customer.events), and an empty set once their personal data is
erased. Sales computes the same keys for a new lead and looks them up. A key is
`mk1:<base64url(HMAC-SHA256(secret, "<kind>:<normalised value>"))>` under the platform's match-key secret
(CRM_MATCH_KEY_SECRET, the same for every service that matches): without the secret a key cannot be tested
against guessed phone numbers, and nobody reads an address out of one. A service without the secret neither
publishes nor checks keys.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MATCH_KEY_PATTERN = r"^mk1:[A-Za-z0-9_-]{43}$"
MatchKey = Annotated[
    str,
    Field(
        pattern=MATCH_KEY_PATTERN,
        description="A keyed hash of a normalised email or phone (HMAC-SHA256 under the platform's match-key "
        "secret): equal keys mean the same address or number; the value cannot be read back.",
        examples=["mk1:3q2-7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"],
    ),
]
MatchKind = Literal["email", "phone"]
MAX_MATCH_KEYS = 4

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PHONE_DIGITS = (6, 15)
MIN_SECRET_BYTES = 16


def normalise_email(raw: str | None) -> str | None:
    """The email as duplicates are found by: trimmed and lower-case; None for none. Raises ValueError (with no
    part of the address in its message: personal data) for one that is not an address."""
    if raw is None or not raw.strip():
        return None
    email = raw.strip().lower()
    if not _EMAIL.match(email) or len(email) > 254:
        raise ValueError("email is not a valid address")
    return email


def normalise_phone(raw: str | None) -> str | None:
    """The phone as duplicates are found by: its digits, with a leading + when it is international (written
    with + or 00); None for none. Raises ValueError (with no digit of it in the message) otherwise."""
    if raw is None or not raw.strip():
        return None
    text = raw.strip()
    if re.search(r"[^0-9+()./\s-]", text) or "+" in text[1:]:
        raise ValueError("phone may hold only digits, spaces, ()-./ and a leading +")
    digits = re.sub(r"\D", "", text)
    international = text.startswith("+") or digits.startswith("00")
    if digits.startswith("00"):
        digits = digits[2:]
    low, high = PHONE_DIGITS
    if not low <= len(digits) <= high:
        raise ValueError(f"phone must have {low} to {high} digits")
    return f"+{digits}" if international else digits


def match_key(secret: bytes, kind: MatchKind, normalised: str) -> str:
    """The match key of an already normalised email or phone."""
    digest = hmac.new(secret, f"{kind}:{normalised}".encode(), hashlib.sha256).digest()
    return "mk1:" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def match_keys(secret: bytes, *, email: str | None, phone: str | None) -> list[str]:
    """The keys of a person's email and phone as given (normalised here), sorted; a value that does not
    normalise gives no key (it cannot equal a valid one)."""
    keys: set[str] = set()
    for kind, raw, normalise in (("email", email, normalise_email), ("phone", phone, normalise_phone)):
        try:
            value = normalise(raw)
        except ValueError:
            continue
        if value is not None:
            keys.add(match_key(secret, kind, value))  # type: ignore[arg-type]
    return sorted(keys)


def keys_of(secret: bytes, pairs: Iterable[tuple[MatchKind, str | None]]) -> list[str]:
    """The keys of values normalised already (None skipped), in order."""
    return [match_key(secret, kind, value) for kind, value in pairs if value is not None]


class MatchingSettings(BaseSettings):
    """CRM_MATCH_KEY_SECRET: the platform's match-key secret (at least 16 bytes; the same for the customer
    service and sales). Unset, the customer service publishes no match keys and sales checks new leads
    against leads only. `crm run` makes one in var/match-key."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    match_key_secret: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("CRM_MATCH_KEY_SECRET"),
        description="The secret of the match keys (keyed hashes of customers' emails and phones); the same for "
        "the customer service and sales.",
    )

    @field_validator("match_key_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            return None  # set but empty: unset
        if value is not None and len(value.get_secret_value().encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"CRM_MATCH_KEY_SECRET must be at least {MIN_SECRET_BYTES} characters")
        return value

    @property
    def match_secret(self) -> bytes | None:
        return self.match_key_secret.get_secret_value().encode() if self.match_key_secret else None
