"""What a ticket must meet next (`sla_due`, the queue's order): the earliest due of its timers counting, a breached
one in the past, a paused one never; kept on the ticket's document, a document from before it reading as
nothing due."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from crm_support.sla.calendar import BusinessCalendar
from crm_support.sla.clock import next_due, timers
from crm_support.sla.policies import SlaPolicy, Target
from crm_support.tickets import repository
from crm_support.tickets.domain import Actor, Post, SlaDue, Ticket, change_status, open_ticket, post, timed

MONDAY_10 = datetime(2026, 11, 23, 9, tzinfo=UTC)  # 10:00 in Berlin
H = timedelta(hours=1)
BERLIN = BusinessCalendar("berlin", "Europe/Berlin", {d: ((time(9), time(17)),) for d in range(5)}, country="DE")
POLICY = SlaPolicy(
    "std",
    "Standard",
    order=1,
    targets={"first_response": Target(2 * H), "next_response": Target(4 * H), "resolution": Target(16 * H)},
    calendar_id="berlin",
)
CUSTOMER, AGENT = Actor("customer", "C-1"), Actor("agent", "agent-7")


def opened() -> Ticket:
    return open_ticket(
        ticket_id="TK-1",
        customer_id="C-1",
        kind="request",
        subject="Panel cracked",
        channel="email",
        at=MONDAY_10,
        by=CUSTOMER,
        description="The panel arrived cracked.",
    )


def due(ticket: Ticket, now: datetime, policy: SlaPolicy = POLICY) -> SlaDue | None:
    return timed(ticket, timers(ticket.sla_history, policy, lambda _: BERLIN, now).values()).sla_due


def reply(ticket: Ticket, at: datetime, by: Actor = AGENT) -> Ticket:
    return post(ticket, Post(f"P-{at:%H%M}", at, by, "Hello"))


def test_a_new_ticket_must_answer_first_and_then_resolve() -> None:
    first = due(opened(), MONDAY_10 + H)
    assert first is not None and (first.kind, first.due_at, first.target) == (
        "first_response",
        MONDAY_10 + 2 * H,
        2 * H,
    )
    answered = due(reply(opened(), MONDAY_10 + H), MONDAY_10 + H)
    # 16 business hours from Monday 10:00 Berlin: 7 on Monday, 8 on Tuesday, 1 on Wednesday: Wednesday 10:00.
    assert answered is not None and (answered.kind, answered.due_at) == ("resolution", MONDAY_10 + 48 * H)


def test_a_breached_timer_still_counting_is_due_in_the_past_and_comes_first() -> None:
    late = due(opened(), MONDAY_10 + 5 * H)
    assert late is not None and (late.kind, late.due_at) == ("first_response", MONDAY_10 + 2 * H)
    assert late.due_at < MONDAY_10 + 5 * H


def test_pending_pauses_resolution_and_a_paused_timer_is_never_due_breached_or_not() -> None:
    pending = change_status(reply(opened(), MONDAY_10 + H), "pending", MONDAY_10 + 2 * H, AGENT)
    assert due(pending, MONDAY_10 + 3 * H) is None  # answered, and resolution paused
    # The customer writes on the pending ticket at 14:00 Berlin: it is open again and both timers run; the answer
    # is due first (3 h on Monday, 1 h on Tuesday from 09:00), resolution on Wednesday.
    back = reply(pending, MONDAY_10 + 4 * H, CUSTOMER)
    resumed = due(back, MONDAY_10 + 4 * H)
    assert resumed is not None and (resumed.kind, resumed.due_at) == ("next_response", MONDAY_10 + 24 * H)
    calendar_hours = SlaPolicy("cal", "Calendar", order=1, targets={"resolution": Target(H, business_hours=False)})
    breached_then_paused = change_status(opened(), "pending", MONDAY_10 + 2 * H, AGENT)
    assert due(breached_then_paused, MONDAY_10 + 3 * H, calendar_hours) is None
    resolved = change_status(opened(), "resolved", MONDAY_10 + 5 * H, AGENT)
    assert due(resolved, MONDAY_10 + 6 * H) is None  # an unanswered, breached first response counts no more


def test_a_resume_moves_the_due_time_by_the_business_time_paused() -> None:
    answered = reply(opened(), MONDAY_10 + H)
    paused = change_status(answered, "pending", MONDAY_10 + 2 * H, AGENT)
    resumed = change_status(paused, "open", MONDAY_10 + 5 * H, AGENT)
    before, after = due(answered, MONDAY_10 + H), due(resumed, MONDAY_10 + 5 * H)
    assert before is not None and after is not None
    # Three business hours pending (12:00-15:00 Berlin): due three business hours later, Wednesday 13:00.
    assert (before.due_at, after.due_at) == (MONDAY_10 + 48 * H, MONDAY_10 + 51 * H)
    assert after.due_at == BERLIN.add(MONDAY_10 + 5 * H, 14 * H)


def test_the_earliest_of_several_counting_timers_is_next() -> None:
    waiting = reply(reply(opened(), MONDAY_10 + H), MONDAY_10 + 2 * H, CUSTOMER)
    found = list(timers(waiting.sla_history, POLICY, lambda _: BERLIN, MONDAY_10 + 3 * H).values())
    chosen = next_due(found)
    assert chosen is not None and (chosen.kind, chosen.due_at) == ("next_response", MONDAY_10 + 6 * H)
    assert {t.kind for t in found if t.counting} == {"next_response", "resolution"}


def test_what_is_due_is_kept_on_the_document_and_an_older_document_reads_as_nothing_due() -> None:
    ticket = timed(opened(), timers(opened().sla_history, POLICY, lambda _: BERLIN, MONDAY_10).values())
    doc = repository.to_document(ticket, 1)
    assert doc["sla_due_at"] == MONDAY_10 + 2 * H and doc["sla_due"]["kind"] == "first_response"
    assert repository.from_document(doc) == ticket
    older = {k: v for k, v in doc.items() if k not in ("sla_due_at", "sla_due")}
    assert repository.from_document(older).sla_due is None
    nothing = repository.to_document(timed(opened(), []), 1)
    assert (nothing["sla_due_at"], nothing["sla_due"]) == (None, None)
