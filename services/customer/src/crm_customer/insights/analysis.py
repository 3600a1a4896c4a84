"""Customer analysis (the brief's "7P" profile of the customer base): who is new, active, reactivated or lost per
period, how customers are distributed, and how each month's new customers keep ordering. Pure: the API reads the
orders and profiles, and gives `now`.

An order counts from when it was placed (its event time) unless it was cancelled; a refund does not undo it. Per
period [start, end), with `lapse` the gap that makes a customer lost (365 days by default):

- active: ordered in the period;
- new: placed their first order in the period;
- reactivated: placed an order in the period more than `lapse` after their order before it;
- lost: their silence passed `lapse` in the period: for an order at t with no order in (t, t + lapse],
  t + lapse falls in [start, min(end, now));
- lapsed: at min(end, now) they had ordered, and not within `lapse` before then (the stock of lost customers;
  `lost` is the flow into it, `reactivated` the flow out).

Cohorts: a customer's cohort is the month (UTC) of their first order; month k of a cohort is the k-th calendar
month after it (month 0 is the cohort's own), and its share is the part of the cohort that ordered in that month.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any, Literal

Period = Literal["month", "quarter", "year"]
Dimension = Literal["value_tier", "lifecycle_stage", "region", "country", "industry", "channel", "company_size"]
MAX_PERIODS = 240
DEFAULT_LAPSE_DAYS = 365


class TooManyPeriods(ValueError):
    """A range that holds more periods than an answer lists."""


# ---------------------------------------------------------------- periods


@dataclass(frozen=True)
class Span:
    label: str
    start: datetime
    end: datetime


_MONTHS: Mapping[Period, int] = {"month": 1, "quarter": 3, "year": 12}


def _month_index(at: datetime) -> int:
    """Months since the year 0, of the month (UTC) `at` falls in."""
    utc = at.astimezone(UTC)
    return utc.year * 12 + utc.month - 1


def _month_start(index: int) -> datetime:
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def _label(index: int, period: Period) -> str:
    year, month = divmod(index, 12)
    if period == "month":
        return f"{year:04d}-{month + 1:02d}"
    if period == "quarter":
        return f"{year:04d}-Q{month // 3 + 1}"
    return f"{year:04d}"


def month_start(at: datetime) -> datetime:
    """The start of the month (UTC) `at` falls in."""
    return _month_start(_month_index(at))


def periods_back(now: datetime, period: Period, count: int) -> datetime:
    """The start of the period `count` - 1 periods before the one `now` falls in: the first of the last `count`."""
    step = _MONTHS[period]
    return _month_start((_month_index(now) // step - (count - 1)) * step)


def periods(start: datetime, end: datetime, period: Period) -> list[Span]:
    """The calendar periods (UTC) that [start, end) touches, whole: the first begins at or before `start`."""
    step = _MONTHS[period]
    first = _month_index(start) // step * step
    last_instant = end.astimezone(UTC) - timedelta(microseconds=1)
    count = (_month_index(last_instant) // step * step - first) // step + 1
    if count > MAX_PERIODS:
        raise TooManyPeriods(f"the range holds {count} periods of a {period}; at most {MAX_PERIODS}")
    return [
        Span(_label(first + i * step, period), _month_start(first + i * step), _month_start(first + (i + 1) * step))
        for i in range(max(count, 0))
    ]


# ---------------------------------------------------------------- activity


@dataclass(frozen=True)
class Activity:
    period: Span
    active: int
    new: int
    reactivated: int
    lost: int
    lapsed: int


def order_times(orders: Iterable[tuple[str, datetime]]) -> dict[str, list[datetime]]:
    """Each customer's order times, oldest first, from (customer id, time) of every order that counts."""
    times: dict[str, list[datetime]] = defaultdict(list)
    for customer_id, at in orders:
        times[customer_id].append(at)
    return {c: sorted(ts) for c, ts in times.items()}


def _in(times: Sequence[datetime], start: datetime, end: datetime) -> range:
    """The indexes of the times in [start, end)."""
    return range(bisect.bisect_left(times, start), bisect.bisect_left(times, end))


@dataclass(frozen=True)
class _History:
    times: Sequence[datetime]
    comebacks: list[datetime]
    """Orders placed more than `lapse` after the order before."""
    lapses: list[datetime]
    """t + lapse for each order at t not followed by another within `lapse`: when the customer became lost."""


def _history(times: Sequence[datetime], lapse: timedelta) -> _History:
    gaps = list(pairwise(times))
    return _History(
        times=times,
        comebacks=[later for earlier, later in gaps if later - earlier > lapse],
        lapses=[earlier + lapse for earlier, later in gaps if later - earlier > lapse] + [times[-1] + lapse],
    )


def activity(
    times_by_customer: Mapping[str, Sequence[datetime]], spans: Sequence[Span], lapse: timedelta, now: datetime
) -> list[Activity]:
    """New, active, reactivated, lost and lapsed customers per period (see the module's definitions)."""
    histories = [_history(times, lapse) for times in times_by_customer.values() if times]
    rows = []
    for span in spans:
        until = min(span.end, now)
        active = new = reactivated = lost = lapsed = 0
        for h in histories:
            within = _in(h.times, span.start, span.end)
            active += bool(within)
            new += bool(within) and within.start == 0
            reactivated += bool(_in(h.comebacks, span.start, span.end))
            lost += bool(_in(h.lapses, span.start, until))
            before = bisect.bisect_right(h.times, until)
            lapsed += before > 0 and until - h.times[before - 1] > lapse
        rows.append(Activity(span, active, new, reactivated, lost, lapsed))
    return rows


# ---------------------------------------------------------------- distribution


@dataclass(frozen=True)
class Share:
    key: str | None
    customers: int
    share: float


def first_address_field(addresses: Any, name: str) -> str | None:
    """The `name` (region, country) of the customer's first address that has one."""
    for address in addresses or ():
        value = address.get(name) if isinstance(address, Mapping) else None
        if value:
            return str(value)
    return None


def distribution(keys: Iterable[str | None]) -> list[Share]:
    """How many customers have each key, and their share of all: most first, then by key, None (not known) last."""
    counts = Counter(keys)
    total = sum(counts.values())
    rows = [Share(key, n, round(n / total, 4)) for key, n in counts.items()]
    return sorted(rows, key=lambda r: (r.key is None, -r.customers, r.key or ""))


def latest_by_customer(
    changes: Iterable[tuple[str, datetime, str, Mapping[str, Any]]],
) -> dict[str, Mapping[str, Any]]:
    """Each customer's newest scores, from (customer id, time, event id, scores) of their segment changes."""
    newest: dict[str, tuple[datetime, str, Mapping[str, Any]]] = {}
    for customer_id, at, event_id, scores in changes:
        held = newest.get(customer_id)
        if held is None or (at, event_id) > held[:2]:
            newest[customer_id] = (at, event_id, scores)
    return {c: held[2] for c, held in newest.items()}


ProfileKey = Callable[[Mapping[str, Any]], str | None]
PROFILE_KEYS: Mapping[str, ProfileKey] = {
    "region": lambda p: first_address_field(p.get("addresses"), "region"),
    "country": lambda p: first_address_field(p.get("addresses"), "country"),
    "industry": lambda p: p.get("industry"),
    "channel": lambda p: p.get("channel"),
    "company_size": lambda p: p.get("company_size"),
}
"""How each dimension read from the profile is found in it (a field absent on an older profile is not known)."""


# ---------------------------------------------------------------- cohorts


@dataclass(frozen=True)
class Retention:
    month: int
    customers: int
    share: float


@dataclass(frozen=True)
class Cohort:
    cohort: str
    customers: int
    months: list[Retention]
    """Month 0 (the cohort's own) to the last month shown or the month of `now`, whichever is earlier."""


def cohorts(
    times_by_customer: Mapping[str, Sequence[datetime]],
    start: datetime,
    end: datetime,
    horizon: int,
    now: datetime,
) -> list[Cohort]:
    """The cohorts whose month begins in [start, end), oldest first, each followed for `horizon` months after its
    own (never beyond the month of `now`)."""
    members: dict[int, list[set[int]]] = defaultdict(list)
    for times in times_by_customer.values():
        if not times:
            continue
        first = times[0]
        cohort = _month_index(first)
        if start <= _month_start(cohort) < end:
            members[cohort].append({_month_index(t) for t in times})
    current = _month_index(now)
    rows = []
    for index in sorted(members):
        ordered = members[index]
        size = len(ordered)
        shown = min(horizon, current - index)
        months = []
        for k in range(shown + 1):
            n = sum(1 for months_ordered in ordered if index + k in months_ordered)
            months.append(Retention(k, n, round(n / size, 4)))
        rows.append(Cohort(_label(index, "month"), size, months))
    return rows
