"""Personal fields sealed with a per-customer key: what opens, and what does not."""

from __future__ import annotations

import base64

import pytest
from pydantic import ValidationError

from crm_shared.events import CustomerRegistered
from crm_shared.personal import (
    SEALED_MAX_LENGTH,
    MalformedSealedValue,
    NotAuthentic,
    WrongKey,
    is_sealed,
    key_id_of,
    new_personal_key,
    seal,
    unseal,
)

KEY_ID, KEY = new_personal_key()


def sealed(value: str, customer_id: str = "C-A", field: str = "email", key: bytes = KEY, key_id: str = KEY_ID) -> str:
    return seal(value, key_id=key_id, key=key, customer_id=customer_id, field=field)


@pytest.mark.parametrize(
    ("field", "value"),
    [("name", "Ada Lovelace"), ("name", "Zoë Ōkami 李"), ("email", "ada@example.com"), ("phone", "+49 30 1")],
)
def test_a_sealed_value_opens_with_its_key_customer_and_field(field: str, value: str) -> None:
    token = sealed(value, field=field)
    assert is_sealed(token) and token.startswith(f"sealed:v1:{KEY_ID}:")
    assert value not in token
    assert key_id_of(token) == KEY_ID
    assert unseal(token, key=KEY, customer_id="C-A", field=field) == value
    assert unseal(token, key=KEY, customer_id="C-A", field=field, key_id=KEY_ID) == value


def test_the_same_value_sealed_twice_differs_so_equal_values_cannot_be_matched() -> None:
    assert sealed("ada@example.com") != sealed("ada@example.com")


def test_a_value_sealed_for_one_customer_does_not_open_as_anothers() -> None:
    token = sealed("ada@example.com", customer_id="C-A")
    with pytest.raises(NotAuthentic, match="email of customer C-B"):
        unseal(token, key=KEY, customer_id="C-B", field="email")


def test_a_value_sealed_as_one_field_does_not_open_as_another() -> None:
    token = sealed("+49301234", field="email")
    with pytest.raises(NotAuthentic, match="phone of customer C-A"):
        unseal(token, key=KEY, customer_id="C-A", field="phone")


def test_a_wrong_key_is_refused() -> None:
    other_id, other = new_personal_key()
    assert (other_id, other) != (KEY_ID, KEY) and len(other) == 32
    token = sealed("ada@example.com")
    with pytest.raises(NotAuthentic):
        unseal(token, key=other, customer_id="C-A", field="email")
    with pytest.raises(WrongKey, match=f"sealed with key {KEY_ID}, not with key {other_id}"):
        unseal(token, key=other, customer_id="C-A", field="email", key_id=other_id)
    with pytest.raises(WrongKey, match="32 bytes"):
        unseal(token, key=KEY[:16], customer_id="C-A", field="email")


def _reencoded(token: str, change: bytes) -> str:
    prefix, data = token.rsplit(":", 1)
    raw = bytearray(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
    for i, b in enumerate(change):
        raw[-1 - i] ^= b
    return f"{prefix}:{base64.urlsafe_b64encode(bytes(raw)).rstrip(b'=').decode()}"


def test_a_tampered_value_is_refused() -> None:
    token = sealed("ada@example.com")
    with pytest.raises(NotAuthentic):
        unseal(_reencoded(token, b"\x01"), key=KEY, customer_id="C-A", field="email")
    # Another key id on the same data names a key the value was not sealed with.
    moved = token.replace(KEY_ID, "another-key", 1)
    assert key_id_of(moved) == "another-key"
    with pytest.raises(WrongKey):
        unseal(moved, key=KEY, customer_id="C-A", field="email", key_id=KEY_ID)
    with pytest.raises(MalformedSealedValue, match="shorter"):
        unseal(token.rsplit(":", 1)[0] + ":AAAA", key=KEY, customer_id="C-A", field="email")


@pytest.mark.parametrize("text", ["ada@example.com", "sealed:v2:k:abc", "sealed:v1::abc", "sealed:v1:k:a b", ""])
def test_text_that_is_not_a_sealed_value_is_told_apart(text: str) -> None:
    assert not is_sealed(text)
    with pytest.raises(MalformedSealedValue):
        key_id_of(text)
    with pytest.raises(MalformedSealedValue):
        unseal(text, key=KEY, customer_id="C-A", field="email")


def test_a_registration_carries_clear_or_sealed_fields_and_keeps_the_clear_rules() -> None:
    clear = CustomerRegistered(customer_id="C-A", name="Ada", email="ada@example.com", phone="+49 30 1")
    assert clear.email == "ada@example.com"
    tokens = {f: sealed(str(getattr(clear, f)), field=f) for f in ("name", "email", "phone")}
    sealed_one = CustomerRegistered.model_validate({"customer_id": "C-A", **tokens})
    assert sealed_one.model_dump(include={"name", "email", "phone"}) == tokens
    with pytest.raises(ValidationError, match=r"email\n.*should match pattern '\^\[\^@"):
        CustomerRegistered(customer_id="C-A", name="Ada", email="not an address")
    with pytest.raises(ValidationError, match=r"name\n.*should match pattern '\^sealed:v1:"):
        CustomerRegistered(customer_id="C-A", name="sealed:v1:k:not base64!")
    with pytest.raises(ValidationError, match="bidirectional"):
        CustomerRegistered(customer_id="C-A", name="Ada\u202e")


def test_the_longest_clear_email_sealed_still_fits_a_sealed_value() -> None:
    longest = "\U0001f600" * 300 + "@" + "\U0001f600" * 19  # 4 bytes each in UTF-8
    assert len(longest) == 320
    token = seal(longest, key_id="k" * 64, key=KEY, customer_id="C-A", field="email")
    assert len(token) <= SEALED_MAX_LENGTH
    assert CustomerRegistered(customer_id="C-A", name="Ada", email=token).email == token
