"""Conversion analytics: lead-to-first-order conversion by source and owner with the time it took, win rate per
stage and pipeline velocity, and the 80/20 view of revenue by account. Pure: no I/O, no framework."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from statistics import median

SHARE = Decimal("0.0001")


def share(part: Decimal | int, whole: Decimal | int) -> Decimal | None:
    """part / whole to 4 decimal places; None when whole is 0."""
    if not whole:
        return None
    return (Decimal(part) / Decimal(whole)).quantize(SHARE, ROUND_HALF_EVEN)


@dataclass(frozen=True)
class LeadOutcome:
    lead_id: str
    source: str
    owner_id: str | None
    created_at: datetime
    converted: bool
    first_order_at: datetime | None
    """When the lead's customer placed their first order after the lead arrived; None if they have not."""


@dataclass(frozen=True)
class ConversionRow:
    key: str | None
    leads: int
    converted: int
    with_order: int
    conversion_rate: Decimal | None
    """with_order / leads: from lead to first order."""
    median_days_to_first_order: float | None


def conversion(outcomes: Iterable[LeadOutcome], key: Callable[[LeadOutcome], str | None]) -> list[ConversionRow]:
    """Per value of `key` (a source, an owner), how many leads, how many converted, how many reached a first
    order and the median days from lead to first order; the largest groups first."""
    groups: dict[str | None, list[LeadOutcome]] = defaultdict(list)
    for outcome in outcomes:
        groups[key(outcome)].append(outcome)
    rows = []
    for value, members in groups.items():
        ordered = [m for m in members if m.first_order_at is not None]
        days = [(m.first_order_at - m.created_at).total_seconds() / 86400 for m in ordered if m.first_order_at]
        rows.append(
            ConversionRow(
                key=value,
                leads=len(members),
                converted=sum(m.converted for m in members),
                with_order=len(ordered),
                conversion_rate=share(len(ordered), len(members)),
                median_days_to_first_order=round(median(days), 2) if days else None,
            )
        )
    return sorted(rows, key=lambda r: (-r.leads, r.key or ""))


@dataclass(frozen=True)
class Closed:
    """A closed opportunity as the pipeline analytics see it."""

    won: bool
    amount: Decimal
    stages: frozenset[str]
    opened_at: datetime
    closed_at: datetime


@dataclass(frozen=True)
class StageRate:
    stage_id: str
    reached: int
    won: int
    win_rate: Decimal | None


@dataclass(frozen=True)
class Velocity:
    open_count: int
    win_rate: Decimal | None
    average_won_amount: Decimal | None
    average_cycle_days: Decimal | None
    """Days from opened to closed, over the won and lost."""
    per_day: Decimal | None
    """open_count x win_rate x average_won_amount / average_cycle_days: the revenue the pipeline makes a day."""


def stage_rates(closed: Sequence[Closed], stage_ids: Sequence[str]) -> list[StageRate]:
    rates = []
    for stage in stage_ids:
        reached = [c for c in closed if stage in c.stages]
        won = sum(c.won for c in reached)
        rates.append(StageRate(stage, len(reached), won, share(won, len(reached))))
    return rates


def velocity(closed: Sequence[Closed], open_count: int) -> Velocity:
    won = [c for c in closed if c.won]
    win_rate = share(len(won), len(closed))
    average_won = (sum((c.amount for c in won), Decimal(0)) / len(won)).quantize(Decimal("0.01")) if won else None
    cycle = None
    if closed:
        seconds = sum((c.closed_at - c.opened_at).total_seconds() for c in closed) / len(closed)
        cycle = Decimal(str(round(seconds / 86400, 2)))
    per_day = None
    if win_rate is not None and average_won is not None and cycle:
        per_day = (open_count * win_rate * average_won / cycle).quantize(Decimal("0.01"), ROUND_HALF_EVEN)
    return Velocity(open_count, win_rate, average_won, cycle, per_day)


@dataclass(frozen=True)
class AccountRevenue:
    account_id: str
    name: str
    revenue: Decimal
    share: Decimal | None
    cumulative_share: Decimal | None


@dataclass(frozen=True)
class Pareto:
    total: Decimal
    accounts: list[AccountRevenue]
    top_fifth_share: Decimal | None
    """The share of revenue of the top 20% of accounts (at least one)."""
    accounts_for_80_percent: int
    """How few accounts make 80% of the revenue."""


def pareto(revenue: Mapping[str, Decimal], names: Mapping[str, str]) -> Pareto:
    """Accounts by revenue, largest first, with each one's share and the running share; ties by id."""
    ranked = sorted(revenue.items(), key=lambda item: (-item[1], item[0]))
    total = sum(revenue.values(), Decimal(0))
    running = Decimal(0)
    accounts = []
    needed = 0
    for account_id, amount in ranked:
        running += amount
        accounts.append(
            AccountRevenue(
                account_id, names.get(account_id, account_id), amount, share(amount, total), share(running, total)
            )
        )
        if total and not needed and running * 5 >= total * 4:
            needed = len(accounts)
    fifth = max(1, -(-len(ranked) // 5)) if ranked else 0
    top = sum((amount for _, amount in ranked[:fifth]), Decimal(0))
    return Pareto(total, accounts, share(top, total), needed)
