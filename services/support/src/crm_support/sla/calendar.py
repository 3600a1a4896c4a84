"""Business-hours calendars: when a team works, in its own time zone, without its public and custom holidays.

Pure: no I/O. A calendar has weekly opening hours (local wall-clock intervals per weekday), the public holidays
of a country (and subdivision) from the `holidays` package, and dates of its own. Times in and out are aware
datetimes; arithmetic is done on the UTC instants of the local intervals, so a day that changes to or from
daylight saving time counts the hours it really has. `CALENDAR_HOURS` is the calendar of targets counted in
calendar hours: always open.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from itertools import pairwise
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

Interval = tuple[time, time]
"""A local opening interval of a day, start inclusive, end exclusive; end 00:00 means midnight at the day's end."""

SEARCH_DAYS = 3 * 366
"""How far ahead a due time is looked for: a calendar open less than this is refused as having no hours."""


class CalendarInvalid(ValueError):
    """A calendar that cannot be used: unknown time zone, country or subdivision, overlapping or empty hours."""


class NoBusinessHours(ValueError):
    """The calendar is not open at all in the span searched: no due time can be given."""


def _end_of(day: date, end: time, zone: ZoneInfo) -> datetime:
    if end == time(0):
        return datetime.combine(day + timedelta(days=1), time(0), zone)
    return datetime.combine(day, end, zone)


@dataclass(frozen=True)
class BusinessCalendar:
    calendar_id: str
    time_zone: str
    weekly: Mapping[int, tuple[Interval, ...]]
    """Weekday (0 Monday .. 6 Sunday) -> its opening intervals, local time; a weekday absent is closed."""
    country: str | None = None
    subdivision: str | None = None
    extra_holidays: frozenset[date] = field(default_factory=frozenset)
    always_open: bool = False

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise CalendarInvalid(f"unknown time zone {self.time_zone!r}") from exc
        if self.subdivision is not None and self.country is None:
            raise CalendarInvalid("a subdivision needs its country")
        if self.country is not None:
            try:
                holidays.country_holidays(self.country, subdiv=self.subdivision)
            except NotImplementedError as exc:
                raise CalendarInvalid(f"no public holidays known for {exc}") from exc
        for weekday, intervals in self.weekly.items():
            if not 0 <= weekday <= 6:
                raise CalendarInvalid(f"weekday {weekday} is not 0 (Monday) to 6 (Sunday)")
            ordered = sorted(intervals)
            for start, end in ordered:
                if end != time(0) and end <= start:
                    raise CalendarInvalid(f"weekday {weekday}: {start:%H:%M}-{end:%H:%M} ends before it starts")
            for (_, end), (start, _) in pairwise(ordered):
                if end == time(0) or end > start:
                    raise CalendarInvalid(f"weekday {weekday}: opening intervals overlap")
        if not self.always_open and not any(self.weekly.values()):
            raise CalendarInvalid("a calendar needs opening hours on at least one weekday")

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    @cached_property
    def _public(self) -> holidays.HolidayBase | None:
        if self.country is None:
            return None
        return holidays.country_holidays(self.country, subdiv=self.subdivision)

    def holiday(self, day: date) -> str | None:
        """The holiday's name when `day` (local) is one, else None."""
        if day in self.extra_holidays:
            return "custom holiday"
        if self._public is not None and day in self._public:
            return str(self._public.get(day))
        return None

    def open_intervals(self, day: date) -> list[tuple[datetime, datetime]]:
        """The day's (local date) opening intervals as UTC instants; none on a holiday."""
        if self.always_open:
            start = datetime.combine(day, time(0), UTC)
            return [(start, start + timedelta(days=1))]
        if self.holiday(day) is not None:
            return []
        return [
            (datetime.combine(day, start, self.zone).astimezone(UTC), _end_of(day, end, self.zone).astimezone(UTC))
            for start, end in sorted(self.weekly.get(day.weekday(), ()))
        ]

    def _days_from(self, at: datetime, days: int = SEARCH_DAYS) -> Iterator[list[tuple[datetime, datetime]]]:
        """The open intervals of each local day from the one holding `at` on (the day before too: an interval
        to midnight can reach it), for `days` days."""
        zone = UTC if self.always_open else self.zone
        first = at.astimezone(zone).date() - timedelta(days=1)
        for offset in range(days + 2):
            yield self.open_intervals(first + timedelta(days=offset))

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The instant `duration` of open time after `start` (start itself when the duration is zero: a target
        of zero is due at once). Raises NoBusinessHours when the calendar is not open long enough ahead."""
        if duration < timedelta(0):
            raise ValueError("a duration to add is not negative")
        if self.always_open:
            return start.astimezone(UTC) + duration
        left, at = duration, start.astimezone(UTC)
        if left == timedelta(0):
            return at
        for intervals in self._days_from(at):
            for begin, end in intervals:
                if end <= at:
                    continue
                begin = max(begin, at)
                if end - begin >= left:
                    return begin + left
                left -= end - begin
                at = end
        raise NoBusinessHours(f"calendar {self.calendar_id} has too few opening hours in the next {SEARCH_DAYS} days")

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        """The open time between two instants (zero when end is not after start)."""
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        if end <= start:
            return timedelta(0)
        if self.always_open:
            return end - start
        total = timedelta(0)
        for intervals in self._days_from(start, (end - start).days + 1):
            for begin, finish in intervals:
                if begin >= end:
                    return total
                overlap = min(finish, end) - max(begin, start)
                if overlap > timedelta(0):
                    total += overlap
        return total


CALENDAR_HOURS = BusinessCalendar(calendar_id="calendar-hours", time_zone="UTC", weekly={}, always_open=True)
"""Targets in calendar hours count every hour."""
