"""The checks a fit must pass before scores use it: degenerate data gives a refusal with reasons, not parameters."""

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest

from crm_scoring import backtest, fitting, lifetime
from crm_scoring.fitting import FitLimits

CDNOW = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "cdnow"
START = date(2026, 1, 5)


def fit(rows: list[tuple[str, date, float]], limits: FitLimits | None = None) -> fitting.BaseFit:
    ids, days, amounts = zip(*rows, strict=True)
    return fitting.fit_customer_base(
        np.array(ids), np.array(days, dtype="datetime64[D]"), np.array(amounts), max(days), limits or FitLimits()
    )


def test_a_base_of_one_time_buyers_is_refused_for_want_of_repeat_buyers() -> None:
    result = fit([(f"C-{i}", START + timedelta(days=i), 30.0) for i in range(80)])
    assert not result.accepted and result.mbgnbd is None and result.gamma_gamma is None
    assert result.refusals == (
        "0 customers bought again on a later day; fitting needs at least 20 (CRM_SCORING_MIN_FIT_REPEAT_BUYERS)",
    )


def test_a_handful_of_customers_is_refused_even_when_the_counts_are_lowered() -> None:
    rows = [
        ("C-1", START, 20.0),
        ("C-1", START + timedelta(days=30), 25.0),
        ("C-2", START + timedelta(days=3), 80.0),
        ("C-3", START + timedelta(days=5), 15.0),
        ("C-3", START + timedelta(days=9), 12.0),
        ("C-3", START + timedelta(days=70), 18.0),
        ("C-4", START + timedelta(days=8), 40.0),
        ("C-5", START + timedelta(days=60), 33.0),
    ]
    assert fit(rows).refusals == (
        "5 customers have ordered; fitting needs at least 50 (CRM_SCORING_MIN_FIT_CUSTOMERS)",
    )
    lowered = fit(rows, FitLimits(min_customers=2, min_repeat_buyers=1))
    # The counts pass; what the data can tell does not.
    assert not lowered.accepted and lowered.mbgnbd is not None
    assert any("known only to" in r or "outside" in r or "did not converge" in r for r in lowered.refusals)
    assert any(r.startswith("holdout check:") for r in lowered.refusals)


def test_identical_timings_run_the_fit_to_the_edge_and_are_refused() -> None:
    rows = [(f"C-{i}", START + timedelta(days=14 * k), 20.0) for i in range(60) for k in range(3)]
    result = fit(rows)
    assert not result.accepted
    assert any("is outside [0.001, 10000]" in r for r in result.refusals)
    assert any(r.startswith("MBG/NBD: the fit did not converge") for r in result.refusals)
    assert any(r.startswith("Gamma-Gamma") for r in result.refusals)


def test_the_cdnow_log_passes_every_check() -> None:
    log = backtest.read_purchase_log(CDNOW / "CDNOW_sample.txt")
    result = fitting.fit_customer_base(log.customer_id, log.day, log.amount, date(1998, 6, 30), FitLimits())
    assert result.accepted, result.refusals
    assert (result.customers, result.mbgnbd_quality is not None, result.gamma_gamma_quality is not None) == (
        2357,
        True,
        True,
    )
    for quality in (result.mbgnbd_quality, result.gamma_gamma_quality):
        assert quality is not None and quality.maximum and quality.relative_errors is not None
        assert max(quality.relative_errors.values()) < 0.5
    holdout = result.holdout
    assert holdout is not None and holdout.actual_purchases > 500
    assert holdout.relative_error is not None and holdout.relative_error < 0.1


def test_a_failed_holdout_check_says_what_was_predicted_and_what_happened() -> None:
    # Customers who bought every week until the holdout, then stopped: the fit expects purchases that never came.
    rows = [(f"C-{i}", START + timedelta(days=7 * k + i % 7), 30.0 + i) for i in range(60) for k in range(1 + i % 9)]
    rows += [(f"C-{i}", START + timedelta(days=200), 30.0) for i in range(12)]
    result = fit(rows)
    holdout = [r for r in result.refusals if r.startswith("holdout check:")]
    assert holdout and "MBG/NBD predicts" in holdout[0] and "at most 30%" in holdout[0]


def test_the_standard_errors_are_the_relative_errors_times_the_values() -> None:
    quality = lifetime.FitQuality(gradient=0.0, maximum=True, relative_errors={"r": 0.1, "alpha": 0.5})
    assert quality.standard_errors({"r": 2.0, "alpha": 10.0}) == {"r": 0.2, "alpha": 5.0}
    assert lifetime.FitQuality(gradient=1.0, maximum=False, relative_errors=None).standard_errors({"r": 1.0}) is None


def test_a_new_fit_replaces_the_one_in_force_only_when_a_parameter_moves_beyond_the_tolerance() -> None:
    mbg = lifetime.MbgNbdParams(0.5, 6.0, 0.9, 1.6, 0.0)
    gg = lifetime.GammaGammaParams(9.9, 3.4, 7.9, 0.0)
    close = (lifetime.MbgNbdParams(0.51, 6.1, 0.9, 1.6, -1.0), lifetime.GammaGammaParams(10.0, 3.4, 8.0, -1.0))
    assert fitting.moved_beyond((mbg, gg), close, 0.05) == []
    far = (lifetime.MbgNbdParams(0.5, 6.0, 1.2, 1.6, 0.0), lifetime.GammaGammaParams(9.9, 3.4, 12.0, 0.0))
    assert fitting.moved_beyond((mbg, gg), far, 0.05) == ["mbgnbd.a", "gamma_gamma.v"]


@pytest.mark.parametrize(
    "bad",
    [
        {"min_customers": 1},
        {"min_repeat_buyers": 0},
        {"parameter_range": (2.0, 10.0)},
        {"max_relative_error": 0.0},
        {"holdout_share": 1.0},
        {"max_holdout_error": 0.0},
    ],
)
def test_limits_refuse_nonsense(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        FitLimits(**bad)  # type: ignore[arg-type]
