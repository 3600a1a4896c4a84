"""What marketing holds about a customer, and how it follows the customer service's merges, unmerges, erasures
and export requests (crm_shared.identity).

- Records naming the customer (enrolments, orders, conversions, interactions, leads) move with
  `identity.Records`: to the survivor on a merge, back on an unmerge. None holds a name, an email or a phone.
- The documents keyed by the customer id that say who counts as a customer (`contact_preferences`,
  `customer_attributes`: what segments, launches and hand-overs read) are put aside on a merge, in
  `merged_<name>` under the merged id, and come back on its unmerge: meanwhile the merged id counts in no
  segment and is enrolled or handed over nowhere. The survivor keeps its own consents and scores until the
  customer service (its survivorship rules) and scoring publish them again.
- What derives from the records is computed again for both customers after a merge and an unmerge, so an
  unmerge restores it exactly: `last_order_at` (from the orders), `engagement` (from the interactions) and
  `contact_locks` (from the enrolments).
- A survivor holding enrolments of both ids in one journey episode (both were in a campaign's launch) keeps
  both, since both happened and the campaign's results count them, and counts as enrolled there: it is not
  enrolled in that episode again. Likewise a survivor holding the merged id's lead is not handed over again.
- A conversion follows its enrolment. After an unmerge, one whose order went to the other customer (made
  while they were one) is withdrawn: it credited one customer's order to the other's enrolment.
- An erasure keeps enrolments, orders and conversions, what campaign results are made of, under the
  pseudonym; it deletes the interactions (a log of the person's contacts, keyed by the customer id), the leads
  (ids derived from the customer id) and the per-customer documents, also those put aside for ids merged in.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from crm_marketing import repository
from crm_shared import identity
from crm_shared.store import UnitOfWork

RECORDS = identity.Records(
    (
        identity.Held(repository.ENROLMENTS),
        identity.Held(repository.ORDERS),
        identity.Held(repository.CONVERSIONS),
        identity.Held(repository.INTERACTIONS, on_erasure="deleted"),
        identity.Held(repository.LEADS, on_erasure="deleted"),
    )
)

PUT_ASIDE = (
    (repository.CONTACT_PREFERENCES, repository.MERGED_PREFERENCES),
    (repository.ATTRIBUTES, repository.MERGED_ATTRIBUTES),
)
"""Each document keyed by the customer id that a merge puts aside, and where."""

EXPORTED_DOCUMENTS = (repository.CONTACT_PREFERENCES, repository.ATTRIBUTES, repository.ENGAGEMENT)
ERASED_DOCUMENTS = (
    *EXPORTED_DOCUMENTS,
    repository.CONTACT_LOCKS,
    repository.MERGED_PREFERENCES,
    repository.MERGED_ATTRIBUTES,
)


class MarketingHolder:
    """marketing's `identity.Holder`."""

    async def merge(self, uow: UnitOfWork, merge: identity.Merge) -> int:
        moved = await RECORDS.merge(uow, merge)
        moved += await _move_documents(uow, merge.merged, aside=True)
        await _derive_again(uow, (merge.survivor, merge.merged))
        return moved

    async def unmerge(self, uow: UnitOfWork, unmerge: identity.Unmerge) -> int:
        moved = await RECORDS.unmerge(uow, unmerge)
        moved += await _move_documents(uow, unmerge.merged, aside=False)
        moved += await _withdraw_crossed_conversions(uow, (unmerge.survivor, unmerge.merged))
        await _derive_again(uow, (unmerge.survivor, unmerge.merged))
        return moved

    async def erase(self, uow: UnitOfWork, erasure: identity.Erasure) -> identity.Erased:
        erased = await RECORDS.erase(uow, erasure)
        owned = await identity.merged_into(uow.db, erasure.customer_id, session=uow.session)
        for name in ERASED_DOCUMENTS:
            deleted = await uow.db[name].delete_many({"_id": {"$in": owned}}, session=uow.session)
            erased += identity.Erased(cleared=int(deleted.deleted_count))
        return erased

    async def export(self, uow: UnitOfWork, customer_id: str) -> dict[str, list[dict[str, Any]]]:
        records = await RECORDS.export(uow, customer_id)
        for name in EXPORTED_DOCUMENTS:
            records[name] = await _documents(uow, name, [customer_id])
        merged = (await identity.merged_into(uow.db, customer_id, session=uow.session))[1:]
        for _, aside in PUT_ASIDE:
            records[aside] = await _documents(uow, aside, merged)
        return records


HOLDER = MarketingHolder()


async def _documents(uow: UnitOfWork, collection: str, ids: list[str]) -> list[dict[str, Any]]:
    if not ids:
        return []
    docs = await uow.db[collection].find({"_id": {"$in": ids}}, session=uow.session).to_list(None)
    return [identity.as_json(d) for d in docs]


async def _move_documents(uow: UnitOfWork, customer_id: str, *, aside: bool) -> int:
    """Put the customer's documents aside (a merge) or back (an unmerge); how many moved."""
    moved = 0
    for filed, put_aside in PUT_ASIDE:
        source, target = (filed, put_aside) if aside else (put_aside, filed)
        doc = await uow.db[source].find_one({"_id": customer_id}, session=uow.session)
        if doc is None:
            continue
        if not aside and await uow.db[target].find_one({"_id": customer_id}, {"_id": 1}, session=uow.session):
            # Filed again before the unmerge got here: facts the customer service published about the customer
            # after the unmerge (pinned to it, every channel's consent). They are newer than what was put aside.
            await uow.db[source].delete_one({"_id": customer_id}, session=uow.session)
            continue
        await uow.db[target].replace_one({"_id": customer_id}, doc, upsert=True, session=uow.session)
        await uow.db[source].delete_one({"_id": customer_id}, session=uow.session)
        moved += 1
    return moved


async def _withdraw_crossed_conversions(uow: UnitOfWork, customers: tuple[str, str]) -> int:
    """Withdraw the customers' conversions whose order is now the other customer's; how many."""
    s = uow.session
    conversions = await (
        uow.db[repository.CONVERSIONS]
        .find(
            {"customer_id": {"$in": list(customers)}, "cancelled": {"$ne": True}},
            {"customer_id": 1, "order_id": 1},
            session=s,
        )
        .to_list(None)
    )
    if not conversions:
        return 0
    order_ids = sorted({c["order_id"] for c in conversions})
    owners = {
        o["_id"]: o.get("customer_id")
        for o in await uow.db[repository.ORDERS]
        .find({"_id": {"$in": order_ids}}, {"customer_id": 1}, session=s)
        .to_list(None)
    }
    crossed = [c["_id"] for c in conversions if owners.get(c["order_id"], c["customer_id"]) != c["customer_id"]]
    if not crossed:
        return 0
    result = await uow.db[repository.CONVERSIONS].update_many(
        {"_id": {"$in": crossed}}, {"$set": {"cancelled": True, "withdrawn_by": "unmerge"}}, session=s
    )
    return int(result.modified_count)


async def _derive_again(uow: UnitOfWork, customers: Iterable[str]) -> None:
    """Each customer's last order, engagement and contact lock, from the records it holds now."""
    db, s = uow.db, uow.session
    for customer_id in customers:
        last = await _latest(uow, repository.ORDERS, customer_id, "ordered_at")
        attributes = db[repository.ATTRIBUTES]
        if last is not None:
            await attributes.update_one({"_id": customer_id}, {"$set": {"last_order_at": last}}, upsert=True, session=s)
        else:
            await attributes.update_one({"_id": customer_id}, {"$unset": {"last_order_at": ""}}, session=s)
            # A document the merge made for the survivor's last order alone goes with it.
            doc = await attributes.find_one({"_id": customer_id}, session=s)
            if doc is not None and doc.keys() == {"_id"}:
                await attributes.delete_one({"_id": customer_id}, session=s)

        interactions = await db[repository.INTERACTIONS].count_documents({"customer_id": customer_id}, session=s)
        latest = await _latest(uow, repository.INTERACTIONS, customer_id, "at")
        await _count(uow, repository.ENGAGEMENT, customer_id, ("interactions", interactions), latest_at=latest)
        enrolments = await db[repository.ENROLMENTS].count_documents({"customer_id": customer_id}, session=s)
        await _count(uow, repository.CONTACT_LOCKS, customer_id, ("enrolments", enrolments))


async def _latest(uow: UnitOfWork, collection: str, customer_id: str, time_field: str) -> Any:
    docs = await (
        uow.db[collection]
        .find({"customer_id": customer_id, time_field: {"$ne": None}}, {time_field: 1}, session=uow.session)
        .sort(time_field, -1)
        .limit(1)
        .to_list(1)
    )
    return docs[0][time_field] if docs else None


async def _count(uow: UnitOfWork, counter: str, customer_id: str, count: tuple[str, int], **also: Any) -> None:
    """The customer's counter document as counted (`count`: its field and value), or none when it counts
    nothing, as before the first record."""
    coll = uow.db[counter]
    field, n = count
    if n:
        doc = {"_id": customer_id, field: n, **also}
        await coll.replace_one({"_id": customer_id}, doc, upsert=True, session=uow.session)
    else:
        await coll.delete_one({"_id": customer_id}, session=uow.session)
