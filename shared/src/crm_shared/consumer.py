"""Consumers that never crash and never lose a record.

A broker-level middleware wraps every subscriber:
- a duplicate (AlreadyApplied) is acknowledged and logged;
- a record that does not parse or validate, a domain rejection, a Kafka key other than the subject, or
  a transient failure that outlived its retries goes to `crm.deadletter` with a readable reason, the
  topic, partition and offset, and is acknowledged so the partition moves on;
- the letter is first parked in the service's own database (the letter, the whole original, and an
  outbox record the relay publishes), so a broker that refuses or is down never stalls the partition;
  the letter is bounded in size and masks personal data, whatever the record held;
- only when the database cannot park it and the broker cannot take it is the record left
  unacknowledged, after a pause, so it comes back instead of being lost (and without a hot loop).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from faststream import AckPolicy, BaseMiddleware
from faststream.kafka import KafkaBroker
from faststream.message import StreamMessage
from pydantic import ValidationError

from crm_shared.events import PERSONAL_FIELDS, DeadLetter, utc_now
from crm_shared.logging import get_logger
from crm_shared.store import DEADLETTERS, AlreadyApplied, Store, TransientFailure, UnitOfWork, insert_or_get
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
    except (ValueError, RecursionError):
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
        except (ValueError, RecursionError) as not_json:
            return f"invalid event: the record is not JSON ({not_json})"
        return f"invalid event: {describe_validation_error(exc)}"
    if isinstance(exc, Rejected):
        return f"rejected: {exc}"
    if isinstance(exc, TransientFailure):
        return f"transient failure, retries exhausted: {exc}"
    return f"unexpected error: {type(exc).__name__}: {str(exc)[:500]}"


def envelope_hints(body: bytes) -> dict[str, str]:
    """The ids worth binding to the logs, when the body is JSON that far."""
    try:
        envelope = json.loads(body)
    except (ValueError, RecursionError):
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


MAX_TEXT_CHARS = 16 * 1024
MAX_BASE64_ORIGINAL_BYTES = 64 * 1024
MAX_KEPT_ORIGINAL_BYTES = 15 * 1024 * 1024  # under MongoDB's 16 MiB document limit
MAX_REASON_CHARS = 2000
MASK = "[redacted]"


def mask_personal_data(value: Any) -> tuple[Any, bool]:
    """The JSON value with every name, email and phone masked (at any depth), and whether any was."""
    if isinstance(value, dict):
        masked_any = False
        out: dict[str, Any] = {}
        for k, v in value.items():
            if k in PERSONAL_FIELDS and v is not None:
                out[k], masked_any = MASK, True
            else:
                out[k], masked = mask_personal_data(v)
                masked_any = masked_any or masked
        return out, masked_any
    if isinstance(value, list):
        items = [mask_personal_data(v) for v in value]
        return [v for v, _ in items], any(m for _, m in items)
    return value, False


def build_dead_letter(msg: StreamMessage[Any], reason: str, *, service: str, consumer_group: str | None) -> DeadLetter:
    """The letter for a rejected record: bounded in size, whatever the record's, and without personal data."""
    raw = msg.raw_message
    value: bytes = raw.value or b""
    key: bytes | None = raw.key
    try:
        masked, redacted = mask_personal_data(json.loads(value))
        text = json.dumps(masked, ensure_ascii=False) if redacted else value.decode()
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested past what can be walked
        text, redacted = None, False
    truncated = text is not None and len(text) > MAX_TEXT_CHARS
    return DeadLetter(
        letter_id=f"{raw.topic}:{raw.partition}:{raw.offset}:{consumer_group or service}",
        reason=reason if len(reason) <= MAX_REASON_CHARS else reason[: MAX_REASON_CHARS - 1] + "…",
        service=service,
        consumer_group=consumer_group,
        source_topic=raw.topic,
        partition=raw.partition,
        offset=raw.offset,
        key=key.decode(errors="replace") if key is not None else None,
        event_id=envelope_hints(value).get("event_id"),
        failed_at=utc_now(),
        original_size=len(value),
        original_sha256=hashlib.sha256(value).hexdigest(),
        original_text=text[:MAX_TEXT_CHARS] if text is not None else None,
        original_redacted=redacted,
        original_truncated=truncated,
        original_value_base64=(
            base64.b64encode(value).decode()
            if text is not None and not redacted and len(value) <= MAX_BASE64_ORIGINAL_BYTES
            else None
        ),
    )


def key_mismatch(key: bytes | None, hints: dict[str, str]) -> str | None:
    """Why the record's Kafka key breaks the rule key = customer id (= the envelope's subject), if it does;
    `hints` are the record's `envelope_hints`."""
    subject = hints.get("customer_id")
    if subject is None:
        return None  # not an envelope that far: validation says what is wrong
    if key is None:
        return f"the record has no Kafka key; it must be the subject {subject!r} (the customer id)"
    if key != subject.encode():
        shown = key.decode(errors="replace")[:130]
        return f"the Kafka key {shown!r} differs from the subject {subject!r}; one customer's events must share the key"
    return None


async def park_dead_letter(store: Store, letter: DeadLetter, original: bytes) -> DeadLetter:
    """Keep the letter and the whole original in the service's database, and the letter in the outbox.

    Once this committed the record is safe whatever the broker does: the relay publishes the letter
    with retries. A record parked before (a redelivery) is not parked again.
    """
    kept = letter.model_copy(update={"original_kept_in": f"{store.db.name}.{DEADLETTERS}"})

    async def work(uow: UnitOfWork) -> DeadLetter:
        document = {
            "_id": kept.letter_id,
            **kept.model_dump(mode="python"),
            "original": original if len(original) <= MAX_KEPT_ORIGINAL_BYTES else None,
        }
        if document["original"] is None:
            document["original_kept_in"] = None
        inserted, _ = await insert_or_get(uow, DEADLETTERS, document)
        if not inserted:
            return kept
        letter_now = DeadLetter.model_validate({k: v for k, v in document.items() if k not in ("_id", "original")})
        uow.emit_record(
            Topic.DEADLETTER,
            key=letter.key,
            value=letter_now.model_dump_json().encode(),
            record_id=f"deadletter:{kept.letter_id}",
            content_type="application/json",
        )
        return letter_now

    return await store.transaction(work)


def dead_letter_middleware(
    broker_ref: Callable[[], KafkaBroker],
    store_ref: Callable[[], Store | None] = lambda: None,
    *,
    service: str,
    consumer_group: str,
) -> type[BaseMiddleware]:
    """The middleware class for one service's broker (faststream builds one instance per message)."""

    async def dead_letter(msg: StreamMessage[Any], reason: str) -> None:
        letter = build_dead_letter(msg, reason, service=service, consumer_group=consumer_group)
        original: bytes = msg.raw_message.value or b""
        store = store_ref()
        if store is not None:
            try:
                parked = await park_dead_letter(store, letter, original)
            except Exception:
                log.exception("deadletter_park_failed", reason=reason, letter_id=letter.letter_id)
            else:
                log.warning("event_dead_lettered", reason=reason, partition=parked.partition, offset=parked.offset)
                return
        try:
            await broker_ref().publish(
                letter.model_dump_json().encode(),
                Topic.DEADLETTER,
                key=msg.raw_message.key,
                headers={"content-type": "application/json"},
            )
        except Exception:
            # Neither kept nor published: leave it unacknowledged so it comes back, after a pause.
            log.exception("deadletter_publish_failed", reason=reason)
            await asyncio.sleep(DEADLETTER_PUBLISH_PAUSE_SECONDS)
            raise
        log.warning("event_dead_lettered", reason=reason, partition=letter.partition, offset=letter.offset)

    class DeadLetterMiddleware(BaseMiddleware):
        async def consume_scope(
            self, call_next: Callable[[StreamMessage[Any]], Awaitable[Any]], msg: StreamMessage[Any]
        ) -> Any:
            raw_value: bytes = msg.raw_message.value or b""
            hints = envelope_hints(raw_value)
            with structlog.contextvars.bound_contextvars(**hints, topic=msg.raw_message.topic):
                mismatch = key_mismatch(msg.raw_message.key, hints)
                if mismatch is not None:
                    await dead_letter(msg, f"rejected: {mismatch}")
                    return None
                try:
                    return await call_next(msg)
                except AlreadyApplied:
                    log.info("duplicate_event_ignored")
                    return None
                except Exception as exc:
                    reason = describe_failure(exc, raw_value)
                    if not isinstance(exc, ValidationError | Rejected):
                        log.exception("event_failed", reason=reason)
                    await dead_letter(msg, reason)
                    return None

    return DeadLetterMiddleware
