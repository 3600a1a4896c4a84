"""The outbox relay: publishes committed outbox records to Kafka, in order, and marks them sent.

An outbox document holds the records of one transaction (`crm_shared.store.outbox_documents`). A round
takes a page of unsent documents in commit order and hands all their records to the producer without
waiting for each (the producer batches them per partition and keeps their order, one request in flight
per partition), then awaits the acknowledgements and marks the documents whose every record was
acknowledged sent, with one update. A document is marked sent only after the broker acknowledged all of
it, so a crash or a broker outage between the two publishes it again later: at-least-once, and
consumers deduplicate on the id. When a record fails, only the documents before it are marked, so one
key's records are never marked sent past a gap.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiokafka.structs import RecordMetadata
from faststream.kafka import KafkaBroker

from crm_shared import metrics
from crm_shared.events import utc_now
from crm_shared.leases import DEFAULT_TTL_SECONDS, HOLDER, Lease, keep
from crm_shared.logging import get_logger
from crm_shared.redelivery import LogWatch
from crm_shared.store import CLOUDEVENTS_CONTENT_TYPE, IN_CHUNK, OUTBOX, Store, unsent_records

log = get_logger(__name__)

PAGE = IN_CHUNK
"""Outbox documents per round: each holds a transaction's records, often hundreds."""
MAX_BACKOFF_SECONDS = 5.0
LEASE = "outbox-relay"
"""The lease of the one relay that publishes a service's outbox (crm_shared.leases)."""
LEASE_POLL_SECONDS = 1.0
"""How often a relay that does not hold the lease tries to take it."""


def records_of(document: dict[str, Any]) -> list[dict[str, Any]]:
    """An outbox document's records; a document written before records were grouped is one record itself."""
    records: list[dict[str, Any]] = document.get("records") or [document]
    return records


class OutboxRelay:
    watch: LogWatch | None = None
    """Set by the service: notices a broker that lost what it acknowledged, and publishes it again."""

    def __init__(
        self,
        store: Store,
        broker: KafkaBroker,
        *,
        poll_seconds: float = 0.5,
        lease_seconds: float = DEFAULT_TTL_SECONDS,
        holder: str = HOLDER,
    ) -> None:
        self._store = store
        self._broker = broker
        self._poll_seconds = poll_seconds
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.healthy = True
        self.lease = Lease(store.db, LEASE, holder=holder, ttl_seconds=lease_seconds)

    def start(self) -> None:
        """Relay in the background: publish while this instance holds the relay's lease, else wait for it. One
        relay per service database publishes at a time, however many instances share it; the holder also
        publishes what the others commit, polling every `poll_seconds`."""
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self, *, flush_timeout: float = 10.0) -> None:
        """Publish what is committed (within `flush_timeout`) if this instance holds the lease, release it (another
        instance's relay takes over at once), then stop."""
        self._stopping.set()
        self._store.outbox_written.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, flush_timeout)
            except TimeoutError:
                log.warning("outbox_flush_timeout", timeout_s=flush_timeout)
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task

    async def publish_pending(self) -> int:
        """Publish every unsent record in commit order; returns how many were sent."""
        outbox = self._store.db[OUTBOX]
        database = self._store.db.name
        sent = 0
        if self.watch is not None:
            await self.watch.redeliver_if_lost()
        while True:
            documents: list[dict[str, Any]] = (
                await outbox.find({"sent_at": None}).sort("seq", 1).limit(PAGE).to_list(PAGE)
            )
            if not documents:
                metrics.OUTBOX_BACKLOG.labels(database).set(0)
                return sent
            acks: list[Any] = []
            failure: BaseException | None = None
            for document in documents:
                for record in records_of(document):
                    key: str | None = record["key"]
                    try:
                        acks.append(
                            await self._broker.publish(
                                bytes(record["value"]),
                                record["topic"],
                                key=key.encode() if key is not None else None,
                                headers={"content-type": record.get("content_type") or CLOUDEVENTS_CONTENT_TYPE},
                                no_confirm=True,
                            )
                        )
                    except Exception as exc:
                        failure = exc
                        break
                if failure is not None:
                    break
            results = await asyncio.gather(*acks, return_exceptions=True)
            if self.watch is not None:
                await self.watch.acknowledged(
                    (r.topic, r.partition, r.offset) for r in results if isinstance(r, RecordMetadata)
                )
            acknowledged = next((i for i, r in enumerate(results) if isinstance(r, BaseException)), len(results))
            if acknowledged < len(results):
                failure = failure or results[acknowledged]
            delivered: list[dict[str, Any]] = []
            position = 0
            for document in documents:
                position += len(records_of(document))
                if position > acknowledged:
                    break
                delivered.append(document)
            if delivered:
                now = utc_now()
                await outbox.update_many({"_id": {"$in": [d["_id"] for d in delivered]}}, {"$set": {"sent_at": now}})
                for document in delivered:
                    relayed = max((now - document["created_at"]).total_seconds(), 0)
                    for record in records_of(document):
                        metrics.OUTBOX_PUBLISHED.labels(database, record["topic"]).inc()
                        metrics.OUTBOX_RELAY_SECONDS.labels(database).observe(relayed)
                sent += sum(len(records_of(d)) for d in delivered)
            if failure is not None:
                metrics.OUTBOX_BACKLOG.labels(database).set(await unsent_records(self._store.db))
                raise failure
            if len(documents) == PAGE:
                metrics.OUTBOX_BACKLOG.labels(database).set(await unsent_records(self._store.db))

    async def _run(self) -> None:
        # The lease is renewed from a side task every third of its TTL, not at each round (a round follows
        # every commit); a relay that loses it stops at once, mid-round: what it had not marked sent, the new
        # holder publishes again.
        await keep(
            self.lease,
            self._relay,
            poll_seconds=min(LEASE_POLL_SECONDS, self.lease.renew_seconds),
            until=self._stopping,
        )

    async def _relay(self) -> None:
        """Rounds until stopped, a round at each commit (at least every `poll_seconds`), the last one a flush."""
        if self.watch is not None:
            # Another instance may have published, and saved its marks, while this one did not hold the lease.
            self.watch.forget()
        backoff = self._poll_seconds
        while True:
            # Cleared before reading, so a commit during the publish wakes the next round at once.
            self._store.outbox_written.clear()
            try:
                sent = await self.publish_pending()
                if sent:
                    log.debug("outbox_published", count=sent)
                self.healthy = True
                backoff = self._poll_seconds
            except Exception as exc:  # the broker or the database is down: keep the records, try again
                self.healthy = False
                log.warning("outbox_publish_failed", error=str(exc)[:300], retry_in_s=backoff)
                if self._stopping.is_set():
                    return
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                continue
            if self._stopping.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._store.outbox_written.wait(), self._poll_seconds)
