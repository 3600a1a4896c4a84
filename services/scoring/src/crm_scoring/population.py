"""Statistics of the whole customer base that a customer's scores are relative to. Pure: no I/O.

RFM quintiles, the 80/20 value threshold, the medians of the value plane and the fitted customer-base models.
Only customers with at least one counted order take part. A `Population` is identified by a version derived
from its content. A recomputed population replaces the one in force only when a statistic moved by more than the
configured tolerance (`moved`), and then only the customers whose segments the move can change are re-scored
(`affected_ranges`): every new order nudges the statistics, and re-scoring the whole base for that would change
nobody's segments at great cost.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal, TypeVar

from crm_scoring.lifetime import GammaGammaParams, MbgNbdParams

RfmSegment = Literal[
    "champions",
    "loyal",
    "potential_loyalists",
    "new",
    "promising",
    "need_attention",
    "about_to_sleep",
    "at_risk",
    "cant_lose_them",
    "hibernating",
    "lost",
]
ValueQuadrant = Literal["frequent_big", "frequent_small", "big_occasional", "small_occasional"]

V = TypeVar("V", int, Decimal, datetime)


@dataclass(frozen=True)
class CustomerValue:
    """One customer's part in the population statistics."""

    last_order_at: datetime
    frequency: int
    monetary: Decimal
    average_order_value: Decimal


@dataclass(frozen=True)
class FittedModels:
    """MBG/NBD and Gamma-Gamma parameters fitted on the base (time unit: weeks), which passed the fit's checks."""

    model_version: str
    mbgnbd: MbgNbdParams
    gamma_gamma: GammaGammaParams
    fitted_at: datetime
    customers: int
    repeat_buyers: int


@dataclass(frozen=True)
class Population:
    """The thresholds in force, their money in the reporting currency of `exchange_rates` (the rate table, as
    ExchangeRates.describe() gives it). `in_force` is False while fewer than the configured minimum of customers
    have ordered: then no RFM score is given and value_tier falls back to the fixed monetary threshold."""

    customers: int
    in_force: bool
    revenue_share: float
    recency_cuts: tuple[datetime, ...]
    frequency_cuts: tuple[int, ...]
    monetary_cuts: tuple[Decimal, ...]
    high_value_monetary: Decimal | None
    median_frequency: int | None
    median_average_order_value: Decimal | None
    models: FittedModels | None = None
    exchange_rates: str | None = None

    @property
    def version(self) -> str:
        """A digest of what the scores depend on: the statistics once in force, the models (by their version,
        a digest of their parameters, not their fit time) and the rate table the money is converted with (so a
        changed table rescores everyone). Statistics not in force change nobody's scores."""
        models = self.models.model_version if self.models else None
        content = (
            {**asdict(self), "models": models}
            if self.in_force
            else {"in_force": False, "models": models, "exchange_rates": self.exchange_rates}
        )
        digest = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:12]
        return f"pop-{digest}"


def quintile_cuts(values: Sequence[V]) -> tuple[V, ...]:
    """The four cut points of the quintiles by the nearest rank: the ceil(k n / 5)-th smallest value, k = 1..4.

    Empty for no values. Equal values always fall in the same quintile (see `quintile`), so ties cannot be
    split by the order the customers happen to be read in.
    """
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return ()
    return tuple(ordered[math.ceil(k * n / 5) - 1] for k in range(1, 5))


def quintile(value: V, cuts: Sequence[V]) -> int:
    """1 + the number of cut points strictly below `value`: 1 (lowest fifth) to 5 (highest)."""
    return 1 + sum(1 for cut in cuts if value > cut)


def pareto_threshold(monetary: Sequence[Decimal], share: float) -> Decimal | None:
    """The monetary value of the smallest set of top customers that together make `share` of the revenue.

    Everyone at or above it is high value (equal values included). None when there is no positive revenue.
    """
    ordered = sorted(monetary, reverse=True)
    total = sum(ordered, Decimal(0))
    if total <= 0:
        return None
    target = Decimal(str(share)) * total
    running = Decimal(0)
    for value in ordered:
        running += value
        if running >= target:
            return value
    return ordered[-1]


def pareto_curve(monetary: Sequence[Decimal], steps: int = 20) -> list[tuple[float, float]]:
    """(share of customers, share of revenue) of the top customers at each 1/steps of the customers."""
    ordered = sorted(monetary, reverse=True)
    total = sum(ordered, Decimal(0))
    n = len(ordered)
    points: list[tuple[float, float]] = []
    if n == 0 or total <= 0:
        return points
    for i in range(1, steps + 1):
        top = math.ceil(i * n / steps)
        points.append((round(i / steps, 4), round(float(sum(ordered[:top], Decimal(0)) / total), 4)))
    return points


def _lower_median(values: Sequence[V]) -> V | None:
    ordered = sorted(values)
    return ordered[(len(ordered) - 1) // 2] if ordered else None


def compute(
    customers: Sequence[CustomerValue],
    *,
    revenue_share: float,
    min_population: int,
    models: FittedModels | None = None,
    exchange_rates: str | None = None,
) -> Population:
    """The population statistics of the customers who ordered (a customer with frequency 0 is left out), their
    money in the reporting currency of the rate table `exchange_rates` describes."""
    buyers = [c for c in customers if c.frequency > 0]
    return Population(
        customers=len(buyers),
        in_force=len(buyers) >= min_population,
        revenue_share=revenue_share,
        recency_cuts=quintile_cuts([c.last_order_at for c in buyers]),
        frequency_cuts=quintile_cuts([c.frequency for c in buyers]),
        monetary_cuts=quintile_cuts([c.monetary for c in buyers]),
        high_value_monetary=pareto_threshold([c.monetary for c in buyers], revenue_share),
        median_frequency=_lower_median([c.frequency for c in buyers]),
        median_average_order_value=_lower_median([c.average_order_value for c in buyers]),
        models=models,
        exchange_rates=exchange_rates,
    )


def rfm_scores(population: Population, value: CustomerValue) -> tuple[int, int, int]:
    """(R, F, M), each 1-5. R ranks the last order's time: the more recent (fewer days ago), the higher."""
    return (
        quintile(value.last_order_at, population.recency_cuts),
        quintile(value.frequency, population.frequency_cuts),
        quintile(value.monetary, population.monetary_cuts),
    )


def rfm_segment(r: int, f: int, m: int) -> RfmSegment:
    """The named segment on the widely used R x FM grid, FM = (F + M) / 2 rounded half up:

    ```
    R \\ FM   1               2                     3                     4          5
    5        new             potential_loyalists   potential_loyalists   champions  champions
    4        promising       potential_loyalists   potential_loyalists   loyal      loyal
    3        about_to_sleep  about_to_sleep        need_attention        loyal      loyal
    2        hibernating     hibernating           at_risk               at_risk    cant_lose_them
    1        lost            hibernating           at_risk               at_risk    cant_lose_them
    ```
    """
    for score in (r, f, m):
        if not 1 <= score <= 5:
            raise ValueError(f"RFM scores are 1 to 5, got {(r, f, m)}")
    fm = (f + m + 1) // 2
    if r <= 2:
        if fm == 5:
            return "cant_lose_them"
        if fm >= 3:
            return "at_risk"
        return "lost" if (r, fm) == (1, 1) else "hibernating"
    if r == 3:
        if fm >= 4:
            return "loyal"
        return "need_attention" if fm == 3 else "about_to_sleep"
    if fm >= 4:
        return "champions" if r == 5 else "loyal"
    if fm >= 2:
        return "potential_loyalists"
    return "new" if r == 5 else "promising"


def value_quadrant(population: Population, value: CustomerValue) -> ValueQuadrant | None:
    """The corner of the average-order-value x frequency plane (BRIEF section 2): above the population's median
    on each axis or not. frequent_small (many small orders, e.g. small shops) and big_occasional are the two
    off-diagonal corners. None for a customer without an order or before the population is in force."""
    if not population.in_force or value.frequency == 0:
        return None
    if population.median_frequency is None or population.median_average_order_value is None:
        return None
    frequent = value.frequency > population.median_frequency
    big = value.average_order_value > population.median_average_order_value
    if frequent:
        return "frequent_big" if big else "frequent_small"
    return "big_occasional" if big else "small_occasional"


Bound = int | Decimal | datetime


@dataclass(frozen=True)
class Moved:
    """A statistic of the population in force and its recomputed value."""

    name: str
    field: str  # the customer's score it is compared with
    old: Bound | None
    new: Bound | None


def _beyond(old: Bound | None, new: Bound | None, tolerance: float, newest: datetime | None) -> bool:
    """Whether `new` differs from `old` by more than the tolerance: of the value itself for counts and money, of
    the cut's age (its time before the newest order) for a recency cut, which otherwise drifts every day."""
    if old is None or new is None:
        return old != new
    if isinstance(old, datetime) and isinstance(new, datetime):
        age = (newest - old) if newest is not None and newest > old else timedelta(0)
        return abs(new - old) > age * tolerance
    assert not isinstance(old, datetime) and not isinstance(new, datetime)
    return abs(Decimal(new) - Decimal(old)) > abs(Decimal(old)) * Decimal(str(tolerance))


def changes(in_force: Population, candidate: Population) -> list[Moved]:
    """Every statistic that differs between the two, with the score it is compared with."""
    pairs: list[tuple[str, str, Sequence[Bound | None], Sequence[Bound | None]]] = [
        ("recency_cuts", "scores.last_order_at", in_force.recency_cuts, candidate.recency_cuts),
        ("frequency_cuts", "scores.frequency", in_force.frequency_cuts, candidate.frequency_cuts),
        ("monetary_cuts", "scores.monetary", in_force.monetary_cuts, candidate.monetary_cuts),
        ("high_value_monetary", "scores.monetary", [in_force.high_value_monetary], [candidate.high_value_monetary]),
        ("median_frequency", "scores.frequency", [in_force.median_frequency], [candidate.median_frequency]),
        (
            "median_average_order_value",
            "scores.average_order_value",
            [in_force.median_average_order_value],
            [candidate.median_average_order_value],
        ),
    ]
    moved: list[Moved] = []
    for name, score, old_values, new_values in pairs:
        if len(old_values) != len(new_values):
            moved.append(Moved(name, score, None, None))
            continue
        for k, (old, new) in enumerate(zip(old_values, new_values, strict=True)):
            if old != new:
                moved.append(Moved(f"{name}[{k}]" if len(old_values) > 1 else name, score, old, new))
    return moved


def _structural(in_force: Population, candidate: Population) -> list[str]:
    """What changes every customer's scores, not only those near a bound: statistics coming into or out of force,
    the rate table, the models, the revenue share."""
    pairs = (
        ("in_force", in_force.in_force, candidate.in_force),
        ("exchange_rates", in_force.exchange_rates, candidate.exchange_rates),
        ("models", _models_version(in_force), _models_version(candidate)),
        ("revenue_share", in_force.revenue_share, candidate.revenue_share),
    )
    return [name for name, old, new in pairs if old != new]


def _models_version(pop: Population) -> str | None:
    return pop.models.model_version if pop.models else None


def moved(in_force: Population, candidate: Population, tolerance: float, newest_order_at: datetime | None) -> list[str]:
    """The names of what moved beyond the tolerance. Any structural change counts (see `_structural`; a fit
    replaces the models in force only when its parameters moved: see fitting.moved_beyond); statistics not in force
    change nobody's scores."""
    structural = _structural(in_force, candidate)
    if structural or not candidate.in_force:
        return structural
    return [m.name for m in changes(in_force, candidate) if _beyond(m.old, m.new, tolerance, newest_order_at)]


def whole_base_changes(in_force: Population, candidate: Population) -> bool:
    """Whether the change can move any customer's scores, rather than only those between an old and a new bound."""
    return bool(_structural(in_force, candidate)) or any(
        m.old is None or m.new is None for m in changes(in_force, candidate)
    )


def affected_ranges(in_force: Population, candidate: Population) -> list[tuple[str, Bound, Bound]]:
    """(score, low, high), both inclusive, for every bound that moved: a customer's quintile, value tier or value
    quadrant can change only if the score it compares lies between the old and the new bound (a value equal to a
    cut is in the lower quintile, so both ends count)."""
    ranges: list[tuple[str, Bound, Bound]] = []
    for m in changes(in_force, candidate):
        if m.old is not None and m.new is not None:
            low, high = (m.old, m.new) if m.old <= m.new else (m.new, m.old)  # type: ignore[operator]
            ranges.append((m.field, low, high))
    return ranges
