"""The dead letters a service parked (`crm_shared.consumer`), for operators: listed with their reasons, and
replayed once corrected.

A replay publishes the corrected record, keyed by its subject, on the letter's source topic through the outbox,
in the transaction that marks the letter replayed: the service's consumer then takes it as any other record.
Only the ingest topics are replayed to: a channel system writes them, and an operator standing in for it grants
nothing an ingest producer lacks, while a record of a service's own topic is that service's to publish.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pymongo import ASCENDING, DESCENDING, IndexModel

from crm_shared.api import Cursor, Limit, Page, keyset_page
from crm_shared.batching import Subscription, parse_record
from crm_shared.consumer import describe_validation_error
from crm_shared.events import CloudEvent, utc_now
from crm_shared.problems import Problem
from crm_shared.security.guard import audited, requires
from crm_shared.security.principal import ADMIN, Principal
from crm_shared.store import DEADLETTERS, IndexSpec, Store, UnitOfWork
from crm_shared.topics import INGEST_TOPICS, Topic

if TYPE_CHECKING:
    from crm_shared.service import Runtime

LETTER_INDEXES = (
    IndexSpec(DEADLETTERS, IndexModel([("failed_at", DESCENDING), ("_id", DESCENDING)], name="newest_first")),
    IndexSpec(
        DEADLETTERS,
        IndexModel(
            [("source_topic", ASCENDING), ("failed_at", DESCENDING), ("_id", DESCENDING)], name="by_topic_newest_first"
        ),
    ),
)
SHOWN = {"original": 0, "original_value_base64": 0}
"""What a view never reads: the whole original (personal data in clear, up to 15 MiB) and its base64 copy."""
LETTER_ID_EXAMPLE = "crm.ingest.orders:0:42:crm-sales:3f2a9c1d8e7b6a50"

router = APIRouter(prefix="/v1/admin", tags=["dead letters"])
Admin = Depends(audited)

LetterId = Annotated[
    str,
    Path(
        max_length=600,
        pattern=r"^[A-Za-z0-9._-]{1,249}:[0-9]{1,10}:[0-9]{1,19}:[A-Za-z0-9._-]{1,255}:[0-9a-f]{16}$",
        description="`<topic>:<partition>:<offset>:<consumer group>:<16 hex digits of the value's SHA-256>`; the "
        "colons may be sent as they are or as `%3A`.",
        examples=[LETTER_ID_EXAMPLE],
    ),
]


class LetterView(BaseModel):
    """A parked letter as an operator sees it: the record's text with names, e-mails and phones masked."""

    letter_id: str = Field(examples=[LETTER_ID_EXAMPLE])
    topic: str = Field(description="Where the record was read.", examples=["crm.ingest.orders"])
    partition: int
    offset: int
    consumer_group: str | None = Field(examples=["crm-sales"])
    service: str = Field(examples=["sales"])
    reason: str = Field(examples=["invalid event: crm.order.placed.v1.data.total: Field required"])
    event_id: str | None = Field(description="The record's envelope id, when it parsed that far.")
    failed_at: datetime
    original_size: int = Field(description="Bytes in the original value.")
    original_sha256: str = Field(description="Hex SHA-256 of the original value.")
    original_text: str | None = Field(
        description="The record as JSON text with `name`, `email` and `phone` masked, cut at 16 KiB; null when it "
        "is not JSON, or was erased with its customer's personal data."
    )
    original_redacted: bool = Field(description="Personal fields were masked in `original_text`.")
    original_truncated: bool = Field(description="`original_text` was cut.")
    original_erased_at: datetime | None = Field(description="When the customer's erasure removed the original.")
    status: Literal["parked", "replayed"]
    replayed_at: datetime | None
    replayed_event_id: str | None = Field(description="The id of the corrected record published.")
    replayed_by: str | None = Field(
        description="Who replayed it, as the audit log names callers: `key:<id>` or `token:<subject>`."
    )

    @classmethod
    def of(cls, document: dict[str, Any]) -> LetterView:
        replayed_at = document.get("replayed_at")
        return cls(
            letter_id=document["_id"],
            topic=document["source_topic"],
            partition=document["partition"],
            offset=document["offset"],
            consumer_group=document.get("consumer_group"),
            service=document["service"],
            reason=document["reason"],
            event_id=document.get("event_id"),
            failed_at=document["failed_at"],
            original_size=document["original_size"],
            original_sha256=document["original_sha256"],
            original_text=document.get("original_text"),
            original_redacted=bool(document.get("original_redacted")),
            original_truncated=bool(document.get("original_truncated")),
            original_erased_at=document.get("original_erased_at"),
            status="parked" if replayed_at is None else "replayed",
            replayed_at=replayed_at,
            replayed_event_id=document.get("replayed_event_id"),
            replayed_by=document.get("replayed_by"),
        )


class Replay(BaseModel):
    model_config = ConfigDict(extra="forbid")

    record: dict[str, Any] = Field(
        description="The corrected record: a CloudEvent in structured JSON, as the letter's topic carries it. It "
        "keeps the letter's event id unless that id is what the envelope refused.",
        examples=[
            {
                "specversion": "1.0",
                "id": "evt-O-1001",
                "source": "/channels/webshop",
                "type": "crm.order.placed.v1",
                "time": "2026-11-20T10:00:00Z",
                "subject": "C-1001",
                "data": {"customer_id": "C-1001", "order_id": "O-1001", "currency": "EUR", "total": "59.90"},
            }
        ],
    )


def replay_topics(runtime: Runtime) -> list[str]:
    """The ingest topics the service consumes: those it may replay a corrected record to."""
    consumed = {str(topic) for subscription in runtime.subscriptions for topic in subscription.topics}
    return sorted(consumed & INGEST_TOPICS)


def declare_replays(runtime: Runtime) -> None:
    """Declare the replays as what the service publishes, so its AsyncAPI document and its ACLs include them."""
    service = runtime.settings.service_name
    for topic in replay_topics(runtime):
        runtime.publishes(
            topic,
            title=f"{topic}:{service}-replay",
            description=f"A record {service} dead-lettered, corrected by an operator and published again "
            "(POST /v1/admin/deadletters/{letter_id}/replay); key: its subject, the customer id.",
            schema=next(s.schema for s in runtime.subscriptions if topic in s.topics),
        )


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


@router.get(
    "/deadletters",
    response_model=Page[LetterView],
    dependencies=[requires(ADMIN), Admin],
    summary="The records this service rejected, newest first, with the reasons",
)
async def list_letters(
    request: Request,
    limit: Limit = 50,
    cursor: Cursor = None,
    topic: Annotated[Topic | None, Query(description="Only the letters of records read on this topic.")] = None,
    status: Annotated[
        Literal["parked", "replayed"] | None, Query(description="`parked`: not replayed yet; `replayed`.")
    ] = None,
) -> Page[LetterView]:
    query: dict[str, Any] = {}
    if topic is not None:
        query["source_topic"] = topic.value
    if status is not None:
        query["replayed_at"] = None if status == "parked" else {"$ne": None}
    docs, next_cursor = await keyset_page(
        _runtime(request).require_store().db[DEADLETTERS],
        query,
        time_field="failed_at",
        limit=limit,
        cursor=cursor,
        newest_first=True,
        projection=SHOWN,
    )
    return Page[LetterView](items=[LetterView.of(d) for d in docs], next_cursor=next_cursor)


async def _known(store: Store, letter_id: str) -> dict[str, Any]:
    document = await store.db[DEADLETTERS].find_one({"_id": letter_id}, SHOWN)
    if document is None:
        raise Problem(404, "Dead letter not found", f"this service parked no letter {letter_id}")
    return document


@router.get(
    "/deadletters/{letter_id}",
    response_model=LetterView,
    dependencies=[requires(ADMIN), Admin],
    responses={404: {"description": "This service parked no letter with this id"}},
    summary="One dead letter",
)
async def get_letter(request: Request, letter_id: LetterId) -> LetterView:
    return LetterView.of(await _known(_runtime(request).require_store(), letter_id))


@router.post(
    "/deadletters/{letter_id}/replay",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=LetterView,
    dependencies=[requires(ADMIN), Admin],
    responses={
        404: {"description": "This service parked no letter with this id"},
        409: {
            "description": "Replayed already, read on a topic that is not an ingest topic, no longer consumed here, "
            "or its original was erased with its customer's personal data"
        },
        422: {"description": "The record does not parse as the service's consumer reads the letter's topic"},
    },
    summary="Publish a corrected record again to the letter's topic, keyed by its subject; the letter is replayed",
    description="The record is checked as the consumer that rejected it reads its topic, then published through "
    "the outbox in the transaction that marks the letter replayed; the service consumes it as any other record. "
    "Only letters of the ingest topics are replayed, each once.",
)
async def replay_letter(
    request: Request, principal: Annotated[Principal, requires(ADMIN)], letter_id: LetterId, body: Replay
) -> LetterView:
    runtime = _runtime(request)
    store = runtime.require_store()
    letter = await _known(store, letter_id)
    if letter.get("replayed_at") is not None:
        raise _replayed_already(letter)
    topic: str = letter["source_topic"]
    if topic not in INGEST_TOPICS:
        raise Problem(
            409,
            "Dead letter not replayable",
            f"the record was read on {topic}, which a service publishes: only letters of the ingest topics "
            f"({', '.join(sorted(INGEST_TOPICS))}) are replayed; the service that published it publishes it again",
        )
    if letter.get("original_erased_at") is not None:
        raise Problem(
            409,
            "Dead letter not replayable",
            "the customer of this letter was erased: replaying the record would bring back their personal data",
        )
    consumer = _consumer_of(runtime, topic, letter.get("consumer_group"))
    if consumer is None:
        raise Problem(
            409, "Dead letter not replayable", f"this service no longer consumes {topic} as {letter['consumer_group']}"
        )
    event = _corrected(consumer, body.record, letter.get("event_id"))
    if not await mark_replayed(store, letter_id, event, topic=topic, by=principal.audit_name):
        raise _replayed_already(await _known(store, letter_id))
    return LetterView.of(await _known(store, letter_id))


def _replayed_already(letter: dict[str, Any]) -> Problem:
    return Problem(
        409,
        "Dead letter replayed already",
        f"letter {letter['_id']} was replayed at {letter['replayed_at'].isoformat()} as {letter['replayed_event_id']}",
    )


def _consumer_of(runtime: Runtime, topic: str, group: str | None) -> Subscription | None:
    return next(
        (s for s in runtime.subscriptions if topic in s.topics and (group is None or s.group_id == group)), None
    )


_ADAPTERS: dict[tuple[str, tuple[str, ...]], TypeAdapter[Any]] = {}


def _adapter(subscription: Subscription) -> TypeAdapter[Any]:
    """The consumer's event schema, built once: a discriminated union of the catalog takes a while to build."""
    key = (subscription.group_id, subscription.topics)
    if key not in _ADAPTERS:
        _ADAPTERS[key] = TypeAdapter(subscription.schema)
    return _ADAPTERS[key]


def _corrected(consumer: Subscription, record: dict[str, Any], letter_event_id: str | None) -> CloudEvent[Any]:
    """The record as the consumer parses it, or a 422 naming what is wrong with it.

    A replay is a retry of the rejected event, so it keeps the event's id: a consumer that applied the original
    (another group of the topic) takes the replay for a duplicate. Only an id the envelope refused may change.
    """
    adapter = _adapter(consumer)
    try:
        event: CloudEvent[Any] = parse_record(adapter, json.dumps(record).encode())
    except ValidationError as exc:
        errors = [
            {"location": ".".join(("record", *(str(p) for p in e["loc"]))), "message": e["msg"]} for e in exc.errors()
        ]
        raise Problem(
            422,
            "Invalid record",
            f"the record does not parse as {consumer.group_id} reads it: {describe_validation_error(exc)}",
            errors=errors,
        ) from exc
    if letter_event_id is not None and event.id != letter_event_id:
        try:
            parse_record(adapter, json.dumps({**record, "id": letter_event_id}).encode())
        except ValidationError:
            return event  # the original id is refused by the envelope: a new one is the correction
        raise Problem(
            422,
            "Invalid record",
            f"the record's id {event.id!r} is not the letter's {letter_event_id!r}: a replay keeps the event's id, "
            "so a consumer that applied the original takes it for a duplicate",
            errors=[{"location": "record.id", "message": f"must be {letter_event_id!r}, the letter's event id"}],
        )
    return event


async def mark_replayed(store: Store, letter_id: str, event: CloudEvent[Any], *, topic: str, by: str) -> bool:
    """Mark the letter replayed and put the corrected event in the outbox for `topic`, in one transaction; False
    (and nothing written) when the letter was replayed already."""

    async def work(uow: UnitOfWork) -> bool:
        marked = await uow.db[DEADLETTERS].update_one(
            {"_id": letter_id, "replayed_at": None},
            {"$set": {"replayed_at": utc_now(), "replayed_event_id": event.id, "replayed_by": by}},
            session=uow.session,
        )
        if marked.modified_count != 1:
            return False
        uow.emit(event, topic)
        return True

    return await store.transaction(work)
