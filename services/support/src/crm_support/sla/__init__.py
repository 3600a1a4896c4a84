"""Service levels: business-hours calendars, SLA policies as data, and the clock of each ticket's timers."""
