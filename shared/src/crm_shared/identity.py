"""What every service does about merges, unmerges, erasures and export requests of the customer service.

The customer service publishes the requests on crm.customer.events (crm.customer.merged|unmerged|erased|
export_requested.v1). Each service subscribes with `subscribe`, in a consumer group of its own, and gives a
`Holder`: what it holds about a customer and how to move, give back, erase and export it. The requests are
applied exactly once (`Store.apply_batch`), and each one is answered on crm.identity.answers in the same
transaction: crm.identity.applied.v1 (merge, unmerge, erasure) or crm.identity.exported.v1 (the records).

How a merge stays reversible, in every service alike:
- the service keeps an alias per merged id (`customer_aliases`: `_id` the merged id, `into` the survivor it was
  merged into, `merge_id`); an alias of an alias is followed (A into B, then B into C: A is C's);
- a record moved to the survivor keeps the id it was filed under first in `origin_customer_id` (set once, when
  it first moves), and a record filed under the survivor for an event that named the merged id gets it too:
  the batch consumer files such an event under the survivor (`redirect`), with the id it named in the envelope's
  `originalsubject`;
- an unmerge gives back to the merged id the records whose origin is it, or an id merged into it before.
`Records` does all of this for collections of records with a customer id field; a document per customer
(scoring's facts) needs its own merge, so a Holder may implement the four operations as it likes.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from bson import Decimal128, ObjectId

from crm_shared.events import (
    IDENTITY_REQUESTS,
    AnyEvent,
    CloudEvent,
    CustomerErasedEvent,
    CustomerExportRequestedEvent,
    CustomerMatchKeysChangedEvent,
    CustomerMergedEvent,
    CustomerRegisteredEvent,
    CustomerUnmergedEvent,
    ExportAnswered,
    ExportAnsweredEvent,
    IdentityAnswer,
    IdentityApplied,
    IdentityAppliedEvent,
    IdentityService,
    derived_event_id,
    utc_now,
)
from crm_shared.logging import get_logger
from crm_shared.store import DEADLETTERS, OUTBOX, Batch, BatchOutcome, Store, UnitOfWork, find_any
from crm_shared.topics import Topic

if TYPE_CHECKING:
    from crm_shared.service import Runtime

log = get_logger(__name__)
E = TypeVar("E")

ALIASES = "customer_aliases"
ORIGIN = "origin_customer_id"
MAX_CHAIN = 20
"""Aliases followed at most from one id (a merge of a merge of a merge...); a loop is cut there."""

EXPORT_PART_BYTES = 256 * 1024
"""JSON bytes of records per export answer at most (a record is never split; one larger goes alone)."""


NOT_REDIRECTED: tuple[type[CloudEvent[Any]], ...] = (
    *IDENTITY_REQUESTS,
    IdentityAppliedEvent,
    ExportAnsweredEvent,
    # A sign-up and its match keys are about the id they name, merged or not.
    CustomerRegisteredEvent,
    CustomerMatchKeysChangedEvent,
)


# ---------------------------------------------------------------- aliases


async def resolve(db: Any, customer_ids: Iterable[str], *, session: Any = None) -> dict[str, str]:
    """The survivor each id is filed under now, for the ids that were merged away (the others are absent)."""
    pending = sorted(set(customer_ids))
    into: dict[str, str] = {}
    for _ in range(MAX_CHAIN):
        if not pending:
            break
        found = await find_any(db[ALIASES], [{"_id": {"$in": pending}}], {"into": 1}, session=session)
        hops = {d["_id"]: d["into"] for d in found}
        into.update(hops)
        pending = sorted({t for t in hops.values() if t not in into})
    resolved: dict[str, str] = {}
    for start in into:
        current, seen = start, {start}
        while current in into and into[current] not in seen:
            current = into[current]
            seen.add(current)
        if current != start:
            resolved[start] = current
    return resolved


async def merged_into(db: Any, customer_id: str, *, session: Any = None) -> list[str]:
    """`customer_id` and every id merged into it, directly or through another (the origins it owns)."""
    owned, frontier = [customer_id], [customer_id]
    for _ in range(MAX_CHAIN):
        found = await find_any(db[ALIASES], [{"into": {"$in": frontier}}], {"_id": 1}, session=session)
        frontier = [d["_id"] for d in found if d["_id"] not in owned]
        if not frontier:
            break
        owned += frontier
    return owned


async def filed_under(db: Any, customer_id: str, *, session: Any = None) -> tuple[str, dict[str, str]]:
    """Where a record a request creates for `customer_id` goes (a ticket or an opportunity opened through an API):
    the survivor when it was merged, with the origin fields the record keeps so an unmerge gives it back."""
    survivor = (await resolve(db, [customer_id], session=session)).get(customer_id)
    return (survivor, {ORIGIN: customer_id}) if survivor else (customer_id, {})


def _redirectable(event: Any) -> bool:
    """A catalog event about a customer that is not an identity request, and not pinned to its subject (an
    `originalsubject` equal to it: its publisher resolved the id itself, e.g. after an unmerge)."""
    return (
        isinstance(event, CloudEvent)
        and not isinstance(event, NOT_REDIRECTED)
        and event.originalsubject != event.subject
    )


async def redirect(store: Store, events: Sequence[E]) -> list[E]:
    """The events, each one naming a merged id filed under its survivor instead (`originalsubject` keeps the
    id it named). One read when the service holds no alias, which is the usual case."""
    if not events or await store.db[ALIASES].find_one({}, {"_id": 1}) is None:
        return list(events)
    candidates = [e for e in events if _redirectable(e)]
    survivors = await resolve(store.db, (e.subject for e in candidates))  # type: ignore[attr-defined]
    if not survivors:
        return list(events)
    return [
        _filed_under(e, survivors[e.subject]) if _redirectable(e) and e.subject in survivors else e  # type: ignore[attr-defined]
        for e in events
    ]


def _filed_under(event: E, survivor: str) -> E:
    assert isinstance(event, CloudEvent)
    data = event.data.model_copy(update={"customer_id": survivor})
    filed = event.model_copy(
        update={"subject": survivor, "data": data, "originalsubject": event.originalsubject or event.subject}
    )
    return filed


def origin_fields(event: CloudEvent[Any]) -> dict[str, str]:
    """What a record filed for `event` keeps of the id it named: `{ORIGIN: id}` when that is not its subject."""
    return {ORIGIN: event.originalsubject} if event.originalsubject and event.originalsubject != event.subject else {}


# ---------------------------------------------------------------- requests as the holders see them


@dataclass(frozen=True)
class Merge:
    event: CustomerMergedEvent

    @property
    def survivor(self) -> str:
        return self.event.customer_id

    @property
    def merged(self) -> str:
        return self.event.data.merged_id


@dataclass(frozen=True)
class Unmerge:
    event: CustomerUnmergedEvent
    origins: tuple[str, ...]
    """The ids whose records go back to `merged`: itself and every id merged into it before."""

    @property
    def survivor(self) -> str:
        return self.event.customer_id

    @property
    def merged(self) -> str:
        return self.event.data.merged_id


@dataclass(frozen=True)
class Erasure:
    event: CustomerErasedEvent

    @property
    def customer_id(self) -> str:
        return self.event.customer_id

    @property
    def pseudonym(self) -> str:
        return self.event.data.pseudonym


@dataclass(frozen=True)
class Erased:
    cleared: int = 0
    kept: int = 0

    def __add__(self, other: Erased) -> Erased:
        return Erased(self.cleared + other.cleared, self.kept + other.kept)


class Holder(Protocol):
    """What a service holds about customers, and how it follows the customer service's requests. Each operation
    runs in the request's transaction (`uow`), may emit events there, and says how many records it touched."""

    async def merge(self, uow: UnitOfWork, merge: Merge) -> int: ...

    async def unmerge(self, uow: UnitOfWork, unmerge: Unmerge) -> int: ...

    async def erase(self, uow: UnitOfWork, erasure: Erasure) -> Erased: ...

    async def export(self, uow: UnitOfWork, customer_id: str) -> dict[str, list[dict[str, Any]]]: ...


# ---------------------------------------------------------------- records with a customer id field


@dataclass(frozen=True)
class Held:
    """A collection of records that each name one customer in `field`.

    On erasure the records are `kept` under the pseudonym with the `personal` fields removed (dotted paths may
    name nested fields), or `deleted`. `exported` False leaves the collection out of an export (plumbing)."""

    collection: str
    field: str = "customer_id"
    personal: tuple[str, ...] = ()
    on_erasure: Literal["kept", "deleted"] = "kept"
    exported: bool = True


async def move_records(uow: UnitOfWork, held: Held, merged: str, survivor: str) -> int:
    """Move `merged`'s records of `held` to `survivor`, each keeping the id it was filed under first."""
    coll, s = uow.db[held.collection], uow.session
    await coll.update_many({held.field: merged, ORIGIN: None}, {"$set": {ORIGIN: merged}}, session=s)
    result = await coll.update_many({held.field: merged}, {"$set": {held.field: survivor}}, session=s)
    return int(result.modified_count)


async def give_back_records(uow: UnitOfWork, held: Held, unmerge: Unmerge) -> int:
    """Give the survivor's records of `held` whose origin is one of the unmerge's origins back to the merged id."""
    coll, s = uow.db[held.collection], uow.session
    moved = 0
    for i in range(0, len(unmerge.origins), 25):
        chunk = list(unmerge.origins[i : i + 25])
        result = await coll.update_many(
            {held.field: unmerge.survivor, ORIGIN: {"$in": chunk}}, {"$set": {held.field: unmerge.merged}}, session=s
        )
        moved += int(result.modified_count)
    # Back under the id it was first filed under, a record needs no origin any more.
    await coll.update_many({held.field: unmerge.merged, ORIGIN: unmerge.merged}, {"$unset": {ORIGIN: ""}}, session=s)
    return moved


async def erase_records(uow: UnitOfWork, held: Held, erasure: Erasure) -> Erased:
    coll, s = uow.db[held.collection], uow.session
    if held.on_erasure == "deleted":
        deleted = await coll.delete_many({held.field: erasure.customer_id}, session=s)
        return Erased(cleared=int(deleted.deleted_count))
    unset = {name: "" for name in (*held.personal, ORIGIN)}
    result = await coll.update_many(
        {held.field: erasure.customer_id},
        {"$set": {held.field: erasure.pseudonym}, "$unset": unset},
        session=s,
    )
    return Erased(cleared=int(result.modified_count) if held.personal else 0, kept=int(result.modified_count))


async def export_records(uow: UnitOfWork, held: Held, customer_id: str) -> list[dict[str, Any]]:
    docs = await uow.db[held.collection].find({held.field: customer_id}, session=uow.session).to_list(None)
    return [as_json(d) for d in docs]


@dataclass(frozen=True)
class Records:
    """A Holder for collections of records with a customer id field: a merge moves them, an unmerge gives back
    what came from the merged id, an erasure clears or deletes them, an export lists them."""

    held: Sequence[Held] = field(default_factory=tuple)

    async def merge(self, uow: UnitOfWork, merge: Merge) -> int:
        return sum([await move_records(uow, h, merge.merged, merge.survivor) for h in self.held])

    async def unmerge(self, uow: UnitOfWork, unmerge: Unmerge) -> int:
        return sum([await give_back_records(uow, h, unmerge) for h in self.held])

    async def erase(self, uow: UnitOfWork, erasure: Erasure) -> Erased:
        total = Erased()
        for h in self.held:
            total += await erase_records(uow, h, erasure)
        return total

    async def export(self, uow: UnitOfWork, customer_id: str) -> dict[str, list[dict[str, Any]]]:
        return {h.collection: await export_records(uow, h, customer_id) for h in self.held if h.exported}


def as_json(value: Any) -> Any:
    """A stored document as plain JSON values: times in RFC 3339, decimals as strings, bytes in base64."""
    if isinstance(value, Mapping):
        return {str(k): as_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [as_json(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal128):
        return str(value.to_decimal())
    if isinstance(value, Decimal | ObjectId):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


def export_parts(records: Mapping[str, Sequence[dict[str, Any]]]) -> list[dict[str, list[dict[str, Any]]]]:
    """The records cut in parts of about EXPORT_PART_BYTES of JSON each; one empty part when there are none."""
    parts: list[dict[str, list[dict[str, Any]]]] = [{}]
    size = 0
    for collection, docs in records.items():
        for doc in docs:
            length = len(json.dumps(doc, separators=(",", ":"), default=str)) + 1
            if size and size + length > EXPORT_PART_BYTES:
                parts.append({})
                size = 0
            parts[-1].setdefault(collection, []).append(doc)
            size += length
    return parts


async def erase_plumbing(uow: UnitOfWork, customer_id: str) -> Erased:
    """What every service keeps about a customer beside its own data: the records about them its outbox sent
    (kept a week for inspection), the originals of their dead letters (the letters, which hold no personal
    data, stay with their reason) and the aliases naming them."""
    s = uow.session
    sent = await uow.db[OUTBOX].update_many(
        {"records.key": customer_id, "sent_at": {"$ne": None}}, {"$pull": {"records": {"key": customer_id}}}, session=s
    )
    letters = await uow.db[DEADLETTERS].update_many(
        {"key": customer_id, "original_erased_at": None},
        {
            "$set": {
                "original": None,
                "original_kept_in": None,
                "original_text": None,
                "original_value_base64": None,
                "original_erased_at": utc_now(),
            }
        },
        session=s,
    )
    # The ids merged into the customer, and its own alias: nothing is filed under an erased id any more.
    await uow.db[ALIASES].delete_many({"into": customer_id}, session=s)
    await uow.db[ALIASES].delete_many({"_id": customer_id}, session=s)
    return Erased(cleared=int(sent.modified_count) + int(letters.modified_count))


# ---------------------------------------------------------------- the requests, applied


def _answer_id(service: str, event: CloudEvent[Any], part: int = 0) -> str:
    return derived_event_id(f"/crm/{service}", "identity", event.id, str(part))


def applied_event(
    service: IdentityService,
    event: CloudEvent[Any],
    request: Literal["merge", "unmerge", "erasure"],
    request_id: str,
    records: int,
    kept: int = 0,
) -> IdentityAppliedEvent:
    data = IdentityApplied(
        customer_id=event.customer_id,
        request_id=request_id,
        request=request,
        service=service,
        records=records,
        kept=kept,
    )
    return IdentityAppliedEvent.create(data, source=f"/crm/{service}", id=_answer_id(service, event), cause=event)


def export_events(
    service: IdentityService, event: CustomerExportRequestedEvent, records: Mapping[str, Sequence[dict[str, Any]]]
) -> list[ExportAnsweredEvent]:
    parts = export_parts(records)
    return [
        ExportAnsweredEvent.create(
            ExportAnswered(
                customer_id=event.customer_id,
                request_id=event.data.request_id,
                service=service,
                part=i,
                parts=len(parts),
                records=part,
            ),
            source=f"/crm/{service}",
            id=_answer_id(service, event, i),
            cause=event,
        )
        for i, part in enumerate(parts, start=1)
    ]


async def apply_request(uow: UnitOfWork, service: IdentityService, holder: Holder, event: CloudEvent[Any]) -> None:
    """Apply one request to what the service holds, keep the aliases, and answer it, in `uow`."""
    aliases = uow.db[ALIASES]
    if isinstance(event, CustomerMergedEvent):
        merge = Merge(event)
        moved = await holder.merge(uow, merge)
        await aliases.replace_one(
            {"_id": merge.merged},
            {"_id": merge.merged, "into": merge.survivor, "merge_id": event.data.merge_id, "at": event.time},
            upsert=True,
            session=uow.session,
        )
        uow.emit(applied_event(service, event, "merge", event.data.merge_id, moved), Topic.IDENTITY_ANSWERS)
        log.info("customer_merge_applied", survivor=merge.survivor, merged=merge.merged, records=moved)
    elif isinstance(event, CustomerUnmergedEvent):
        merged = event.data.merged_id
        alias = await aliases.find_one({"_id": merged}, session=uow.session)
        moved = 0
        if alias is not None and alias.get("merge_id") == event.data.merge_id:
            await aliases.delete_one({"_id": merged}, session=uow.session)
            origins = tuple(await merged_into(uow.db, merged, session=uow.session))
            moved = await holder.unmerge(uow, Unmerge(event, origins))
        uow.emit(applied_event(service, event, "unmerge", event.data.merge_id, moved), Topic.IDENTITY_ANSWERS)
        log.info("customer_unmerge_applied", survivor=event.customer_id, merged=merged, records=moved)
    elif isinstance(event, CustomerErasedEvent):
        erased = await holder.erase(uow, Erasure(event)) + await erase_plumbing(uow, event.customer_id)
        request_id = event.data.erasure_id
        answer = applied_event(service, event, "erasure", request_id, erased.cleared, erased.kept)
        uow.emit(answer, Topic.IDENTITY_ANSWERS)
        log.info("customer_erasure_applied", erasure_id=request_id, cleared=erased.cleared, kept=erased.kept)
    elif isinstance(event, CustomerExportRequestedEvent):
        records = await holder.export(uow, event.customer_id)
        for part in export_events(service, event, records):
            uow.emit(part, Topic.IDENTITY_ANSWERS)
        log.info("customer_export_answered", request_id=event.data.request_id, records=sum(map(len, records.values())))


async def apply_requests(
    store: Store, service: IdentityService, holder: Holder, events: Sequence[CloudEvent[Any]]
) -> BatchOutcome:
    """Apply the batch's identity requests in order, once each, in one transaction; other events are ignored."""

    async def work(uow: UnitOfWork, batch: Batch[CloudEvent[Any]]) -> None:
        for event in batch.events:
            await apply_request(uow, service, holder, event)

    return await store.apply_batch(
        f"{service}-identity", events, work, relevant=lambda e: isinstance(e, IDENTITY_REQUESTS)
    )


def subscribe(runtime: Runtime, service: IdentityService, holder: Holder) -> None:
    """Follow the customer service's merges, unmerges, erasures and export requests, in a group of their own."""

    async def on_request(events: Sequence[CloudEvent[Any]]) -> BatchOutcome:
        return await apply_requests(runtime.require_store(), service, holder, events)

    runtime.subscribe(
        Topic.CUSTOMER_EVENTS,
        schema=AnyEvent,
        handler=on_request,
        group_id=f"{runtime.settings.consumer_group}-identity",
        title=f"crm.customer.events:{service}-identity",
        description="Merges, unmerges, erasures and export requests of the customer service "
        "(crm.customer.merged|unmerged|erased|export_requested.v1): what this service holds about the customer is "
        "moved to the survivor, given back, erased (aggregates kept under a pseudonym) or exported. Other event "
        "types are ignored.",
    )
    runtime.publishes(
        Topic.IDENTITY_ANSWERS,
        title=f"crm.identity.answers:{service}",
        description="What this service did about each request: crm.identity.applied.v1 (records moved, given "
        "back or erased) and crm.identity.exported.v1 (its records about the customer, in parts). Key: customer "
        "id. Read by the customer service only: an export holds personal data.",
        schema=IdentityAnswer,
    )
