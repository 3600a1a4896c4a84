"""What sales holds about a customer, and how it follows the customer service's merges, unmerges, erasures and
export requests (crm_shared.identity); `HOLDER` is subscribed in consumers.register.

- orders, opportunities, quotes, activities and leads name their customer in `customer_id`: moved on a merge,
  given back on an unmerge, exported, and on an erasure kept under the pseudonym with their personal fields
  removed, so revenue, pipeline, conversion and activity counts survive. An order also names its customer
  inside its `placed` fact: that one follows the order's. An erased activity keeps its slot with a neutral title.
- accounts list their contacts' ids in `contacts`: a merge puts the survivor in the merged id's place and notes
  it in `merged_contacts`, which the unmerge undoes; an erasure puts the pseudonym in its place.
- expenses name no customer, but the description of one spent on the customer's opportunity may: it is
  removed on an erasure.
- customer_match_keys (`_id` the customer id) are not moved: a match reads a merged id as its survivor
  (customers.handlers), so an unmerge finds the keys where they were. An erasure empties them and keeps the
  document, so an older set arriving late does not bring them back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pymongo import UpdateOne

from crm_sales.accounts.repository import ACCOUNTS
from crm_sales.activities.repository import ACTIVITIES
from crm_sales.customers.repository import CUSTOMER_MATCH_KEYS
from crm_sales.expenses.repository import EXPENSES
from crm_sales.leads.repository import LEADS
from crm_sales.opportunities.repository import OPPORTUNITIES
from crm_sales.orders.repository import ORDERS
from crm_sales.quotes.repository import QUOTES
from crm_shared import identity
from crm_shared.store import UnitOfWork, find_any

MERGED_CONTACTS = "merged_contacts"
"""On an account: [{customer_id, into, at, added}] per contact a merge replaced, so the unmerge can undo it."""

ERASED_TITLE = "(erased)"
"""An erased activity's title: the rep's calendar keeps the slot, not what it was about."""

RECORDS = identity.Records(
    held=(
        identity.Held(ORDERS, personal=("cancel_reason",)),
        identity.Held(OPPORTUNITIES, personal=("name", "reason")),
        identity.Held(QUOTES, personal=("reject_reason",)),
        identity.Held(ACTIVITIES, personal=("notes", "outcome")),
        identity.Held(
            LEADS, personal=("name", "email", "phone", "email_key", "phone_key", "reason", "disqualified_reason")
        ),
    )
)

SHIPMENT_PERSONAL = ("tracking_number", "location")
"""What a shipment says that may lead to the person: the parcel to look up, where it was handed over."""


# ---------------------------------------------------------------- orders


async def _orders_of(uow: UnitOfWork, customer_id: str, projection: dict[str, Any]) -> list[dict[str, Any]]:
    return await uow.db[ORDERS].find({"customer_id": customer_id}, projection, session=uow.session).to_list(None)


async def _placed_follows(uow: UnitOfWork, held_by: str, customer_id: str) -> None:
    """The placed fact of the orders `held_by` holds names `customer_id` (like the order will, or does)."""
    writes = [
        UpdateOne({"_id": doc["_id"]}, {"$set": {"placed.customer_id": customer_id}})
        for doc in await _orders_of(uow, held_by, {"placed.customer_id": 1})
        if isinstance(doc.get("placed"), dict) and doc["placed"].get("customer_id") != customer_id
    ]
    if writes:
        await uow.db[ORDERS].bulk_write(writes, ordered=False, session=uow.session)


async def _erase_order_details(uow: UnitOfWork, erasure: identity.Erasure) -> None:
    """What the customer's orders say of them besides the fields Records removes: the customer id in the placed
    fact, and the shipments' tracking numbers and locations."""
    writes = []
    for doc in await _orders_of(uow, erasure.customer_id, {"placed.customer_id": 1, "shipments": 1}):
        changes: dict[str, Any] = {}
        if isinstance(doc.get("placed"), dict):
            changes["placed.customer_id"] = erasure.pseudonym
        shipments = doc.get("shipments") or []
        if any(s.get(f) is not None for s in shipments for f in SHIPMENT_PERSONAL):
            changes["shipments"] = [{**s, **dict.fromkeys(SHIPMENT_PERSONAL)} for s in shipments]
        if changes:
            writes.append(UpdateOne({"_id": doc["_id"]}, {"$set": changes}))
    if writes:
        await uow.db[ORDERS].bulk_write(writes, ordered=False, session=uow.session)


# ---------------------------------------------------------------- accounts' contacts


async def _accounts_with(uow: UnitOfWork, contact: str) -> list[dict[str, Any]]:
    projection = {"contacts": 1, MERGED_CONTACTS: 1}
    return await uow.db[ACCOUNTS].find({"contacts": contact}, projection, session=uow.session).to_list(None)


async def _write_contacts(uow: UnitOfWork, changed: Sequence[tuple[Any, list[str], list[dict[str, Any]]]]) -> int:
    writes = [
        UpdateOne(
            {"_id": account_id},
            {"$set": {"contacts": contacts, MERGED_CONTACTS: notes}}
            if notes
            else {"$set": {"contacts": contacts}, "$unset": {MERGED_CONTACTS: ""}},
        )
        for account_id, contacts, notes in changed
    ]
    if writes:
        await uow.db[ACCOUNTS].bulk_write(writes, ordered=False, session=uow.session)
    return len(writes)


async def _merge_contacts(uow: UnitOfWork, merge: identity.Merge) -> int:
    changed = []
    for doc in await _accounts_with(uow, merge.merged):
        contacts = list(doc["contacts"])
        at = contacts.index(merge.merged)
        added = merge.survivor not in contacts
        if added:
            contacts[at] = merge.survivor
        else:
            del contacts[at]
        note = {"customer_id": merge.merged, "into": merge.survivor, "at": at, "added": added}
        changed.append((doc["_id"], contacts, [*doc.get(MERGED_CONTACTS, []), note]))
    return await _write_contacts(uow, changed)


async def _unmerge_contacts(uow: UnitOfWork, unmerge: identity.Unmerge) -> int:
    survivor, merged = unmerge.survivor, unmerge.merged
    changed = []
    for doc in await _accounts_with(uow, survivor):
        notes = doc.get(MERGED_CONTACTS, [])
        undone = [n for n in notes if n["into"] == survivor and n["customer_id"] in unmerge.origins]
        if not undone:
            continue
        contacts = list(doc["contacts"])
        for note in reversed(undone):
            if note["added"] and survivor in contacts:
                if merged in contacts:
                    contacts.remove(survivor)
                else:
                    contacts[contacts.index(survivor)] = merged
            elif merged not in contacts:
                contacts.insert(min(note["at"], len(contacts)), merged)
        changed.append((doc["_id"], contacts, [n for n in notes if n not in undone]))
    return await _write_contacts(uow, changed)


async def _erase_contacts(uow: UnitOfWork, erasure: identity.Erasure) -> int:
    """The pseudonym in the customer's place among the contacts, so the account's revenue still counts their
    orders; the notes of merges into or of the customer go (they name ids of the person)."""
    gone = erasure.customer_id
    changed = []
    for doc in await _accounts_with(uow, gone):
        contacts = [erasure.pseudonym if c == gone else c for c in doc["contacts"]]
        contacts = list(dict.fromkeys(contacts))
        notes = [n for n in doc.get(MERGED_CONTACTS, []) if gone not in (n["customer_id"], n["into"])]
        changed.append((doc["_id"], contacts, notes))
    return await _write_contacts(uow, changed)


async def _export_accounts(uow: UnitOfWork, customer_id: str) -> list[dict[str, Any]]:
    """The accounts the customer is a contact of, without the other contacts' ids."""
    projection = {"contacts": 0, MERGED_CONTACTS: 0}
    docs = await uow.db[ACCOUNTS].find({"contacts": customer_id}, projection, session=uow.session).to_list(None)
    return [identity.as_json(d) for d in docs]


# ---------------------------------------------------------------- expenses, activities, match keys


async def _erase_expense_descriptions(uow: UnitOfWork, customer_id: str) -> int:
    opportunities = (
        await uow.db[OPPORTUNITIES].find({"customer_id": customer_id}, {"_id": 1}, session=uow.session).to_list(None)
    )
    if not opportunities:
        return 0
    described = await find_any(
        uow.db[EXPENSES],
        [{"opportunity_id": {"$in": sorted(d["_id"] for d in opportunities)}}],
        {"description": 1},
        session=uow.session,
    )
    ids = [d["_id"] for d in described if d.get("description") is not None]
    if not ids:
        return 0
    result = await uow.db[EXPENSES].update_many(
        {"_id": {"$in": ids}}, {"$set": {"description": None}}, session=uow.session
    )
    return int(result.modified_count)


async def _erase_activity_titles(uow: UnitOfWork, customer_id: str) -> None:
    await uow.db[ACTIVITIES].update_many(
        {"customer_id": customer_id}, {"$set": {"title": ERASED_TITLE}}, session=uow.session
    )


async def _erase_match_keys(uow: UnitOfWork, erasure: identity.Erasure) -> int:
    keys = uow.db[CUSTOMER_MATCH_KEYS]
    kept = await keys.find_one({"_id": erasure.customer_id}, {"match_keys": 1}, session=uow.session)
    await keys.update_one(
        {"_id": erasure.customer_id},
        {"$set": {"match_keys": []}, "$max": {"time": erasure.event.time}},
        upsert=True,
        session=uow.session,
    )
    return 1 if kept is not None and kept.get("match_keys") else 0


# ---------------------------------------------------------------- the holder


@dataclass(frozen=True)
class SalesHolder:
    """Sales' records about a customer (see the module's docstring), as crm_shared.identity.Holder."""

    records: identity.Records = RECORDS

    async def merge(self, uow: UnitOfWork, merge: identity.Merge) -> int:
        await _placed_follows(uow, merge.merged, merge.survivor)
        moved = await self.records.merge(uow, merge)
        return moved + await _merge_contacts(uow, merge)

    async def unmerge(self, uow: UnitOfWork, unmerge: identity.Unmerge) -> int:
        moved = await self.records.unmerge(uow, unmerge)
        await _placed_follows(uow, unmerge.merged, unmerge.merged)
        return moved + await _unmerge_contacts(uow, unmerge)

    async def erase(self, uow: UnitOfWork, erasure: identity.Erasure) -> identity.Erased:
        # Before the records go under the pseudonym: these find them by the customer id.
        await _erase_order_details(uow, erasure)
        await _erase_activity_titles(uow, erasure.customer_id)
        expenses = await _erase_expense_descriptions(uow, erasure.customer_id)
        erased = await self.records.erase(uow, erasure)
        contacts = await _erase_contacts(uow, erasure)
        keys = await _erase_match_keys(uow, erasure)
        return erased + identity.Erased(cleared=expenses + keys, kept=contacts)

    async def export(self, uow: UnitOfWork, customer_id: str) -> dict[str, list[dict[str, Any]]]:
        return {**await self.records.export(uow, customer_id), ACCOUNTS: await _export_accounts(uow, customer_id)}


HOLDER = SalesHolder()
