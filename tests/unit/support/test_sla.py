"""SLA arithmetic with a controllable clock: business hours across weekends, public holidays and daylight saving
time in a team's own time zone; pauses, a policy change mid-ticket, a reopen, and next-response cycles."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm_support.sla.calendar import CALENDAR_HOURS, BusinessCalendar, CalendarInvalid, NoBusinessHours
from crm_support.sla.clock import Message, TicketHistory, timers
from crm_support.sla.policies import Conditions, SlaPolicy, Target, TicketFacts, first_matching

NINE_TO_FIVE = {d: ((time(9), time(17)),) for d in range(5)}
BERLIN = BusinessCalendar("berlin", "Europe/Berlin", NINE_TO_FIVE, country="DE", subdivision="BY")
NEW_YORK = BusinessCalendar("ny", "America/New_York", NINE_TO_FIVE, country="US")
H = timedelta(hours=1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# ---------------------------------------------------------------- calendars


def test_business_hours_skip_the_weekend() -> None:
    friday_4pm_berlin = utc(2026, 11, 20, 15)  # CET: UTC+1
    assert BERLIN.add(friday_4pm_berlin, 4 * H) == utc(2026, 11, 23, 11)  # Monday 12:00 Berlin
    assert BERLIN.elapsed(friday_4pm_berlin, utc(2026, 11, 23, 11)) == 4 * H
    # Saturday counts nothing, and a start outside hours waits for the opening.
    assert BERLIN.elapsed(utc(2026, 11, 21, 9), utc(2026, 11, 22, 20)) == timedelta(0)
    assert BERLIN.add(utc(2026, 11, 21, 12), H) == utc(2026, 11, 23, 9)


def test_public_and_custom_holidays_are_closed() -> None:
    # 24 Dec 2026 is a Thursday; the 25th and 26th are public holidays in Bavaria, the 28th a Monday.
    assert BERLIN.holiday(date(2026, 12, 25)) is not None and BERLIN.holiday(date(2026, 12, 24)) is None
    assert BERLIN.add(utc(2026, 12, 24, 15), 2 * H) == utc(2026, 12, 28, 9)
    # Epiphany (6 Jan) is a holiday in Bavaria but not in Berlin the Land.
    assert BERLIN.holiday(date(2027, 1, 6)) == "Epiphany"
    assert (
        BusinessCalendar("be", "Europe/Berlin", NINE_TO_FIVE, country="DE", subdivision="BE").holiday(date(2027, 1, 6))
        is None
    )
    shut = BusinessCalendar("shut", "Europe/Berlin", NINE_TO_FIVE, extra_holidays=frozenset({date(2026, 11, 23)}))
    assert shut.add(utc(2026, 11, 20, 15), 4 * H) == utc(2026, 11, 24, 11)


def test_each_calendar_counts_in_its_own_time_zone_and_daylight_saving_time() -> None:
    # Monday 9 Nov 2026, 14:00 UTC: 15:00 in Berlin (2 h left today), 09:00 in New York (8 h left).
    at = utc(2026, 11, 9, 14)
    assert BERLIN.add(at, 3 * H) == utc(2026, 11, 10, 9)  # 2 h Monday, 1 h Tuesday from 09:00 CET
    assert NEW_YORK.add(at, 3 * H) == utc(2026, 11, 9, 17)
    # New York's summer time ends on Sunday 1 Nov 2026: Friday's 17:00 is 21:00 UTC, Monday's 09:00 is 14:00 UTC.
    assert NEW_YORK.add(utc(2026, 10, 30, 20), 2 * H) == utc(2026, 11, 2, 15)


def test_an_interval_to_midnight_and_a_split_day() -> None:
    late = BusinessCalendar("late", "UTC", {0: ((time(8), time(12)), (time(20), time(0)))})
    monday = utc(2026, 11, 23, 0)
    assert late.elapsed(monday, monday + timedelta(days=1)) == 8 * H
    assert late.add(utc(2026, 11, 23, 11), 2 * H) == utc(2026, 11, 23, 21)


def test_calendar_hours_count_everything() -> None:
    assert CALENDAR_HOURS.add(utc(2026, 12, 25, 10), 48 * H) == utc(2026, 12, 27, 10)
    assert CALENDAR_HOURS.elapsed(utc(2026, 12, 25, 10), utc(2026, 12, 26, 10)) == 24 * H


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"time_zone": "Mars/Olympus"}, "unknown time zone"),
        ({"country": "XX"}, "no public holidays known"),
        ({"country": "DE", "subdivision": "ZZ"}, "no public holidays known"),
        ({"subdivision": "BY"}, "a subdivision needs its country"),
        ({"weekly": {0: ((time(17), time(9)),)}}, "ends before it starts"),
        ({"weekly": {0: ((time(9), time(13)), (time(12), time(17)))}}, "overlap"),
        ({"weekly": {7: ((time(9), time(17)),)}}, "weekday 7"),
        ({"weekly": {}}, "at least one weekday"),
    ],
)
def test_a_calendar_that_cannot_work_is_refused(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"calendar_id": "c", "time_zone": "UTC", "weekly": NINE_TO_FIVE, **kwargs}
    with pytest.raises(CalendarInvalid, match=message):
        BusinessCalendar(**fields)  # type: ignore[arg-type]


def test_a_calendar_closed_for_years_gives_no_due_time() -> None:
    every_day = frozenset(date(2026, 1, 1) + timedelta(days=n) for n in range(4 * 366))
    closed = BusinessCalendar("closed", "UTC", NINE_TO_FIVE, extra_holidays=every_day)
    with pytest.raises(NoBusinessHours):
        closed.add(utc(2026, 1, 1), H)


@given(
    start=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)),
    minutes=st.integers(min_value=0, max_value=60 * 24 * 30),
)
def test_adding_then_measuring_gives_the_duration_back(start: datetime, minutes: int) -> None:
    duration = timedelta(minutes=minutes)
    due = BERLIN.add(start, duration)
    assert due >= start
    assert BERLIN.elapsed(start, due) == duration


# ---------------------------------------------------------------- policies

HIGH_VALUE = SlaPolicy(
    "high-value",
    "High value",
    order=10,
    targets={"first_response": Target(H), "resolution": Target(8 * H)},
    conditions=Conditions(value_tiers=frozenset({"high_value"})),
)
URGENT = SlaPolicy(
    "urgent",
    "Urgent",
    order=20,
    targets={"first_response": Target(2 * H)},
    conditions=Conditions(priorities=frozenset({"urgent"})),
)
DEFAULT = SlaPolicy(
    "default", "Everyone", order=1000, targets={"first_response": Target(8 * H), "resolution": Target(40 * H)}
)


def test_the_first_matching_policy_applies() -> None:
    policies = [DEFAULT, URGENT, HIGH_VALUE]
    assert first_matching(policies, TicketFacts(priority="urgent", value_tier="high_value")) is HIGH_VALUE
    assert first_matching(policies, TicketFacts(priority="urgent", value_tier="regular")) is URGENT
    assert first_matching(policies, TicketFacts(priority="low")) is DEFAULT
    contract_only = SlaPolicy(
        "c", "Contract", order=1, targets={"resolution": Target(H)}, conditions=Conditions(contract=True)
    )
    assert first_matching([contract_only], TicketFacts(priority="low")) is None
    assert first_matching([contract_only], TicketFacts(priority="low", contract_id="SC-1")) is contract_only


def test_a_policy_needs_known_positive_targets() -> None:
    with pytest.raises(ValueError, match="positive"):
        Target(timedelta(0))
    with pytest.raises(ValueError, match="at least one target"):
        SlaPolicy("p", "P", order=1, targets={})


# ---------------------------------------------------------------- the clock

MONDAY_10 = utc(2026, 11, 23, 9)  # 10:00 in Berlin
POLICY = SlaPolicy(
    "std",
    "Standard",
    order=1,
    targets={"first_response": Target(2 * H), "next_response": Target(4 * H), "resolution": Target(16 * H)},
    calendar_id="berlin",
    warn_before=timedelta(minutes=30),
)


def calendar_of(calendar_id: str | None) -> BusinessCalendar:
    return {"berlin": BERLIN}.get(calendar_id or "berlin", BERLIN)


def test_a_first_response_in_time_is_met_and_one_late_is_breached() -> None:
    opened = TicketHistory(MONDAY_10, [(MONDAY_10, "new")])
    running = timers(opened, POLICY, calendar_of, MONDAY_10 + H)["first_response"]
    assert (running.status, running.remaining, running.due_at) == ("running", H, MONDAY_10 + 2 * H)
    assert running.warn_at == MONDAY_10 + timedelta(minutes=90)
    answered = TicketHistory(MONDAY_10, [(MONDAY_10, "new")], [Message(MONDAY_10 + 2 * H, "agent")])
    assert timers(answered, POLICY, calendar_of, MONDAY_10 + 5 * H)["first_response"].status == "met"
    late = TicketHistory(MONDAY_10, [(MONDAY_10, "new")], [Message(MONDAY_10 + 3 * H, "agent")])
    timer = timers(late, POLICY, calendar_of, MONDAY_10 + 5 * H)["first_response"]
    assert (timer.status, timer.due_at, timer.remaining) == ("breached", MONDAY_10 + 2 * H, -H)
    # An internal note answers nobody.
    noted = TicketHistory(MONDAY_10, [(MONDAY_10, "new")], [Message(MONDAY_10 + H, "agent", public=False)])
    assert timers(noted, POLICY, calendar_of, MONDAY_10 + 3 * H)["first_response"].status == "breached"


def test_a_first_response_due_after_hours_moves_to_the_next_opening() -> None:
    friday_1630 = utc(2026, 11, 27, 15, 30)  # 16:30 Berlin: 30 min today, 90 min on Monday
    history = TicketHistory(friday_1630, [(friday_1630, "new")])
    timer = timers(history, POLICY, calendar_of, friday_1630)["first_response"]
    assert timer.due_at == utc(2026, 11, 30, 9, 30)  # Monday 10:30 Berlin


def test_pending_pauses_resolution_but_not_the_wait_for_an_answer() -> None:
    history = TicketHistory(
        MONDAY_10,
        [(MONDAY_10, "new"), (MONDAY_10 + H, "open"), (MONDAY_10 + 2 * H, "pending"), (MONDAY_10 + 6 * H, "open")],
        [Message(MONDAY_10 + H, "agent"), Message(MONDAY_10 + 90 * timedelta(minutes=1), "customer")],
    )
    paused_at = MONDAY_10 + 4 * H
    during = timers(history, POLICY, calendar_of, paused_at)
    assert during["resolution"].status == "paused" and during["resolution"].elapsed == 2 * H
    assert during["resolution"].due_at is None  # unknown until it runs again
    # The customer wrote at 11:30 and waits on the pending ticket: next response runs.
    assert during["next_response"].status == "running" and during["next_response"].elapsed == timedelta(minutes=150)
    after = timers(history, POLICY, calendar_of, MONDAY_10 + 7 * H)["resolution"]
    # 2 h before the pause, 1 h after it (16:00-17:00); then the day is over: 13 h left from Tuesday 09:00.
    assert (after.status, after.elapsed) == ("running", 3 * H)
    assert after.due_at == BERLIN.add(utc(2026, 11, 24, 8), 13 * H)


def test_a_reopened_ticket_resumes_its_resolution_time_and_does_not_breach_for_the_time_closed() -> None:
    resolved_at, reopened_at = MONDAY_10 + 5 * H, MONDAY_10 + timedelta(days=14)
    history = TicketHistory(
        MONDAY_10,
        [
            (MONDAY_10, "new"),
            (MONDAY_10 + H, "open"),
            (resolved_at, "resolved"),
            (resolved_at + 24 * H, "closed"),
            (reopened_at, "open"),
        ],
        [Message(MONDAY_10 + H, "agent")],
    )
    resolved = timers(
        TicketHistory(MONDAY_10, list(history.statuses)[:3], history.messages), POLICY, calendar_of, resolved_at + H
    )
    assert (resolved["resolution"].status, resolved["resolution"].elapsed) == ("met", 5 * H)
    closed = timers(history, POLICY, calendar_of, resolved_at + 30 * H)["resolution"]
    assert (closed.status, closed.stopped_at) == ("met", resolved_at)  # resolved, then closed: resolved then
    again = timers(history, POLICY, calendar_of, reopened_at + H)["resolution"]
    assert (again.status, again.elapsed, again.remaining) == ("running", 6 * H, 10 * H)
    assert again.stopped_at is None and again.due_at == BERLIN.add(reopened_at, 11 * H)


def test_a_policy_change_mid_ticket_applies_the_new_targets_to_the_whole_history() -> None:
    history = TicketHistory(
        MONDAY_10,
        [(MONDAY_10, "new"), (MONDAY_10 + H, "pending"), (MONDAY_10 + 5 * H, "open")],
        [Message(MONDAY_10 + H, "agent")],
    )
    at = MONDAY_10 + 6 * H
    before = timers(history, POLICY, calendar_of, at)["resolution"]
    tighter = SlaPolicy("vip", "VIP", order=1, targets={"resolution": Target(3 * H)}, calendar_id="berlin")
    after = timers(history, tighter, calendar_of, at)["resolution"]
    # The 4 h pending stay paused under the new policy: 2 h counted either way.
    assert before.elapsed == after.elapsed == 2 * H
    assert (after.remaining, after.due_at) == (H, at + H)
    calendar_time = SlaPolicy("cal", "Calendar", order=1, targets={"resolution": Target(3 * H, business_hours=False)})
    # Counted in calendar hours, the night counts: created Monday 10:00, pending 11:00-15:00, open since.
    night = timers(history, calendar_time, calendar_of, MONDAY_10 + 24 * H)["resolution"]
    assert (night.status, night.elapsed) == ("breached", 20 * H)


def test_next_response_restarts_at_each_unanswered_customer_message() -> None:
    m = timedelta(minutes=1)
    history = TicketHistory(
        MONDAY_10,
        [(MONDAY_10, "new"), (MONDAY_10 + 10 * m, "open")],
        [
            Message(MONDAY_10 + 10 * m, "agent"),  # the first response
            Message(MONDAY_10 + 30 * m, "customer"),  # wait 1 starts
            Message(MONDAY_10 + 40 * m, "customer"),  # still wait 1: the oldest unanswered message counts
            Message(MONDAY_10 + 90 * m, "agent"),  # wait 1 answered after 60 min
            Message(MONDAY_10 + 120 * m, "customer"),  # wait 2 starts
        ],
    )
    timer = timers(history, POLICY, calendar_of, MONDAY_10 + 180 * m)["next_response"]
    assert (timer.cycle, timer.status, timer.started_at, timer.elapsed) == (2, "running", MONDAY_10 + 120 * m, 60 * m)
    assert timer.due_at == MONDAY_10 + 120 * m + 4 * H
    before_any = timers(TicketHistory(MONDAY_10, [(MONDAY_10, "new")]), POLICY, calendar_of, MONDAY_10 + H)
    assert (before_any["next_response"].status, before_any["next_response"].cycle) == ("not_started", 0)


def test_time_resolved_never_counts_for_the_response_timers() -> None:
    history = TicketHistory(MONDAY_10, [(MONDAY_10, "new"), (MONDAY_10 + H, "resolved")])
    timer = timers(history, POLICY, calendar_of, MONDAY_10 + 30 * H)["first_response"]
    assert (timer.status, timer.elapsed) == ("paused", H)
