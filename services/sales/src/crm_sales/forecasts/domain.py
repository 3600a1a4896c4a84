"""Forecasts: the open pipeline of a period weighted by probability, totals per forecast category, closed-won
against the quota, and, for periods that are over, the forecast made against the revenue actually paid.
Pure: no I/O, no framework. Every amount is in the reporting currency; Decimal throughout.

The roll-up is the usual one: `commit` is closed-won plus the open deals in the commit category, `best_case`
adds the best-case ones, `weighted_pipeline` is the sum of amount x probability of every open deal not omitted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import get_args

from crm_shared.events import ForecastCategory

CATEGORIES: tuple[ForecastCategory, ...] = get_args(ForecastCategory)
CENT = Decimal("0.01")
_PERIOD = re.compile(r"^(?P<year>[0-9]{4})(?:-(?:(?P<month>0[1-9]|1[0-2])|Q(?P<quarter>[1-4])))?$")


class PeriodInvalid(ValueError):
    """Not a period: a year (2027), a quarter (2027-Q1) or a month (2027-01)."""


@dataclass(frozen=True, order=True)
class Period:
    """A calendar year, quarter or month, from `start` (inclusive) to `end` (exclusive), in UTC."""

    start: date
    end: date
    name: str = field(compare=False)

    @classmethod
    def parse(cls, text: str) -> Period:
        match = _PERIOD.match(text.strip())
        if match is None or not 1900 <= int(match["year"]) <= 2199:
            raise PeriodInvalid(
                f"period {text[:20]!r} is not a year (2027), a quarter (2027-Q1) or a month (2027-01), 1900 to 2199"
            )
        year = int(match["year"])
        if match["month"]:
            month = int(match["month"])
            start, months = date(year, month, 1), 1
        elif match["quarter"]:
            start, months = date(year, 3 * int(match["quarter"]) - 2, 1), 3
        else:
            start, months = date(year, 1, 1), 12
        index = start.month - 1 + months
        end = date(start.year + index // 12, index % 12 + 1, 1)
        return cls(start, end, text.strip())

    @property
    def start_at(self) -> datetime:
        return datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC)

    @property
    def end_at(self) -> datetime:
        return datetime(self.end.year, self.end.month, self.end.day, tzinfo=UTC)

    def is_over(self, now: datetime) -> bool:
        return now >= self.end_at


@dataclass(frozen=True)
class OpenDeal:
    """An open opportunity expected to close in the period, its amount in the reporting currency."""

    opportunity_id: str
    amount: Decimal
    probability: Decimal
    category: ForecastCategory

    @property
    def weighted(self) -> Decimal:
        return (self.amount * self.probability).quantize(CENT, ROUND_HALF_EVEN)


def probability(value: float) -> Decimal:
    """A stored probability (a float from 0 to 1) as the Decimal forecasts multiply by: 4 decimal places."""
    if not 0 <= value <= 1:
        raise ValueError(f"a probability is from 0 to 1, got {value}")
    return Decimal(str(round(value, 4)))


@dataclass(frozen=True)
class CategoryTotal:
    count: int = 0
    amount: Decimal = Decimal(0)
    weighted: Decimal = Decimal(0)


@dataclass(frozen=True)
class Forecast:
    period: Period
    categories: dict[ForecastCategory, CategoryTotal]
    weighted_pipeline: Decimal
    closed_won: Decimal
    won_count: int
    commit: Decimal
    best_case: Decimal
    quota: Decimal | None
    attainment: Decimal | None
    """closed_won / quota, 4 decimal places; None without a quota (or a quota of 0)."""
    gap: Decimal | None
    """What closed-won still lacks to reach the quota (0 once reached); None without a quota."""


def forecast(period: Period, open_deals: Iterable[OpenDeal], won: Iterable[Decimal], quota: Decimal | None) -> Forecast:
    """The forecast of the period from its open deals, the amounts of the opportunities won in it and the quota."""
    counts = dict.fromkeys(CATEGORIES, 0)
    amounts = dict.fromkeys(CATEGORIES, Decimal(0))
    weighted = dict.fromkeys(CATEGORIES, Decimal(0))
    for deal in open_deals:
        counts[deal.category] += 1
        amounts[deal.category] += deal.amount
        weighted[deal.category] += deal.weighted
    won_amounts = list(won)
    closed_won = sum(won_amounts, Decimal(0))
    counts["closed"] += len(won_amounts)
    amounts["closed"] += closed_won
    weighted["closed"] += closed_won
    categories = {c: CategoryTotal(counts[c], amounts[c], weighted[c]) for c in CATEGORIES}
    weighted_pipeline = sum((weighted[c] for c in ("pipeline", "best_case", "commit")), Decimal(0))
    commit = closed_won + amounts["commit"]
    attainment = gap = None
    if quota is not None:
        gap = max(quota - closed_won, Decimal(0))
        if quota > 0:
            attainment = (closed_won / quota).quantize(Decimal("0.0001"), ROUND_HALF_EVEN)
    return Forecast(
        period=period,
        categories=categories,
        weighted_pipeline=weighted_pipeline,
        closed_won=closed_won,
        won_count=len(won_amounts),
        commit=commit,
        best_case=commit + amounts["best_case"],
        quota=quota,
        attainment=attainment,
        gap=gap,
    )


@dataclass(frozen=True)
class Accuracy:
    """A forecast made for a period that is over, beside the revenue paid in it."""

    period: Period
    forecast_at: datetime
    forecast_total: Decimal
    """What was won when the forecast was made, plus the weighted pipeline then."""
    forecast_commit: Decimal
    actual_paid: Decimal
    error: Decimal | None
    """(forecast total - actual) / actual, 4 decimal places: above 0 the forecast was
    too high; None when nothing was paid."""


def accuracy(
    period: Period, forecast_at: datetime, weighted: Decimal, closed_won: Decimal, commit: Decimal, paid: Decimal
) -> Accuracy:
    """How far the forecast (what was won then plus the weighted pipeline) was from what was paid."""
    expected = closed_won + weighted
    error = ((expected - paid) / paid).quantize(Decimal("0.0001"), ROUND_HALF_EVEN) if paid > 0 else None
    return Accuracy(period, forecast_at, expected, commit, paid, error)
