"""A service's own MongoDB database, and the unit of work that makes delivery safe.

One transaction holds the state change, the events it emits (the `outbox` collection) and, for a
consumer, the record that the upstream event was applied (`processed_events`, unique on its id).
So an event is never published for a change that was rolled back, never lost when the broker is
down, and a redelivered event changes nothing: exactly-once processing over at-least-once delivery.

Consumers apply a whole batch of events in one such transaction (`Store.apply_batch`): one lookup finds
the events applied before, the handler loads what the rest touch with one read per collection, runs
the pure domain per event in order and writes in bulk, and everything commits once. A domain rejection
is set aside for that event alone (`Batch.reject`) while the others are applied.

A transaction's outbox records are one outbox document (`records`, in emit order), so the outbox costs
a transaction one insert and the relay one update, whatever the batch emits (the embedded database's
cost is per document and per index entry); `outbox_records` and `unsent_records` read them back.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

from bson.codec_options import TypeCodec, TypeRegistry
from bson.decimal128 import Decimal128
from pymongo import ASCENDING, AsyncMongoClient, IndexModel, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, ConnectionFailure, DuplicateKeyError, PyMongoError

from crm_shared.events import CloudEvent, utc_now
from crm_shared.logging import get_logger

T = TypeVar("T")
E = TypeVar("E", bound=CloudEvent[Any])


class DecimalCodec(TypeCodec):
    """Money is Decimal in Python and Decimal128 in MongoDB, never float."""

    python_type = Decimal
    bson_type = Decimal128

    def transform_python(self, value: Decimal) -> Decimal128:
        return Decimal128(value)

    def transform_bson(self, value: Decimal128) -> Decimal:
        return value.to_decimal()


MONEY_TYPES = TypeRegistry([DecimalCodec()])
log = get_logger(__name__)

OUTBOX = "outbox"
PROCESSED = "processed_events"
DEADLETTERS = "deadletters"
CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json; charset=UTF-8"


@dataclass(frozen=True)
class IndexSpec:
    """An index declared in code, created at start-up."""

    collection: str
    model: IndexModel


BASE_INDEXES: tuple[IndexSpec, ...] = (
    IndexSpec(OUTBOX, IndexModel([("sent_at", ASCENDING), ("seq", ASCENDING)], name="unsent_in_order")),
    # Sent events are kept a week for inspection, then MongoDB removes them.
    IndexSpec(OUTBOX, IndexModel([("sent_at", ASCENDING)], expireAfterSeconds=7 * 24 * 3600, name="sent_ttl")),
    # crm_shared.identity: the merged ids of each survivor, for an unmerge.
    IndexSpec("customer_aliases", IndexModel([("into", ASCENDING)], name="by_survivor")),
)


class AlreadyApplied(Exception):
    """The event was applied before: a redelivery or a duplicate. Nothing changed."""


class TransientFailure(Exception):
    """The database stayed unreachable through every retry."""


class Rejected(Exception):
    """The record is well-formed but the domain refuses it (e.g. an order id reused with other content)."""


@dataclass
class Batch(Generic[E]):
    """The events of a batch a handler applies: new ones only, in the order they were delivered.

    The handler refuses an event with `reject` (nothing of it may have been written: decide first,
    write after), and may leave a result per event for a caller that wants it (the API).
    """

    events: Sequence[E]
    rejected: dict[str, Rejected] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)

    def reject(self, event: E, reason: Rejected) -> None:
        self.rejected[event.id] = reason

    def done(self, event: E, result: Any) -> None:
        self.results[event.id] = result

    @property
    def accepted(self) -> list[E]:
        return [e for e in self.events if e.id not in self.rejected]


@dataclass
class BatchOutcome:
    """What became of each event of a batch, by event id."""

    applied: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    rejected: dict[str, Rejected] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)

    def result_of(self, event: CloudEvent[Any]) -> Any:
        """The result the handler left for `event` (None if none, or ignored); raises the Rejected it got, or
        AlreadyApplied when it was a duplicate."""
        if event.id in self.rejected:
            raise self.rejected[event.id]
        if event.id in self.duplicates:
            raise AlreadyApplied(event.id)
        return self.results.get(event.id)

    def merge(self, other: BatchOutcome) -> None:
        self.applied += other.applied
        self.duplicates += other.duplicates
        self.ignored += other.ignored
        self.rejected.update(other.rejected)
        self.results.update(other.results)


BatchWork = Callable[["UnitOfWork", Batch[E]], Awaitable[None]]
MAX_DUPLICATE_RACES = 3


class UnitOfWork:
    """Collects a handler's writes and emitted events inside one MongoDB transaction."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]], session: AsyncClientSession) -> None:
        self.db = db
        self.session = session
        self._outbox: list[dict[str, Any]] = []

    def emit(self, event: CloudEvent[Any], topic: str) -> None:
        """Publish `event` on `topic` once the transaction commits (keyed by the customer id)."""
        self.emit_record(topic, key=event.subject, value=event.to_bytes(), record_id=event.id, type=event.type)

    def emit_record(
        self,
        topic: str,
        *,
        key: str | None,
        value: bytes,
        record_id: str,
        type: str | None = None,
        content_type: str = CLOUDEVENTS_CONTENT_TYPE,
    ) -> None:
        """Publish any record once the transaction commits (a dead letter is not a CloudEvent)."""
        self._outbox.append(
            {"_id": record_id, "topic": topic, "key": key, "value": value, "type": type, "content_type": content_type}
        )

    async def find_ids(
        self, collection: str, ids: Iterable[Any], projection: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """The documents of `collection` among `ids`, in this transaction (`find_any`, so in short `$in`s)."""
        wanted = sorted(set(ids))
        if not wanted:
            return []
        return await find_any(self.db[collection], [{"_id": {"$in": wanted}}], projection, session=self.session)

    @property
    def emitted(self) -> Sequence[dict[str, Any]]:
        return tuple(self._outbox)


DUPLICATE_KEY = 11000


def as_stored(at: datetime) -> datetime:
    """The time as MongoDB keeps it (milliseconds), so what a command answers equals what a read gives later."""
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def is_duplicate_key(exc: BaseException) -> bool:
    """A unique index refused the write: a single duplicate, or a bulk write refused for duplicates only."""
    if isinstance(exc, DuplicateKeyError):
        return True
    if isinstance(exc, BulkWriteError):
        errors = exc.details.get("writeErrors", [])
        return bool(errors) and all(e.get("code") == DUPLICATE_KEY for e in errors)
    return False


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionFailure):
        return True
    if isinstance(exc, PyMongoError):
        return exc.has_error_label("TransientTransactionError") or exc.has_error_label("RetryableWriteError")
    return False


@dataclass
class Store:
    """The service's database plus the wake-up signal of its outbox relay."""

    client: AsyncMongoClient[dict[str, Any]]
    db: AsyncDatabase[dict[str, Any]]
    retry_attempts: int = 5
    retry_base_seconds: float = 0.5
    outbox_written: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    def connect(
        cls,
        uri: str,
        database: str,
        *,
        retry_attempts: int = 5,
        retry_base_seconds: float = 0.5,
        client_options: Mapping[str, Any] | None = None,
    ) -> Store:
        """A client for `uri`; `client_options` (TLS, credentials: `mongo_client_options`) win over the URI's."""
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            uri,
            tz_aware=True,
            type_registry=MONEY_TYPES,
            serverSelectionTimeoutMS=5000,
            connectTimeoutMS=5000,
            **dict(client_options or {}),
        )
        return cls(client, client[database], retry_attempts, retry_base_seconds)

    async def ensure_indexes(self, specs: Iterable[IndexSpec]) -> None:
        by_collection: dict[str, list[IndexModel]] = {}
        for spec in (*BASE_INDEXES, *specs):
            by_collection.setdefault(spec.collection, []).append(spec.model)
        for name, models in by_collection.items():
            await self.db[name].create_indexes(models)

    async def ping(self) -> None:
        await self.db.command("ping")

    async def close(self) -> None:
        await self.client.close()

    async def transaction(
        self,
        work: Callable[[UnitOfWork], Awaitable[T]],
        *,
        applies: str | None = None,
    ) -> T:
        """Run `work` in one transaction with its outbox records.

        `applies` names the upstream event this applies ("<consumer>:<event id>"); when it was applied
        before, raises AlreadyApplied and writes nothing. Transient database failures are retried with
        exponential backoff, a bounded number of times, then raised as TransientFailure.
        """
        try:
            result = await self.retrying(lambda: self._run_once(work, applies))
        except DuplicateKeyError as exc:
            # A concurrent delivery of the same event committed first.
            if applies is not None and await self.db[PROCESSED].find_one({"_id": applies}):
                raise AlreadyApplied(applies) from exc
            raise
        self.outbox_written.set()
        return result

    async def transaction_racing(self, work: Callable[[UnitOfWork], Awaitable[T]], *, attempts: int = 2) -> T:
        """`transaction(work)` for a command that reads, then inserts under an id or key another request may
        insert at the same moment: when the insert loses the race (a duplicate key), `work` runs again, up to
        `attempts` times, and finds what the other committed."""
        for attempt in range(1, attempts + 1):
            try:
                return await self.transaction(work)
            except Exception as exc:
                if attempt == attempts or not is_duplicate_key(exc):
                    raise
        raise AssertionError("unreachable")

    async def retrying(self, write: Callable[[], Awaitable[T]], *, what: str = "transaction") -> T:
        """Run `write`, retrying transient database failures with exponential backoff a bounded number of
        times, then raising TransientFailure (a consumer then leaves its batch unapplied). For a transaction,
        and for a write that needs none (the timeline's idempotent upserts)."""
        for attempt in range(1, self.retry_attempts + 1):
            try:
                return await write()
            except PyMongoError as exc:
                if not is_transient(exc):
                    raise
                if attempt == self.retry_attempts:
                    raise TransientFailure(f"database unavailable after {attempt} attempts: {exc}") from exc
                delay = self.retry_base_seconds * 2 ** (attempt - 1)
                log.warning(f"{what}_retry", attempt=attempt, delay_s=delay, error=str(exc)[:300])
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def apply_batch(
        self,
        consumer: str,
        events: Sequence[E],
        work: BatchWork[E],
        *,
        relevant: Callable[[E], bool] | None = None,
    ) -> BatchOutcome:
        """Apply the events `work` has not applied before, all in one transaction, exactly once each.

        `consumer` names whose processed records these are (`<consumer>:<event id>`). Events `relevant`
        refuses are not this consumer's concern: they touch nothing and are reported `ignored`. An event
        id seen earlier in the batch or applied before is a duplicate. Rejected events get no processed
        record, so they are refused again when they come again. Transient failures are retried as in
        `transaction`; another copy of the batch committing first makes this one find its duplicates.
        """
        from crm_shared import identity

        # An event naming a merged customer is filed under the survivor, whether it came from a topic or an API.
        events = await self.retrying(lambda: identity.redirect(self, events), what="aliases")
        outcome = BatchOutcome()
        seen: set[str] = set()
        unique: list[E] = []
        for event in events:
            if relevant is not None and not relevant(event):
                outcome.ignored.append(event.id)
            elif event.id in seen:
                outcome.duplicates.append(event.id)
            else:
                seen.add(event.id)
                unique.append(event)
        if not unique:
            return outcome

        def marker(event: E) -> str:
            return f"{consumer}:{event.id}"

        async def run(uow: UnitOfWork) -> tuple[Batch[E], list[str]]:
            markers = [marker(e) for e in unique]
            before = {d["_id"] for d in await uow.find_ids(PROCESSED, markers, {"_id": 1})}
            batch = Batch([e for e in unique if marker(e) not in before])
            if batch.events:
                await work(uow, batch)
            now = utc_now()
            applied = batch.accepted
            if applied:
                await uow.db[PROCESSED].insert_many(
                    [{"_id": marker(e), "applied_at": now} for e in applied], ordered=False, session=uow.session
                )
            return batch, [e.id for e in unique if marker(e) in before]

        for race in range(1, MAX_DUPLICATE_RACES + 1):
            try:
                batch, already = await self.transaction(run)
            except (DuplicateKeyError, BulkWriteError) as exc:
                # Another copy of these events (a redelivery to a second instance) committed first; a bulk
                # insert reports the duplicate id as a BulkWriteError.
                if race == MAX_DUPLICATE_RACES or not is_duplicate_key(exc):
                    raise
                continue
            outcome.duplicates += already
            outcome.rejected.update(batch.rejected)
            outcome.results.update(batch.results)
            outcome.applied += [e.id for e in batch.accepted]
            return outcome
        raise AssertionError("unreachable")

    async def _run_once(self, work: Callable[[UnitOfWork], Awaitable[T]], applies: str | None) -> T:
        async with self.client.start_session() as session:

            async def callback(s: AsyncClientSession) -> T:
                uow = UnitOfWork(self.db, s)
                if applies is not None and await self.db[PROCESSED].find_one({"_id": applies}, session=s):
                    raise AlreadyApplied(applies)
                result = await work(uow)
                if uow.emitted:
                    documents = outbox_documents(uow.emitted)
                    await self.db[OUTBOX].insert_many(documents, session=s)
                if applies is not None:
                    await self.db[PROCESSED].insert_one({"_id": applies, "applied_at": utc_now()}, session=s)
                return result

            return await session.with_transaction(callback)


IN_CHUNK = 25
"""Values per `$in` a query sends. The embedded database (SecantusDB) checks each document it finds against
the `$in` list in turn, so one query for 500 ids costs about seven times what 20 queries of 25 cost
(measured: 390 ms against 55 ms); MongoDB is indifferent to the split."""


def _split_in(clause: Mapping[str, Any]) -> list[dict[str, Any]]:
    """`clause` as clauses of at most IN_CHUNK values each on its longest `$in` list (itself if short)."""
    longest: str | None = None
    for name, condition in clause.items():
        values = condition.get("$in") if isinstance(condition, dict) else None
        if isinstance(values, list | tuple) and (longest is None or len(values) > len(clause[longest]["$in"])):
            longest = name
    if longest is None or len(clause[longest]["$in"]) <= IN_CHUNK:
        return [dict(clause)]
    values = list(clause[longest]["$in"])
    return [
        {**clause, longest: {**clause[longest], "$in": values[i : i + IN_CHUNK]}}
        for i in range(0, len(values), IN_CHUNK)
    ]


async def find_any(
    collection: AsyncCollection[dict[str, Any]],
    clauses: Iterable[Mapping[str, Any]],
    projection: Mapping[str, Any] | None = None,
    *,
    session: AsyncClientSession | None = None,
) -> list[dict[str, Any]]:
    """The documents matching any of `clauses`, each once, in the order found; none without a clause.

    One query per clause and per IN_CHUNK values of its longest `$in`, one after the other (a session is
    not for concurrent use), instead of one `$or` or one long `$in`: SecantusDB plans neither on an index.
    """
    found: dict[Any, dict[str, Any]] = {}
    for clause in clauses:
        for part in _split_in(clause):
            async for doc in collection.find(part, projection, session=session):
                found.setdefault(doc["_id"], doc)
    return list(found.values())


OUTBOX_DOCUMENT_BYTES = 4 * 1024 * 1024
"""At most this many bytes of record values in one outbox document (MongoDB's limit is 16 MiB)."""


def outbox_documents(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A transaction's outbox records as outbox documents: one, unless their values pass OUTBOX_DOCUMENT_BYTES.

    `seq` orders the documents for the relay: commit order within a process (a clock reading, then the
    part), with a random tail so two instances of a service never collide on an `_id`.
    """
    stamp = f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}"
    now = utc_now()
    parts: list[list[Mapping[str, Any]]] = [[]]
    size = 0
    for record in records:
        length = len(record["value"])
        if parts[-1] and size + length > OUTBOX_DOCUMENT_BYTES:
            parts.append([])
            size = 0
        parts[-1].append(record)
        size += length
    return [
        {
            "_id": f"{stamp}-{i:04d}",
            "seq": f"{stamp}-{i:04d}",
            "created_at": now,
            "sent_at": None,
            "count": len(part),
            "records": [dict(r) for r in part],
        }
        for i, part in enumerate(parts)
    ]


async def outbox_records(
    db: AsyncDatabase[dict[str, Any]], query: Mapping[str, Any] | None = None, *, since: datetime | None = None
) -> list[dict[str, Any]]:
    """The outbox's records in publish order, each with its document's `seq`, `created_at` and `sent_at`,
    those matching `query` (on those fields and the record's own: `_id`, `topic`, `key`, `type`, `value`),
    of the documents committed from `since` on (a filter before the records are unwound: cheap)."""
    pipeline: list[dict[str, Any]] = [
        *([{"$match": {"created_at": {"$gte": since}}}] if since is not None else []),
        {"$sort": {"seq": 1}},
        {"$unwind": "$records"},
        {
            "$replaceRoot": {
                "newRoot": {
                    "$mergeObjects": [
                        "$records",
                        {"seq": "$seq", "created_at": "$created_at", "sent_at": "$sent_at"},
                    ]
                }
            }
        },
    ]
    if query:
        pipeline.append({"$match": dict(query)})
    return await (await db[OUTBOX].aggregate(pipeline)).to_list(None)


async def unsent_records(db: AsyncDatabase[dict[str, Any]]) -> int:
    """How many outbox records are committed and not yet published."""
    pipeline: list[dict[str, Any]] = [
        {"$match": {"sent_at": None}},
        {"$group": {"_id": None, "records": {"$sum": {"$ifNull": ["$count", 1]}}}},
    ]
    found = await (await db[OUTBOX].aggregate(pipeline)).to_list(None)
    return int(found[0]["records"]) if found else 0


async def insert_or_get(
    uow: UnitOfWork, collection: str, document: dict[str, Any]
) -> tuple[bool, dict[str, Any] | None]:
    """Insert `document` unless one with its `_id` exists; returns (inserted, existing)."""
    existing = await uow.db[collection].find_one({"_id": document["_id"]}, session=uow.session)
    if existing is not None:
        return False, existing
    await uow.db[collection].insert_one(document, session=uow.session)
    return True, None


async def upsert_newest(
    uow: UnitOfWork, collection: str, newest: Mapping[str, tuple[Mapping[str, Any], datetime]], *, time_field: str
) -> None:
    """A projection that keeps, per id, what the newest event said: set `fields` at `time` (stored as `time_field`)
    unless the stored document is newer. One read of the stored times and one bulk write; an older value arriving
    late, or again, changes nothing."""
    if not newest:
        return
    stored = {d["_id"]: d.get(time_field) for d in await uow.find_ids(collection, newest, {time_field: 1})}
    writes = [
        UpdateOne({"_id": key}, {"$set": {**fields, time_field: at}}, upsert=True)
        for key, (fields, at) in sorted(newest.items())
        if (kept := stored.get(key)) is None or kept <= at
    ]
    if writes:
        await uow.db[collection].bulk_write(writes, ordered=False, session=uow.session)
