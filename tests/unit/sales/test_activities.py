"""Activities, pure: what an activity must be tied to, completing and cancelling, overdue, and the iCalendar
document a calendar app reads (parsed back with the icalendar library, as an app would)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import icalendar
import pytest

from crm_sales.activities import calendar, domain

T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)


def planned(**fields: object) -> domain.Activity:
    arguments: dict[str, object] = {
        "activity_id": "ACT-1",
        "kind": "meeting",
        "title": "Demo",
        "due_at": T0,
        "at": T0 - timedelta(days=1),
        "customer_id": "C-1",
    }
    return domain.plan(**(arguments | fields))  # type: ignore[arg-type]


def test_an_activity_is_tied_to_something_and_lasts_its_kinds_default() -> None:
    with pytest.raises(domain.ActivityRefused, match="tied to a lead, an opportunity, an account or a customer"):
        planned(customer_id=None)
    assert planned().duration_minutes == 60 and planned().ends_at == T0 + timedelta(hours=1)
    assert planned(kind="call").duration_minutes == 30
    assert planned(kind="task", customer_id=None, lead_id="L-1").duration_minutes == 0
    with pytest.raises(domain.ActivityRefused, match="duration_minutes is from 0 to 1440"):
        planned(duration_minutes=2000)


def test_done_once_with_its_outcome_and_cancelled_ones_are_not_done() -> None:
    a = planned()
    done = domain.complete(a, T0 + timedelta(hours=1), "wants a quote")
    assert (done.status, done.outcome, done.completed_at) == ("done", "wants a quote", T0 + timedelta(hours=1))
    assert domain.complete(done, T0 + timedelta(hours=5), "wants a quote") == done
    with pytest.raises(domain.ActivityRefused, match="done already, with another outcome"):
        domain.complete(done, T0, "no interest")
    with pytest.raises(domain.ActivityRefused, match="a done activity is not cancelled"):
        domain.cancel(done, T0)
    cancelled = domain.cancel(a, T0)
    assert domain.cancel(cancelled, T0 + timedelta(days=1)) == cancelled
    with pytest.raises(domain.ActivityRefused, match="is cancelled"):
        domain.complete(cancelled, T0, None)


def test_overdue_is_planned_and_past_due() -> None:
    a = planned(kind="task")
    assert not a.is_overdue(T0) and a.is_overdue(T0 + timedelta(seconds=1))
    assert not domain.complete(a, T0, None).is_overdue(T0 + timedelta(days=1))
    assert not domain.cancel(a, T0).is_overdue(T0 + timedelta(days=1))
    assert {k for k in domain.KINDS if planned(kind=k).is_interaction} == {"call", "meeting", "visit", "email"}


def test_the_ics_holds_one_event_per_activity_that_a_calendar_app_reads_back() -> None:
    meeting = planned(title="Demo; with commas, and a very long title " + "x" * 80, notes="Bring the grinder")
    reminder = planned(activity_id="ACT-2", kind="reminder", title="Call back", due_at=T0 + timedelta(days=1))
    gone = domain.cancel(planned(activity_id="ACT-3", title="Lunch"), T0)
    done = domain.complete(planned(activity_id="ACT-4", kind="call", title="Follow-up"), T0, "Ordered two")
    document = calendar.ics([meeting, reminder, gone, done], name="CRM activities of rep-1", now=T0)

    assert all(len(line) <= 75 for line in document.split(b"\r\n")), "RFC 5545 folds lines at 75 octets"
    parsed = icalendar.Calendar.from_ical(document)
    assert (str(parsed["version"]), str(parsed["x-wr-calname"])) == ("2.0", "CRM activities of rep-1")
    events = {str(e["uid"]): e for e in parsed.walk("VEVENT")}
    assert sorted(events) == ["ACT-1@crm.invalid", "ACT-2@crm.invalid", "ACT-3@crm.invalid", "ACT-4@crm.invalid"]
    first = events["ACT-1@crm.invalid"]
    assert str(first["summary"]) == meeting.title
    assert (first.decoded("dtstart"), first.decoded("dtend")) == (T0, T0 + timedelta(hours=1))
    assert "Bring the grinder" in str(first["description"])
    assert str(events["ACT-3@crm.invalid"]["status"]) == "CANCELLED"
    assert "Outcome: Ordered two" in str(events["ACT-4@crm.invalid"]["description"])
    [alarm] = events["ACT-2@crm.invalid"].walk("VALARM")
    assert alarm.decoded("trigger") == T0 + timedelta(days=1)
    assert events["ACT-1@crm.invalid"].walk("VALARM") == []
