"""Batched consumers: each partition's records applied in one transaction, offsets committed after it.

A `BatchConsumer` owns an aiokafka consumer in its group. Each round it takes what the broker has
(up to `max_records`, waiting at most `max_wait_ms` when nothing is buffered), and applies every
partition's records at once, the partitions side by side (one batch in flight per partition, so one
customer's events, sharing a key and so a partition, stay in order):
- records are parsed and checked first; one that does not parse, or whose key is not its subject,
  is set aside for `crm.deadletter`;
- the rest go to the subscription's handler as one batch (`Store.apply_batch`: one transaction);
  duplicates change nothing, and an event the domain rejects is set aside while the rest is applied;
- a batch that fails for another reason (a bug) is applied again one event at a time, so only the
  failing events are dead-lettered;
- a database that stays unreachable through the store's retries leaves the batch unapplied: the
  partition goes back to its first record and waits, with a growing pause, never committing it;
- the letters are parked in the service's own database with an outbox record (or, failing that,
  published directly), and only then are the partitions' offsets committed. A record whose letter
  could be neither parked nor published is where the partition resumes.
A crash anywhere before the offset commit delivers the batch again, and every event comes back a duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from faststream.kafka import KafkaBroker
from pydantic import TypeAdapter, ValidationError

from crm_shared import identity, metrics
from crm_shared.consumer import (
    build_dead_letter,
    describe_failure,
    envelope_hints,
    key_mismatch,
    park_dead_letters,
)
from crm_shared.events import CloudEvent, DeadLetter
from crm_shared.logging import get_logger
from crm_shared.store import BatchOutcome, Store, TransientFailure
from crm_shared.topics import Topic

log = get_logger(__name__)

BatchHandler = Callable[[Sequence[CloudEvent[Any]]], Awaitable[BatchOutcome]]
MAX_UNAVAILABLE_PAUSE_SECONDS = 30.0
LOOP_FAILURE_PAUSE_SECONDS = 1.0


@dataclass(frozen=True)
class Subscription:
    """What a service consumes: the topics, in which group, the event schema, and the batch handler."""

    topics: tuple[str, ...]
    group_id: str
    schema: Any
    handle: BatchHandler
    title: str
    description: str


def parse_record(adapter: TypeAdapter[Any], value: bytes) -> Any:
    """Validate a record's value as the subscription's event schema (JSON, structured-mode CloudEvents)."""
    try:
        body: Any = json.loads(value)
    except (ValueError, RecursionError):
        body = value  # not JSON: validation fails on it and describe_failure says so
    return adapter.validate_python(body)


class BatchConsumer:
    def __init__(
        self,
        subscription: Subscription,
        *,
        bootstrap: str,
        client_id: str,
        service: str,
        store_ref: Callable[[], Store],
        broker: KafkaBroker,
        max_records: int = 500,
        max_wait_ms: int = 100,
        kafka_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.subscription = subscription
        self._bootstrap = bootstrap
        self._client_id = client_id
        self._service = service
        self._store_ref = store_ref
        self._broker = broker
        self._max_records = max_records
        self._max_wait_ms = max_wait_ms
        self._kafka_options = dict(kafka_options or {})
        self._adapter: TypeAdapter[Any] = TypeAdapter(subscription.schema)
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._unavailable: dict[TopicPartition, float] = {}
        self.group = subscription.group_id

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            *self.subscription.topics,
            bootstrap_servers=self._bootstrap,
            group_id=self.group,
            client_id=self._client_id,
            enable_auto_commit=False,
            # A new group starts from the beginning: nothing published before it joined is skipped.
            auto_offset_reset="earliest",
            max_poll_records=self._max_records,
            **self._kafka_options,
        )
        await consumer.start()
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(), name=f"consumer:{self.group}")

    async def stop(self, timeout: float = 30.0) -> None:
        """Finish the batch in flight and commit it, then leave the group."""
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except TimeoutError:
                log.warning("consumer_stop_timeout", group=self.group, timeout_s=timeout)
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._consumer is not None:
            # Leaving the group asks the broker; one that is gone must not hold up the shutdown.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._consumer.stop(), timeout)

    async def _run(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        while not self._stopping.is_set():
            try:
                fetched = await consumer.getmany(timeout_ms=self._max_wait_ms, max_records=self._max_records)
            except KafkaError as exc:
                log.warning("consumer_fetch_failed", group=self.group, error=str(exc)[:300])
                await asyncio.sleep(LOOP_FAILURE_PAUSE_SECONDS)
                continue
            if not fetched:
                continue
            try:
                await self._apply_round(consumer, fetched)
            except Exception:
                # Nothing of the round was committed: take it again from the committed offsets.
                log.exception("consumer_round_failed", group=self.group)
                with contextlib.suppress(Exception):
                    await consumer.seek_to_committed(*fetched)
                await asyncio.sleep(LOOP_FAILURE_PAUSE_SECONDS)

    async def _apply_round(
        self, consumer: AIOKafkaConsumer, fetched: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]
    ) -> None:
        partitions = list(fetched)
        resume_at = await asyncio.gather(*(self._apply_partition(tp, fetched[tp]) for tp in partitions))
        offsets: dict[TopicPartition, int] = {}
        for tp, resume in zip(partitions, resume_at, strict=True):
            records = fetched[tp]
            offsets[tp] = records[-1].offset + 1 if resume is None else resume
            if resume is not None:
                consumer.seek(tp, resume)
        offsets = {tp: o for tp, o in offsets.items() if o > fetched[tp][0].offset}
        if offsets:
            try:
                await consumer.commit(offsets)
            except (CommitFailedError, KafkaError) as exc:
                # A rebalance took the partitions: their new owner gets the records again, as duplicates.
                log.warning("offset_commit_failed", group=self.group, error=str(exc)[:300])
        for tp in partitions:
            highwater = consumer.highwater(tp)
            if highwater is not None:
                position = offsets.get(tp, fetched[tp][0].offset)
                metrics.CONSUMER_LAG.labels(self.group, tp.topic, str(tp.partition)).set(max(highwater - position, 0))
        pause = max((self._unavailable.get(tp, 0.0) for tp in partitions), default=0.0)
        if pause:
            await asyncio.sleep(pause)

    async def _apply_partition(self, tp: TopicPartition, records: list[ConsumerRecord[Any, Any]]) -> int | None:
        """Apply one partition's batch; the offset to resume from when part of it is not handled, else None."""
        started = time.perf_counter()
        topic = tp.topic
        metrics.RECORDS_CONSUMED.labels(self.group, topic).inc(len(records))
        metrics.BATCH_SIZE.labels(self.group).observe(len(records))
        letters: list[tuple[ConsumerRecord[Any, Any], str]] = []
        parsed: list[tuple[ConsumerRecord[Any, Any], CloudEvent[Any]]] = []
        for record in records:
            value: bytes = record.value or b""
            mismatch = key_mismatch(record.key, envelope_hints(value))
            if mismatch is not None:
                letters.append((record, f"rejected: {mismatch}"))
                continue
            try:
                parsed.append((record, parse_record(self._adapter, value)))
            except ValidationError as exc:
                letters.append((record, describe_failure(exc, value)))
        with structlog.contextvars.bound_contextvars(topic=topic, partition=tp.partition, group=self.group):
            try:
                outcome = await self._apply_events(parsed, letters)
            except TransientFailure as exc:
                pause = min(max(self._unavailable.get(tp, 0.0) * 2, 1.0), MAX_UNAVAILABLE_PAUSE_SECONDS)
                self._unavailable[tp] = pause
                log.error("batch_not_applied_database_unavailable", error=str(exc)[:300], retry_in_s=pause)
                return int(records[0].offset)
            self._unavailable.pop(tp, None)
            first_record: dict[str, ConsumerRecord[Any, Any]] = {}
            for record, event in parsed:
                first_record.setdefault(event.id, record)
            for event_id, rejection in outcome.rejected.items():
                letters.append((first_record[event_id], describe_failure(rejection)))
            for event_id in outcome.duplicates:
                log.info("duplicate_event_ignored", event_id=event_id)
            letters.sort(key=lambda item: item[0].offset)
            resume = await self._dead_letter(letters)
        metrics.RECORDS_APPLIED.labels(self.group, topic).inc(len(outcome.applied))
        metrics.RECORDS_DUPLICATE.labels(self.group, topic).inc(len(outcome.duplicates))
        metrics.RECORDS_IGNORED.labels(self.group, topic).inc(len(outcome.ignored))
        metrics.BATCH_APPLY_SECONDS.labels(self.group).observe(time.perf_counter() - started)
        return resume

    async def _apply_events(
        self,
        parsed: list[tuple[ConsumerRecord[Any, Any], CloudEvent[Any]]],
        letters: list[tuple[ConsumerRecord[Any, Any], str]],
    ) -> BatchOutcome:
        if not parsed:
            return BatchOutcome()
        store = self._store_ref()
        # Events that name a merged customer are filed under the survivor (crm_shared.identity).
        filed = await store.retrying(lambda: identity.redirect(store, [event for _, event in parsed]), what="aliases")
        parsed = [(record, event) for (record, _), event in zip(parsed, filed, strict=True)]
        try:
            return await self.subscription.handle([event for _, event in parsed])
        except TransientFailure:
            raise
        except Exception:
            log.exception("batch_failed_applying_one_by_one", events=len(parsed))
        outcome = BatchOutcome()
        for record, event in parsed:
            with structlog.contextvars.bound_contextvars(event_id=event.id, customer_id=event.subject):
                try:
                    outcome.merge(await self.subscription.handle([event]))
                except TransientFailure:
                    raise
                except Exception as exc:
                    reason = describe_failure(exc, record.value or b"")
                    log.exception("event_failed", reason=reason)
                    letters.append((record, reason))
        return outcome

    async def _dead_letter(self, letters: list[tuple[ConsumerRecord[Any, Any], str]]) -> int | None:
        """Park the letters (or publish them); the offset of the first one neither could take, else None."""
        if not letters:
            return None
        built = [
            (build_dead_letter(record, reason, service=self._service, consumer_group=self.group), record)
            for record, reason in letters
        ]
        try:
            await park_dead_letters(self._store_ref(), [(letter, record.value or b"") for letter, record in built])
        except Exception:
            log.exception("deadletter_park_failed", letters=len(built))
        else:
            for letter, _ in built:
                self._count_letter(letter)
            return None
        for letter, record in built:
            try:
                await self._broker.publish(
                    letter.model_dump_json().encode(),
                    Topic.DEADLETTER,
                    key=record.key,
                    headers={"content-type": "application/json"},
                )
            except Exception:
                # Neither kept nor published: the partition resumes here, so it is not lost.
                log.exception("deadletter_publish_failed", reason=letter.reason, offset=letter.offset)
                return int(record.offset)
            self._count_letter(letter)
        return None

    def _count_letter(self, letter: DeadLetter) -> None:
        metrics.RECORDS_DEAD_LETTERED.labels(self.group, letter.source_topic).inc()
        log.warning(
            "event_dead_lettered",
            reason=letter.reason,
            partition=letter.partition,
            offset=letter.offset,
            event_id=letter.event_id,
        )
