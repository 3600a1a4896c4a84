"""What scoring does about the customer service's merges, unmerges, erasures and export requests
(crm_shared.identity).

A customer's document is one per customer, so scoring merges it itself (crm_scoring.merging): the survivor gets
the facts of both and remembers which came from the merged id (`origins`); it is rescored once, the way an event
rescores it, and its segment changes are published, caused by the merge. The merged id's document leaves
`customers` for `merged_customers`, as it was (its segments are those the other services last heard of), so no
population, decay pass, rebuild or API listing counts it. An unmerge splits the facts back, puts the merged id's
document back in `customers` rescored from its own facts, rescores the survivor, and publishes the changes of
both. Order owners and segment changes are records with a customer id field (crm_shared.identity.Records).

An erasure re-keys what scoring holds to the pseudonym: the scores are aggregates, but the customer id is a link
to the person.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crm_scoring import domain, handlers, merging, population, repository
from crm_scoring.repository import CustomerScores
from crm_shared import identity
from crm_shared.events import CloudEvent, SegmentChangedEvent
from crm_shared.logging import get_logger
from crm_shared.store import UnitOfWork, find_any
from crm_shared.topics import Topic

log = get_logger(__name__)

RECORDS = identity.Records(
    (identity.Held(repository.ORDER_OWNERS, exported=False), identity.Held(repository.SEGMENT_CHANGES))
)


def _attributed(customer: CustomerScores | None, customer_id: str) -> merging.Attributed:
    if customer is None:
        return merging.Attributed(domain.CustomerFacts(customer_id))
    return merging.Attributed(customer.facts, customer.origins)


def _filed_under(unmerge: identity.Unmerge, survivor: str) -> identity.Unmerge:
    """The unmerge as seen from `survivor`, where the survivor it names was merged since."""
    if survivor == unmerge.survivor:
        return unmerge
    event = unmerge.event
    data = event.data.model_copy(update={"customer_id": survivor})
    return identity.Unmerge(event.model_copy(update={"subject": survivor, "data": data}), unmerge.origins)


CUSTOMER_ID_FIELDS = frozenset({"_id", "customer_id", "referred_customer_id"})


def _rekeyed(value: Any, erased: str, pseudonym: str) -> Any:
    """A stored document with every customer id field naming `erased` naming `pseudonym` instead."""
    if isinstance(value, dict):
        return {
            k: pseudonym if k in CUSTOMER_ID_FIELDS and v == erased else _rekeyed(v, erased, pseudonym)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_rekeyed(v, erased, pseudonym) for v in value]
    return value


async def _merged_into_chain(uow: UnitOfWork, customer_id: str) -> list[str]:
    """The customers `customer_id` was merged into, one after the other (A into B, then B into C: B and C)."""
    chain: list[str] = []
    current = customer_id
    for _ in range(identity.MAX_CHAIN):
        alias = await uow.db[identity.ALIASES].find_one({"_id": current}, {"into": 1}, session=uow.session)
        if alias is None or alias["into"] in chain or alias["into"] == customer_id:
            break
        current = alias["into"]
        chain.append(current)
    return chain


@dataclass(frozen=True)
class ScoringHolder:
    """Scoring's identity.Holder; rescoring needs the same thresholds as the event handlers."""

    thresholds: domain.Thresholds = handlers.DEFAULT_THRESHOLDS

    def _rescored(
        self,
        held: merging.Attributed,
        before: Sequence[CustomerScores | None],
        old_segments: domain.Segments,
        cause: CloudEvent[Any],
        pop: population.Population | None,
    ) -> tuple[CustomerScores, list[SegmentChangedEvent]]:
        """`held` scored as an event would score it (as of its newest fact, never before a time one of the
        documents it comes from was scored as of), and the changes from `old_segments`."""
        times: list[datetime] = [held.facts.latest_at or cause.time]
        times += [b.scored_as_of for b in before if b is not None]
        customer = handlers.scored_customer(held.facts, max(times), self.thresholds, pop, held.origins)
        customer_id = held.facts.customer_id
        # Ids from the request and the customer: an unmerge moves the segments of two customers.
        ids = (cause.id, customer_id)
        return customer, handlers.segment_change_events(customer_id, old_segments, customer.scores, cause, *ids)

    async def _publish(self, uow: UnitOfWork, changes: list[SegmentChangedEvent]) -> None:
        await repository.insert_segment_changes(uow, [handlers.change_document(c) for c in changes])
        for change in changes:
            uow.emit(change, Topic.SCORING_SEGMENTS)
            log.info(
                "segment_changed",
                customer_id=change.data.customer_id,
                dimension=change.data.dimension,
                old=change.data.old,
                new=change.data.new,
                caused_by=change.data.caused_by,
            )

    async def merge(self, uow: UnitOfWork, merge: identity.Merge) -> int:
        found = await repository.get_customers(uow, [merge.survivor, merge.merged])
        survivor, merged = found.get(merge.survivor), found.get(merge.merged)
        moved = await RECORDS.merge(uow, merge)
        if merged is None:
            return moved
        held = merging.merge(_attributed(survivor, merge.survivor), _attributed(merged, merge.merged))
        pop = await repository.get_population(uow)
        old = survivor.segments if survivor else domain.initial_segments(self.thresholds)
        customer, changes = self._rescored(held, [survivor, merged], old, merge.event, pop)
        await repository.save_customers(uow, [customer])
        kept = {**repository.to_document(merged), "merge_id": merge.event.data.merge_id, "merged_at": merge.event.time}
        await uow.db[repository.MERGED_CUSTOMERS].replace_one(
            {"_id": merge.merged}, kept, upsert=True, session=uow.session
        )
        await uow.db[repository.CUSTOMERS].delete_one({"_id": merge.merged}, session=uow.session)
        await self._publish(uow, changes)
        return moved + 1

    async def unmerge(self, uow: UnitOfWork, unmerge: identity.Unmerge) -> int:
        # The survivor may have been merged into another since: what came from the merged id is there now.
        current = (await identity.resolve(uow.db, [unmerge.survivor], session=uow.session)).get(
            unmerge.survivor, unmerge.survivor
        )
        survivor = (await repository.get_customers(uow, [current])).get(current)
        kept_doc = await uow.db[repository.MERGED_CUSTOMERS].find_one({"_id": unmerge.merged}, session=uow.session)
        at_merge = repository.from_document(kept_doc) if kept_doc else None
        moved = await RECORDS.unmerge(uow, _filed_under(unmerge, current))
        pop = await repository.get_population(uow)
        saved: list[CustomerScores] = []
        changes: list[SegmentChangedEvent] = []
        if survivor is not None:
            kept, restored = merging.unmerge(_attributed(survivor, current), unmerge.merged, unmerge.origins)
            customer, survivor_changes = self._rescored(kept, [survivor], survivor.segments, unmerge.event, pop)
            saved.append(customer)
            changes += survivor_changes
        elif at_merge is not None:
            restored = merging.Attributed(at_merge.facts, at_merge.origins)
        else:
            restored = merging.Attributed(domain.CustomerFacts(unmerge.merged))
        if at_merge is not None or merging.fact_keys(restored.facts):
            # Back with the segments the others last heard of for it, then rescored from its own facts.
            old = at_merge.segments if at_merge else domain.initial_segments(self.thresholds)
            customer, merged_changes = self._rescored(restored, [at_merge], old, unmerge.event, pop)
            saved.append(customer)
            changes += merged_changes
        await repository.save_customers(uow, saved)
        await uow.db[repository.MERGED_CUSTOMERS].delete_one({"_id": unmerge.merged}, session=uow.session)
        await self._publish(uow, changes)
        return moved + len(saved)

    async def erase(self, uow: UnitOfWork, erasure: identity.Erasure) -> identity.Erased:
        erased, pseudonym, s = erasure.customer_id, erasure.pseudonym, uow.session
        # The customers it was merged into (one after the other) name it among their origins, and a referrer's
        # facts name it as the customer referred.
        chain = await _merged_into_chain(uow, erased)
        kept = 0
        for collection in (repository.CUSTOMERS, repository.MERGED_CUSTOMERS):
            coll = uow.db[collection]
            clauses: list[dict[str, Any]] = [
                {"_id": {"$in": [erased, *chain]}},
                {"facts.referrals.referred_customer_id": erased},
                {"origins.set_aside.referrals.referred_customer_id": erased},
            ]
            for doc in await find_any(coll, clauses, session=s):
                rekeyed = _rekeyed(doc, erased, pseudonym)
                if rekeyed == doc:
                    continue
                if doc["_id"] == erased:
                    await coll.delete_one({"_id": erased}, session=s)
                await coll.replace_one({"_id": rekeyed["_id"]}, rekeyed, upsert=True, session=s)
                kept += 1
        for held in RECORDS.held:
            # Records filed under another customer for an event that named this one keep it as their origin.
            await uow.db[held.collection].update_many(
                {identity.ORIGIN: erased}, {"$set": {identity.ORIGIN: pseudonym}}, session=s
            )
        return identity.Erased(kept=kept) + await RECORDS.erase(uow, erasure)

    async def export(self, uow: UnitOfWork, customer_id: str) -> dict[str, list[dict[str, Any]]]:
        records: dict[str, list[dict[str, Any]]] = {}
        for collection in (repository.CUSTOMERS, repository.MERGED_CUSTOMERS):
            doc = await uow.db[collection].find_one({"_id": customer_id}, session=uow.session)
            if doc is not None:
                records[collection] = [identity.as_json(doc)]
        return records | await RECORDS.export(uow, customer_id)
