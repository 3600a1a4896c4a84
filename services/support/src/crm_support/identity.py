"""What support holds about a customer, and how it follows the customer service's merges, unmerges, erasures and
export requests (crm_shared.identity).

- `tickets`, `complaints`, `surveys` and `service_contracts` name their customer: a merge moves them to the
  survivor, an unmerge gives back those that came from the merged id (`identity.Records`). An erasure keeps them
  under the pseudonym, for the SLA, complaint and satisfaction reports, without their texts: a ticket's subject
  and post texts, a complaint's summary, a survey's comment (they read as `domain.ERASED_TEXT`). A complaint and a
  survey answer hold the customer id twice, at the top and in the fact filed; the copy follows the top. So do the
  customer's posts and history lines of a ticket: the customer of a ticket is its customer.
- `visits` and `sla_timers` are a ticket's: their customer id follows their ticket's (by ticket id), whatever
  moved it. A visit's notes are removed on erasure; a contract's name is the offer's, not personal.
- `customer_tiers` and `nps_requests` hold one document per customer (`_id` its id). On a merge the merged id's
  tier is left as it was: every event naming that id is filed under the survivor (and a tier scoring gave it is
  ignored, crm_support.handlers), so nothing reads or changes it while merged, and after an unmerge it is that
  customer's tier again at once, without waiting for scoring (which publishes a tier only when it changes). The
  survivor keeps its own tier, and its open tickets (the merged id's among them) get the policy that tier picks;
  an unmerge re-matches the given-back ones on the merged id's. The merged id's NPS schedule is parked (`due_at`
  put aside in `parked_due_at`): it is not asked while merged, and its count of requests is kept, so after the
  unmerge that restores it no NPS survey id is sent twice. A survivor without a schedule gets one with its next
  tier. On erasure both documents are deleted, with those of the ids merged into the customer; an export lists
  them too.
- `kb_usage`, `kb_articles`, `technicians`, SLA policies and calendars name no customer.

The counts answered: the records moved, given back or cleared (tickets, complaints, surveys, contracts, visits,
a parked or restored schedule, the per-customer documents deleted); SLA timers follow their tickets uncounted,
and are not exported (plumbing).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from crm_shared import identity
from crm_shared.identity import ORIGIN, Erased, Erasure, Held, Merge, Records, Unmerge
from crm_shared.store import IN_CHUNK, UnitOfWork, find_any
from crm_support import handlers, nps
from crm_support import repository as support_store
from crm_support.field import repository as field_store
from crm_support.sla import escalation
from crm_support.sla import repository as sla_store
from crm_support.tickets import repository as ticket_store

TICKETS = ticket_store.TICKETS
RECORDS = Records(
    (
        Held(TICKETS, personal=("subject", "posts.$[].body")),
        Held(support_store.COMPLAINTS, personal=("filed.summary",)),
        Held(support_store.SURVEYS, personal=("answered.comment",)),
        Held(field_store.SERVICE_CONTRACTS),
    )
)
COPIES = {support_store.COMPLAINTS: "filed.customer_id", support_store.SURVEYS: "answered.customer_id"}
"""The copy of the customer id each record holds in the fact it was filed with."""
FOLLOWERS = (field_store.VISITS, escalation.SLA_TIMERS)
"""The collections whose records are a ticket's (`ticket_id`), under its customer."""
PER_CUSTOMER = (sla_store.CUSTOMER_TIERS, nps.NPS_REQUESTS)


def _chunks(values: Sequence[str]) -> list[list[str]]:
    # Short `$in`s: the embedded database plans a long one on no index (crm_shared.store.find_any).
    return [list(values[i : i + IN_CHUNK]) for i in range(0, len(values), IN_CHUNK)]


async def _ticket_ids(uow: UnitOfWork, query: dict[str, Any]) -> list[str]:
    return sorted(d["_id"] for d in await find_any(uow.db[TICKETS], [query], {"_id": 1}, session=uow.session))


async def _copies_follow(uow: UnitOfWork, customer_id: str) -> None:
    for collection, copy in COPIES.items():
        await uow.db[collection].update_many(
            {"customer_id": customer_id, copy: {"$ne": customer_id}}, {"$set": {copy: customer_id}}, session=uow.session
        )


async def _tickets_followed(
    uow: UnitOfWork, ticket_ids: Sequence[str], customer_id: str, *, erased: bool = False
) -> int:
    """The customer's posts and history lines of the tickets, their visits and SLA timers, under `customer_id`
    (and the visits' notes removed, `erased`); the visits changed."""
    s = uow.session
    visits = 0
    for chunk in _chunks(ticket_ids):
        await uow.db[TICKETS].update_many(
            {"_id": {"$in": chunk}},
            {"$set": {"posts.$[p].author.id": customer_id, "history.$[h].actor.id": customer_id}},
            array_filters=[
                {"p.author.kind": "customer", "p.author.id": {"$ne": customer_id}},
                {"h.actor.kind": "customer", "h.actor.id": {"$ne": customer_id}},
            ],
            session=s,
        )
        changed = await uow.db[field_store.VISITS].update_many(
            {"ticket_id": {"$in": chunk}},
            {"$set": {"customer_id": customer_id}, **({"$unset": {"notes": ""}} if erased else {})},
            session=s,
        )
        visits += int(changed.modified_count)
        await uow.db[escalation.SLA_TIMERS].update_many(
            {"ticket_id": {"$in": chunk}, "customer_id": {"$ne": customer_id}},
            {"$set": {"customer_id": customer_id}},
            session=s,
        )
    return visits


async def _park_schedule(uow: UnitOfWork, merged: str, survivor: str) -> int:
    requests = uow.db[nps.NPS_REQUESTS]
    doc = await requests.find_one({"_id": merged}, session=uow.session)
    if doc is None:
        return 0
    parked: dict[str, Any] = {"merged_into": survivor}
    if "parked_due_at" not in doc:
        parked |= {"parked_due_at": doc["due_at"], "due_at": None}
    await requests.update_one({"_id": merged}, {"$set": parked}, session=uow.session)
    return 1


async def _restore_schedule(uow: UnitOfWork, merged: str) -> int:
    requests = uow.db[nps.NPS_REQUESTS]
    doc = await requests.find_one({"_id": merged, "parked_due_at": {"$exists": True}}, session=uow.session)
    if doc is None:
        return 0
    await requests.update_one(
        {"_id": merged},
        {"$set": {"due_at": doc["parked_due_at"]}, "$unset": {"parked_due_at": "", "merged_into": ""}},
        session=uow.session,
    )
    return 1


class SupportHolder:
    """Support's `identity.Holder`."""

    async def merge(self, uow: UnitOfWork, merge: Merge) -> int:
        ticket_ids = await _ticket_ids(uow, {"customer_id": merge.merged})
        moved = await RECORDS.merge(uow, merge)
        await _copies_follow(uow, merge.survivor)
        moved += await _tickets_followed(uow, ticket_ids, merge.survivor)
        moved += await _park_schedule(uow, merge.merged, merge.survivor)
        await handlers.rematch_open_tickets(uow, [merge.survivor])
        return moved

    async def unmerge(self, uow: UnitOfWork, unmerge: Unmerge) -> int:
        origins = list(unmerge.origins)
        ticket_ids = await _ticket_ids(uow, {"customer_id": unmerge.survivor, ORIGIN: {"$in": origins}})
        moved = await RECORDS.unmerge(uow, unmerge)
        await _copies_follow(uow, unmerge.merged)
        moved += await _tickets_followed(uow, ticket_ids, unmerge.merged)
        moved += await _restore_schedule(uow, unmerge.merged)
        await handlers.rematch_open_tickets(uow, [unmerge.merged])
        return moved

    async def erase(self, uow: UnitOfWork, erasure: Erasure) -> Erased:
        ticket_ids = await _ticket_ids(uow, {"customer_id": erasure.customer_id})
        erased = await RECORDS.erase(uow, erasure)
        await _copies_follow(uow, erasure.pseudonym)
        visits = await _tickets_followed(uow, ticket_ids, erasure.pseudonym, erased=True)
        erased += Erased(cleared=visits, kept=visits)
        owned = await identity.merged_into(uow.db, erasure.customer_id, session=uow.session)
        for collection in PER_CUSTOMER:
            deleted = await uow.db[collection].delete_many({"_id": {"$in": owned}}, session=uow.session)
            erased += Erased(cleared=int(deleted.deleted_count))
        return erased

    async def export(self, uow: UnitOfWork, customer_id: str) -> dict[str, list[dict[str, Any]]]:
        records = await RECORDS.export(uow, customer_id)
        ticket_ids = [d["_id"] for d in records[TICKETS]]
        visits = await find_any(
            uow.db[field_store.VISITS], [{"ticket_id": {"$in": ticket_ids}}] if ticket_ids else [], session=uow.session
        )
        records[field_store.VISITS] = [identity.as_json(d) for d in visits]
        # The documents of the ids merged into the customer are about them too (an erasure deletes them).
        owned = await identity.merged_into(uow.db, customer_id, session=uow.session)
        for collection in PER_CUSTOMER:
            records[collection] = [identity.as_json(d) for d in await uow.find_ids(collection, owned)]
        return records


HOLDER = SupportHolder()
