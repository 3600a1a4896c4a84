"""Use cases of leads: take the leads marketing hands over and those entered or imported, once per person,
assigned by the territories' rules on arrival; read, progress and re-assign leads, each person only the leads
they see."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from pymongo import UpdateOne

from crm_sales.customers import handlers as customers
from crm_sales.leads import domain, repository
from crm_sales.leads.drafts import LeadDraft
from crm_sales.leads.importing import LeadRow, ParsedFile, RowError
from crm_sales.orders.handlers import CONSUMER
from crm_sales.territories import domain as territories
from crm_sales.territories import handlers as assignment
from crm_sales.territories.repository import load_territories
from crm_shared import identity
from crm_shared.api import keyset_page
from crm_shared.events import CloudEvent, LeadQualifiedEvent, new_event_id
from crm_shared.logging import get_logger
from crm_shared.security import OWNED, Principal
from crm_shared.store import Batch, BatchOutcome, Store, UnitOfWork, as_stored

log = get_logger(__name__)

LEAD_ACCESS = OWNED
"""A person sees the leads they own, those their team owns and those of their territories; API keys and those
who see every record see every lead (the unassigned ones included)."""

LEAD_CHANGES = frozenset({"owner_id", "territory", "status", "disqualified_reason"})
"""What a person may change on a lead."""

DUPLICATE_RACES = 3


class DuplicateLead(Exception):
    """The new lead is a person an existing lead already is (same email, phone or customer)."""

    def __init__(self, existing_id: str) -> None:
        super().__init__(f"the lead duplicates lead {existing_id} (same email, phone or customer)")
        self.existing_id = existing_id


class DuplicateCustomer(Exception):
    """The new lead is a person the customer service knows already (their match keys share its email or phone)."""

    def __init__(self, customer_id: str) -> None:
        super().__init__(
            f"the lead is customer {customer_id} already (same email or phone): sell to the customer, e.g. open an "
            "opportunity for them"
        )
        self.customer_id = customer_id


class LeadClosed(Exception):
    """Assignment applies only to open leads."""


def new_lead_id() -> str:
    return f"L-{new_event_id()}"


def profile(lead: domain.Lead) -> territories.LeadProfile:
    return territories.LeadProfile(lead.region, lead.industry, lead.company_size)


async def assign_arrivals(uow: UnitOfWork, leads: Sequence[domain.Lead]) -> list[domain.Lead]:
    """New leads with their territory and owner by the rules. A lead that came with an owner keeps them and
    gets the matching territory; the others get a rep of it (or none, and the reason)."""
    given = [lead for lead in leads if lead.owner_id is not None]
    found: dict[str, territories.Territory | None] = {}
    if given:
        rules = await load_territories(uow)
        found = {lead.lead_id: territories.matching_territory(rules, profile(lead)) for lead in given}
    to_pick = [lead for lead in leads if lead.owner_id is None]
    picked = dict(
        zip(
            (lead.lead_id for lead in to_pick),
            await assignment.assign_in(uow, [profile(lead) for lead in to_pick]),
            strict=True,
        )
    )
    assigned: list[domain.Lead] = []
    for lead in leads:
        if lead.owner_id is not None:
            territory = found[lead.lead_id]
            assigned.append(replace(lead, territory=territory.territory_id if territory else None))
        else:
            a = picked[lead.lead_id]
            assigned.append(replace(lead, territory=a.territory, owner_id=a.owner_id, unassigned_reason=a.reason))
    return assigned


# ---------------------------------------------------------------- marketing's hand-over


async def apply_marketing_events(store: Store, events: Sequence[CloudEvent[Any]]) -> BatchOutcome:
    """Take the qualified leads from marketing, once each and once per customer (a customer with a lead already
    keeps that one), assigned by the rules; other marketing events are not sales' concern."""

    async def work(uow: UnitOfWork, batch: Batch[CloudEvent[Any]]) -> None:
        taken = [domain.take_lead(event.data, event.time) for event in batch.events]
        existing = {
            d["_id"]: repository.lead_from_document(d)
            for d in await uow.find_ids(repository.LEADS, [lead.lead_id for lead in taken])
        }
        known = await repository.known_leads(uow, [domain.duplicate_keys(lead) for lead in taken])
        fresh: dict[str, domain.Lead] = {}
        origins: dict[str, dict[str, str]] = {}
        lead_of: dict[str, str] = {}
        for event, lead in zip(batch.events, taken, strict=True):
            if lead.lead_id in existing or lead.lead_id in fresh:
                lead_of[event.id] = lead.lead_id
            elif (duplicate := known.duplicate_of(domain.duplicate_keys(lead))) is not None:
                lead_of[event.id] = duplicate
            else:
                fresh[lead.lead_id] = lead
                origins[lead.lead_id] = identity.origin_fields(event)
                known.add(lead.lead_id, domain.duplicate_keys(lead))
                lead_of[event.id] = lead.lead_id
        assigned = {lead.lead_id: lead for lead in await assign_arrivals(uow, list(fresh.values()))}
        await repository.insert_leads(uow, assigned.values(), origins)
        others = set(lead_of.values()) - set(assigned) - set(existing)
        existing.update(
            (d["_id"], repository.lead_from_document(d)) for d in await uow.find_ids(repository.LEADS, others)
        )
        for event in batch.events:
            batch.done(event, assigned.get(lead_of[event.id]) or existing.get(lead_of[event.id]))

    return await store.apply_batch(CONSUMER, events, work, relevant=lambda event: isinstance(event, LeadQualifiedEvent))


async def apply_marketing_event(store: Store, event: CloudEvent[Any]) -> domain.Lead | None:
    """One marketing event: the lead taken (or the one the customer had), None for another event type; raises
    AlreadyApplied."""
    lead: domain.Lead | None = (await apply_marketing_events(store, [event])).result_of(event)
    return lead


# ---------------------------------------------------------------- leads entered


def same_request(lead: domain.Lead, draft: LeadDraft) -> bool:
    """Whether a stored lead is what `draft` asked for (an Idempotency-Key repeated)."""
    asked = draft.lead(lead.lead_id, lead.created_at)
    fields = ("source", "name", "email", "phone", "company", "industry", "company_size", "region")
    same = all(getattr(asked, f) == getattr(lead, f) for f in fields)
    return same and (draft.owner_id is None or draft.owner_id == lead.owner_id)


async def create_lead(
    store: Store, draft: LeadDraft, lead_id: str, at: datetime, *, match_secret: bytes | None = None
) -> tuple[domain.Lead, bool]:
    """Keep a new lead, assigned by the rules; (lead, False) when a lead with this id exists already (the caller
    decides whether it is the same request). Raises DuplicateLead for a person a lead already is, and, with the
    platform's match-key secret, DuplicateCustomer for one a customer already is."""
    lead = draft.lead(lead_id, as_stored(at))

    async def work(uow: UnitOfWork) -> tuple[domain.Lead, bool]:
        found = await uow.db[repository.LEADS].find_one({"_id": lead_id}, session=uow.session)
        if found is not None:
            return repository.lead_from_document(found), False
        # That the person is a customer matters more than that a lead for them exists: it is said first.
        customer = await customers.customer_matching(uow, match_secret, lead.email_key, lead.phone_key)
        if customer is not None:
            raise DuplicateCustomer(customer)
        known = await repository.known_leads(uow, [domain.duplicate_keys(lead)])
        duplicate = known.duplicate_of(domain.duplicate_keys(lead))
        if duplicate is not None:
            raise DuplicateLead(duplicate)
        [assigned] = await assign_arrivals(uow, [lead])
        await repository.insert_leads(uow, [assigned])
        return assigned, True

    # A lead for the same person committed between our check and our insert: look again.
    return await store.transaction_racing(work, attempts=DUPLICATE_RACES)


# ---------------------------------------------------------------- CSV import


@dataclass
class ImportSummary:
    imported: int = 0
    duplicates: int = 0
    rejected: list[RowError] = field(default_factory=list)
    lead_ids: list[str] = field(default_factory=list)


IMPORT_CHUNK = 200
"""Rows per transaction: a crash loses at most one chunk's work, and a re-run finds the rest as duplicates."""


async def import_chunk(
    store: Store, rows: Sequence[LeadRow], at: datetime, *, match_secret: bytes | None = None
) -> tuple[list[domain.Lead], list[RowError]]:
    """Import one chunk of checked rows in one transaction, assigned by the rules: the leads kept, and the rows
    that duplicate an existing lead (or, with the match-key secret, a customer)."""

    async def work(uow: UnitOfWork) -> tuple[list[domain.Lead], list[RowError]]:
        known = await repository.known_leads(uow, [row.keys for row in rows])
        matched = await customers.customers_matching(uow, match_secret, [(r.keys.email, r.keys.phone) for r in rows])
        fresh: list[domain.Lead] = []
        duplicates: list[RowError] = []
        for row, customer in zip(rows, matched, strict=True):
            existing = known.duplicate_of(row.keys)
            if customer is not None:
                duplicates.append(RowError(row.row, f"customer {customer} already (same email or phone)", True))
            elif existing is not None:
                duplicates.append(RowError(row.row, f"duplicate of lead {existing} (same email or phone)", True))
            else:
                fresh.append(row.draft.lead(new_lead_id(), at))
        assigned = await assign_arrivals(uow, fresh)
        await repository.insert_leads(uow, assigned)
        return assigned, duplicates

    return await store.transaction_racing(work, attempts=DUPLICATE_RACES)


async def import_leads(
    store: Store,
    parsed: ParsedFile,
    at: datetime,
    *,
    chunk: int = IMPORT_CHUNK,
    progress: Callable[[int], None] | None = None,
    match_secret: bytes | None = None,
) -> ImportSummary:
    """Import a parsed file's good rows chunk by chunk; the bad rows and the duplicates are reported by row.
    `progress` is told how many rows each step settled (the rejected ones first)."""
    at = as_stored(at)
    summary = ImportSummary(rejected=list(parsed.errors))
    summary.duplicates = sum(1 for e in parsed.errors if e.duplicate)
    if progress is not None and parsed.errors:
        progress(len(parsed.errors))
    for start in range(0, len(parsed.rows), chunk):
        rows = parsed.rows[start : start + chunk]
        kept, duplicates = await import_chunk(store, rows, at, match_secret=match_secret)
        summary.imported += len(kept)
        summary.lead_ids += [lead.lead_id for lead in kept]
        summary.duplicates += len(duplicates)
        summary.rejected += duplicates
        if progress is not None:
            progress(len(rows))
    summary.rejected.sort(key=lambda e: e.row)
    log.info("leads_imported", imported=summary.imported, duplicates=summary.duplicates, rejected=len(summary.rejected))
    return summary


# ---------------------------------------------------------------- reading, changing, re-assigning


def leads_seen_by(principal: Principal, query: dict[str, Any]) -> dict[str, Any]:
    """`query` narrowed to the leads `principal` sees."""
    return LEAD_ACCESS.restrict(principal, query)


async def find_lead(store: Store, lead_id: str, *, seen_by: Principal) -> domain.Lead | None:
    """The lead, or None when there is none the principal sees (missing and hidden look the same)."""
    doc = await store.db[repository.LEADS].find_one(leads_seen_by(seen_by, {"_id": lead_id}))
    return repository.lead_from_document(doc) if doc else None


async def change_lead(
    store: Store, lead_id: str, changes: Mapping[str, str | None], *, seen_by: Principal
) -> domain.Lead | None:
    """Set `changes` (owner_id, territory, status with disqualified_reason) on a lead the principal sees, the
    status change checked by the lifecycle, read and written in one transaction; None when there is no such
    lead for them. Raises TransitionRefused."""
    unknown = set(changes) - LEAD_CHANGES
    if unknown or not changes:
        raise ValueError(f"a lead change sets some of {sorted(LEAD_CHANGES)}, got {sorted(changes)}")

    async def work(uow: UnitOfWork) -> domain.Lead | None:
        doc = await uow.db[repository.LEADS].find_one(leads_seen_by(seen_by, {"_id": lead_id}), session=uow.session)
        if doc is None:
            return None
        lead = repository.lead_from_document(doc)
        status = changes.get("status")
        if status is not None:
            lead = domain.change_status(lead, domain.lead_status(status), reason=changes.get("disqualified_reason"))
        elif "disqualified_reason" in changes:
            raise domain.TransitionRefused(
                "disqualified_reason goes with status disqualified", domain.NEXT_STATUSES[lead.status]
            )
        if "territory" in changes:
            lead = replace(lead, territory=changes["territory"])
        if "owner_id" in changes:
            lead = replace(lead, owner_id=changes["owner_id"])
        if "owner_id" in changes:
            lead = replace(lead, unassigned_reason=None if lead.owner_id else "unassigned by hand")
        written = {
            k: v
            for k, v in repository.lead_to_document(lead).items()
            if k in ("status", "disqualified_reason", *repository.ASSIGNMENT_FIELDS)
        }
        await uow.db[repository.LEADS].update_one({"_id": lead_id}, {"$set": written}, session=uow.session)
        return lead

    return await store.transaction(work)


async def _reassign(uow: UnitOfWork, leads: Sequence[domain.Lead]) -> list[domain.Lead]:
    """Open leads given territory and owner by the rules again, written in the caller's transaction."""
    released: dict[str, int] = {}
    for lead in leads:
        if lead.owner_id is not None:
            released[lead.owner_id] = released.get(lead.owner_id, 0) + 1
    assignments = await assignment.assign_in(uow, [profile(lead) for lead in leads], released=released)
    done = [
        replace(lead, territory=a.territory, owner_id=a.owner_id, unassigned_reason=a.reason)
        for lead, a in zip(leads, assignments, strict=True)
    ]
    writes = [
        UpdateOne(
            {"_id": lead.lead_id},
            {"$set": {k: v for k, v in repository.lead_to_document(lead).items() if k in repository.ASSIGNMENT_FIELDS}},
        )
        for lead in done
    ]
    if writes:
        await uow.db[repository.LEADS].bulk_write(writes, ordered=False, session=uow.session)
    return done


async def assign_lead(store: Store, lead_id: str, *, seen_by: Principal) -> domain.Lead | None:
    """Apply the rules to one open lead again (territory and owner); None when the principal sees no such lead.
    Raises LeadClosed for a converted or disqualified lead."""

    async def work(uow: UnitOfWork) -> domain.Lead | None:
        doc = await uow.db[repository.LEADS].find_one(leads_seen_by(seen_by, {"_id": lead_id}), session=uow.session)
        if doc is None:
            return None
        lead = repository.lead_from_document(doc)
        if not lead.is_open:
            raise LeadClosed(f"lead {lead_id} is {lead.status}: only an open lead is assigned")
        [done] = await _reassign(uow, [lead])
        return done

    return await store.transaction(work)


@dataclass(frozen=True)
class Reassigned:
    examined: int
    assigned: int
    still_unassigned: int
    next_cursor: str | None


UNASSIGNED_OPEN: dict[str, Any] = {"owner_id": None, "status": {"$in": list(domain.OPEN_STATUSES)}}


async def assign_unassigned(store: Store, *, seen_by: Principal, limit: int, cursor: str | None) -> Reassigned:
    """Apply the rules to the oldest open leads without an owner the principal sees, at most `limit` of them in
    one transaction; `next_cursor` continues after them (those still without a rep stay behind it)."""
    docs, next_cursor = await keyset_page(
        store.db[repository.LEADS],
        leads_seen_by(seen_by, dict(UNASSIGNED_OPEN)),
        time_field="created_at",
        limit=limit,
        cursor=cursor,
        newest_first=False,
    )

    async def work(uow: UnitOfWork) -> list[domain.Lead]:
        # Read again in the transaction: one assigned meanwhile is left as it is.
        current = await uow.find_ids(repository.LEADS, [d["_id"] for d in docs])
        leads = sorted(
            (repository.lead_from_document(d) for d in current),
            key=lambda lead: (lead.created_at, lead.lead_id),
        )
        return await _reassign(uow, [lead for lead in leads if lead.is_open and lead.owner_id is None])

    done = await store.transaction(work) if docs else []
    assigned = sum(1 for lead in done if lead.owner_id is not None)
    return Reassigned(len(done), assigned, len(done) - assigned, next_cursor)
