"""Support analysis, pure: volumes by kind per group, SLA timers met and breached (and how long they took),
repeat complainers in order, and the backlog by age with its bucket boundaries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from crm_support.analysis import (
    Backlog,
    RepeatComplainer,
    TimerPerformance,
    Volume,
    backlog,
    repeat_complainers,
    sla_performance,
    volume,
)
from crm_support.sla.clock import TicketStatus
from crm_support.sla.policies import SlaPolicy, Target
from crm_support.sla.repository import SlaRules
from crm_support.tickets.domain import Actor, Post, Ticket, TicketKind, change_status, open_ticket, post, set_policy

T0 = datetime(2026, 11, 23, 9, tzinfo=UTC)
H = timedelta(hours=1)
D = timedelta(days=1)
NOW = T0 + 10 * H
AGENT = Actor("agent", "agent-7")
SYSTEM = Actor("system", "sla")
POLICY = SlaPolicy(
    "standard",
    "Standard",
    order=1,
    targets={
        "first_response": Target(2 * H, business_hours=False),
        "next_response": Target(4 * H, business_hours=False),
        "resolution": Target(8 * H, business_hours=False),
    },
)
RULES = SlaRules(policies=(POLICY,))


def opened(
    ticket_id: str,
    kind: TicketKind,
    at: datetime,
    *,
    customer: str = "C-1",
    policy: str | None = "standard",
    channel: str = "email",
    category: str | None = None,
    product: str | None = None,
) -> Ticket:
    customer_actor = Actor("customer", customer)
    ticket = open_ticket(
        ticket_id=ticket_id,
        customer_id=customer,
        kind=kind,
        subject="Help",
        channel=channel,
        at=at,
        by=customer_actor,
        category=category,
        product=product,
        description="Please help.",
    )
    return set_policy(ticket, policy, "high_value", at, SYSTEM) if policy else ticket


def reply(ticket: Ticket, at: datetime, *, by: Actor = AGENT) -> Ticket:
    return post(ticket, Post(f"{ticket.ticket_id}-{len(ticket.posts) + 1}", at, by, "An answer."))


def sample() -> list[Ticket]:
    """Six tickets, as they stand at NOW (T0 + 10 h), under a 2 h / 4 h / 8 h calendar-hour policy:

    - A: answered in 1 h, the customer's next message answered in 30 min, resolved at 5 h: all met;
    - B: answered in 3 h (breached), pending since 4 h (resolution paused at 4 h);
    - C: a question without a policy; D: a complaint under a policy since deleted, in October;
    - E: opened at 7 h, unanswered: first response breached and still running;
    - F: answered in 30 min, open ever since: resolution breached at 8 h.
    """
    a = opened("A", "request", T0, category="product", product="P-1")
    a = reply(a, T0 + H)
    a = reply(a, T0 + 2 * H, by=Actor("customer", "C-1"))
    a = reply(a, T0 + 2.5 * H)
    a = change_status(a, "resolved", T0 + 5 * H, AGENT)
    b = opened("B", "complaint", T0, customer="C-2", channel="phone", category="service", product="P-2")
    b = change_status(reply(b, T0 + 3 * H), "pending", T0 + 4 * H, AGENT)
    c = opened("C", "question", T0 + H, policy=None, channel="web")
    d = opened("D", "complaint", datetime(2026, 10, 31, 23, 30, tzinfo=UTC), policy="deleted", category="service")
    e = opened("E", "complaint", T0 + 7 * H, customer="C-3", category="product", product="P-1")
    f = reply(opened("F", "request", T0, category="people"), T0 + 0.5 * H)
    return [a, b, c, d, e, f]


def test_volume_counts_each_kind_per_group_with_tickets_without_the_field_last() -> None:
    assert volume(sample(), "category") == [
        Volume("people", requests=1, complaints=0, questions=0, total=1),
        Volume("product", requests=1, complaints=1, questions=0, total=2),
        Volume("service", requests=0, complaints=2, questions=0, total=2),
        Volume(None, requests=0, complaints=0, questions=1, total=1),
    ]
    assert volume(sample(), "period") == [
        Volume("2026-10", requests=0, complaints=1, questions=0, total=1),
        Volume("2026-11", requests=2, complaints=2, questions=1, total=5),
    ]
    assert [(r.key, r.total) for r in volume(sample(), "product")] == [("P-1", 2), ("P-2", 1), (None, 3)]
    assert [(r.key, r.total) for r in volume(sample(), "channel")] == [("email", 4), ("phone", 1), ("web", 1)]
    assert [(r.key, r.total) for r in volume(sample(), "value_tier")] == [("high_value", 5), (None, 1)]
    assert [(r.key, r.total) for r in volume(sample(), "priority")] == [("normal", 6)]
    assert volume([], "period") == []


@given(st.permutations(range(6)))
def test_volume_is_the_same_in_any_order_and_counts_every_ticket_once(order: list[int]) -> None:
    tickets = sample()
    shuffled = [tickets[i] for i in order]
    assert volume(shuffled, "category") == volume(tickets, "category")
    assert sum(r.total for r in volume(shuffled, "channel")) == len(tickets)


def test_sla_performance_counts_met_breached_and_undecided_timers_and_the_time_the_stopped_ones_took() -> None:
    [october, november] = sla_performance(sample(), RULES, NOW, "period")
    assert (october.key, october.tickets, october.without_policy) == ("2026-10", 1, 1)
    assert all((t.met, t.breached, t.running, t.percent_met) == (0, 0, 0, None) for t in october.timers)
    assert (november.key, november.tickets, november.without_policy) == ("2026-11", 5, 1)
    first, following, resolution = november.timers
    # First response: A (1 h) and F (30 min) met, B (3 h) breached when answered, E breached still waiting.
    assert first == TimerPerformance(
        "first_response", met=2, breached=2, running=0, percent_met=50.0, median_hours=1.0, average_hours=1.5
    )
    # Next response: only A had a customer message after the first reply, answered in 30 min.
    assert following == TimerPerformance(
        "next_response", met=1, breached=0, running=0, percent_met=100.0, median_hours=0.5, average_hours=0.5
    )
    # Resolution: A met in 5 h; F breached (10 h open); B paused by pending at 4 h, E at 3 h: undecided.
    assert resolution == TimerPerformance(
        "resolution", met=1, breached=1, running=2, percent_met=50.0, median_hours=5.0, average_hours=5.0
    )


def test_sla_performance_by_a_field_and_a_group_of_tickets_without_a_policy() -> None:
    rows = {r.key: r for r in sla_performance(sample(), RULES, NOW, "channel")}
    assert sorted(rows, key=str) == ["email", "phone", "web"]
    assert (rows["web"].tickets, rows["web"].without_policy) == (1, 1)
    assert all(t.percent_met is None for t in rows["web"].timers)
    phone = rows["phone"].timers
    assert [(t.kind, t.met, t.breached, t.running) for t in phone] == [
        ("first_response", 0, 1, 0),
        ("next_response", 0, 0, 0),
        ("resolution", 0, 0, 1),
    ]
    assert (phone[0].percent_met, phone[0].median_hours) == (0.0, 3.0)


def test_sla_performance_is_as_the_timers_stood_then() -> None:
    # At T0 + 90 min A and F were answered, B not yet; what came later is not known to the clock then.
    [row] = sla_performance([t for t in sample() if t.ticket_id in "ABF"], RULES, T0 + 1.5 * H, "period")
    assert [(t.met, t.breached, t.running) for t in row.timers] == [(2, 0, 1), (0, 0, 0), (0, 0, 3)]


def complaint(customer: str, day: int, category: str, *, resolved: bool = False) -> Ticket:
    ticket = opened(f"{customer}-{day}", "complaint", T0 + day * D, customer=customer, category=category)
    return change_status(ticket, "resolved", T0 + day * D + H, AGENT) if resolved else ticket


def test_repeat_complainers_most_complaints_first_then_the_latest_and_only_complaints_count() -> None:
    tickets = [
        complaint("C-1", 1, "product", resolved=True),
        complaint("C-1", 2, "service"),
        complaint("C-1", 5, "product"),
        opened("C-1-request", "request", T0, customer="C-1"),
        complaint("C-2", 3, "people"),
        complaint("C-2", 6, "people"),
        complaint("C-3", 1, "service", resolved=True),
        complaint("C-3", 4, "service", resolved=True),
        complaint("C-4", 7, "product"),
        opened("C-5-q1", "question", T0, customer="C-5"),
        opened("C-5-q2", "question", T0, customer="C-5"),
    ]
    assert repeat_complainers(tickets) == [
        RepeatComplainer(
            "C-1", complaints=3, open=2, first_at=T0 + D, last_at=T0 + 5 * D, categories=("product", "service")
        ),
        RepeatComplainer("C-2", complaints=2, open=2, first_at=T0 + 3 * D, last_at=T0 + 6 * D, categories=("people",)),
        RepeatComplainer("C-3", complaints=2, open=0, first_at=T0 + D, last_at=T0 + 4 * D, categories=("service",)),
    ]
    assert [r.customer_id for r in repeat_complainers(tickets, min_complaints=3)] == ["C-1"]
    same = [complaint("C-9", 1, "product"), complaint("C-8", 1, "product")]
    same += [complaint("C-9", 2, "product"), complaint("C-8", 2, "product")]
    assert [r.customer_id for r in repeat_complainers(same)] == ["C-8", "C-9"]


def test_backlog_by_age_at_the_bucket_boundaries_with_statuses_and_the_oldest_of_each() -> None:
    def aged(ticket_id: str, age: timedelta, status: TicketStatus = "new") -> Ticket:
        ticket = opened(ticket_id, "request", NOW - age)
        if status == "open":
            return reply(ticket, NOW - age)
        if status in ("pending", "resolved", "closed"):
            return change_status(ticket, status, NOW - age, AGENT)
        return ticket

    tickets = [
        aged("just-now", timedelta(0)),
        aged("almost-a-day", D - timedelta(seconds=1), "open"),
        aged("a-day", D, "pending"),
        aged("almost-3-days", 3 * D - timedelta(seconds=1), "open"),
        aged("3-days", 3 * D),
        aged("7-days", 7 * D, "pending"),
        aged("30-days", 30 * D, "open"),
        aged("45-days", 45 * D, "pending"),
        aged("resolved", 10 * D, "resolved"),
        aged("closed", 40 * D, "closed"),
    ]
    rows = backlog(tickets, NOW)
    assert [(r.bucket.name, r.total, dict(r.by_status), r.oldest_ticket_id, r.oldest_age) for r in rows] == [
        ("under_1_day", 2, {"new": 1, "open": 1, "pending": 0}, "almost-a-day", D - timedelta(seconds=1)),
        ("1_to_3_days", 2, {"new": 0, "open": 1, "pending": 1}, "almost-3-days", 3 * D - timedelta(seconds=1)),
        ("3_to_7_days", 1, {"new": 1, "open": 0, "pending": 0}, "3-days", 3 * D),
        ("7_to_30_days", 1, {"new": 0, "open": 0, "pending": 1}, "7-days", 7 * D),
        ("over_30_days", 2, {"new": 0, "open": 1, "pending": 1}, "45-days", 45 * D),
    ]
    assert [(r.bucket.from_days, r.bucket.to_days) for r in rows] == [(0, 1), (1, 3), (3, 7), (7, 30), (30, None)]


def test_an_empty_backlog_has_every_bucket_empty() -> None:
    rows = backlog([], NOW)
    assert len(rows) == 5
    assert all(isinstance(r, Backlog) and r.total == 0 and r.oldest_ticket_id is None for r in rows)
