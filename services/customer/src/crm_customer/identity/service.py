"""Merges, unmerges, erasures and exports: decided here, followed by every service (crm_shared.identity).

- A **merge** of `merged` into `survivor` (automatic on a strong identifier at sign-up, or confirmed by a person)
  resolves the survivor's fields by the survivorship rules, marks the merged profile `merged_into` (it stays, for
  an unmerge), keeps both profiles as they were in the merge record (`merges`), and publishes
  crm.customer.merged.v1 (with the survivor's consents that changed, so marketing obeys them). Each service,
  this one too, moves what it holds and answers on crm.identity.answers; the merge record shows who has.
- An **unmerge** gives the survivor back its own values where nothing changed since, restores the merged
  profile with the consent facts that arrived for it since, and publishes crm.customer.unmerged.v1 and both
  customers' consents as they stand.
- An **erasure** (crm_customer.handlers.erase_personal_data) publishes crm.customer.erased.v1 with a pseudonym;
  `erasures` shows which services confirmed and which are pending.
- An **export** publishes crm.customer.export_requested.v1; `exports` and `export_parts` gather the services'
  answers, and the document is complete once every service answered all its parts.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pymongo import ASCENDING, IndexModel

from crm_customer import repository
from crm_customer.identity import survivorship
from crm_customer.profiles import repository as extras_store
from crm_customer.profiles.domain import external_keys, name_prefixes
from crm_shared import identity
from crm_shared.events import (
    Channel,
    CloudEvent,
    ConsentChanged,
    ConsentChangedEvent,
    CustomerErased,
    CustomerErasedEvent,
    CustomerExportRequested,
    CustomerExportRequestedEvent,
    CustomerMatchKeysChanged,
    CustomerMatchKeysChangedEvent,
    CustomerMerged,
    CustomerMergedEvent,
    CustomerUnmerged,
    CustomerUnmergedEvent,
    ExportAnsweredEvent,
    IdentityAppliedEvent,
    IdentityService,
    derived_event_id,
    utc_now,
)
from crm_shared.logging import get_logger
from crm_shared.matching import match_keys, normalise_email, normalise_phone
from crm_shared.security import OWNED, Principal
from crm_shared.store import Batch, BatchOutcome, IndexSpec, Store, UnitOfWork, as_stored, find_any
from crm_shared.topics import Topic

log = get_logger(__name__)

SOURCE = "/crm/customer"
MERGES = "merges"
ERASURES = "erasures"
EXPORTS = "exports"
EXPORT_PARTS = "export_parts"
REJECTIONS = "merge_rejections"
"""Pairs of customers a person said are not one (`_id`: the two ids sorted, joined by `|`)."""
EXPORT_KEPT = timedelta(days=30)
"""An export (personal data) is kept this long after it was asked for, then MongoDB removes it."""
PRIVACY_SERVICES: tuple[IdentityService, ...] = ("customer", "sales", "support", "scoring", "marketing")
AUTO_MERGE_RULES = ("email", "phone")

INDEXES = (
    IndexSpec(MERGES, IndexModel([("survivor_id", ASCENDING), ("merged_at", ASCENDING)], name="by_survivor")),
    IndexSpec(MERGES, IndexModel([("merged_id", ASCENDING), ("merged_at", ASCENDING)], name="by_merged")),
    IndexSpec(ERASURES, IndexModel([("customer_id", ASCENDING), ("requested_at", ASCENDING)], name="by_customer")),
    IndexSpec(EXPORTS, IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expiry")),
    IndexSpec(EXPORT_PARTS, IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expiry")),
    IndexSpec(EXPORT_PARTS, IndexModel([("request_id", ASCENDING)], name="by_request")),
)


class MergeRefused(Exception):
    """The merge or unmerge cannot be done as asked (the message says why); `status` is the HTTP answer."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------- the service's own records


HELD = identity.Records(
    (
        identity.Held(repository.TIMELINE, on_erasure="deleted"),
        identity.Held(repository.INTERACTIONS, personal=("summary",)),
        identity.Held(repository.REFERRALS),
        # The consent facts are the proof of what the customer allowed: they stay under the customer id, which the
        # erased profile keeps too, so refusals keep being honoured.
        identity.Held(repository.CONSENT_HISTORY, on_erasure="kept"),
    )
)


@dataclass(frozen=True)
class CustomerRecords:
    """The customer service's Holder: its records of a customer, and the profile itself in an export."""

    async def merge(self, uow: UnitOfWork, merge: identity.Merge) -> int:
        return await HELD.merge(uow, merge)

    async def unmerge(self, uow: UnitOfWork, unmerge: identity.Unmerge) -> int:
        return await HELD.unmerge(uow, unmerge)

    async def erase(self, uow: UnitOfWork, erasure: identity.Erasure) -> identity.Erased:
        records = [h for h in HELD.held if h.collection != repository.CONSENT_HISTORY]
        return await identity.Records(records).erase(uow, erasure)

    async def export(self, uow: UnitOfWork, customer_id: str) -> dict[str, list[dict[str, Any]]]:
        records = await HELD.export(uow, customer_id)
        profile = await uow.db[repository.CUSTOMERS].find_one({"_id": customer_id}, session=uow.session)
        # The profiles merged into this customer are the person's too (kept for an undo).
        merged = uow.db[repository.CUSTOMERS].find({"merged_into": customer_id}, session=uow.session)
        contacts = uow.db[extras_store.ACCOUNT_CONTACTS].find({"contact_id": customer_id}, session=uow.session)
        merges = uow.db[MERGES].find({"survivor_id": customer_id}, {"survivor_before": 0, "merged_before": 0})
        return {
            "profile": [identity.as_json(_without_search_keys(profile))] if profile else [],
            "merged_profiles": [identity.as_json(_without_search_keys(d)) async for d in merged],
            "account_contacts": [identity.as_json(d) async for d in contacts],
            "merges": [identity.as_json(d) async for d in merges],
            **records,
        }


def _without_search_keys(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if not k.startswith("search_")}


# ---------------------------------------------------------------- merges


def _search_keys(fields: Mapping[str, Any], doc: Mapping[str, Any]) -> dict[str, Any]:
    """The search keys of the survivor's document with `fields` set."""
    after = {**doc, **fields}
    keys: dict[str, Any] = {}
    if "name" in fields:
        keys["search_name"] = name_prefixes(after.get("name"))
    for name, normalise in (("email", normalise_email), ("phone", normalise_phone)):
        if name in fields:
            try:
                keys[f"search_{name}"] = normalise(after.get(name))
            except ValueError:
                keys[f"search_{name}"] = None
    if "external_ids" in fields:
        keys["search_external"] = external_keys(after.get("external_ids") or {})
    return keys


def _consent_events(
    customer_id: str,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any],
    cause: CloudEvent[Any],
    *,
    pinned: bool = False,
) -> list[ConsentChangedEvent]:
    """A consent change per channel and purpose whose answer differs from `before` (every one without it), at the
    channel's time: how the services that obey consents learn what a merge or unmerge decided. `pinned` files
    them under `customer_id` even where a service still holds an alias for it (an unmerge's)."""
    events: list[ConsentChangedEvent] = []
    for values, times in survivorship.CONSENTS:
        purpose: Literal["marketing", "service"] = "marketing" if values == "consents" else "service"
        was = dict((before or {}).get(values) or {})
        for channel, granted in sorted((after.get(values) or {}).items()):
            if before is not None and was.get(channel) == granted:
                continue
            at = (after.get(times) or {}).get(channel) or after["registered_at"]
            data = ConsentChanged(customer_id=customer_id, channel=channel, granted=granted, purpose=purpose)
            event = ConsentChangedEvent.create(
                data,
                source=SOURCE,
                id=derived_event_id(SOURCE, cause.id, customer_id, purpose, channel),
                time=max(at, cause.time) if pinned else at,
                cause=cause,
            )
            events.append(event.model_copy(update={"originalsubject": customer_id}) if pinned else event)
    return events


def _match_key_event(doc: Mapping[str, Any], secret: bytes | None, cause: CloudEvent[Any]) -> CloudEvent[Any] | None:
    if secret is None:
        return None
    keys = match_keys(secret, email=doc.get("email"), phone=doc.get("phone"))
    data = CustomerMatchKeysChanged(customer_id=doc["_id"], match_keys=keys, reason="registered")
    return CustomerMatchKeysChangedEvent.create(
        data,
        source=SOURCE,
        id=derived_event_id(SOURCE, "match-keys", cause.id, doc["_id"]),
        time=cause.time,
        cause=cause,
    )


def _refuse(survivor: Mapping[str, Any] | None, merged: Mapping[str, Any] | None, ids: tuple[str, str]) -> None:
    survivor_id, merged_id = ids
    if survivor_id == merged_id:
        raise MergeRefused("a customer cannot be merged into itself", 422)
    for doc, customer_id in ((survivor, survivor_id), (merged, merged_id)):
        if doc is None:
            raise MergeRefused(f"no customer {customer_id}", 404)
        if doc.get("merged_into"):
            raise MergeRefused(f"customer {customer_id} was merged into {doc['merged_into']} already")
        if doc.get("erased_at") is not None and not any(doc.get(f) for f in ("name", "email", "phone")):
            raise MergeRefused(f"the personal data of customer {customer_id} was erased: there is nothing to merge")
    assert survivor is not None and merged is not None
    if survivor.get("kind", "person") != merged.get("kind", "person"):
        raise MergeRefused(
            f"customer {survivor_id} is a {survivor.get('kind', 'person')} and {merged_id} a "
            f"{merged.get('kind', 'person')}: only customers of one kind merge"
        )


async def merge_in(
    uow: UnitOfWork,
    survivor_id: str,
    merged_id: str,
    *,
    decided_by: Literal["automatic", "confirmed"],
    evidence: Sequence[str],
    rules: survivorship.Rules,
    match_secret: bytes | None,
    merged_by: str | None = None,
) -> dict[str, Any]:
    """Merge `merged_id` into `survivor_id` in `uow`; the merge record. Raises MergeRefused."""
    customers = uow.db[repository.CUSTOMERS]
    survivor = await customers.find_one({"_id": survivor_id}, session=uow.session)
    merged = await customers.find_one({"_id": merged_id}, session=uow.session)
    _refuse(survivor, merged, (survivor_id, merged_id))
    assert survivor is not None and merged is not None
    at = as_stored(utc_now())
    merge_id = f"merge-{uuid.uuid4().hex[:16]}"
    result = survivorship.merge(survivor, merged, rules)
    fields = {**result.fields, **_search_keys(result.fields, survivor)}
    if fields:
        await customers.update_one({"_id": survivor_id}, {"$set": fields}, session=uow.session)
    await customers.update_one(
        {"_id": merged_id},
        {"$set": {"merged_into": survivor_id, "merged_at": at, "merge_id": merge_id}},
        session=uow.session,
    )
    after = {**survivor, **fields}
    record = {
        "_id": merge_id,
        "survivor_id": survivor_id,
        "merged_id": merged_id,
        "decided_by": decided_by,
        "evidence": list(evidence),
        "merged_by": merged_by,
        "merged_at": at,
        "fields_changed": result.changed,
        "status": "merged",
        "survivor_before": survivor,
        "merged_before": merged,
        "survivor_after": after,
        "applied": {},
    }
    await uow.db[MERGES].insert_one(record, session=uow.session)
    event = CustomerMergedEvent.create(
        CustomerMerged(
            customer_id=survivor_id,
            merge_id=merge_id,
            merged_id=merged_id,
            decided_by=decided_by,
            evidence=[e[:200] for e in evidence[:20]],
        ),
        source=SOURCE,
        id=derived_event_id(SOURCE, "merged", merge_id),
        time=at,
    )
    uow.emit(event, Topic.CUSTOMER_EVENTS)
    for changed in _consent_events(survivor_id, survivor, after, event):
        uow.emit(changed, Topic.CUSTOMER_EVENTS)
    if {"email", "phone"} & set(result.changed):
        keys = _match_key_event(after, match_secret, event)
        if keys is not None:
            uow.emit(keys, Topic.CUSTOMER_EVENTS)
    return record


async def merge_customers(
    store: Store,
    survivor_id: str,
    merged_id: str,
    *,
    evidence: Sequence[str] = (),
    rules: survivorship.Rules = survivorship.DEFAULTS,
    match_secret: bytes | None = None,
    seen_by: Principal | None = None,
    decided_by: Literal["automatic", "confirmed"] = "confirmed",
) -> dict[str, Any]:
    """A person confirms that `merged_id` is `survivor_id` (both must be customers `seen_by` sees)."""
    if seen_by is not None:
        for customer_id in (survivor_id, merged_id):
            if await store.db[repository.CUSTOMERS].find_one(OWNED.restrict(seen_by, {"_id": customer_id})) is None:
                raise MergeRefused(f"no customer {customer_id}", 404)

    async def work(uow: UnitOfWork) -> dict[str, Any]:
        return await merge_in(
            uow,
            survivor_id,
            merged_id,
            decided_by=decided_by,
            evidence=evidence,
            rules=rules,
            match_secret=match_secret,
            merged_by=seen_by.id if seen_by is not None else None,
        )

    record = await store.transaction(work)
    log.info("customers_merged", merge_id=record["_id"], survivor=survivor_id, merged=merged_id, decided_by=decided_by)
    return record


async def merge_strong_matches(
    uow: UnitOfWork,
    customer_ids: Iterable[str],
    *,
    rules: Sequence[str],
    survivorship_rules: survivorship.Rules,
    match_secret: bytes | None,
) -> list[dict[str, Any]]:
    """In a sign-up batch's `uow`: merge each new customer into the oldest other customer of the same kind with
    the same normalised email or phone (the `rules` among `email`, `phone`), automatically. The merge records."""
    customers = uow.db[repository.CUSTOMERS]
    records: list[dict[str, Any]] = []
    for customer_id in customer_ids:
        doc = await customers.find_one({"_id": customer_id}, session=uow.session)
        if doc is None or doc.get("merged_into"):
            continue
        found: dict[str, tuple[dict[str, Any], list[str]]] = {}
        for rule in rules:
            value = doc.get(f"search_{rule}")
            if not value:
                continue
            query = {f"search_{rule}": value, "kind": doc.get("kind", "person"), "merged_into": None}
            async for other in customers.find(query, session=uow.session).limit(20):
                if other["_id"] != customer_id:
                    found.setdefault(other["_id"], (other, []))[1].append(rule)
        if not found:
            continue
        oldest = min(found.values(), key=lambda item: (item[0]["registered_at"], item[0]["_id"]))
        survivor, matched = oldest
        records.append(
            await merge_in(
                uow,
                survivor["_id"],
                customer_id,
                decided_by="automatic",
                evidence=[f"the same {rule}" for rule in matched],
                rules=survivorship_rules,
                match_secret=match_secret,
            )
        )
    return records


async def unmerge(
    store: Store, merge_id: str, *, match_secret: bytes | None = None, seen_by: Principal | None = None
) -> dict[str, Any]:
    """Undo the merge: the survivor's own values back where nothing changed since, the merged profile back with
    the consent facts that arrived for it since; publish crm.customer.unmerged.v1 and the consents."""

    async def work(uow: UnitOfWork) -> dict[str, Any]:
        record = await uow.db[MERGES].find_one({"_id": merge_id}, session=uow.session)
        if record is None:
            raise MergeRefused(f"no merge {merge_id}", 404)
        survivor_id, merged_id = record["survivor_id"], record["merged_id"]
        if seen_by is not None:
            query = OWNED.restrict(seen_by, {"_id": survivor_id})
            if await uow.db[repository.CUSTOMERS].find_one(query, session=uow.session) is None:
                raise MergeRefused(f"no merge {merge_id}", 404)
        if record["status"] != "merged":
            raise MergeRefused(f"merge {merge_id} is {record['status']}: it cannot be undone")
        customers = uow.db[repository.CUSTOMERS]
        survivor = await customers.find_one({"_id": survivor_id}, session=uow.session)
        merged = await customers.find_one({"_id": merged_id}, session=uow.session)
        if survivor is None or merged is None or merged.get("merge_id") != merge_id:
            raise MergeRefused(f"merge {merge_id} is not in force any more")
        if survivor.get("merged_into"):
            raise MergeRefused(
                f"customer {survivor_id} was merged into {survivor['merged_into']} since: undo that merge first"
            )
        at = as_stored(utc_now())
        restored = survivorship.unmerge(record["survivor_before"], record["survivor_after"], survivor, at)
        fields = {**restored, **_search_keys(restored, survivor)}
        if fields:
            await customers.update_one({"_id": survivor_id}, {"$set": fields}, session=uow.session)
        back = await _restored_merged(uow, record, at)
        await customers.replace_one({"_id": merged_id}, back, session=uow.session)
        await uow.db[MERGES].update_one(
            {"_id": merge_id},
            {"$set": {"status": "unmerged", "unmerged_at": at, "unmerged_by": seen_by.id if seen_by else None}},
            session=uow.session,
        )
        event = CustomerUnmergedEvent.create(
            CustomerUnmerged(customer_id=survivor_id, merge_id=merge_id, merged_id=merged_id),
            source=SOURCE,
            id=derived_event_id(SOURCE, "unmerged", merge_id),
            time=at,
        )
        uow.emit(event, Topic.CUSTOMER_EVENTS)
        survivor_now = {**survivor, **fields}
        for changed in _consent_events(survivor_id, survivor, survivor_now, event, pinned=True):
            uow.emit(changed, Topic.CUSTOMER_EVENTS)
        for changed in _consent_events(merged_id, None, back, event, pinned=True):
            uow.emit(changed, Topic.CUSTOMER_EVENTS)
        for doc in (survivor_now, back):
            keys = _match_key_event(doc, match_secret, event)
            if keys is not None:
                uow.emit(keys.model_copy(update={"originalsubject": doc["_id"]}), Topic.CUSTOMER_EVENTS)
        return {**record, "status": "unmerged", "unmerged_at": at}

    record = await store.transaction(work)
    log.info("customers_unmerged", merge_id=merge_id, survivor=record["survivor_id"], merged=record["merged_id"])
    return record


async def _restored_merged(uow: UnitOfWork, record: Mapping[str, Any], at: datetime) -> dict[str, Any]:
    """The merged customer's document as it was at the merge, with the consent facts that arrived for it since
    (filed under the survivor, their origin the merged id) applied in time order: the newer fact wins."""
    back = {k: v for k, v in record["merged_before"].items() if k not in ("merged_into", "merged_at", "merge_id")}
    since = uow.db[repository.CONSENT_HISTORY].find(
        {"customer_id": record["survivor_id"], identity.ORIGIN: record["merged_id"]}, session=uow.session
    )
    for fact in sorted([d async for d in since], key=lambda d: (d["at"], d["_id"])):
        values, times = (
            ("consents", "consents_changed_at")
            if fact["purpose"] == "marketing"
            else (
                "service_consents",
                "service_consents_changed_at",
            )
        )
        consents, changed_at = dict(back.get(values) or {}), dict(back.get(times) or {})
        channel: Channel = fact["channel"]
        on_record = (changed_at.get(channel, back["registered_at"]), consents.get(channel) is False)
        if (fact["at"], not fact["granted"]) > on_record:
            consents[channel], changed_at[channel] = fact["granted"], fact["at"]
            back[values], back[times] = consents, changed_at
    preferred = back.get("preferred_channel")
    if preferred is not None and not (back.get("consents") or {}).get(preferred):
        back["preferred_channel"] = None
    return back


async def find_merge(store: Store, merge_id: str) -> dict[str, Any] | None:
    return await store.db[MERGES].find_one(
        {"_id": merge_id}, {"survivor_before": 0, "merged_before": 0, "survivor_after": 0}
    )


async def merges_of(store: Store, customer_id: str) -> list[dict[str, Any]]:
    """The merges the customer took part in, as survivor or merged, oldest first."""
    hidden = {"survivor_before": 0, "merged_before": 0, "survivor_after": 0}
    docs = [d async for d in store.db[MERGES].find({"survivor_id": customer_id}, hidden)]
    docs += [d async for d in store.db[MERGES].find({"merged_id": customer_id}, hidden)]
    return sorted(docs, key=lambda d: (d["merged_at"], d["_id"]))


# ---------------------------------------------------------------- duplicate proposals a person rejected


def pair_id(one: str, other: str) -> str:
    return "|".join(sorted((one, other)))


async def reject_proposal(
    store: Store, customer_id: str, other_id: str, *, reason: str | None, by: str | None
) -> dict[str, Any]:
    """Record that `customer_id` and `other_id` are not the same customer: /duplicates stops proposing them."""
    if customer_id == other_id:
        raise MergeRefused("a customer is not a duplicate of itself", 422)
    record = {
        "_id": pair_id(customer_id, other_id),
        "customers": sorted((customer_id, other_id)),
        "reason": reason,
        "rejected_by": by,
        "rejected_at": as_stored(utc_now()),
    }
    await store.db[REJECTIONS].replace_one({"_id": record["_id"]}, record, upsert=True)
    log.info("duplicate_proposal_rejected", customers=record["customers"])
    return record


async def withdraw_rejection(store: Store, customer_id: str, other_id: str) -> bool:
    return (await store.db[REJECTIONS].delete_one({"_id": pair_id(customer_id, other_id)})).deleted_count == 1


async def rejected_among(store: Store, customer_id: str, others: Iterable[str]) -> set[str]:
    """The ids among `others` a person said are not `customer_id`."""
    pairs = {pair_id(customer_id, other): other for other in others}
    if not pairs:
        return set()
    found = await find_any(store.db[REJECTIONS], [{"_id": {"$in": sorted(pairs)}}], {"_id": 1})
    return {pairs[d["_id"]] for d in found}


# ---------------------------------------------------------------- erasure


def pseudonym_for() -> str:
    """A fresh id nothing links to the person: aggregates kept after an erasure go under it."""
    return f"anon-{uuid.uuid4().hex}"


async def request_erasure(uow: UnitOfWork, customer_id: str, at: datetime, services: Sequence[str]) -> dict[str, Any]:
    """In the erasure's `uow`: the erasure record and crm.customer.erased.v1 for every service to apply. The
    merge records that hold the customer's profile as it was lose it (those merges cannot be undone any more)."""
    erasure_id = f"erasure-{uuid.uuid4().hex[:16]}"
    pseudonym = pseudonym_for()
    record = {
        "_id": erasure_id,
        "customer_id": customer_id,
        "pseudonym": pseudonym,
        "requested_at": at,
        "services": list(services),
        "confirmed": {},
    }
    await uow.db[ERASURES].insert_one(record, session=uow.session)
    for role in ("survivor_id", "merged_id"):
        await uow.db[MERGES].update_many(
            {role: customer_id},
            {
                "$set": {"status": "permanent", "made_permanent_at": at},
                "$unset": {"survivor_before": "", "merged_before": "", "survivor_after": ""},
            },
            session=uow.session,
        )
    await uow.db[REJECTIONS].delete_many({"customers": customer_id}, session=uow.session)
    await uow.db[EXPORTS].delete_many({"customer_id": customer_id}, session=uow.session)
    await uow.db[EXPORT_PARTS].delete_many({"customer_id": customer_id}, session=uow.session)
    event = CustomerErasedEvent.create(
        CustomerErased(customer_id=customer_id, erasure_id=erasure_id, pseudonym=pseudonym),
        source=SOURCE,
        id=derived_event_id(SOURCE, "erased", erasure_id),
        time=at,
    )
    uow.emit(event, Topic.CUSTOMER_EVENTS)
    return record


def erasure_status(record: Mapping[str, Any]) -> dict[str, Any]:
    confirmed = dict(record.get("confirmed") or {})
    pending = [s for s in record["services"] if s not in confirmed]
    done_at = max((c["at"] for c in confirmed.values()), default=None) if not pending else None
    return {**record, "pending": pending, "complete": not pending, "completed_at": done_at}


async def find_erasure(store: Store, erasure_id: str) -> dict[str, Any] | None:
    doc = await store.db[ERASURES].find_one({"_id": erasure_id})
    return erasure_status(doc) if doc else None


async def erasures_of(store: Store, customer_id: str) -> list[dict[str, Any]]:
    docs = [d async for d in store.db[ERASURES].find({"customer_id": customer_id})]
    return [erasure_status(d) for d in sorted(docs, key=lambda d: (d["requested_at"], d["_id"]))]


# ---------------------------------------------------------------- export


async def request_export(
    store: Store, customer_id: str, services: Sequence[str], requested_by: str | None
) -> dict[str, Any]:
    """Ask every service for what it holds about the customer; the export record (status `gathering`)."""
    at = as_stored(utc_now())
    request_id = f"export-{uuid.uuid4().hex[:16]}"
    record = {
        "_id": request_id,
        "customer_id": customer_id,
        "requested_at": at,
        "requested_by": requested_by,
        "services": list(services),
        "answered": {},
        "expires_at": at + EXPORT_KEPT,
    }

    async def work(uow: UnitOfWork) -> None:
        await uow.db[EXPORTS].insert_one(record, session=uow.session)
        event = CustomerExportRequestedEvent.create(
            CustomerExportRequested(customer_id=customer_id, request_id=request_id),
            source=SOURCE,
            id=derived_event_id(SOURCE, "export", request_id),
            time=at,
        )
        uow.emit(event, Topic.CUSTOMER_EVENTS)

    await store.transaction(work)
    log.info("export_requested", request_id=request_id, customer_id=customer_id)
    return record


def export_status(record: Mapping[str, Any]) -> dict[str, Any]:
    answered = dict(record.get("answered") or {})
    complete = {s for s, a in answered.items() if a.get("parts") and len(a.get("received", [])) >= a["parts"]}
    pending = [s for s in record["services"] if s not in complete]
    return {**record, "pending": pending, "status": "complete" if not pending else "gathering"}


async def find_export(store: Store, request_id: str) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
    """The export's status, and once complete the document: each service's records by collection."""
    record = await store.db[EXPORTS].find_one({"_id": request_id})
    if record is None:
        return None
    status = export_status(record)
    if status["status"] != "complete":
        return status, None
    document: dict[str, dict[str, list[dict[str, Any]]]] = {s: {} for s in record["services"]}
    parts = store.db[EXPORT_PARTS].find({"request_id": request_id})
    for part in sorted([p async for p in parts], key=lambda p: (p["service"], p["part"])):
        held = document.setdefault(part["service"], {})
        for collection, docs in part["records"].items():
            held.setdefault(collection, []).extend(docs)
    return status, document


# ---------------------------------------------------------------- the services' answers


async def apply_answers(store: Store, events: Sequence[CloudEvent[Any]]) -> BatchOutcome:
    """Record what each service did about a request: merges and erasures confirmed, export parts gathered."""

    async def work(uow: UnitOfWork, batch: Batch[CloudEvent[Any]]) -> None:
        for event in batch.events:
            data = event.data
            if isinstance(event, IdentityAppliedEvent):
                done = {"at": as_stored(event.time), "records": data.records, "kept": data.kept}
                if data.request == "erasure":
                    await uow.db[ERASURES].update_one(
                        {"_id": data.request_id}, {"$set": {f"confirmed.{data.service}": done}}, session=uow.session
                    )
                else:
                    await uow.db[MERGES].update_one(
                        {"_id": data.request_id},
                        {"$set": {f"applied.{data.request}.{data.service}": done}},
                        session=uow.session,
                    )
            elif isinstance(event, ExportAnsweredEvent):
                export = await uow.db[EXPORTS].find_one(
                    {"_id": data.request_id}, {"expires_at": 1}, session=uow.session
                )
                if export is None:
                    continue  # expired, or erased since: nothing to gather any more
                await uow.db[EXPORT_PARTS].replace_one(
                    {"_id": f"{data.request_id}:{data.service}:{data.part}"},
                    {
                        "request_id": data.request_id,
                        "customer_id": data.customer_id,
                        "service": data.service,
                        "part": data.part,
                        "records": data.records,
                        "expires_at": export["expires_at"],
                    },
                    upsert=True,
                    session=uow.session,
                )
                await uow.db[EXPORTS].update_one(
                    {"_id": data.request_id},
                    {
                        "$set": {f"answered.{data.service}.parts": data.parts},
                        "$addToSet": {f"answered.{data.service}.received": data.part},
                    },
                    session=uow.session,
                )

    return await store.apply_batch(
        "customer-answers",
        events,
        work,
        relevant=lambda e: isinstance(e, IdentityAppliedEvent | ExportAnsweredEvent),
    )
