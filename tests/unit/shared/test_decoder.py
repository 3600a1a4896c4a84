"""Every service's broker decodes structured-mode CloudEvents, as the outbox relay labels them, into JSON."""

from typing import Any

from faststream.message import StreamMessage, decode_message

from crm_shared.consumer import decode_cloudevent

BODY = b'{"id":"e-1","type":"crm.order.placed.v1"}'


async def default(msg: StreamMessage[Any]) -> Any:
    return decode_message(msg)


async def test_a_cloudevents_json_record_is_decoded_as_json() -> None:
    msg: StreamMessage[Any] = StreamMessage(None, BODY, content_type="application/cloudevents+json; charset=UTF-8")
    assert await decode_cloudevent(msg, default) == {"id": "e-1", "type": "crm.order.placed.v1"}


async def test_a_cloudevents_record_that_is_not_json_stays_bytes_for_validation_to_refuse() -> None:
    msg: StreamMessage[Any] = StreamMessage(None, b"not json", content_type="application/cloudevents+json")
    assert await decode_cloudevent(msg, default) == b"not json"


async def test_other_records_are_decoded_the_default_way() -> None:
    assert await decode_cloudevent(StreamMessage(None, BODY), default) == {"id": "e-1", "type": "crm.order.placed.v1"}
    text: StreamMessage[Any] = StreamMessage(None, BODY, content_type="text/plain")
    assert await decode_cloudevent(text, default) == BODY.decode()
