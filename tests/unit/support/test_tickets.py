"""The ticket lifecycle: statuses and reopen, replies that move the ticket, internal notes, the history, and
the SLA timers a ticket's facts give under the policy its customer's value tier picks."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from crm_support.sla.calendar import BusinessCalendar
from crm_support.sla.clock import timers
from crm_support.sla.policies import Conditions, SlaPolicy, Target, first_matching
from crm_support.tickets.domain import (
    Actor,
    Post,
    Ticket,
    TicketRefused,
    assign,
    change_status,
    open_ticket,
    post,
    set_policy,
)

T0 = datetime(2026, 11, 23, 9, tzinfo=UTC)  # a Monday, 10:00 in Berlin
H = timedelta(hours=1)
CUSTOMER = Actor("customer", "C-1")
AGENT = Actor("agent", "agent-7")


def ticket(**kwargs: object) -> Ticket:
    fields: dict[str, object] = {
        "ticket_id": "TK-1",
        "customer_id": "C-1",
        "kind": "complaint",
        "subject": "Broken on arrival",
        "channel": "email",
        "at": T0,
        "by": CUSTOMER,
        "category": "product",
        "description": "The machine arrived with a cracked panel.",
        **kwargs,
    }
    return open_ticket(**fields)


def test_a_new_ticket_holds_the_customers_first_message_and_its_creation() -> None:
    new = ticket()
    assert (new.status, new.priority, [p.body for p in new.posts]) == (
        "new",
        "normal",
        ["The machine arrived with a cracked panel."],
    )
    assert [c.action for c in new.history] == ["created"]
    with pytest.raises(TicketRefused, match="priority 'whenever'"):
        ticket(priority="whenever")


def test_the_lifecycle_allows_what_a_service_desk_does_and_refuses_the_rest() -> None:
    worked = change_status(ticket(), "open", T0 + H, AGENT)
    waiting = change_status(worked, "pending", T0 + 2 * H, AGENT)
    solved = change_status(waiting, "resolved", T0 + 3 * H, AGENT)
    done = change_status(solved, "closed", T0 + 4 * H, AGENT)
    assert [s for _, s in done.statuses] == ["new", "open", "pending", "resolved", "closed"]
    assert change_status(done, "closed", T0 + 5 * H, AGENT) is done  # the same again: no change
    with pytest.raises(TicketRefused, match="a closed ticket cannot become pending") as refused:
        change_status(done, "pending", T0 + 5 * H, AGENT)
    assert refused.value.allowed == ("open",)
    reopened = change_status(done, "open", T0 + 6 * H, AGENT)
    assert reopened.history[-1].action == "reopened" and reopened.resolved_at is None
    assert solved.resolved_at == T0 + 3 * H and done.resolved_at == T0 + 3 * H
    with pytest.raises(TicketRefused, match="not a ticket status"):
        change_status(done, "archived", T0, AGENT)


def test_replies_move_the_ticket_and_notes_do_not() -> None:
    new = ticket()
    noted = post(new, Post("p-2", T0 + H, AGENT, "Checking stock for a panel.", public=False))
    assert noted.status == "new"
    answered = post(noted, Post("p-3", T0 + 2 * H, AGENT, "A new panel ships today."))
    assert answered.status == "open"
    assert post(answered, Post("p-3", T0 + 2 * H, AGENT, "A new panel ships today.")) is answered
    with pytest.raises(TicketRefused, match="already written with other content"):
        post(answered, Post("p-3", T0 + 2 * H, AGENT, "Something else."))
    with pytest.raises(TicketRefused, match="only agents write internal notes"):
        post(answered, Post("p-4", T0 + 3 * H, CUSTOMER, "psst", public=False))
    solved = change_status(answered, "resolved", T0 + 3 * H, AGENT)
    # The customer writes back: not solved after all.
    back = post(solved, Post("p-5", T0 + 30 * H, CUSTOMER, "The new panel is cracked too."))
    assert back.status == "open" and back.history[-1].action == "reopened"
    assert back.history[-1].actor == Actor("system", "customer-replied")
    assert [c.action for c in back.history] == [
        "created",
        "noted",
        "replied",
        "status_changed",
        "status_changed",
        "replied",
        "reopened",
    ]


def test_assignment_and_policy_changes_are_in_the_history_once() -> None:
    given = assign(ticket(), assignee_id="agent-7", group="returns", at=T0 + H, by=AGENT)
    assert assign(given, assignee_id="agent-7", group="returns", at=T0 + 2 * H, by=AGENT) is given
    moved = set_policy(given, "high-value", "high_value", T0 + H, Actor("system", "sla"))
    assert set_policy(moved, "high-value", "high_value", T0 + 2 * H, Actor("system", "sla")) is moved
    assert [(c.action, c.detail.get("to")) for c in moved.history[1:]] == [
        ("assigned", None),
        ("policy_changed", "high-value"),
    ]


def test_a_high_value_customers_complaint_is_answered_faster() -> None:
    berlin = BusinessCalendar("berlin", "Europe/Berlin", {d: ((time(9), time(17)),) for d in range(5)}, country="DE")
    policies = [
        SlaPolicy("standard", "Standard", order=100, targets={"first_response": Target(8 * H)}),
        SlaPolicy(
            "high-value",
            "High value",
            order=10,
            targets={"first_response": Target(H)},
            conditions=Conditions(value_tiers=frozenset({"high_value"})),
        ),
    ]
    due = {}
    for tier in ("high_value", "regular"):
        complaint = ticket(kind="complaint")
        policy = first_matching(policies, set_policy(complaint, None, tier, T0, AGENT).facts)
        assert policy is not None
        due[tier] = timers(complaint.sla_history, policy, lambda _: berlin, T0)["first_response"].due_at
    # 8 h for the others: 7 on Monday (10:00-17:00 Berlin), 1 on Tuesday from 9:00: Tuesday 10:00 Berlin.
    assert due == {"high_value": T0 + H, "regular": T0 + 24 * H}
