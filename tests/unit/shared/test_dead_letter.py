"""Dead-letter records carry everything needed to inspect and replay, with a readable reason."""

import base64
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from crm_shared.consumer import Rejected, build_dead_letter, describe_failure
from crm_shared.events import parse_event
from crm_shared.store import TransientFailure


def message(value: bytes, key: bytes | None = b"C-1") -> Any:
    raw = SimpleNamespace(value=value, key=key, topic="crm.ingest.orders", partition=2, offset=41)
    return SimpleNamespace(raw_message=raw)


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


def test_binary_garbage_without_a_key_is_still_kept() -> None:
    letter = build_dead_letter(message(b"\x00\xff", key=None), "invalid", service="sales", consumer_group=None)
    assert letter.original_text is None and letter.key is None
    assert base64.b64decode(letter.original_value_base64) == b"\x00\xff"
