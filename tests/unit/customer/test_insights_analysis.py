"""The customer analysis folds, without a database: periods, activity, distributions and cohorts."""

from datetime import UTC, datetime, timedelta

import pytest

from crm_customer.insights import analysis

LAPSE = timedelta(days=365)


def at(year: int, month: int, day: int = 1, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def test_periods_are_whole_calendar_periods_that_the_range_touches() -> None:
    months = analysis.periods(at(2026, 1, 15), at(2026, 4, 1), "month")
    assert [(p.label, p.start, p.end) for p in months] == [
        ("2026-01", at(2026, 1), at(2026, 2)),
        ("2026-02", at(2026, 2), at(2026, 3)),
        ("2026-03", at(2026, 3), at(2026, 4)),
    ]
    quarters = analysis.periods(at(2025, 11, 3), at(2026, 4, 2), "quarter")
    assert [p.label for p in quarters] == ["2025-Q4", "2026-Q1", "2026-Q2"]
    assert quarters[0].start == at(2025, 10) and quarters[-1].end == at(2026, 7)
    years = analysis.periods(datetime(2026, 1, 1, 0, 30, tzinfo=UTC) - timedelta(hours=1), at(2026, 6), "year")
    assert [p.label for p in years] == ["2025", "2026"]
    with pytest.raises(analysis.TooManyPeriods, match="at most 240"):
        analysis.periods(at(1990, 1), at(2026, 1), "month")


def test_the_default_range_starts_eleven_periods_before_the_current_one() -> None:
    now = at(2026, 12, 3, 13)
    assert analysis.periods_back(now, "month", 12) == at(2026, 1)
    assert analysis.periods_back(now, "quarter", 12) == at(2024, 1)
    assert analysis.periods_back(now, "year", 1) == at(2026, 1)
    assert analysis.month_start(now) == at(2026, 12)


def row(rows: list[analysis.Activity], label: str) -> tuple[int, int, int, int, int]:
    [found] = [r for r in rows if r.period.label == label]
    return found.active, found.new, found.reactivated, found.lost, found.lapsed


def test_new_active_reactivated_lost_and_lapsed_per_period() -> None:
    times = analysis.order_times(
        [
            # A: first order in January 2025, again in March 2025, then silent: lost a year after March.
            ("A", at(2025, 1, 10)),
            ("A", at(2025, 3, 5)),
            # B: orders in February 2025, then back in April 2026 after more than a year: reactivated.
            ("B", at(2025, 2, 20)),
            ("B", at(2026, 4, 2)),
            # C: new in March 2026.
            ("C", at(2026, 3, 31, 23)),
        ]
    )
    now = at(2026, 6, 15)
    spans = analysis.periods(at(2025, 1, 1), now, "month")
    rows = analysis.activity(times, spans, LAPSE, now)
    # (active, new, reactivated, lost, lapsed)
    assert row(rows, "2025-01") == (1, 1, 0, 0, 0)
    assert row(rows, "2025-02") == (1, 1, 0, 0, 0)
    assert row(rows, "2025-03") == (1, 0, 0, 0, 0)
    assert row(rows, "2026-02") == (0, 0, 0, 1, 1)  # B's year of silence ended on 2026-02-20
    assert row(rows, "2026-03") == (1, 1, 0, 1, 2)  # A's ended on 2026-03-05; C is new
    assert row(rows, "2026-04") == (1, 0, 1, 0, 1)  # B is back, A still lapsed
    assert row(rows, "2026-06") == (0, 0, 0, 0, 1)
    assert sum(r.new for r in rows) == 3


def test_a_gap_of_exactly_the_lapse_neither_loses_nor_reactivates() -> None:
    times = analysis.order_times([("A", at(2025, 1, 1)), ("A", at(2025, 1, 1) + LAPSE)])
    now = at(2026, 6, 1)
    rows = analysis.activity(times, analysis.periods(at(2025, 1, 1), now, "year"), LAPSE, now)
    assert row(rows, "2026") == (1, 0, 0, 0, 0)
    assert row(rows, "2025") == (1, 1, 0, 0, 0)


def test_the_current_period_counts_only_who_is_lost_by_now() -> None:
    times = analysis.order_times([("A", at(2025, 6, 10))])
    spans = analysis.periods(at(2026, 6, 1), at(2026, 7, 1), "month")
    assert row(analysis.activity(times, spans, LAPSE, at(2026, 6, 5)), "2026-06") == (0, 0, 0, 0, 0)
    assert row(analysis.activity(times, spans, LAPSE, at(2026, 6, 20)), "2026-06") == (0, 0, 0, 1, 1)


def test_a_distribution_counts_each_key_most_first_and_the_unknown_last() -> None:
    rows = analysis.distribution(["high_value", None, "potential", "high_value", "at_risk", None, None])
    assert [(r.key, r.customers, r.share) for r in rows] == [
        ("high_value", 2, 0.2857),
        ("at_risk", 1, 0.1429),
        ("potential", 1, 0.1429),
        (None, 3, 0.4286),
    ]
    assert analysis.distribution([]) == []


def test_the_profile_keys_read_what_the_profile_holds_and_none_when_absent() -> None:
    profile = {
        "channel": "web",
        "industry": "retail",
        "company_size": "10-49",
        "addresses": [{"kind": "billing", "country": "DE"}, {"kind": "shipping", "region": "Bavaria"}],
    }
    assert {k: f(profile) for k, f in analysis.PROFILE_KEYS.items()} == {
        "region": "Bavaria",
        "country": "DE",
        "industry": "retail",
        "channel": "web",
        "company_size": "10-49",
    }
    assert {k: f({}) for k, f in analysis.PROFILE_KEYS.items()} == dict.fromkeys(analysis.PROFILE_KEYS)


def test_the_newest_segment_change_gives_each_customers_scores() -> None:
    newest = analysis.latest_by_customer(
        [
            ("A", at(2026, 1), "e-1", {"value_tier": "potential"}),
            ("A", at(2026, 3), "e-2", {"value_tier": "high_value"}),
            ("A", at(2026, 2), "e-3", {"value_tier": "at_risk"}),
            ("B", at(2026, 1), "e-4", {"value_tier": "low_value"}),
        ]
    )
    assert newest == {"A": {"value_tier": "high_value"}, "B": {"value_tier": "low_value"}}


def test_cohorts_follow_each_months_new_customers_month_by_month() -> None:
    times = analysis.order_times(
        [
            ("A", at(2026, 1, 5)),
            ("A", at(2026, 2, 7)),
            ("A", at(2026, 4, 1)),
            ("B", at(2026, 1, 30)),
            ("B", at(2026, 3, 2)),
            ("C", at(2026, 2, 14)),
            ("C", at(2026, 2, 20)),
            ("D", at(2025, 12, 31, 23)),  # a cohort before the range
            ("D", at(2026, 1, 2)),
        ]
    )
    rows = analysis.cohorts(times, at(2026, 1), at(2026, 5), 3, at(2026, 4, 10))
    assert [(r.cohort, r.customers) for r in rows] == [("2026-01", 2), ("2026-02", 1)]
    january, february = rows
    assert [(m.month, m.customers, m.share) for m in january.months] == [
        (0, 2, 1.0),
        (1, 1, 0.5),
        (2, 1, 0.5),
        (3, 1, 0.5),
    ]
    # February is followed up to April, the current month: months 0 to 2.
    assert [(m.month, m.customers, m.share) for m in february.months] == [(0, 1, 1.0), (1, 0, 0.0), (2, 0, 0.0)]
