"""Publishing again what a broker lost: the outbox relay notices a log shorter than what it wrote.

Kafka with replication and `acks=all` keeps every record it acknowledged; the embedded broker (Tansu, in
memory) keeps nothing across a restart, and a topic deleted and created again starts empty. Either way the
records a service published and that no consumer had read yet would be gone, and with them the changes they
carry. So the relay remembers, per topic partition, an offset the broker acknowledged to it (`relay_marks`,
in the service's own database, so a restarted service still knows). Every few seconds, and whenever an
acknowledgement comes back with an offset not above the one remembered, it compares: a log that ends at or
before an offset it was given has lost records. The relay then marks the outbox documents sent within the
redelivery window unsent again, and publishes them in commit order with the rest; consumers deduplicate on
the event id, so what had been read already changes nothing.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from pymongo import UpdateOne

from crm_shared.events import utc_now
from crm_shared.logging import get_logger
from crm_shared.store import OUTBOX, Store

log = get_logger(__name__)

RELAY_MARKS = "relay_marks"
CHECK_SECONDS = 3.0
"""How often the relay asks the broker where its partitions end."""
SAVE_SECONDS = 1.0
"""How often the marks reach the database (they are kept in memory between)."""


def _mark_id(tp: TopicPartition) -> str:
    return f"{tp.topic}/{tp.partition}"


class LogWatch:
    """The relay's memory of what the broker acknowledged, and the check that the broker still has it."""

    def __init__(
        self,
        store: Store,
        *,
        bootstrap: str,
        client_id: str,
        window: timedelta,
        kafka_options: Mapping[str, Any] | None = None,
        check_seconds: float = CHECK_SECONDS,
    ) -> None:
        self._store = store
        self._bootstrap = bootstrap
        self._client_id = client_id
        self._kafka_options = dict(kafka_options or {})
        self.window = window
        self._check_seconds = check_seconds
        self._marks: dict[TopicPartition, int] | None = None
        self._unsaved: set[TopicPartition] = set()
        self._saved_at = 0.0
        self._checked_at = 0.0
        self._lost = False
        self._consumer: AIOKafkaConsumer | None = None

    async def _loaded(self) -> dict[TopicPartition, int]:
        if self._marks is None:
            marks: dict[TopicPartition, int] = {}
            async for document in self._store.db[RELAY_MARKS].find({}):
                marks[TopicPartition(document["topic"], int(document["partition"]))] = int(document["offset"])
            self._marks = marks
        return self._marks

    def forget(self) -> None:
        """Read the marks from the database again before the next use (another relay may have moved them)."""
        self._marks = None

    async def acknowledged(self, offsets: Iterable[tuple[str, int, int]]) -> None:
        """Note the (topic, partition, offset) of each acknowledgement of a round.

        A partition's mark is the lowest offset of its latest round: the first record of a produce request, which
        any log that still holds the round ends after. (Tansu reports the end of a log as the first offset of its
        last batch plus one, so the round's highest offset may lie beyond the end it reports.)"""
        marks = await self._loaded()
        lowest: dict[TopicPartition, int] = {}
        for topic, partition, offset in offsets:
            tp = TopicPartition(topic, partition)
            lowest[tp] = min(offset, lowest.get(tp, offset))
        for tp, offset in lowest.items():
            known = marks.get(tp)
            if known is not None and offset <= known:
                # The broker handed out an offset it had already given: its log started again.
                self._lost = True
            if known is None or offset > known:
                marks[tp] = offset
                self._unsaved.add(tp)
        if self._unsaved and time.monotonic() - self._saved_at >= SAVE_SECONDS:
            await self._save()

    async def _save(self) -> None:
        marks = await self._loaded()
        unsaved, self._unsaved = self._unsaved, set()
        try:
            await self._store.db[RELAY_MARKS].bulk_write(
                [
                    UpdateOne(
                        {"_id": _mark_id(tp)},
                        {"$set": {"topic": tp.topic, "partition": tp.partition}, "$max": {"offset": marks[tp]}},
                        upsert=True,
                    )
                    for tp in unsaved
                    if tp in marks
                ],
                ordered=False,
            )
        except Exception:
            self._unsaved |= unsaved
            raise
        self._saved_at = time.monotonic()

    async def redeliver_if_lost(self) -> int:
        """When the broker lost records it acknowledged, mark the window's sent documents unsent; how many."""
        if not self._lost and time.monotonic() - self._checked_at < self._check_seconds:
            return 0
        self._checked_at = time.monotonic()
        marks = await self._loaded()
        if not self._lost and marks:
            try:
                ends = await self._end_offsets(list(marks))
            except Exception as exc:
                # Publishing tells whether the broker is there; this check only waits for the next round.
                log.info("broker_log_check_failed", error=str(exc)[:300])
                return 0
            short = {tp: end for tp, end in ends.items() if end <= marks[tp]}
            if short:
                tp, end = next(iter(short.items()))
                log.warning(
                    "broker_log_lost_records",
                    topic=tp.topic,
                    partition=tp.partition,
                    log_end=end,
                    acknowledged_up_to=marks[tp],
                    partitions=len(short),
                )
                self._lost = True
        if not self._lost:
            return 0
        since = utc_now() - self.window
        outbox = self._store.db[OUTBOX]
        result = await outbox.update_many({"sent_at": {"$gte": since}}, {"$set": {"sent_at": None}})
        older = await outbox.count_documents({"sent_at": {"$lt": since}})
        # The new log's offsets start again: forget the old ones before anything more is published.
        await self._store.db[RELAY_MARKS].delete_many({})
        self._marks, self._unsaved, self._lost = {}, set(), False
        log.warning(
            "outbox_redelivering",
            documents=result.modified_count,
            window_hours=self.window.total_seconds() / 3600,
            older_not_redelivered=older,
        )
        return int(result.modified_count)

    async def _end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap,
                client_id=f"{self._client_id}-logwatch",
                enable_auto_commit=False,
                group_id=None,
                request_timeout_ms=10_000,
                **self._kafka_options,
            )
            await consumer.start()
            self._consumer = consumer
        try:
            ends: dict[TopicPartition, int] = await self._consumer.end_offsets(partitions)
        except Exception:
            # A client that saw the broker go may hold stale connections: start a fresh one next time.
            await self.close()
            raise
        return ends

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()
        if self._unsaved:
            with contextlib.suppress(Exception):
                await self._save()
