"""Match keys: the same person written differently gives the same key, another secret or person another key,
and a key is keyed: not a hash anyone could compute from guessed addresses."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from crm_shared.events import CustomerMatchKeysChanged
from crm_shared.matching import MATCH_KEY_PATTERN, MatchingSettings, keys_of, match_key, match_keys

SECRET = b"a-secret-of-the-tests-0123456789"


def test_the_same_email_and_phone_written_differently_give_the_same_keys() -> None:
    one = match_keys(SECRET, email="Ada@Example.com", phone="+44 20 7946 0018")
    other = match_keys(SECRET, email="  ada@example.COM ", phone="0044 (20) 7946-0018")
    assert one == other and len(one) == 2
    assert all(re.match(MATCH_KEY_PATTERN, key) for key in one)
    assert match_keys(SECRET, email="ada@example.com", phone=None) == [match_key(SECRET, "email", "ada@example.com")]


def test_another_secret_another_person_or_another_kind_gives_another_key() -> None:
    ada = match_key(SECRET, "email", "ada@example.com")
    assert ada != match_key(b"another-secret-of-the-tests-9876", "email", "ada@example.com")
    assert ada != match_key(SECRET, "email", "grace@example.com")
    # A phone is never an email's key, even for the same text.
    assert match_key(SECRET, "phone", "4420794600") != match_key(SECRET, "email", "4420794600")


def test_a_value_that_does_not_normalise_gives_no_key() -> None:
    assert match_keys(SECRET, email="not an address", phone="call me") == []
    assert match_keys(SECRET, email=None, phone="  ") == []
    assert keys_of(SECRET, [("email", None), ("phone", "+4420794600")]) == [match_key(SECRET, "phone", "+4420794600")]


@given(st.from_regex(r"[a-z0-9.]{1,12}@[a-z]{1,8}\.[a-z]{2,4}", fullmatch=True))
def test_a_key_is_keyed_not_a_plain_hash_of_the_address(email: str) -> None:
    [key] = match_keys(SECRET, email=email, phone=None)
    digest = key.removeprefix("mk1:")
    for plain in (email, f"email:{email}"):
        unkeyed = base64.urlsafe_b64encode(hashlib.sha256(plain.encode()).digest()).rstrip(b"=").decode()
        assert digest != unkeyed


def test_the_secret_is_optional_but_not_short(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CRM_MATCH_KEY_SECRET", raising=False)
    assert MatchingSettings().match_secret is None
    assert MatchingSettings(CRM_MATCH_KEY_SECRET="").match_secret is None
    assert MatchingSettings(CRM_MATCH_KEY_SECRET="s" * 16).match_secret == b"s" * 16
    with pytest.raises(ValidationError, match="CRM_MATCH_KEY_SECRET must be at least 16 characters"):
        MatchingSettings(CRM_MATCH_KEY_SECRET="short")


def test_an_erasure_leaves_no_keys_and_keys_have_their_form() -> None:
    with pytest.raises(ValidationError, match="an erasure leaves no match keys"):
        CustomerMatchKeysChanged(customer_id="C-1", match_keys=["mk1:" + "a" * 43], reason="erased")
    with pytest.raises(ValidationError, match="String should match pattern"):
        CustomerMatchKeysChanged(customer_id="C-1", match_keys=["ada@example.com"], reason="registered")
