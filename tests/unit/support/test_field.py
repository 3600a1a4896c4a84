"""Field service, pure: a visit goes on the first free slot of a technician with the skill, inside their working
hours (weekends and public holidays off), clear of their other visits; contracts cover what they say."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from crm_support.field.domain import (
    FieldRefused,
    PartUsed,
    ServiceContract,
    Technician,
    Visit,
    change_visit,
    first_free_slot,
    first_slot,
)
from crm_support.sla.calendar import BusinessCalendar

NINE_TO_FIVE = {day: ((time(9), time(17)),) for day in range(5)}
BERLIN = BusinessCalendar("berlin", "Europe/Berlin", NINE_TO_FIVE, country="DE", subdivision="BY")
LONDON = BusinessCalendar("london", "Europe/London", NINE_TO_FIVE)
CALENDARS = {"berlin": BERLIN, "london": LONDON}
FRIDAY = datetime(2026, 12, 18, 14, tzinfo=UTC)  # 15:00 in Berlin
HOUR = timedelta(hours=1)


def tech(tid: str, *skills: str, calendar: str = "berlin", territory: str | None = None) -> Technician:
    return Technician(tid, tid.title(), frozenset(skills), calendar, territory)


def test_a_free_technician_gets_the_visit_at_once_inside_their_hours() -> None:
    assert first_free_slot(BERLIN, [], HOUR, FRIDAY) == FRIDAY


def test_a_visit_that_does_not_fit_before_closing_goes_to_the_next_working_day_after_the_weekend() -> None:
    # 15:00-17:00 Berlin is left on Friday: three hours go to Monday 09:00 Berlin (08:00 UTC).
    assert first_free_slot(BERLIN, [], 3 * HOUR, FRIDAY) == datetime(2026, 12, 21, 8, tzinfo=UTC)


def test_public_holidays_are_no_working_days() -> None:
    # Thursday 24 December is a working day in Bavaria; 25 and 26 are holidays, then the weekend.
    christmas_eve_late = datetime(2026, 12, 24, 15, 30, tzinfo=UTC)  # 16:30 Berlin
    assert first_free_slot(BERLIN, [], HOUR, christmas_eve_late) == datetime(2026, 12, 28, 8, tzinfo=UTC)


def test_busy_spans_push_the_slot_past_them_and_a_gap_too_short_is_skipped() -> None:
    busy = [
        (FRIDAY, FRIDAY + HOUR),  # 15:00-16:00 Berlin
        (FRIDAY + timedelta(minutes=90), FRIDAY + timedelta(minutes=120)),  # 16:30-17:00
    ]
    # The half hour between them is too short for an hour: Monday 09:00 Berlin.
    assert first_free_slot(BERLIN, busy, HOUR, FRIDAY) == datetime(2026, 12, 21, 8, tzinfo=UTC)
    assert first_free_slot(BERLIN, busy, timedelta(minutes=30), FRIDAY) == FRIDAY + HOUR


def test_the_earliest_slot_of_any_able_technician_wins_ties_by_id() -> None:
    team = [
        tech("bea", "repair"),
        tech("al", "repair"),
        tech("cy", "install"),
        tech("dee", "repair", calendar="london"),  # London: 14:00 there, also free now
    ]
    slot = first_slot(team, CALENDARS, {}, skill="repair", territory=None, duration=HOUR, earliest=FRIDAY)
    assert slot is not None and (slot.technician_id, slot.starts_at) == ("al", FRIDAY)
    busy = {"al": [(FRIDAY, FRIDAY + 3 * HOUR)], "bea": [(FRIDAY, FRIDAY + 2 * HOUR)]}
    slot = first_slot(team, CALENDARS, busy, skill="repair", territory=None, duration=2 * HOUR, earliest=FRIDAY)
    # al and bea are busy until Berlin closes; dee works until 17:00 London (17:00 UTC).
    assert slot is not None and (slot.technician_id, slot.starts_at, slot.ends_at) == (
        "dee",
        FRIDAY,
        FRIDAY + 2 * HOUR,
    )


def test_skill_territory_and_activity_decide_who_may_go() -> None:
    team = [
        tech("north-1", "repair", territory="north"),
        tech("south-1", "repair", territory="south"),
        Technician("gone", "Gone", frozenset({"repair"}), "berlin", None, active=False),
    ]
    south = first_slot(team, CALENDARS, {}, skill="repair", territory="south", duration=HOUR, earliest=FRIDAY)
    assert south is not None and south.technician_id == "south-1"
    assert first_slot(team, CALENDARS, {}, skill="weld", territory=None, duration=HOUR, earliest=FRIDAY) is None
    only_gone = [team[2]]
    assert first_slot(only_gone, CALENDARS, {}, skill="repair", territory=None, duration=HOUR, earliest=FRIDAY) is None
    with pytest.raises(FieldRefused):
        first_slot(team, CALENDARS, {}, skill="repair", territory=None, duration=timedelta(0), earliest=FRIDAY)


def test_a_contract_covers_its_customer_its_products_and_its_days() -> None:
    contract = ServiceContract(
        "SC-1", "C-1", "Gold", date(2026, 1, 1), date(2026, 12, 31), products=frozenset({"espresso-pro"})
    )
    assert contract.covers("C-1", "espresso-pro", date(2026, 12, 31)) is None
    assert "not C-2's" in (contract.covers("C-2", "espresso-pro", date(2026, 6, 1)) or "")
    assert "not on 2027-01-01" in (contract.covers("C-1", "espresso-pro", date(2027, 1, 1)) or "")
    assert "does not cover product grinder" in (contract.covers("C-1", "grinder", date(2026, 6, 1)) or "")
    every = ServiceContract("SC-2", "C-1", "All", date(2026, 1, 1), date(2026, 1, 1))
    assert every.covers("C-1", None, date(2026, 1, 1)) is None
    with pytest.raises(FieldRefused):
        ServiceContract("SC-3", "C-1", "Backwards", date(2026, 2, 1), date(2026, 1, 1))


def test_a_visit_moves_scheduled_dispatched_completed_and_a_final_one_stays() -> None:
    visit = Visit("V-1", "T-1", "C-1", "al", "repair", FRIDAY, FRIDAY + HOUR)
    assert visit.status == "scheduled"
    dispatched = change_visit(visit, "dispatched", FRIDAY, "token:dispatcher")
    assert change_visit(dispatched, "dispatched", FRIDAY, "x") is dispatched
    with pytest.raises(FieldRefused, match="minutes spent"):
        change_visit(dispatched, "completed", FRIDAY + HOUR, "token:al")
    done = change_visit(
        dispatched,
        "completed",
        FRIDAY + HOUR,
        "token:al",
        minutes_spent=50,
        parts=[PartUsed("gasket", 2)],
        installed_product="SN-9",
    )
    assert (done.status, done.minutes_spent, done.parts, done.installed_product, done.completed_at) == (
        "completed",
        50,
        (PartUsed("gasket", 2),),
        "SN-9",
        FRIDAY + HOUR,
    )
    with pytest.raises(FieldRefused, match="a completed visit cannot become cancelled"):
        change_visit(done, "cancelled", FRIDAY + HOUR, "x")
    with pytest.raises(FieldRefused):
        PartUsed("gasket", 0)
