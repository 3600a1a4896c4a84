"""Personal fields sealed with a per-customer key, so that destroying the key erases every copy (crypto-shredding).

The customer service holds one AES-256-GCM key per customer and seals name, email and phone before they
leave it in an event. A sealed value is the string `sealed:v1:<key id>:<base64url(nonce || ciphertext)>`;
the associated data is `<customer id>:<field>`, so a value moved to another customer or field does not
open. Once the key is destroyed, the copies in old Kafka records, outboxes and dead letters stay
unreadable; a consumer that needs a field asks the customer service to unseal it.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from typing import Annotated, Any, Literal, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import Discriminator, Field, Tag, ValidationError, ValidatorFunctionWrapHandler, WrapValidator
from pydantic_core import PydanticCustomError

PREFIX = "sealed:v1:"
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
KEY_ID_PATTERN = r"[A-Za-z0-9_-]{1,64}"
SEALED_PATTERN = rf"^sealed:v1:{KEY_ID_PATTERN}:[A-Za-z0-9_-]+$"
# The longest clear field (an email: 320 characters, up to 4 bytes each in UTF-8) with nonce and tag,
# in base64url, behind the prefix and the longest key id.
SEALED_MAX_LENGTH = len(PREFIX) + 64 + 1 + -(-(NONCE_BYTES + 320 * 4 + TAG_BYTES) * 4 // 3)

_SEALED = re.compile(SEALED_PATTERN)

SealedValue = Annotated[
    str,
    Field(
        pattern=SEALED_PATTERN,
        max_length=SEALED_MAX_LENGTH,
        description="A personal field sealed by the customer service with the customer's key (AES-256-GCM): "
        "`sealed:v1:<key id>:<base64url(nonce || ciphertext)>`. Unreadable once the customer is erased; "
        "POST /v1/personal-data/unseal on the customer service opens it for a caller allowed to read it.",
        examples=["sealed:v1:Jq3mX0cVv2bV4Kx7mO1cNw:9h2kz0Xl3mYl6b1vQwJ0n4wq2d8PZ6d1Gk0vTnH3vVhKxg"],
    ),
]
"""A sealed personal field, as it travels in an event."""


def _form(value: Any) -> Literal["clear", "sealed"]:
    """Text in the sealed form is validated as a SealedValue, anything else as the clear type."""
    return "sealed" if isinstance(value, str) and value.startswith(PREFIX) else "clear"


def _refused_as_the_field(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """The refusal of the form the value has, located at the field itself (not at a union member)."""
    try:
        return handler(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise PydanticCustomError(first["type"], "{reason}", {"reason": first["msg"]}) from None


ClearT = TypeVar("ClearT")
ClearOrSealed = Annotated[
    Annotated[ClearT, Tag("clear")] | Annotated[SealedValue, Tag("sealed")],
    Discriminator(_form),
    WrapValidator(_refused_as_the_field),
]
"""A personal field of an event: its clear type (`ClearOrSealed[<clear type>]`) from a channel, a SealedValue
once the customer service sealed it; the clear type's rules apply to clear values."""


class UnsealError(ValueError):
    """A sealed value that cannot be opened."""


class MalformedSealedValue(UnsealError):
    """The text is not a sealed value of a version this code reads."""


class WrongKey(UnsealError):
    """The value was sealed with another key than the one given."""


class NotAuthentic(UnsealError):
    """The value does not decrypt with its key: tampered with, or sealed for another customer or field."""


def new_personal_key() -> tuple[str, bytes]:
    """A fresh key and its id (random, so a customer registered again after erasure gets a new one)."""
    key_id = base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()
    return key_id, AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def _associated_data(customer_id: str, field: str) -> bytes:
    return f"{customer_id}:{field}".encode()


def seal(value: str, *, key_id: str, key: bytes, customer_id: str, field: str) -> str:
    """`value` sealed for this customer's `field` with the key `key_id` names."""
    if not re.fullmatch(KEY_ID_PATTERN, key_id):
        raise ValueError(f"a key id is 1 to 64 letters, digits, '_' or '-'; got {key_id[:70]!r}")
    nonce = secrets.token_bytes(NONCE_BYTES)
    ciphertext = AESGCM(key).encrypt(nonce, value.encode(), _associated_data(customer_id, field))
    return f"{PREFIX}{key_id}:{base64.urlsafe_b64encode(nonce + ciphertext).rstrip(b'=').decode()}"


def is_sealed(value: object) -> bool:
    """Whether `value` is a sealed value (of this version's form; it may still not open)."""
    return isinstance(value, str) and _SEALED.match(value) is not None


def key_id_of(token: str) -> str:
    """The id of the key `token` was sealed with."""
    if not is_sealed(token):
        raise MalformedSealedValue("not a sealed value: expected sealed:v1:<key id>:<base64url data>")
    return token[len(PREFIX) :].split(":", 1)[0]


def unseal(token: str, *, key: bytes, customer_id: str, field: str, key_id: str | None = None) -> str:
    """The clear value of `token`, sealed for this customer's `field`; `key_id`, when given, must be the one
    the token names. Raises MalformedSealedValue, WrongKey or NotAuthentic."""
    named = key_id_of(token)
    if key_id is not None and named != key_id:
        raise WrongKey(f"the value was sealed with key {named}, not with key {key_id}")
    data = token[len(PREFIX) + len(named) + 1 :]
    try:
        raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    except (binascii.Error, ValueError) as exc:
        raise MalformedSealedValue("the sealed data is not base64url") from exc
    if len(raw) < NONCE_BYTES + TAG_BYTES:
        raise MalformedSealedValue("the sealed data is shorter than a nonce and an authentication tag")
    if len(key) != KEY_BYTES:
        raise WrongKey(f"a personal key is {KEY_BYTES} bytes, not {len(key)}")
    nonce, ciphertext = raw[:NONCE_BYTES], raw[NONCE_BYTES:]
    try:
        clear = AESGCM(key).decrypt(nonce, ciphertext, _associated_data(customer_id, field))
    except InvalidTag:
        raise NotAuthentic(
            f"the value does not decrypt as {field} of customer {customer_id} with key {named}: it was altered, "
            "sealed for another customer or field, or with another key of the same id"
        ) from None
    try:
        return clear.decode()
    except UnicodeDecodeError as exc:  # authentic, so only a sealer's bug gets here
        raise NotAuthentic("the decrypted value is not UTF-8 text") from exc
