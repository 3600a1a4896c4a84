"""Population statistics by hand: quintile cuts with ties, the 80/20 threshold, the RFM grid, the value plane."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from crm_scoring import domain, population
from crm_scoring.domain import CustomerFacts, Placed, Thresholds
from crm_scoring.population import CustomerValue

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_quintile_cuts_by_nearest_rank() -> None:
    assert population.quintile_cuts(list(range(10, 0, -1))) == (2, 4, 6, 8)
    scores = [population.quintile(v, (2, 4, 6, 8)) for v in range(1, 11)]
    assert scores == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert population.quintile_cuts([7]) == (7, 7, 7, 7)
    assert population.quintile_cuts([]) == ()
    assert population.quintile(7, ()) == 1


def test_equal_values_share_one_quintile_whatever_their_order() -> None:
    values = [1, 1, 1, 1, 1, 1, 1, 2, 3, 5]
    cuts = population.quintile_cuts(values)
    assert cuts == (1, 1, 1, 2)
    assert population.quintile_cuts(list(reversed(values))) == cuts
    assert {v: population.quintile(v, cuts) for v in values} == {1: 1, 2: 4, 3: 5, 5: 5}


def test_recency_ranks_the_last_order_time_so_fewer_days_score_higher() -> None:
    times = [T0 + timedelta(days=d) for d in range(5)]
    pop = population.compute(
        [CustomerValue(t, 1, Decimal(10), Decimal(10)) for t in times], revenue_share=0.8, min_population=1
    )
    newest = CustomerValue(times[-1], 1, Decimal(10), Decimal(10))
    oldest = CustomerValue(times[0], 1, Decimal(10), Decimal(10))
    assert population.rfm_scores(pop, newest)[0] == 5
    assert population.rfm_scores(pop, oldest)[0] == 1


@pytest.mark.parametrize(
    ("monetary", "share", "threshold"),
    [
        (["500", "300", "100", "50", "50"], 0.8, "300"),
        (["500", "300", "100", "50", "50"], 0.5, "500"),
        (["500", "300", "100", "50", "50"], 0.81, "100"),
        (["500", "300", "100", "50", "50"], 1.0, "50"),
        (["100", "100", "100", "100"], 0.8, "100"),
        (["0", "0"], 0.8, None),
        ([], 0.8, None),
    ],
)
def test_the_80_20_threshold_is_the_smallest_top_set_making_the_share(
    monetary: list[str], share: float, threshold: str | None
) -> None:
    found = population.pareto_threshold([Decimal(m) for m in monetary], share)
    assert found == (Decimal(threshold) if threshold else None)


def test_pareto_curve() -> None:
    curve = population.pareto_curve([Decimal(v) for v in ("80", "10", "5", "5", "0")], steps=5)
    assert curve == [(0.2, 0.8), (0.4, 0.9), (0.6, 0.95), (0.8, 1.0), (1.0, 1.0)]


@pytest.mark.parametrize(
    ("rfm", "segment"),
    [
        ((5, 5, 5), "champions"),
        ((5, 4, 3), "champions"),  # FM = 3.5 rounds half up to 4
        ((5, 3, 3), "potential_loyalists"),
        ((5, 1, 1), "new"),
        ((5, 1, 2), "potential_loyalists"),  # FM = 1.5 -> 2
        ((4, 1, 1), "promising"),
        ((4, 2, 3), "potential_loyalists"),
        ((4, 4, 4), "loyal"),
        ((3, 5, 4), "loyal"),
        ((3, 3, 3), "need_attention"),
        ((3, 2, 1), "about_to_sleep"),
        ((2, 3, 4), "at_risk"),
        ((1, 3, 3), "at_risk"),
        ((2, 5, 5), "cant_lose_them"),
        ((1, 5, 4), "cant_lose_them"),
        ((2, 1, 1), "hibernating"),
        ((1, 2, 2), "hibernating"),
        ((1, 1, 1), "lost"),
        ((1, 1, 2), "hibernating"),
    ],
)
def test_the_rfm_grid(rfm: tuple[int, int, int], segment: str) -> None:
    assert population.rfm_segment(*rfm) == segment


def test_every_rfm_score_has_a_segment_and_every_segment_is_reached() -> None:
    reached = {population.rfm_segment(r, f, m) for r in range(1, 6) for f in range(1, 6) for m in range(1, 6)}
    assert len(reached) == 11
    with pytest.raises(ValueError, match="1 to 5"):
        population.rfm_segment(0, 1, 1)


def buyers(*monetary: str) -> list[CustomerValue]:
    return [
        CustomerValue(T0 + timedelta(days=i), 1 + i % 3, Decimal(m), Decimal(m) / (1 + i % 3))
        for i, m in enumerate(monetary)
    ]


def test_the_population_is_in_force_from_the_minimum_of_buyers() -> None:
    values = buyers("500", "300", "100", "50", "50")
    assert not population.compute(values, revenue_share=0.8, min_population=6).in_force
    pop = population.compute(values, revenue_share=0.8, min_population=5)
    assert (pop.in_force, pop.customers, pop.high_value_monetary) == (True, 5, Decimal(300))
    assert (
        population.compute([*values, CustomerValue(T0, 0, Decimal(0), Decimal(0))], revenue_share=0.8, min_population=5)
        == pop
    )


def test_the_version_follows_the_content_only() -> None:
    values = buyers("500", "300", "100", "50", "50")
    first = population.compute(values, revenue_share=0.8, min_population=5)
    assert population.compute(list(reversed(values)), revenue_share=0.8, min_population=5).version == first.version
    assert population.compute(values, revenue_share=0.7, min_population=5).version != first.version
    # Statistics not in force change nobody's scores: their version does not follow them.
    small = population.compute(values, revenue_share=0.8, min_population=6)
    assert population.compute(values[:3], revenue_share=0.7, min_population=6).version == small.version != first.version


def test_value_quadrants_against_the_medians() -> None:
    pop = population.Population(
        customers=20,
        in_force=True,
        revenue_share=0.8,
        recency_cuts=(),
        frequency_cuts=(),
        monetary_cuts=(),
        high_value_monetary=Decimal(1000),
        median_frequency=2,
        median_average_order_value=Decimal(50),
    )

    def quadrant(frequency: int, aov: str) -> str | None:
        return population.value_quadrant(pop, CustomerValue(T0, frequency, Decimal(0), Decimal(aov)))

    assert quadrant(3, "20") == "frequent_small"
    assert quadrant(1, "80") == "big_occasional"
    assert quadrant(3, "80") == "frequent_big"
    assert quadrant(2, "50") == "small_occasional"
    assert quadrant(0, "0") is None


def test_value_tier_uses_the_80_20_threshold_once_in_force_and_the_fixed_one_before() -> None:
    values = buyers(*(["2000"] * 4 + ["100"] * 16))
    pop = population.compute(values, revenue_share=0.8, min_population=20)
    assert pop.high_value_monetary == Decimal(2000)
    small = population.compute(values[:19], revenue_share=0.8, min_population=20)
    thresholds = Thresholds()
    assert domain.value_tier(1, Decimal(1500), thresholds, pop) == "low_value"
    assert domain.value_tier(1, Decimal(1500), thresholds, small) == "high_value"
    assert domain.value_tier(1, Decimal(1500), thresholds, None) == "high_value"
    assert domain.value_tier(1, Decimal(2000), thresholds, pop) == "high_value"
    assert domain.value_tier(0, Decimal(0), thresholds, pop) == "potential"


def test_scores_carry_rfm_and_quadrant_only_with_a_population_in_force() -> None:
    values = buyers(*(["2000"] * 4 + ["100"] * 16))
    pop = population.compute(values, revenue_share=0.8, min_population=20)
    facts = domain.record_all(
        CustomerFacts("C-1"), [Placed(f"O-{i}", Decimal("1000.00"), "EUR", T0 + timedelta(days=30 + i)) for i in (0, 1)]
    )
    scores = domain.score(facts, T0 + timedelta(days=31), Thresholds(), pop)
    # Frequencies 1, 2, 3 (7, 7 and 6 customers) cut at 1, 2, 2, 3: two orders is F = 2; FM = (2 + 5) / 2 -> 4.
    assert pop.frequency_cuts == (1, 2, 2, 3)
    assert (scores.rfm_score, scores.rfm_segment, scores.value_tier) == ("525", "champions", "high_value")
    # Median frequency 2 (not above it), median average order value 100 (above it).
    assert scores.value_quadrant == "big_occasional"
    assert scores.segments.rfm_segment == "champions"
    without = domain.score(facts, T0 + timedelta(days=31), Thresholds())
    assert (without.rfm_score, without.rfm_segment, without.value_quadrant) == (None, None, None)


def base(spends: list[int], start: datetime = T0) -> population.Population:
    values = [CustomerValue(start + timedelta(days=i), 1, Decimal(s), Decimal(s)) for i, s in enumerate(spends)]
    return population.compute(values, revenue_share=0.8, min_population=20)


def test_statistics_move_only_beyond_the_tolerance_of_their_value() -> None:
    in_force = base(list(range(10, 260, 10)))  # 25 customers of 10 .. 250
    # One more small, early customer: the median 130 -> 120, nothing else.
    nudged = population.compute(
        [
            CustomerValue(T0 - timedelta(days=1), 1, Decimal(15), Decimal(15)),
            *(
                CustomerValue(T0 + timedelta(days=i), 1, Decimal(s), Decimal(s))
                for i, s in enumerate(range(10, 260, 10))
            ),
        ],
        revenue_share=0.8,
        min_population=20,
    )
    assert [m.name for m in population.changes(in_force, nudged)] == ["median_average_order_value"]
    newest = T0 + timedelta(days=24)
    # 130 -> 120 is 7.7%: within 10%, beyond 5%.
    assert population.moved(in_force, nudged, 0.1, newest) == []
    assert "median_average_order_value" in population.moved(in_force, nudged, 0.05, newest)
    assert population.moved(in_force, in_force, 0.0, newest) == []


def test_a_recency_cut_moves_relative_to_its_age_not_to_the_epoch() -> None:
    old = base(list(range(10, 260, 10)))
    later = base(list(range(10, 260, 10)), start=T0 + timedelta(days=3))
    newest = T0 + timedelta(days=27)
    # The cuts are 5 to 20 days before the newest order; moving them 3 days is 15% of the oldest's age or more.
    assert population.moved(old, later, 0.1, newest) == [f"recency_cuts[{k}]" for k in range(4)]
    assert population.moved(old, later, 0.9, newest) == []


def test_coming_into_force_the_rates_and_the_models_change_the_whole_base() -> None:
    small, big = base(list(range(10, 100, 10))), base(list(range(10, 260, 10)))
    assert population.moved(small, big, 0.5, None) == ["in_force"]
    assert population.whole_base_changes(small, big)
    other_rates = population.Population(**{**big.__dict__, "exchange_rates": "EUR: EUR=1, USD=0.5"})
    assert population.moved(big, other_rates, 0.5, None) == ["exchange_rates"]
    assert not population.whole_base_changes(big, base([*range(10, 260, 10), 1000]))


def test_the_affected_ranges_hold_every_value_whose_quintile_tier_or_quadrant_can_change() -> None:
    old, new = base(list(range(10, 260, 10))), base([*range(10, 260, 10), 1000, 1000, 1000])
    ranges = population.affected_ranges(old, new)
    by_score: dict[str, list[tuple[object, object]]] = {}
    for field, low, high in ranges:
        by_score.setdefault(field, []).append((low, high))
    assert all(low <= high for pairs in by_score.values() for low, high in pairs)  # type: ignore[operator]
    # Brute force: every monetary value whose M quintile or tier differs between old and new lies in a range.
    for spend in range(0, 1100, 5):
        value = CustomerValue(T0 + timedelta(days=30), 1, Decimal(spend), Decimal(spend))
        tier_old = spend >= (old.high_value_monetary or 0)
        tier_new = spend >= (new.high_value_monetary or 0)
        moved = population.rfm_scores(old, value)[2] != population.rfm_scores(new, value)[2] or tier_old != tier_new
        inside = any(low <= Decimal(spend) <= high for low, high in by_score["scores.monetary"])  # type: ignore[operator]
        assert inside or not moved, spend
