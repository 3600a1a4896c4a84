"""Consumers that never crash and never lose a record.

A broker-level middleware wraps every subscriber:
- a duplicate (AlreadyApplied) is acknowledged and logged;
- a record that does not parse or validate, a domain rejection, or a transient failure that outlived
  its retries goes to `crm.deadletter` with the original bytes, topic, partition, offset and a readable
  reason, and is acknowledged so the partition moves on;
- only when the dead-letter publish itself fails is the record left unacknowledged, after a pause,
  so it comes back instead of being lost (and without a hot loop).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from faststream import AckPolicy, BaseMiddleware
from faststream.kafka import KafkaBroker
from faststream.message import StreamMessage
from pydantic import ValidationError

from crm_shared.events import DeadLetter, utc_now
from crm_shared.logging import get_logger
from crm_shared.store import AlreadyApplied, TransientFailure
from crm_shared.topics import Topic

log = get_logger(__name__)

DEADLETTER_PUBLISH_PAUSE_SECONDS = 1.0
SUBSCRIBER_DEFAULTS: dict[str, Any] = {
    # A new consumer group starts from the beginning: nothing published before it joined is skipped.
    "auto_offset_reset": "earliest",
    # Handlers never raise except when even the dead-letter publish failed; then seek back and retry.
    "ack_policy": AckPolicy.NACK_ON_ERROR,
}


CLOUDEVENTS_JSON = "application/cloudevents+json"


async def decode_cloudevent(msg: StreamMessage[Any], default: Callable[[StreamMessage[Any]], Awaitable[Any]]) -> Any:
    """JSON-decode structured-mode CloudEvents as well as plain JSON.

    The outbox relay labels records `application/cloudevents+json`, which faststream leaves as bytes
    (it decodes only `application/json` and unlabelled bodies), and an event model cannot validate
    bytes. A body that is not JSON stays bytes, so validation fails and it is dead-lettered as such.
    """
    if not (msg.content_type or "").startswith(CLOUDEVENTS_JSON):
        return await default(msg)
    try:
        return json.loads(msg.body)
    except (ValueError, UnicodeDecodeError):
        return msg.body


class Rejected(Exception):
    """The record is well-formed but the domain refuses it (e.g. an order id reused with other content)."""


def describe_validation_error(exc: ValidationError, limit: int = 5) -> str:
    parts = []
    for error in exc.errors()[:limit]:
        location = ".".join(str(p) for p in error["loc"] if p not in ("body",)) or "record"
        parts.append(f"{location}: {error['msg']}")
    more = len(exc.errors()) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def describe_failure(exc: BaseException, body: bytes = b"") -> str:
    if isinstance(exc, ValidationError):
        try:
            json.loads(body)
        except (ValueError, UnicodeDecodeError) as not_json:
            return f"invalid event: the record is not JSON ({not_json})"
        return f"invalid event: {describe_validation_error(exc)}"
    if isinstance(exc, Rejected):
        return f"rejected: {exc}"
    if isinstance(exc, TransientFailure):
        return f"transient failure, retries exhausted: {exc}"
    return f"unexpected error: {type(exc).__name__}: {str(exc)[:500]}"


def _envelope_hints(body: bytes) -> dict[str, str]:
    """The ids worth binding to the logs, when the body is JSON that far."""
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    if not isinstance(envelope, dict):
        return {}
    hints = {
        "event_id": envelope.get("id"),
        "correlation_id": envelope.get("correlationid") or envelope.get("id"),
        "customer_id": envelope.get("subject"),
        "event_type": envelope.get("type"),
    }
    return {k: v for k, v in hints.items() if isinstance(v, str)}


def build_dead_letter(msg: StreamMessage[Any], reason: str, *, service: str, consumer_group: str | None) -> DeadLetter:
    raw = msg.raw_message
    value: bytes = raw.value or b""
    key: bytes | None = raw.key
    try:
        text: str | None = value.decode()
    except UnicodeDecodeError:
        text = None
    return DeadLetter(
        reason=reason,
        service=service,
        consumer_group=consumer_group,
        source_topic=raw.topic,
        partition=raw.partition,
        offset=raw.offset,
        key=key.decode(errors="replace") if key is not None else None,
        original_value_base64=base64.b64encode(value).decode(),
        original_text=text,
        event_id=_envelope_hints(value).get("event_id"),
        failed_at=utc_now(),
    )


def dead_letter_middleware(
    broker_ref: Callable[[], KafkaBroker], *, service: str, consumer_group: str
) -> type[BaseMiddleware]:
    """The middleware class for one service's broker (faststream builds one instance per message)."""

    class DeadLetterMiddleware(BaseMiddleware):
        async def consume_scope(
            self, call_next: Callable[[StreamMessage[Any]], Awaitable[Any]], msg: StreamMessage[Any]
        ) -> Any:
            raw_value: bytes = msg.raw_message.value or b""
            hints = _envelope_hints(raw_value)
            with structlog.contextvars.bound_contextvars(**hints, topic=msg.raw_message.topic):
                try:
                    return await call_next(msg)
                except AlreadyApplied:
                    log.info("duplicate_event_ignored")
                    return None
                except Exception as exc:
                    reason = describe_failure(exc, raw_value)
                    if not isinstance(exc, ValidationError | Rejected):
                        log.exception("event_failed", reason=reason)
                    letter = build_dead_letter(msg, reason, service=service, consumer_group=consumer_group)
                    try:
                        await broker_ref().publish(
                            letter.model_dump_json().encode(),
                            Topic.DEADLETTER,
                            key=msg.raw_message.key,
                            headers={"content-type": "application/json"},
                        )
                    except Exception:
                        log.exception("deadletter_publish_failed", reason=reason)
                        await asyncio.sleep(DEADLETTER_PUBLISH_PAUSE_SECONDS)
                        raise
                    log.warning(
                        "event_dead_lettered",
                        reason=reason,
                        partition=letter.partition,
                        offset=letter.offset,
                    )
                    return None

    return DeadLetterMiddleware
