"""Use cases of tickets: open one (from the API, or from a complaint filed), reply or note, change its status
or assignment; each in one transaction with the events it publishes on crm.support.events, and the SLA policy
its facts pick. A ticket's timers are computed on read from its facts (crm_support.sla.clock); what is due next
(`sla_due`, the queue's order) is computed at every write, with the timers' schedule."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from pymongo import UpdateOne

from crm_shared import identity
from crm_shared.events import CloudEvent, ComplaintFiled, utc_now
from crm_shared.logging import get_logger
from crm_shared.security import GROUPED, Principal
from crm_shared.store import Store, UnitOfWork, as_stored
from crm_shared.topics import Topic
from crm_support.field import repository as field_store
from crm_support.sla import escalation
from crm_support.sla import repository as sla_store
from crm_support.sla.clock import TicketStatus, Timer, timers
from crm_support.sla.policies import SlaPolicy, TimerKind, first_matching
from crm_support.sla.repository import SlaRules
from crm_support.tickets import domain, repository
from crm_support.tickets.publishing import published

log = get_logger(__name__)

TICKET_ACCESS = GROUPED
"""An agent sees the tickets of their groups, those assigned to them and their team's; API keys and those who
see every record see every ticket."""
CONCURRENT_RETRIES = 3
SYSTEM = domain.Actor("system", "sla")


def tickets_seen_by(principal: Principal | None, query: dict[str, Any]) -> dict[str, Any]:
    return query if principal is None else TICKET_ACCESS.restrict(principal, query)


def actor_of(principal: Principal) -> domain.Actor:
    """Who a caller is in a ticket's history: a person is an agent, an API key a system."""
    return domain.Actor("agent" if principal.kind == "token" else "system", principal.audit_name)


OPEN_STATUSES: tuple[TicketStatus, ...] = ("new", "open", "pending")
"""The statuses of a ticket still being worked: a tier change re-matches its policy."""


def with_policy(
    ticket: domain.Ticket, rules: SlaRules, value_tier: str | None, at: datetime, by: domain.Actor = SYSTEM
) -> domain.Ticket:
    """The ticket with the policy its facts (and the customer's value tier) pick now; a ticket under a service
    contract with a policy of its own gets that one (while it exists)."""
    own = next((p for p in rules.policies if p.policy_id == ticket.contract_policy_id), None)
    facts = replace(ticket, value_tier=value_tier).facts
    policy = own or first_matching(rules.policies, facts)
    return domain.set_policy(ticket, policy.policy_id if policy else None, value_tier, at, by)


@dataclass(frozen=True)
class NewTicket:
    customer_id: str
    kind: domain.TicketKind
    subject: str
    channel: str
    priority: domain.Priority = "normal"
    category: str | None = None
    order_id: str | None = None
    product: str | None = None
    group: str | None = None
    contract_id: str | None = None
    description: str | None = None


def _opened(new: NewTicket, ticket_id: str, at: datetime, by: domain.Actor) -> domain.Ticket:
    ticket = domain.open_ticket(
        ticket_id=ticket_id,
        customer_id=new.customer_id,
        kind=new.kind,
        subject=new.subject,
        channel=new.channel,
        at=at,
        by=by,
        priority=new.priority,
        category=new.category,
        order_id=new.order_id,
        product=new.product,
        group=new.group,
        contract_id=new.contract_id,
    )
    if new.description:
        first = domain.Post(f"{ticket_id}-1", at, domain.Actor("customer", new.customer_id), new.description)
        ticket = replace(ticket, posts=(first,))
    return ticket


async def open_ticket(
    store: Store, new: NewTicket, ticket_id: str, at: datetime, *, by: Principal
) -> tuple[domain.Ticket, bool]:
    """Open the ticket under the SLA policy its facts pick; (ticket, False) when one with this id exists (the
    caller decides whether it is the same request)."""
    at = as_stored(at)

    async def work(uow: UnitOfWork) -> tuple[domain.Ticket, bool]:
        found = await repository.get_ticket(uow, {"_id": ticket_id})
        if found is not None:
            return found[0], False
        # A ticket for a customer merged into another is the survivor's; an unmerge gives it back.
        customer_id, origin = await identity.filed_under(uow.db, new.customer_id, session=uow.session)
        opened = _opened(replace(new, customer_id=customer_id), ticket_id, at, actor_of(by))
        if new.contract_id is not None:
            opened = replace(opened, contract_policy_id=await _contract_policy(uow, new, at))
        rules = await sla_store.load_rules(uow.db, uow)
        tiers = await sla_store.tiers_of(uow, [customer_id])
        ticket = escalation.with_next_due(with_policy(opened, rules, tiers.get(customer_id), at), rules, at)
        await repository.insert_tickets(uow, [ticket], {ticket_id: origin})
        await escalation.schedule(uow, [ticket], rules, at)
        for event in published(None, ticket):
            named = {"originalsubject": new.customer_id} if origin else {}
            uow.emit(event.model_copy(update=named), Topic.SUPPORT_EVENTS)
        return ticket, True

    return await store.transaction_racing(work)


class ContractRefused(Exception):
    """The ticket names a service contract that does not cover it (another customer's, expired, another
    product, or none at all)."""


async def _contract_policy(uow: UnitOfWork, new: NewTicket, at: datetime) -> str | None:
    """The SLA policy of the contract the new ticket is under; raises ContractRefused when it does not cover it."""
    assert new.contract_id is not None
    contract = await field_store.get_contract(uow, new.contract_id)
    if contract is None:
        raise ContractRefused(f"no service contract {new.contract_id}")
    reason = contract.covers(new.customer_id, new.product, at.date())
    if reason is not None:
        raise ContractRefused(reason)
    return contract.sla_policy_id


def ticket_of_complaint(fact: ComplaintFiled, at: datetime, rules: SlaRules, value_tier: str | None) -> domain.Ticket:
    """The ticket a filed complaint opens, under the complaint's id."""
    new = NewTicket(
        customer_id=fact.customer_id,
        kind="complaint",
        subject=fact.summary.splitlines()[0][:200],
        channel=fact.channel,
        priority=domain.SEVERITY_PRIORITY[fact.severity],
        category=fact.dimension,
        order_id=fact.order_id,
        group=fact.group,
        description=fact.summary,
    )
    ticket = _opened(new, fact.complaint_id, at, domain.Actor("system", "complaint"))
    return escalation.with_next_due(with_policy(ticket, rules, value_tier, at), rules, at)


def open_complaint_ticket(
    uow: UnitOfWork,
    fact: ComplaintFiled,
    at: datetime,
    rules: SlaRules,
    value_tier: str | None,
    cause: CloudEvent[Any] | None = None,
) -> domain.Ticket:
    """In a batch's unit of work: the ticket a newly filed complaint opens, its events emitted now (so they
    follow the complaint's own on its customer's key), caused by the complaint's `cause`; the caller inserts it
    with the batch's others."""
    ticket = ticket_of_complaint(fact, at, rules, value_tier)
    for event in published(None, ticket, cause=cause):
        uow.emit(event, Topic.SUPPORT_EVENTS)
    return ticket


async def change_ticket(
    store: Store,
    ticket_id: str,
    change: Callable[[domain.Ticket], domain.Ticket],
    *,
    seen_by: Principal,
) -> domain.Ticket | None:
    """Apply `change` to the ticket the principal sees and publish what changed, in one transaction, retried
    when another change of the ticket came between; None when there is no such ticket for them. Raises what
    `change` raises (TicketRefused)."""

    async def work(uow: UnitOfWork) -> domain.Ticket | None:
        found = await repository.get_ticket(uow, tickets_seen_by(seen_by, {"_id": ticket_id}))
        if found is None:
            return None
        before, version = found
        after = change(before)
        if after == before:
            return before
        rules, now = await sla_store.load_rules(uow.db, uow), as_stored(utc_now())
        after = escalation.with_next_due(after, rules, now)
        await repository.save_ticket(uow, after, version)
        for event in published(before, after):
            uow.emit(event, Topic.SUPPORT_EVENTS)
        await escalation.schedule(uow, [after], rules, now)
        return after

    for attempt in range(CONCURRENT_RETRIES):
        try:
            return await store.transaction(work)
        except repository.ConcurrentChange:
            if attempt == CONCURRENT_RETRIES - 1:
                raise
            log.info("ticket_changed_concurrently", ticket_id=ticket_id, attempt=attempt + 1)
    raise AssertionError("unreachable")


async def find_ticket(store: Store, ticket_id: str, *, seen_by: Principal | None) -> domain.Ticket | None:
    doc = await store.db[repository.TICKETS].find_one(tickets_seen_by(seen_by, {"_id": ticket_id}))
    return repository.from_document(doc) if doc else None


async def timers_of(
    store: Store, ticket: domain.Ticket, now: datetime
) -> tuple[SlaPolicy | None, dict[TimerKind, Timer]]:
    """The policy in force (None when none matched, or it was deleted since) and each of its timers now."""
    rules = await sla_store.load_rules(store.db)
    policy = next((p for p in rules.policies if p.policy_id == ticket.policy_id), None)
    if policy is None:
        return None, {}
    return policy, timers(ticket.sla_history, policy, rules.calendar_of, now)


BACKFILL_PAGE = 200


async def backfill_sla_due(store: Store) -> int:
    """Give the tickets still being worked that were stored before `sla_due` existed what is due next: one pass
    in id order, a page at a time, idempotent (a function of the ticket and its policy), each write conditional
    on the ticket being unchanged since read (a change stores its own). Resolved and closed tickets have nothing
    due, which is how a missing value reads. The number of tickets updated."""
    tickets = store.db[repository.TICKETS]
    rules = await sla_store.load_rules(store.db)
    done, last = 0, ""
    while True:
        missing = {"status": {"$in": list(OPEN_STATUSES)}, "sla_due_at": {"$exists": False}, "_id": {"$gt": last}}
        page = await tickets.find(missing).sort("_id", 1).limit(BACKFILL_PAGE).to_list(None)
        if not page:
            break
        now = as_stored(utc_now())
        writes = []
        for doc in page:
            due = escalation.with_next_due(repository.from_document(doc), rules, now).sla_due
            condition = {"_id": doc["_id"], "version": doc.get("version"), "sla_due_at": {"$exists": False}}
            writes.append(UpdateOne(condition, {"$set": repository.sla_due_fields(due)}))
        done += (await tickets.bulk_write(writes, ordered=False)).modified_count
        last = page[-1]["_id"]
    if done:
        log.info("sla_due_backfilled", tickets=done)
    return done
