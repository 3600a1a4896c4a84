"""Support follows the customer service's merges, unmerges, erasures and exports (crm_support.identity), on the
real database: tickets and everything about them move to the survivor and come back exactly; what was filed under
the survivor for an event naming the merged id goes back with it; an erasure keeps the tickets for the reports
without a word of their texts; an export lists the tickets with their conversation."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from typing import Any

from crm_shared import identity
from crm_shared.events import (
    CloudEvent,
    ComplaintFiled,
    ComplaintFiledEvent,
    CustomerErased,
    CustomerErasedEvent,
    CustomerExportRequested,
    CustomerExportRequestedEvent,
    CustomerMerged,
    CustomerMergedEvent,
    CustomerUnmerged,
    CustomerUnmergedEvent,
    ExportAnsweredEvent,
    IdentityAppliedEvent,
    SurveyAnswered,
    SurveyAnsweredEvent,
    parse_event,
    utc_now,
)
from crm_shared.security import Principal
from crm_shared.store import Store, UnitOfWork, outbox_records
from crm_shared.topics import Topic
from crm_support import domain, handlers, nps, repository
from crm_support.app import INDEXES
from crm_support.field import domain as field_domain
from crm_support.field import repository as field_store
from crm_support.identity import HOLDER
from crm_support.sla import escalation
from crm_support.sla import repository as sla_store
from crm_support.sla.policies import Conditions, SlaPolicy, Target
from crm_support.tickets import domain as ticket_domain
from crm_support.tickets import handlers as ticket_handlers
from crm_support.tickets import repository as ticket_store

from helpers import tier_changed

NewStore = Callable[..., Awaitable[Store]]
# Far enough back that NPS requests two intervals on are not in the future.
T0 = (utc_now() - timedelta(days=400)).replace(microsecond=0)
NPS_INTERVAL = timedelta(days=90)
HELD = (
    ticket_store.TICKETS,
    repository.COMPLAINTS,
    repository.SURVEYS,
    field_store.VISITS,
    field_store.SERVICE_CONTRACTS,
    escalation.SLA_TIMERS,
    sla_store.CUSTOMER_TIERS,
    nps.NPS_REQUESTS,
)
"""Every support collection that names a customer."""


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def complaint_filed(customer: str, complaint_id: str, summary: str, at: datetime = T0) -> ComplaintFiledEvent:
    data = ComplaintFiled(
        complaint_id=complaint_id, customer_id=customer, dimension="service", severity="high", summary=summary
    )
    return ComplaintFiledEvent.create(data, source="/channels/call-centre", time=at)


def survey_answered(customer: str, survey_id: str, comment: str) -> SurveyAnsweredEvent:
    data = SurveyAnswered(survey_id=survey_id, customer_id=customer, kind="nps", score=4, comment=comment)
    return SurveyAnsweredEvent.create(data, source="/channels/survey", time=T0)


def merged(survivor: str, merged_id: str, merge_id: str) -> CustomerMergedEvent:
    data = CustomerMerged(customer_id=survivor, merged_id=merged_id, merge_id=merge_id, decided_by="confirmed")
    return CustomerMergedEvent.create(data, source="/crm/customer")


def unmerged(survivor: str, merged_id: str, merge_id: str) -> CustomerUnmergedEvent:
    data = CustomerUnmerged(customer_id=survivor, merged_id=merged_id, merge_id=merge_id)
    return CustomerUnmergedEvent.create(data, source="/crm/customer")


async def apply(store: Store, *requests: CloudEvent[Any]) -> None:
    outcome = await identity.apply_requests(store, "support", HOLDER, list(requests))
    assert outcome.applied == [r.id for r in requests]


async def support_store(new_store: NewStore) -> Store:
    store = await new_store("support_identity", INDEXES)
    policy = SlaPolicy("everyone", "Everyone", 1, {"first_response": Target(timedelta(hours=4), business_hours=False)})
    await store.db[sla_store.SLA_POLICIES].insert_one(sla_store.policy_to_document(policy, T0))
    return store


async def seed_customer(store: Store, customer: str, tier: str = "gold") -> dict[str, str]:
    """A complaint (and the ticket it opens, with its SLA timer), a customer's reply on it, an NPS answer with a
    comment, a service contract, a visit with notes, a value tier and an NPS schedule: the ids, by kind."""
    ids = {"complaint": new_id("T"), "survey": new_id("S"), "contract": new_id("K"), "visit": new_id("V")}
    await handlers.apply_segment_events(store, [tier_changed(customer, tier, T0)], NPS_INTERVAL)
    outcome = await handlers.apply_ticket_events(
        store,
        [
            complaint_filed(customer, ids["complaint"], f"Ms Example of {customer} was billed twice."),
            survey_answered(customer, ids["survey"], f"Call me back on +49 170 {customer}"),
        ],
    )
    assert not outcome.rejected

    async def reply(uow: UnitOfWork) -> None:
        found = await ticket_store.get_ticket(uow, {"_id": ids["complaint"]})
        assert found is not None
        ticket, version = found
        post = ticket_domain.Post(
            f"{ids['complaint']}-2", T0 + timedelta(hours=1), ticket_domain.Actor("customer", customer), "Still?"
        )
        await ticket_store.save_ticket(uow, ticket_domain.post(ticket, post), version)

    await store.transaction(reply)
    contract = field_domain.ServiceContract(
        ids["contract"], customer, "Gold maintenance", date(2026, 1, 1), date(2027, 1, 1)
    )
    await store.db[field_store.SERVICE_CONTRACTS].insert_one(field_store.contract_to_document(contract, T0))
    visit = field_domain.Visit(
        ids["visit"],
        ids["complaint"],
        customer,
        "tech-1",
        "espresso",
        T0 + timedelta(days=1),
        T0 + timedelta(days=1, hours=2),
        notes=f"Door code of {customer}: 4711",
    )
    await store.db[field_store.VISITS].insert_one({**field_store.visit_to_document(visit), "group": None})
    return ids


async def state(store: Store) -> dict[str, list[dict[str, Any]]]:
    return {c: await store.db[c].find({}).sort("_id", 1).to_list(None) for c in HELD}


def without(snapshot: dict[str, list[dict[str, Any]]], ids: set[str]) -> dict[str, list[dict[str, Any]]]:
    """The snapshot without the records of the given ids (and the timers of those tickets)."""
    return {
        c: [d for d in docs if d["_id"] not in ids and d.get("ticket_id") not in ids] for c, docs in snapshot.items()
    }


async def owners(store: Store, ids: dict[str, str]) -> dict[str, Any]:
    db = store.db
    complaint = await db[repository.COMPLAINTS].find_one({"_id": ids["complaint"]})
    survey = await db[repository.SURVEYS].find_one({"_id": ids["survey"]})
    ticket = await db[ticket_store.TICKETS].find_one({"_id": ids["complaint"]})
    visit = await db[field_store.VISITS].find_one({"_id": ids["visit"]})
    contract = await db[field_store.SERVICE_CONTRACTS].find_one({"_id": ids["contract"]})
    timers = await db[escalation.SLA_TIMERS].find({"ticket_id": ids["complaint"]}).to_list(None)
    assert complaint and survey and ticket and visit and contract and timers
    return {
        "complaint": (complaint["customer_id"], complaint["filed"]["customer_id"]),
        "survey": (survey["customer_id"], survey["answered"]["customer_id"]),
        "ticket": ticket["customer_id"],
        "authors": sorted({p["author"]["id"] for p in ticket["posts"]}),
        "visit": visit["customer_id"],
        "contract": contract["customer_id"],
        "timers": sorted({t["customer_id"] for t in timers}),
    }


async def answers(store: Store) -> list[Any]:
    return [parse_event(r["value"]) for r in await outbox_records(store.db, {"topic": Topic.IDENTITY_ANSWERS.value})]


async def test_a_merge_moves_everything_to_the_survivor_and_an_unmerge_gives_it_back_exactly(
    new_store: NewStore,
) -> None:
    store = await support_store(new_store)
    a, b = new_id("C"), new_id("C")
    a_ids, b_ids = await seed_customer(store, a), await seed_customer(store, b)
    before = await state(store)
    assert await owners(store, a_ids) == {
        "complaint": (a, a),
        "survey": (a, a),
        "ticket": a,
        "authors": [a],
        "visit": a,
        "contract": a,
        "timers": [a],
    }

    await apply(store, merged(b, a, "m-1"))

    assert await owners(store, a_ids) == {
        "complaint": (b, b),
        "survey": (b, b),
        "ticket": b,
        "authors": [b],
        "visit": b,
        "contract": b,
        "timers": [b],
    }
    listed = await store.db[ticket_store.TICKETS].find({"customer_id": b}).distinct("_id")
    assert sorted(listed) == sorted([a_ids["complaint"], b_ids["complaint"]])
    # The merged id is no customer of its own any more: it is not asked for NPS answers while merged.
    schedule = await store.db[nps.NPS_REQUESTS].find_one({"_id": a})
    assert schedule is not None and schedule["due_at"] is None and schedule["merged_into"] == b
    assert await nps.request_due(store, NPS_INTERVAL, T0 + 2 * NPS_INTERVAL) == [f"NPS-{b}-1"]

    # After the merge: a complaint naming the merged id, and the first one again (another event id), are filed
    # under the survivor; the copy changes nothing, and a tier scoring gave the merged id is not the survivor's.
    late = complaint_filed(a, new_id("T"), "Nobody called me back.", T0 + timedelta(days=2))
    again = complaint_filed(a, a_ids["complaint"], f"Ms Example of {a} was billed twice.")
    filed = await identity.redirect(store, [late, again])
    assert [(e.customer_id, e.originalsubject) for e in filed] == [(b, a), (b, a)]
    outcome = await handlers.apply_ticket_events(store, filed)
    assert outcome.applied == [late.id, again.id] and not outcome.rejected
    for collection in (repository.COMPLAINTS, ticket_store.TICKETS):
        doc = await store.db[collection].find_one({"_id": late.data.complaint_id})
        assert doc is not None and (doc["customer_id"], doc[identity.ORIGIN]) == (b, a)
    published = [parse_event(r["value"]) for r in await outbox_records(store.db, {"key": b})]
    caused_by_late = [e for e in published if e.causationid == late.id]
    assert {e.type for e in caused_by_late} == {"crm.complaint.filed.v1", "crm.ticket.opened.v1"}
    assert {e.originalsubject for e in caused_by_late} == {a}
    [tier] = await identity.redirect(store, [tier_changed(a, "bronze", T0 + timedelta(days=3))])
    assert (await handlers.apply_segment_events(store, [tier], NPS_INTERVAL)).ignored == [tier.id]
    assert (await store.db[sla_store.CUSTOMER_TIERS].find_one({"_id": b}) or {})["value_tier"] == "gold"

    await apply(store, unmerged(b, a, "m-1"))

    restored = await state(store)
    # Everything there before the merge is as it was (the survivor's NPS request sent meanwhile aside) ...
    assert without(restored, {late.data.complaint_id, b}) == without(before, {b})
    # ... and what was filed for the merged id meanwhile is its own again, with its ticket and timers.
    late_complaint = await store.db[repository.COMPLAINTS].find_one({"_id": late.data.complaint_id})
    late_ticket = await store.db[ticket_store.TICKETS].find_one({"_id": late.data.complaint_id})
    assert late_complaint is not None and late_ticket is not None
    assert (late_complaint["customer_id"], late_complaint["filed"]["customer_id"]) == (a, a)
    assert identity.ORIGIN not in late_complaint and identity.ORIGIN not in late_ticket
    assert late_ticket["customer_id"] == a and {p["author"]["id"] for p in late_ticket["posts"]} == {a}
    late_timers = await store.db[escalation.SLA_TIMERS].find({"ticket_id": late.data.complaint_id}).to_list(None)
    assert late_timers and {t["customer_id"] for t in late_timers} == {a}
    assert await nps.request_due(store, NPS_INTERVAL, T0 + 2 * NPS_INTERVAL) == [f"NPS-{a}-1"]

    applied = [x.data for x in await answers(store) if isinstance(x, IdentityAppliedEvent)]
    # Moved: ticket, complaint, survey, contract, visit and the parked schedule; back: those and the late
    # complaint with its ticket.
    assert [(x.request, x.records) for x in applied] == [("merge", 6), ("unmerge", 8)]


async def test_a_merge_gives_the_merged_ids_open_tickets_the_policy_of_the_survivors_tier(
    new_store: NewStore,
) -> None:
    store = await support_store(new_store)
    gold = SlaPolicy(
        "gold",
        "Gold",
        0,
        {"first_response": Target(timedelta(hours=1), business_hours=False)},
        conditions=Conditions(value_tiers=frozenset({"gold"})),
    )
    await store.db[sla_store.SLA_POLICIES].insert_one(sla_store.policy_to_document(gold, T0))
    a, b = new_id("C"), new_id("C")
    a_ids = await seed_customer(store, a, "bronze")
    await handlers.apply_segment_events(store, [tier_changed(b, "gold", T0)], NPS_INTERVAL)

    def policy_of(doc: dict[str, Any] | None) -> tuple[str, str]:
        assert doc is not None
        return doc["policy_id"], doc["value_tier"]

    assert policy_of(await store.db[ticket_store.TICKETS].find_one({"_id": a_ids["complaint"]})) == (
        "everyone",
        "bronze",
    )
    await apply(store, merged(b, a, "m-1"))
    assert policy_of(await store.db[ticket_store.TICKETS].find_one({"_id": a_ids["complaint"]})) == ("gold", "gold")
    await apply(store, unmerged(b, a, "m-1"))
    assert policy_of(await store.db[ticket_store.TICKETS].find_one({"_id": a_ids["complaint"]})) == (
        "everyone",
        "bronze",
    )


async def test_an_erasure_keeps_the_tickets_for_the_reports_without_a_word_of_their_texts(new_store: NewStore) -> None:
    store = await support_store(new_store)
    erased, other, before_merged = new_id("C"), new_id("C"), new_id("C")
    ids = await seed_customer(store, erased)
    await seed_customer(store, other)
    await handlers.apply_segment_events(store, [tier_changed(before_merged, "silver", T0)], NPS_INTERVAL)
    await apply(store, merged(erased, before_merged, "m-1"))
    others = {c: [d for d in docs if other in json.dumps(d, default=str)] for c, docs in (await state(store)).items()}
    ticket_before = await store.db[ticket_store.TICKETS].find_one({"_id": ids["complaint"]})
    assert ticket_before is not None

    request = CustomerErasedEvent.create(
        CustomerErased(customer_id=erased, erasure_id="er-1", pseudonym="anon-er-1"), source="/crm/customer"
    )
    await apply(store, request)

    after = await state(store)
    text = json.dumps(
        [d for docs in after.values() for d in docs if other not in json.dumps(d, default=str)], default=str
    )
    for gone in (erased, before_merged, "billed twice", "+49 170", "Door code", "Still?"):
        assert gone not in text
    assert {c: [d for d in docs if other in json.dumps(d, default=str)] for c, docs in after.items()} == others
    ticket = await store.db[ticket_store.TICKETS].find_one({"_id": ids["complaint"]})
    assert ticket is not None and ticket["customer_id"] == "anon-er-1" and "subject" not in ticket
    assert all("body" not in p for p in ticket["posts"])
    # What the SLA reports count stays: statuses, posts' times and authors' kinds, the policy and the tier.
    assert [(p["at"], p["author"]["kind"], p["public"]) for p in ticket["posts"]] == [
        (p["at"], p["author"]["kind"], p["public"]) for p in ticket_before["posts"]
    ]
    for kept in ("statuses", "created_at", "priority", "channel", "policy_id", "value_tier", "version"):
        assert ticket[kept] == ticket_before[kept]
    assert ticket_store.from_document(ticket).subject == domain.ERASED_TEXT
    complaint = await store.db[repository.COMPLAINTS].find_one({"_id": ids["complaint"]})
    assert complaint is not None and "summary" not in complaint["filed"]
    assert repository.complaint_from_document(complaint).customer_id == "anon-er-1"
    survey = await store.db[repository.SURVEYS].find_one({"_id": ids["survey"]})
    assert survey is not None and (survey["customer_id"], survey["score"]) == ("anon-er-1", 4)
    assert repository.survey_from_document(survey).answered.comment is None
    visit = await store.db[field_store.VISITS].find_one({"_id": ids["visit"]})
    assert visit is not None and visit["customer_id"] == "anon-er-1" and "notes" not in visit
    for per_customer in (sla_store.CUSTOMER_TIERS, nps.NPS_REQUESTS):
        assert await store.db[per_customer].count_documents({"_id": {"$in": [erased, before_merged]}}) == 0

    [answer] = [
        x.data for x in await answers(store) if isinstance(x, IdentityAppliedEvent) and x.data.request_id == "er-1"
    ]
    # Cleared: ticket, complaint, survey and visit texts, two tiers and two NPS schedules; kept: those four
    # records and the contract.
    assert (answer.request, answer.service, answer.records, answer.kept) == ("erasure", "support", 8, 5)


async def test_an_export_lists_the_customers_tickets_with_their_conversation(new_store: NewStore) -> None:
    store = await support_store(new_store)
    customer, other = new_id("C"), new_id("C")
    ids = await seed_customer(store, customer)
    await seed_customer(store, other)
    request = CustomerExportRequestedEvent.create(
        CustomerExportRequested(customer_id=customer, request_id="ex-1"), source="/crm/customer"
    )
    await apply(store, request)

    [part] = [x.data for x in await answers(store) if isinstance(x, ExportAnsweredEvent)]
    assert (part.service, part.part, part.parts) == ("support", 1, 1)
    records = part.records
    [ticket] = records[ticket_store.TICKETS]
    assert ticket["_id"] == ids["complaint"] and ticket["customer_id"] == customer
    assert [p["body"] for p in ticket["posts"]] == [f"Ms Example of {customer} was billed twice.", "Still?"]
    assert [d["_id"] for d in records[repository.COMPLAINTS]] == [ids["complaint"]]
    assert [d["answered"]["comment"] for d in records[repository.SURVEYS]] == [f"Call me back on +49 170 {customer}"]
    assert [d["notes"] for d in records[field_store.VISITS]] == [f"Door code of {customer}: 4711"]
    assert [d["_id"] for d in records[field_store.SERVICE_CONTRACTS]] == [ids["contract"]]
    assert [d["value_tier"] for d in records[sla_store.CUSTOMER_TIERS]] == ["gold"]
    assert [d["_id"] for d in records[nps.NPS_REQUESTS]] == [customer]
    assert escalation.SLA_TIMERS not in records
    assert other not in json.dumps(records)


async def test_a_ticket_opened_through_the_api_for_a_merged_id_is_the_survivors_until_the_unmerge(
    new_store: NewStore,
) -> None:
    store = await support_store(new_store)
    survivor, merged_id = new_id("C"), new_id("C")
    await apply(store, merged(survivor, merged_id, "m-api"))
    agent = Principal(kind="token", id="agent-1", scopes=frozenset({"admin"}))
    new = ticket_handlers.NewTicket(customer_id=merged_id, kind="request", subject="Where is my parcel?", channel="web")
    ticket, created = await ticket_handlers.open_ticket(store, new, "TK-api-1", T0 + timedelta(days=1), by=agent)
    assert created and ticket.customer_id == survivor
    doc = await store.db[ticket_store.TICKETS].find_one({"_id": "TK-api-1"})
    assert doc is not None and doc[identity.ORIGIN] == merged_id
    opened = [parse_event(r["value"]) for r in await outbox_records(store.db, {"type": "crm.ticket.opened.v1"})]
    assert [(e.customer_id, e.originalsubject) for e in opened] == [(survivor, merged_id)]
    await apply(store, unmerged(survivor, merged_id, "m-api"))
    back = await store.db[ticket_store.TICKETS].find_one({"_id": "TK-api-1"})
    assert back is not None and back["customer_id"] == merged_id
