"""Dead-letter records carry everything needed to inspect and replay, with a readable reason."""

import base64
import hashlib
import json
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from crm_shared.consumer import (
    MAX_BASE64_ORIGINAL_BYTES,
    MAX_TEXT_CHARS,
    Rejected,
    build_dead_letter,
    describe_failure,
    envelope_hints,
    key_mismatch,
)
from crm_shared.events import parse_event
from crm_shared.store import TransientFailure


def message(value: bytes, key: bytes | None = b"C-1") -> Any:
    raw = SimpleNamespace(value=value, key=key, topic="crm.ingest.orders", partition=2, offset=41)
    return raw


def test_a_record_that_is_not_json_says_so() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_event(b"\xff\xfe not json")
    assert describe_failure(caught.value, b"\xff\xfe not json").startswith("invalid event: the record is not JSON")


def test_validation_failures_name_the_field() -> None:
    body = b'{"specversion":"1.0","id":"e","source":"s","type":"crm.order.placed.v1","time":"2026-01-01T00:00:00Z",'
    body += b'"subject":"C-1","data":{"customer_id":"C-1","order_id":"O","currency":"EURO","total":"1"}}'
    with pytest.raises(ValidationError) as caught:
        parse_event(body)
    reason = describe_failure(caught.value, body)
    assert "data.currency" in reason and "should match pattern" in reason


def test_rejections_and_exhausted_retries_are_labelled() -> None:
    assert describe_failure(Rejected("order O-1 belongs to C-9")) == "rejected: order O-1 belongs to C-9"
    assert describe_failure(TransientFailure("db down")).startswith("transient failure, retries exhausted")
    assert describe_failure(KeyError("x")).startswith("unexpected error: KeyError")


def test_the_dead_letter_keeps_the_original_bytes_and_position() -> None:
    original = b'{"id": "evt-7", "subject": "C-1"}'
    letter = build_dead_letter(message(original), "rejected: nope", service="sales", consumer_group="crm-sales")
    assert base64.b64decode(letter.original_value_base64) == original
    assert letter.original_text == original.decode()
    assert (letter.source_topic, letter.partition, letter.offset) == ("crm.ingest.orders", 2, 41)
    assert letter.key == "C-1" and letter.event_id == "evt-7"


def test_binary_garbage_without_a_key_is_described_but_not_carried() -> None:
    # Not JSON: nothing in it can be found to mask, so the letter carries its size and digest only.
    letter = build_dead_letter(message(b"\x00\xff", key=None), "invalid", service="sales", consumer_group=None)
    assert letter.original_text is None and letter.key is None and letter.original_value_base64 is None
    assert letter.original_size == 2 and letter.original_sha256 == hashlib.sha256(b"\x00\xff").hexdigest()


@pytest.mark.parametrize("size", [1024, 900 * 1024, 5 * 1024 * 1024])
def test_a_dead_letter_stays_small_whatever_the_size_of_the_record(size: int) -> None:
    body = json.dumps({"id": "evt-big", "subject": "C-1", "data": {"summary": "x" * size}}).encode()
    letter = build_dead_letter(message(body), "invalid event: " + "y" * 10_000, service="sales", consumer_group="g")
    encoded = letter.model_dump_json().encode()
    assert len(encoded) < 120 * 1024, len(encoded)
    assert letter.original_size == len(body)
    assert letter.original_truncated is (size > MAX_TEXT_CHARS)
    assert (letter.original_value_base64 is None) is (len(body) > MAX_BASE64_ORIGINAL_BYTES)
    assert len(letter.reason) <= 2000


def test_personal_data_is_masked_at_any_depth_and_the_raw_bytes_withheld() -> None:
    registration = {
        "id": "evt-reg",
        "subject": "C-1",
        "type": "crm.customer.registered.v1",
        "data": {"customer_id": "C-1", "name": "Ada Lovelace", "email": "ada@example.com", "phone": "+44 1"},
        "extra": [{"contact": {"email": "second@example.com"}}],
    }
    letter = build_dead_letter(message(json.dumps(registration).encode()), "x", service="customer", consumer_group="g")
    dumped = letter.model_dump_json()
    for secret in ("Ada Lovelace", "ada@example.com", "+44 1", "second@example.com"):
        assert secret not in dumped
    assert letter.original_redacted and letter.original_value_base64 is None
    assert json.loads(letter.original_text or "")["data"]["customer_id"] == "C-1"


def test_deeply_nested_json_does_not_break_the_letter() -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    letter = build_dead_letter(message(body), "invalid", service="sales", consumer_group="g")
    assert letter.original_text is None and letter.original_size == 200_000


@pytest.mark.parametrize(
    ("key", "subject", "expected"),
    [
        (b"C-1", "C-1", None),
        (b"C-2", "C-1", "differs from the subject 'C-1'"),
        (None, "C-1", "has no Kafka key"),
    ],
)
def test_the_kafka_key_must_be_the_subject(key: bytes | None, subject: str, expected: str | None) -> None:
    reason = key_mismatch(key, envelope_hints(json.dumps({"subject": subject}).encode()))
    assert reason is None if expected is None else expected in (reason or "")


def test_a_record_that_is_no_envelope_is_left_to_validation() -> None:
    assert key_mismatch(b"C-9", envelope_hints(b"{not json")) is None


def test_a_letter_is_told_apart_from_another_records_at_the_same_offset() -> None:
    """A broker that started its log again (the embedded one restarted) gives an offset out twice."""
    first = build_dead_letter(message(b"{not json"), "r", service="sales", consumer_group="crm-sales")
    again = build_dead_letter(message(b"{not json"), "r", service="sales", consumer_group="crm-sales")
    other = build_dead_letter(message(b"{also not json"), "r", service="sales", consumer_group="crm-sales")
    assert first.letter_id == again.letter_id  # a redelivery of the record is parked once
    assert first.letter_id != other.letter_id
    assert first.letter_id.startswith("crm.ingest.orders:2:41:crm-sales:")
