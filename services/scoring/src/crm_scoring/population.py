"""Statistics of the whole customer base that a customer's scores are relative to. Pure: no I/O.

RFM quintiles, the 80/20 value threshold, the medians of the value plane and the fitted customer-base models.
Only customers with at least one counted order take part. A `Population` is identified by a version derived
from its content, so recomputing an unchanged base gives the same version and re-scores nobody.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal, TypeVar

from crm_scoring.lifetime import BgNbdParams, GammaGammaParams

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
    """BG/NBD and Gamma-Gamma parameters fitted on the base (time unit: weeks)."""

    model_version: str
    bgnbd: BgNbdParams
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
