"""Activities: calls, meetings, visits, emails, tasks and reminders; calendars and their iCalendar feeds."""
