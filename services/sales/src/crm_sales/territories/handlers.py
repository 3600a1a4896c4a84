"""Use cases of territories: keep their definitions, and assign leads by them inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from crm_sales.leads.domain import OPEN_STATUSES
from crm_sales.leads.repository import LEADS
from crm_sales.territories import domain, repository
from crm_shared.store import Store, UnitOfWork


class TerritoryConflict(Exception):
    """A territory with this id exists with another definition."""


async def create_territory(store: Store, territory: domain.Territory, at: datetime) -> tuple[domain.Territory, bool]:
    """Keep a new territory; the same definition posted again is the one kept (False), another one refused."""

    async def work(uow: UnitOfWork) -> tuple[domain.Territory, bool]:
        found = await uow.db[repository.TERRITORIES].find_one({"_id": territory.territory_id}, session=uow.session)
        if found is not None:
            existing = repository.territory_from_document(found)
            if replace(existing, cursor=0) == replace(territory, cursor=0):
                return existing, False
            raise TerritoryConflict(f"territory {territory.territory_id} exists with another definition")
        await uow.db[repository.TERRITORIES].insert_one(
            repository.territory_to_document(replace(territory, cursor=0), at), session=uow.session
        )
        return territory, True

    return await store.transaction(work)


async def replace_territory(store: Store, territory: domain.Territory, at: datetime) -> domain.Territory | None:
    """Set a territory's whole definition; its round-robin cursor stays. None when there is no such territory."""

    async def work(uow: UnitOfWork) -> domain.Territory | None:
        found = await uow.db[repository.TERRITORIES].find_one({"_id": territory.territory_id}, session=uow.session)
        if found is None:
            return None
        kept = replace(territory, cursor=found.get("cursor", 0))
        document = repository.territory_to_document(kept, at)
        await uow.db[repository.TERRITORIES].replace_one({"_id": kept.territory_id}, document, session=uow.session)
        return kept

    return await store.transaction(work)


async def delete_territory(store: Store, territory_id: str) -> bool:
    """Remove a territory's rules; leads already in it keep it as their territory."""
    result = await store.db[repository.TERRITORIES].delete_one({"_id": territory_id})
    return result.deleted_count == 1


async def find_territory(store: Store, territory_id: str) -> domain.Territory | None:
    doc = await store.db[repository.TERRITORIES].find_one({"_id": territory_id})
    return repository.territory_from_document(doc) if doc else None


async def territory_page(store: Store, limit: int, after: str | None) -> tuple[list[domain.Territory], str | None]:
    """Territories by id, `limit` after `after`, and the id to resume after (None on the last page)."""
    query: dict[str, Any] = {"_id": {"$gt": after}} if after is not None else {}
    docs = await store.db[repository.TERRITORIES].find(query).sort("_id", 1).limit(limit + 1).to_list(limit + 1)
    territories = [repository.territory_from_document(d) for d in docs[:limit]]
    return territories, territories[-1].territory_id if len(docs) > limit else None


async def open_lead_counts(uow: UnitOfWork, reps: set[str]) -> dict[str, int]:
    """How many open leads each rep owns, in this transaction: one count per rep, on the owner index."""
    counts: dict[str, int] = {}
    for rep in sorted(reps):
        query = {"owner_id": rep, "status": {"$in": list(OPEN_STATUSES)}}
        counts[rep] = await uow.db[LEADS].count_documents(query, session=uow.session)
    return counts


async def assign_in(
    uow: UnitOfWork,
    leads: Sequence[domain.LeadProfile],
    *,
    released: Mapping[str, int] | None = None,
) -> tuple[domain.Assignment, ...]:
    """Assign `leads` in order by the territories' rules, inside the caller's transaction: the round-robin
    cursors move in it too. `released` are open leads the counts should not hold (a lead being re-assigned
    counts against its owner until the caller writes its new owner)."""
    if not leads:
        return ()
    territories = await repository.load_territories(uow)
    matched = {t for lead in leads if (t := domain.matching_territory(territories, lead)) is not None}
    counts = await open_lead_counts(uow, domain.reps_of(matched))
    for owner, held in (released or {}).items():
        if owner in counts:
            counts[owner] = max(0, counts[owner] - held)
    assigned = domain.assign_all(territories, leads, counts)
    await repository.move_cursors(uow, assigned.cursors)
    return assigned.assignments
