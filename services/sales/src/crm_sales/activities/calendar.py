"""An owner's activities as an iCalendar (RFC 5545) document a calendar app reads or subscribes to; the
icalendar library does the escaping, line folding and time formats."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import icalendar

from crm_sales.activities.domain import Activity

PRODID = "-//Open CRM//sales activities//EN"
STATUS = {"planned": "CONFIRMED", "done": "CONFIRMED", "cancelled": "CANCELLED"}


def ics(activities: Iterable[Activity], *, name: str, now: datetime, domain: str = "crm.invalid") -> bytes:
    """A VCALENDAR with one VEVENT per activity: its kind as the category, the outcome once done; a reminder
    also alarms at its time. Each UID is the activity id, so a subscribed calendar updates events in place."""
    calendar = icalendar.Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "PUBLISH")
    calendar.add("x-wr-calname", name)
    for activity in activities:
        event = icalendar.Event()
        event.add("uid", f"{activity.activity_id}@{domain}")
        event.add("dtstamp", now)
        event.add("dtstart", activity.due_at)
        event.add("dtend", activity.ends_at)
        event.add("summary", activity.title)
        event.add("categories", [activity.kind.upper()])
        event.add("status", STATUS[activity.status])
        described = [f"{activity.kind}, {activity.status}"]
        if activity.outcome:
            described.append(f"Outcome: {activity.outcome}")
        if activity.notes:
            described.append(activity.notes)
        event.add("description", "\n".join(described))
        if activity.kind == "reminder" and activity.status == "planned":
            alarm = icalendar.Alarm()
            alarm.add("action", "DISPLAY")
            alarm.add("description", activity.title)
            alarm.add("trigger", activity.due_at)
            event.add_component(alarm)
        calendar.add_component(event)
    document: bytes = calendar.to_ical()
    return document
