"""Use cases of support: file a complaint, record a survey answer, from the ingest topic or the API, exactly once;
read and assign complaints, each agent only the complaints they see."""

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from pymongo import ReturnDocument

from crm_shared import identity
from crm_shared.consumer import Rejected
from crm_shared.events import (
    CloudEvent,
    ComplaintFiled,
    ComplaintFiledEvent,
    SegmentChangedEvent,
    SurveyAnswered,
    SurveyAnsweredEvent,
    derived_event_id,
    utc_now,
)
from crm_shared.security import GROUPED, Principal
from crm_shared.store import Batch, BatchOutcome, Store, UnitOfWork, as_stored
from crm_shared.topics import Topic
from crm_support import domain, nps, repository
from crm_support.sla import escalation
from crm_support.sla import repository as sla_store
from crm_support.sla.calendar import NoBusinessHours
from crm_support.sla.clock import TicketHistory, timers
from crm_support.sla.policies import TicketFacts, first_matching
from crm_support.sla.repository import SlaRules
from crm_support.tickets import handlers as tickets
from crm_support.tickets import repository as ticket_store
from crm_support.tickets.domain import SEVERITY_PRIORITY, Actor, Ticket

SOURCE = "/crm/support"
CONSUMER = "support"


def _emit_accepted(uow: UnitOfWork, outgoing: type[CloudEvent[Any]], event: CloudEvent[Any]) -> None:
    # The business time stays the channel's; the id is derived so a retry emits the same event.
    uow.emit(
        outgoing.create(event.data, source=SOURCE, id=derived_event_id(SOURCE, event.id), time=event.time, cause=event),
        Topic.SUPPORT_EVENTS,
    )


def complaint_policy(
    fact: ComplaintFiled, at: datetime, value_tier: str | None, rules: SlaRules
) -> tuple[str, datetime] | None:
    """The SLA policy a complaint gets, and when its first response is due under it; None when no policy with a
    first-response target matches (the severity's target applies)."""
    facts = TicketFacts(
        priority=SEVERITY_PRIORITY[fact.severity], category=fact.dimension, channel=fact.channel, value_tier=value_tier
    )
    policy = first_matching(rules.policies, facts)
    if policy is None or "first_response" not in policy.targets:
        return None
    opened = TicketHistory(created_at=at, statuses=[(at, "new")])
    try:
        due = timers(opened, policy, rules.calendar_of, at)["first_response"].due_at
    except NoBusinessHours:
        return None
    return (policy.policy_id, due) if due is not None else None


def _apply(
    event: CloudEvent[Any],
    complaints: dict[str, domain.Complaint],
    surveys: dict[str, domain.SurveyAnswer],
    targets: domain.SlaTargets,
    rules: SlaRules,
    tiers: Mapping[str, str],
    answered_tickets: Mapping[str, Ticket],
) -> domain.Complaint | domain.SurveyAnswer:
    """The complaint or answer after `event`, given those known so far (pure); raises Rejected."""
    data = event.data
    try:
        if isinstance(data, ComplaintFiled):
            known = complaints.get(data.complaint_id)
            policy = None if known else complaint_policy(data, event.time, tiers.get(data.customer_id), rules)
            return domain.file_complaint(known, data, event.time, targets, policy=policy)
        if isinstance(data, SurveyAnswered):
            ticket = answered_tickets.get(data.ticket_id) if data.ticket_id else None
            return domain.record_survey_answer(
                surveys.get(data.survey_id),
                data,
                event.time,
                ticket_assignee=ticket.assignee_id if ticket else None,
                ticket_category=ticket.category if ticket else None,
                value_tier=tiers.get(data.customer_id),
            )
    except domain.ComplaintRejected as exc:
        raise Rejected(str(exc)) from exc
    raise Rejected(f"support does not handle events of type {event.type}")


async def apply_ticket_events(
    store: Store, events: Sequence[CloudEvent[Any]], targets: domain.SlaTargets = domain.DEFAULT_SLA
) -> BatchOutcome:
    """Store each complaint and survey answer and publish it on crm.support.events, the batch in one
    transaction; a redelivered event, or the same fact again under a new event id, changes nothing. A fact
    that contradicts a known complaint or answer (stored, or earlier in the batch) is rejected with Rejected;
    the others are applied. Each event's result is the complaint or survey answer after it."""

    async def work(uow: UnitOfWork, batch: Batch[CloudEvent[Any]]) -> None:
        complaints = await repository.get_complaints(
            uow, (e.data.complaint_id for e in batch.events if isinstance(e.data, ComplaintFiled))
        )
        surveys = await repository.get_surveys(
            uow, (e.data.survey_id for e in batch.events if isinstance(e.data, SurveyAnswered))
        )
        filed = [e for e in batch.events if isinstance(e.data, ComplaintFiled)]
        rules = await sla_store.load_rules(uow.db, uow) if filed else SlaRules()
        answers = [e for e in batch.events if isinstance(e.data, SurveyAnswered)]
        tiers = await sla_store.tiers_of(uow, (e.customer_id for e in (*filed, *answers)))
        # One read for both: the tickets answers are about, and those filed complaints may have opened already.
        known_tickets = await ticket_store.get_tickets(
            uow, [*(e.data.ticket_id for e in answers if e.data.ticket_id), *(e.data.complaint_id for e in filed)]
        )
        opened: list[Ticket] = []
        new_complaints: list[domain.Complaint] = []
        new_surveys: list[domain.SurveyAnswer] = []
        # What is filed for an event naming a merged id keeps that id, so an unmerge gives it back.
        complaint_origins: dict[str, dict[str, str]] = {}
        survey_origins: dict[str, dict[str, str]] = {}
        for event in batch.events:
            try:
                after = _apply(event, complaints, surveys, targets, rules, tiers, known_tickets)
            except Rejected as exc:
                batch.reject(event, exc)
                continue
            batch.done(event, after)
            # A fact filed once is never changed: only the first filing is written and published.
            if isinstance(after, domain.Complaint):
                if after.complaint_id in complaints:
                    continue
                complaints[after.complaint_id] = after
                new_complaints.append(after)
                if origin := identity.origin_fields(event):
                    complaint_origins[after.complaint_id] = origin
                _emit_accepted(uow, ComplaintFiledEvent, event)
                # A complaint is a ticket too: the case an agent works, under the complaint's id.
                if after.complaint_id not in known_tickets:
                    tier = tiers.get(after.customer_id)
                    opened.append(
                        tickets.open_complaint_ticket(uow, after.filed, after.filed_at, rules, tier, cause=event)
                    )
            else:
                if after.survey_id in surveys:
                    continue
                surveys[after.survey_id] = after
                new_surveys.append(after)
                if origin := identity.origin_fields(event):
                    survey_origins[after.survey_id] = origin
                _emit_accepted(uow, SurveyAnsweredEvent, event)
        await repository.insert_complaints(uow, new_complaints, complaint_origins)
        await repository.insert_surveys(uow, new_surveys, survey_origins)
        await ticket_store.insert_tickets(uow, opened, complaint_origins)
        await escalation.schedule(uow, opened, rules, as_stored(utc_now()))

    return await store.apply_batch(CONSUMER, events, work)


async def apply_ticket_event(
    store: Store, event: CloudEvent[Any], targets: domain.SlaTargets = domain.DEFAULT_SLA
) -> domain.Complaint | domain.SurveyAnswer:
    """Any event of crm.ingest.tickets (the API): the complaint or answer after it; raises AlreadyApplied or
    Rejected."""
    result: domain.Complaint | domain.SurveyAnswer = (await apply_ticket_events(store, [event], targets)).result_of(
        event
    )
    return result


async def file_complaint(
    store: Store, event: CloudEvent[ComplaintFiled], targets: domain.SlaTargets = domain.DEFAULT_SLA
) -> domain.Complaint:
    """One complaint: stored and published on crm.support.events; raises AlreadyApplied or Rejected."""
    complaint: domain.Complaint = (await apply_ticket_events(store, [event], targets)).result_of(event)
    return complaint


async def record_survey_answer(store: Store, event: CloudEvent[SurveyAnswered]) -> domain.SurveyAnswer:
    """One survey answer: stored and published on crm.support.events; raises AlreadyApplied or Rejected."""
    answer: domain.SurveyAnswer = (await apply_ticket_events(store, [event])).result_of(event)
    return answer


COMPLAINT_ACCESS = GROUPED
"""An agent sees the complaints of their groups, those assigned to them and those assigned to their team; API
keys and those who see every record see every complaint."""


def complaints_seen_by(principal: Principal | None, query: dict[str, Any]) -> dict[str, Any]:
    """`query` narrowed to the complaints `principal` sees (all for None: the service's own checks)."""
    return query if principal is None else COMPLAINT_ACCESS.restrict(principal, query)


async def find_complaint(store: Store, complaint_id: str, *, seen_by: Principal | None) -> domain.Complaint | None:
    """The complaint, or None when there is none `seen_by` sees (missing and hidden look the same)."""
    doc = await store.db[repository.COMPLAINTS].find_one(complaints_seen_by(seen_by, {"_id": complaint_id}))
    return repository.complaint_from_document(doc) if doc else None


async def assign_complaint(
    store: Store, complaint_id: str, *, group: str | None, assignee_id: str | None, seen_by: Principal
) -> domain.Complaint | None:
    """Route the complaint to `group` and `assignee_id` (None for none), when the principal sees it: checked and
    written in one atomic update. None when there is no such complaint for them."""
    doc = await store.db[repository.COMPLAINTS].find_one_and_update(
        complaints_seen_by(seen_by, {"_id": complaint_id}),
        {"$set": {"group": group, "assignee_id": assignee_id}},
        return_document=ReturnDocument.AFTER,
    )
    return repository.complaint_from_document(doc) if doc else None


async def find_survey(store: Store, survey_id: str) -> domain.SurveyAnswer | None:
    doc = await store.db[repository.SURVEYS].find_one({"_id": survey_id})
    return repository.survey_from_document(doc) if doc else None


# ---------------------------------------------------------------- value tiers from scoring

TIERS_CONSUMER = "support-value-tiers"


async def apply_segment_events(
    store: Store, events: Sequence[CloudEvent[Any]], nps_interval: timedelta | None = None
) -> BatchOutcome:
    """Keep each customer's newest value tier from scoring's segment changes, what SLA policies match on, and
    re-match their open tickets; a customer seen for the first time is enrolled in the periodic NPS survey
    (when `nps_interval` is given). The other dimensions and event types are not support's concern, nor is a
    tier scoring gave a customer since merged away: it is not the survivor's (scoring publishes that one)."""

    def relevant(event: CloudEvent[Any]) -> bool:
        return (
            isinstance(event, SegmentChangedEvent)
            and event.data.dimension == "value_tier"
            and not identity.origin_fields(event)
        )

    async def work(uow: UnitOfWork, batch: Batch[CloudEvent[Any]]) -> None:
        newest: dict[str, tuple[str, datetime]] = {}
        first: dict[str, datetime] = {}
        for event in batch.events:
            kept = newest.get(event.customer_id)
            if kept is None or kept[1] <= event.data.changed_at:
                newest[event.customer_id] = (event.data.new, event.data.changed_at)
            first[event.customer_id] = min(first.get(event.customer_id, event.data.changed_at), event.data.changed_at)
            batch.done(event, event.data.new)
        await sla_store.save_newest_tiers(uow, newest)
        if nps_interval is not None:
            await nps.enrol(uow, first.items(), nps_interval)
        await rematch_open_tickets(uow, newest.keys())

    return await store.apply_batch(TIERS_CONSUMER, events, work, relevant=relevant)


TIER_CHANGE = Actor("system", "value-tier-changed")


async def rematch_open_tickets(uow: UnitOfWork, customer_ids: Iterable[str]) -> None:
    """The open tickets of customers whose tier changed get the policy their new tier picks, and their timers
    rescheduled. The clock counts from the ticket's history under the policy in force, so the time already
    spent (and paused) carries over; only the targets change. A tier older than the one stored changes nothing:
    the stored tier is read back, not the event's."""
    tiers = await sla_store.tiers_of(uow, customer_ids)
    if not tiers:
        return
    query = {
        "customer_id": {"$in": sorted(tiers)},
        "status": {"$in": list(tickets.OPEN_STATUSES)},
    }
    found = [
        (ticket_store.from_document(d), d.get("version", 0))
        async for d in uow.db[ticket_store.TICKETS].find(query, session=uow.session)
    ]
    stale = [(t, v) for t, v in found if t.value_tier != tiers[t.customer_id]]
    if not stale:
        return
    rules = await sla_store.load_rules(uow.db, uow)
    now = as_stored(utc_now())
    changed = []
    for ticket, version in stale:
        after = tickets.with_policy(ticket, rules, tiers[ticket.customer_id], now, by=TIER_CHANGE)
        after = escalation.with_next_due(after, rules, now)
        await ticket_store.save_ticket(uow, after, version)
        changed.append(after)
    await escalation.schedule(uow, changed, rules, now)
