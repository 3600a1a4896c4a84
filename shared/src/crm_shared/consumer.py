"""Dead letters: why a record was refused, in a letter that is small and holds no personal data.

The batched consumers (`crm_shared.batching`) set a record aside when it does not parse or validate,
when its Kafka key is not its subject, or when the domain rejects it. Its letter goes to
`crm.deadletter` with a readable reason, the topic, partition and offset; it is first parked in the
service's own database (the letter, the whole original, and an outbox record the relay publishes),
so a broker that refuses or is down never stalls the partition. The letter is bounded in size and
masks personal data, whatever the record held.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any, Protocol

from pydantic import ValidationError

from crm_shared.events import PERSONAL_FIELDS, DeadLetter, utc_now
from crm_shared.store import DEADLETTERS, Rejected, Store, TransientFailure, UnitOfWork
from crm_shared.topics import Topic

__all__ = ["Rejected", "build_dead_letter", "describe_failure", "envelope_hints", "key_mismatch", "park_dead_letters"]


class Record(Protocol):
    """A Kafka record as the consumer read it (aiokafka's ConsumerRecord)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


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


def build_dead_letter(raw: Record, reason: str, *, service: str, consumer_group: str | None) -> DeadLetter:
    """The letter for a rejected record: bounded in size, whatever the record's, and without personal data."""
    value: bytes = raw.value or b""
    key: bytes | None = raw.key
    try:
        masked, redacted = mask_personal_data(json.loads(value))
        text = json.dumps(masked, ensure_ascii=False) if redacted else value.decode()
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested past what can be walked
        text, redacted = None, False
    truncated = text is not None and len(text) > MAX_TEXT_CHARS
    return DeadLetter(
        # The value's digest too: a broker that started its log again (the embedded one, after a restart) hands
        # the same offset to another record, whose letter must not pass for the first one's.
        letter_id=f"{raw.topic}:{raw.partition}:{raw.offset}:{consumer_group or service}:"
        f"{hashlib.sha256(value).hexdigest()[:16]}",
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


async def park_dead_letters(store: Store, letters: list[tuple[DeadLetter, bytes]]) -> list[DeadLetter]:
    """Keep the letters and the whole originals in the service's database, and the letters in the outbox.

    One transaction for them all. Once it committed the records are safe whatever the broker does: the
    relay publishes the letters with retries. A record parked before (a redelivery) is not parked again.
    """
    kept_in = f"{store.db.name}.{DEADLETTERS}"

    async def work(uow: UnitOfWork) -> list[DeadLetter]:
        ids = [letter.letter_id for letter, _ in letters]
        before = {d["_id"] for d in await uow.find_ids(DEADLETTERS, ids, {"_id": 1})}
        documents: dict[str, dict[str, Any]] = {}
        for letter, original in letters:
            if letter.letter_id in before or letter.letter_id in documents:
                continue
            kept = len(original) <= MAX_KEPT_ORIGINAL_BYTES
            documents[letter.letter_id] = {
                "_id": letter.letter_id,
                **letter.model_dump(mode="python"),
                "original_kept_in": kept_in if kept else None,
                "original": original if kept else None,
            }
        if not documents:
            return []
        await uow.db[DEADLETTERS].insert_many(list(documents.values()), session=uow.session)
        parked = []
        for document in documents.values():
            letter_now = DeadLetter.model_validate({k: v for k, v in document.items() if k not in ("_id", "original")})
            uow.emit_record(
                Topic.DEADLETTER,
                key=letter_now.key,
                value=letter_now.model_dump_json().encode(),
                record_id=f"deadletter:{letter_now.letter_id}",
                content_type="application/json",
            )
            parked.append(letter_now)
        return parked

    return await store.transaction(work)
