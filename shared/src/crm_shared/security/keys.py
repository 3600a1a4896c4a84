"""API keys for channel systems: shown once, stored hashed, scoped, expiring, rotatable, revocable.

A key is `crm_<key id>_<secret>`. Only the SHA-256 of the whole key is stored: the secret is 256
random bits, so a fast hash is as safe as a slow one here and keeps every request's check cheap (a
password needs a slow hash because people choose guessable ones; nobody chooses these).

Every service holds every key: a key issued or revoked on any service's admin API is written to
that service's `api_keys` collection and published on `crm.security.keys` (keyed by key id, the
whole record each time, so the topic can be compacted). Every instance of every service tails that
topic from its beginning without a consumer group, keeps the table in memory (a request costs no
database round trip) and copies it into its own database, so a restart before the broker is back
still knows every key. A change reaches every service within about a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from pymongo import ReplaceOne
from pymongo.errors import BulkWriteError

from crm_shared.events import utc_now
from crm_shared.logging import get_logger
from crm_shared.security.principal import ADMIN, Principal
from crm_shared.store import DUPLICATE_KEY, Store, UnitOfWork
from crm_shared.topics import Topic

log = get_logger(__name__)

API_KEYS = "api_keys"
PREFIX = "crm"
BOOTSTRAP_KEY_ID = "bootstrap"
KEY_RECORD_CONTENT_TYPE = "application/json"


class AuthFailure(Exception):
    """The credential is missing, malformed, unknown, expired or revoked (a 401)."""


def new_key(key_id: str | None = None) -> tuple[str, str]:
    """A fresh key and its id: `crm_<16 hex>_<43 url-safe characters>`."""
    key_id = key_id or secrets.token_hex(8)
    return f"{PREFIX}_{key_id}_{secrets.token_urlsafe(32)}", key_id


def key_sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_id_of(presented: str) -> str:
    prefix, _, rest = presented.partition("_")
    key_id, sep, secret = rest.partition("_")
    if prefix != PREFIX or not sep or not key_id or len(secret) < 16:
        raise AuthFailure("the API key is malformed: expected crm_<key id>_<secret>")
    return key_id


class ApiKeyRecord(BaseModel):
    """What every service keeps of a key: never the key itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key_id: str = Field(pattern=r"^[A-Za-z0-9-]{1,64}$")
    name: str = Field(min_length=1, max_length=100)
    secret_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    scopes: tuple[str, ...]
    event_types: tuple[str, ...] | None = None
    read_only: bool = False
    rate_limit: str | None = None
    created_at: AwareDatetime
    expires_at: AwareDatetime | None
    revoked_at: AwareDatetime | None = None
    replaced_by: str | None = None
    version: int = Field(ge=1)

    def principal(self) -> Principal:
        return Principal(
            kind="api_key",
            id=self.key_id,
            scopes=frozenset(self.scopes),
            read_only=self.read_only,
            event_types=frozenset(self.event_types) if self.event_types is not None else None,
            rate_limit=self.rate_limit,
        )

    def usable_at(self, now: datetime) -> str | None:
        """Why the key cannot be used now, or None."""
        if self.revoked_at is not None and self.revoked_at <= now:
            return "the API key was revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "the API key has expired"
        return None

    def to_document(self) -> dict[str, Any]:
        return {"_id": self.key_id, **self.model_dump(exclude={"key_id"})}

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> ApiKeyRecord:
        fields = {k: v for k, v in document.items() if k != "_id"}
        return cls(key_id=document["_id"], **fields)


class KeyTable:
    """Every key this process knows, by id, plus the bootstrap admin key given by its hash in the settings."""

    def __init__(self, bootstrap_sha256: str | None = None) -> None:
        self._keys: dict[str, ApiKeyRecord] = {}
        self._bootstrap = bootstrap_sha256

    def apply(self, record: ApiKeyRecord) -> bool:
        """Keep `record` unless a newer version is known; True when it changed the table."""
        known = self._keys.get(record.key_id)
        if known is not None and known.version >= record.version:
            return False
        self._keys[record.key_id] = record
        return True

    def get(self, key_id: str) -> ApiKeyRecord | None:
        return self._keys.get(key_id)

    def records(self) -> list[ApiKeyRecord]:
        return sorted(self._keys.values(), key=lambda r: (r.created_at, r.key_id))

    def verify(self, presented: str, now: datetime | None = None) -> Principal:
        key_id = key_id_of(presented)
        digest = key_sha256(presented)
        if key_id == BOOTSTRAP_KEY_ID:
            if self._bootstrap and hmac.compare_digest(digest, self._bootstrap):
                return Principal(kind="api_key", id=BOOTSTRAP_KEY_ID, scopes=frozenset({ADMIN}))
            raise AuthFailure("the API key is not valid")
        record = self._keys.get(key_id)
        if record is None or not hmac.compare_digest(digest, record.secret_sha256):
            raise AuthFailure("the API key is not valid")
        why = record.usable_at(now or utc_now())
        if why:
            raise AuthFailure(why)
        return record.principal()


def publish_key(uow: UnitOfWork, record: ApiKeyRecord) -> None:
    """The record, on every service's table once the transaction commits."""
    uow.emit_record(
        Topic.SECURITY_KEYS,
        key=record.key_id,
        value=record.model_dump_json().encode(),
        record_id=f"api-key:{record.key_id}:{record.version}",
        type="crm.security.api_key.v1",
        content_type=KEY_RECORD_CONTENT_TYPE,
    )


async def save_key(store: Store, table: KeyTable, record: ApiKeyRecord) -> None:
    """Store and publish a new version of a key, and know it here at once."""

    async def write(uow: UnitOfWork) -> None:
        await uow.db[API_KEYS].replace_one(
            {"_id": record.key_id}, record.to_document(), upsert=True, session=uow.session
        )
        publish_key(uow, record)

    await store.transaction(write)
    table.apply(record)


def issue(
    *,
    name: str,
    scopes: Iterable[str],
    event_types: Iterable[str] | None,
    read_only: bool,
    rate_limit: str | None,
    expires_at: datetime | None,
) -> tuple[str, ApiKeyRecord]:
    key, key_id = new_key()
    record = ApiKeyRecord(
        key_id=key_id,
        name=name,
        secret_sha256=key_sha256(key),
        scopes=tuple(sorted(set(scopes))),
        event_types=tuple(sorted(set(event_types))) if event_types is not None else None,
        read_only=read_only,
        rate_limit=rate_limit,
        created_at=utc_now(),
        expires_at=expires_at,
        version=1,
    )
    return key, record


def revoked(record: ApiKeyRecord, at: datetime | None = None) -> ApiKeyRecord:
    return record.model_copy(update={"revoked_at": at or utc_now(), "version": record.version + 1})


def rotated(record: ApiKeyRecord, grace: timedelta) -> tuple[str, ApiKeyRecord, ApiKeyRecord]:
    """A new key with the same rights; the old one keeps working for `grace`, then expires."""
    key, fresh = issue(
        name=record.name,
        scopes=record.scopes,
        event_types=record.event_types,
        read_only=record.read_only,
        rate_limit=record.rate_limit,
        expires_at=record.expires_at,
    )
    ends = utc_now() + grace
    old_expiry = min(ends, record.expires_at) if record.expires_at else ends
    old = record.model_copy(
        update={"expires_at": old_expiry, "replaced_by": fresh.key_id, "version": record.version + 1}
    )
    return key, fresh, old


class KeyFeed:
    """Keeps a KeyTable current: loads the service's copy, then tails `crm.security.keys` into it and the copy."""

    def __init__(
        self,
        table: KeyTable,
        store: Store,
        *,
        bootstrap: str,
        client_id: str,
        kafka_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._table = table
        self._store = store
        self._bootstrap = bootstrap
        self._client_id = client_id
        self._kafka_options = dict(kafka_options or {})
        self._task: asyncio.Task[None] | None = None
        self.caught_up = asyncio.Event()

    async def start(self) -> None:
        async for document in self._store.db[API_KEYS].find({}):
            with contextlib.suppress(ValidationError):
                self._table.apply(ApiKeyRecord.from_document(document))
        self._task = asyncio.create_task(self._run(), name="api-key-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self._tail()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("api_key_feed_failed", error=str(exc)[:300])
                await asyncio.sleep(2)

    async def _tail(self) -> None:
        # No consumer group: every instance reads every key, from the beginning.
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            client_id=f"{self._client_id}-keys",
            enable_auto_commit=False,
            group_id=None,
            **self._kafka_options,
        )
        await consumer.start()
        try:
            partitions = [TopicPartition(Topic.SECURITY_KEYS, p) for p in sorted(await self._partitions(consumer))]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            while True:
                batch = await consumer.getmany(timeout_ms=500, max_records=500)
                if not batch:
                    self.caught_up.set()
                    continue
                await self._apply([record.value for records in batch.values() for record in records])
        finally:
            await consumer.stop()

    async def _partitions(self, consumer: AIOKafkaConsumer) -> set[int]:
        while True:
            await consumer.topics()
            found = consumer.partitions_for_topic(Topic.SECURITY_KEYS)
            if found:
                return set(found)
            await asyncio.sleep(1)

    async def _apply(self, values: list[bytes | None]) -> None:
        changed: list[ApiKeyRecord] = []
        for value in values:
            try:
                record = ApiKeyRecord.model_validate_json(value or b"")
            except ValidationError as exc:
                log.warning("api_key_record_refused", error=str(exc)[:300])
                continue
            if self._table.apply(record):
                changed.append(record)
        if changed:
            await save_copies(self._store, changed)


async def save_copies(store: Store, records: Iterable[ApiKeyRecord]) -> None:
    """Keep each record in the service's copy unless a newer version is there (a replay changes nothing)."""
    writes = [
        ReplaceOne({"_id": r.key_id, "version": {"$lt": r.version}}, r.to_document(), upsert=True) for r in records
    ]
    try:
        await store.db[API_KEYS].bulk_write(writes, ordered=False)
    except BulkWriteError as exc:
        # A newer version is stored: the upsert's insert collides with it, which is the point.
        if any(error.get("code") != DUPLICATE_KEY for error in exc.details.get("writeErrors", [])):
            raise
