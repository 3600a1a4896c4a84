"""Every consumer reads a record's value as JSON, as the outbox relay and channel systems publish it."""

from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from crm_shared.batching import parse_record
from crm_shared.consumer import describe_failure
from crm_shared.events import AnyEvent

BODY = (
    b'{"specversion":"1.0","id":"e-1","source":"/channels/webshop","type":"crm.order.placed.v1",'
    b'"time":"2026-01-01T00:00:00Z","subject":"C-1",'
    b'"data":{"customer_id":"C-1","order_id":"O-1","currency":"EUR","total":"10.00"}}'
)
ANY_EVENT: TypeAdapter[Any] = TypeAdapter(AnyEvent)


def test_a_cloudevents_json_record_is_parsed_into_its_event() -> None:
    event = parse_record(ANY_EVENT, BODY)
    assert (event.id, event.type, event.data.order_id) == ("e-1", "crm.order.placed.v1", "O-1")


def test_a_record_that_is_not_json_is_refused_as_such() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_record(ANY_EVENT, b"not json")
    assert describe_failure(caught.value, b"not json").startswith("invalid event: the record is not JSON")


def test_json_that_is_no_event_names_what_is_missing() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_record(ANY_EVENT, b'{"not": "an event"}')
    assert describe_failure(caught.value, b'{"not": "an event"}').startswith("invalid event: ")
