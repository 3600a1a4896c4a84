"""The backtest on the CDNOW sample: published parameters, holdout counts checked by hand, the churn ranking
against recency and a pairwise AUC, all three log formats."""

import csv
import json
import re
from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from crm_scoring import backtest, lifetime
from crm_scoring.backtest import BacktestResult

CDNOW = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "cdnow"
SAMPLE = CDNOW / "CDNOW_sample.txt"
CALIBRATION_END = date(1997, 9, 30)
HOLDOUT_END = date(1998, 6, 30)

# BG/NBD: Fader, Hardie and Lee (2005); MBG/NBD: BTYDplus's fit of the same calibration period.
PUBLISHED = {
    "bgnbd": {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426},
    "mbgnbd": {"r": 0.525, "alpha": 6.183, "a": 0.891, "b": 1.614},
}
# The churn probability is a model estimate; recency is the strongest single predictor of a purchase log's
# holdout, and the model should not rank worse than it by more than 0.01.
CHURN_AUC_MARGIN_BELOW_RECENCY = 0.01
# BG/NBD calls every one-time buyer alive (P(alive) = 1), so its 1 - P(alive) ranks them, most of whom never buy
# again, as the safest customers: worse than a coin toss. A churn risk that sees their silence must beat it widely.
CHURN_AUC_ABOVE_BGNBD_NOT_ALIVE = 0.3
COLUMNS = [
    "customer_id",
    "x",
    "t_x",
    "T",
    "expected_holdout_purchases",
    "probability_alive",
    "churn_risk",
    "expected_spend",
    "actual_holdout_purchases",
    "actual_holdout_spend",
]


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[BacktestResult, Path]:
    out = tmp_path_factory.mktemp("cdnow-sample")
    return backtest.run_backtest(SAMPLE, CALIBRATION_END, HOLDOUT_END, out), out


def read_params(out: Path) -> dict[str, Any]:
    params: dict[str, Any] = json.loads((out / "params.json").read_text())
    return params


def read_predictions(out: Path) -> list[dict[str, str]]:
    with (out / "predictions.csv").open(newline="") as file:
        return list(csv.DictReader(file))


def pairwise_auc(score: np.ndarray, positive: np.ndarray) -> float:
    """P(a positive scores above a negative), ties half, over every pair: the definition, not the U statistic."""
    above = score[positive][:, None] - score[~positive][None, :]
    return float(np.mean(above > 0) + 0.5 * np.mean(above == 0))


def direct_holdout_counts() -> dict[str, tuple[int, float]]:
    """Per customer born by the calibration end: distinct purchase days and dollars in the holdout."""
    birth: dict[str, str] = {}
    days: dict[str, set[str]] = defaultdict(set)
    dollars: dict[str, float] = defaultdict(float)
    for line in SAMPLE.read_text().splitlines():
        customer, _sample_id, day, _cds, amount = line.split()
        birth[customer] = min(birth.get(customer, day), day)
        if "19971001" <= day <= "19980630":
            days[customer].add(day)
            dollars[customer] += float(amount)
    return {c: (len(days[c]), dollars[c]) for c, born in birth.items() if born <= "19970930"}


def direct_calibration_spend() -> dict[str, tuple[int, float]]:
    """Per customer born by the calibration end: distinct purchase days and mean dollars per day, first included."""
    dollars_by_day: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for line in SAMPLE.read_text().splitlines():
        customer, _sample_id, day, _cds, amount = line.split()
        if day <= "19970930":
            dollars_by_day[customer][day] += float(amount)
    return {c: (len(by_day), sum(by_day.values()) / len(by_day)) for c, by_day in dollars_by_day.items()}


def test_the_backtest_reproduces_the_published_parameters(sample_run: tuple[BacktestResult, Path]) -> None:
    result, out = sample_run
    params = read_params(out)
    for model, published in PUBLISHED.items():
        for name, value in published.items():
            assert params[model][name] == pytest.approx(value, rel=0.01), (model, name)
    assert params["bgnbd"]["log_likelihood"] == pytest.approx(-9582.4, rel=0.001)
    assert params["model_version"] == result.model_version
    assert result.model_version == lifetime.model_version(result.mbgnbd, result.gamma_gamma, CALIBRATION_END)
    assert params["model_version"].startswith("mbgnbd-gg-19970930-")


def test_the_spend_model_counts_every_purchase_the_first_included(sample_run: tuple[BacktestResult, Path]) -> None:
    result, out = sample_run
    direct = direct_calibration_spend()
    customers = sorted(direct)
    purchases = np.array([direct[c][0] for c in customers])
    mean_spend = np.array([direct[c][1] for c in customers])
    # A few customers bought only $0.00 orders: the fit leaves them out (weight 0), the prediction does not.
    assert np.count_nonzero(mean_spend == 0) > 0
    by_hand = lifetime.fit_gamma_gamma(np.where(mean_spend > 0, purchases, 0), mean_spend)
    for name in ("p", "q", "v"):
        assert read_params(out)["gamma_gamma"][name] == pytest.approx(getattr(by_hand, name), rel=1e-6), name
    for row in read_predictions(out):
        n, mean = direct[row["customer_id"]]
        assert float(row["expected_spend"]) == pytest.approx(
            float(lifetime.expected_spend(result.gamma_gamma, n, mean)), rel=1e-9
        )


def test_predictions_have_one_row_per_customer_and_the_actual_holdout(
    sample_run: tuple[BacktestResult, Path],
) -> None:
    result, out = sample_run
    with (out / "predictions.csv").open(newline="") as file:
        assert csv.DictReader(file).fieldnames == COLUMNS
    rows = read_predictions(out)
    assert len(rows) == 2357 == result.customers

    direct = direct_holdout_counts()
    assert {row["customer_id"] for row in rows} == set(direct)
    for row in rows:
        purchases, dollars = direct[row["customer_id"]]
        assert int(row["actual_holdout_purchases"]) == purchases
        assert float(row["actual_holdout_spend"]) == pytest.approx(dollars, abs=0.005)
        alive, churn_risk = float(row["probability_alive"]), float(row["churn_risk"])
        # Dead already is one way of making no purchase: the churn risk is at least 1 - P(alive).
        assert 0.0 < alive < 1.0
        assert 1.0 - alive <= churn_risk < 1.0
        assert float(row["expected_holdout_purchases"]) >= 0.0

    total_purchases = sum(purchases for purchases, _ in direct.values())
    total_dollars = sum(dollars for _, dollars in direct.values())
    assert result.actual_holdout_purchases == total_purchases
    assert result.actual_holdout_spend == pytest.approx(total_dollars, abs=0.01)
    assert read_params(out)["holdout"]["actual_purchases"] == total_purchases
    predicted = sum(float(row["expected_holdout_purchases"]) for row in rows)
    assert result.predicted_holdout_purchases == pytest.approx(predicted, rel=1e-9)
    mae = sum(abs(float(r["expected_holdout_purchases"]) - int(r["actual_holdout_purchases"])) for r in rows) / len(
        rows
    )
    assert result.mean_absolute_error == pytest.approx(mae, rel=1e-9)
    assert read_params(out)["holdout"]["bgnbd_predicted_purchases"] == result.bgnbd_predicted_holdout_purchases


def test_predictions_are_mbgnbds(sample_run: tuple[BacktestResult, Path]) -> None:
    result, out = sample_run
    rows = read_predictions(out)
    x, t_x, T = (np.array([float(row[name]) for row in rows]) for name in ("x", "t_x", "T"))
    holdout_weeks = (HOLDOUT_END - CALIBRATION_END).days / 7
    mbg = result.mbgnbd
    columns = {
        "probability_alive": lifetime.mbgnbd_probability_alive(mbg, x, t_x, T),
        "churn_risk": lifetime.mbgnbd_probability_no_purchase(mbg, 90 / 7, x, t_x, T),
        "expected_holdout_purchases": lifetime.mbgnbd_expected_purchases(mbg, holdout_weeks, x, t_x, T),
    }
    for name, expected in columns.items():
        assert [float(row[name]) for row in rows] == pytest.approx(list(expected), rel=1e-12), name
    bg_expected = lifetime.expected_purchases(result.bgnbd, holdout_weeks, x, t_x, T)
    assert result.bgnbd_predicted_holdout_purchases == pytest.approx(bg_expected.sum(), rel=1e-12)
    assert result.bgnbd_predicted_holdout_purchases != pytest.approx(result.predicted_holdout_purchases, rel=0.01)


def test_the_churn_risk_ranks_lapsed_customers_about_as_well_as_recency_and_far_better_than_bgnbd(
    sample_run: tuple[BacktestResult, Path],
) -> None:
    churn = sample_run[0].churn
    assert churn.churn_risk_auc is not None and churn.recency_auc is not None
    assert churn.bgnbd_not_alive_auc is not None and churn.mbgnbd_not_alive_auc is not None
    assert churn.churn_risk_auc >= churn.recency_auc - CHURN_AUC_MARGIN_BELOW_RECENCY
    assert churn.bgnbd_not_alive_auc < 0.5
    assert churn.churn_risk_auc >= churn.bgnbd_not_alive_auc + CHURN_AUC_ABOVE_BGNBD_NOT_ALIVE
    # P(alive) alone ignores how soon the customer would buy if alive: the horizon's churn risk ranks better.
    assert churn.churn_risk_auc > churn.mbgnbd_not_alive_auc
    # The figures of this data set, so a change to the models that moves them is seen.
    assert churn.churn_risk_auc == pytest.approx(0.769, abs=0.002)
    assert churn.recency_auc == pytest.approx(0.771, abs=0.002)


def test_the_churn_aucs_are_the_pairwise_share_and_are_written_to_params(
    sample_run: tuple[BacktestResult, Path],
) -> None:
    result, out = sample_run
    rows = read_predictions(out)
    x, t_x, T = (np.array([float(row[name]) for row in rows]) for name in ("x", "t_x", "T"))
    lapsed = np.array([int(row["actual_holdout_purchases"]) == 0 for row in rows])
    scores = {
        "churn_risk": np.array([float(row["churn_risk"]) for row in rows]),
        "recency": T - t_x,
        "mbgnbd_not_alive": 1.0 - np.array([float(row["probability_alive"]) for row in rows]),
        "bgnbd_not_alive": 1.0 - lifetime.probability_alive(result.bgnbd, x, t_x, T),
    }
    churn = read_params(out)["churn"]
    for name, score in scores.items():
        assert churn["auc"][name] == pytest.approx(pairwise_auc(score, lapsed), rel=1e-9), name
    assert churn["auc"]["churn_risk"] == result.churn.churn_risk_auc
    assert churn["horizon_days"] == 90
    assert churn["horizon_weeks"] == pytest.approx(90 / 7)
    direct = direct_holdout_counts()
    assert churn["customers_without_holdout_purchase"] == sum(1 for n, _ in direct.values() if n == 0)
    assert churn["customers_with_holdout_purchase"] == sum(1 for n, _ in direct.values() if n > 0)


def test_the_auc_counts_ties_half_and_needs_both_groups() -> None:
    score = np.array([0.9, 0.5, 0.5, 0.1])
    # Pairs (positive, negative): 0.9 > 0.5, 0.9 > 0.1, 0.5 = 0.5, 0.5 > 0.1.
    assert backtest.auc(score, np.array([True, True, False, False])) == pytest.approx(3.5 / 4)
    assert backtest.auc(score, np.array([False, False, True, True])) == pytest.approx(0.5 / 4)
    assert backtest.auc(score, np.ones(4, dtype=bool)) is None
    assert backtest.auc(score, np.zeros(4, dtype=bool)) is None


def test_the_tracking_plot_is_a_png(sample_run: tuple[BacktestResult, Path]) -> None:
    _, out = sample_run
    assert (out / "tracking.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_the_tracking_ends_with_all_repeat_purchases_of_both_periods(
    sample_run: tuple[BacktestResult, Path],
) -> None:
    result, _ = sample_run
    log = backtest.read_purchase_log(SAMPLE)
    cohort = lifetime.summarise_arrays(log.customer_id, log.day, log.amount, CALIBRATION_END)
    track = backtest.tracking(log, cohort, result.mbgnbd, result.bgnbd, CALIBRATION_END, HOLDOUT_END)
    assert len(track.week) == 78
    assert track.calibration_weeks == 39
    assert track.actual[38] == int(cohort.x.sum())
    assert track.actual[-1] == int(cohort.x.sum()) + result.actual_holdout_purchases
    for predicted in (track.predicted_mbgnbd, track.predicted_bgnbd):
        assert np.all(np.diff(predicted) > 0)
        # Both are fitted on the calibration period, so they meet its repeat purchases closely at its end.
        assert predicted[38] == pytest.approx(track.actual[38], rel=0.02)
    assert not np.allclose(track.predicted_mbgnbd, track.predicted_bgnbd)


def test_a_csv_log_gives_the_same_fit_as_the_cdnow_format(
    sample_run: tuple[BacktestResult, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    converted = tmp_path / "purchases.csv"
    lines = ["customer_id,time,amount"]
    for i, line in enumerate(SAMPLE.read_text().splitlines()):
        customer, _sample_id, day, _cds, amount = line.split()
        iso_day = f"{day[:4]}-{day[4:6]}-{day[6:]}"
        # Alternate plain dates with aware datetimes that fall on the same UTC day.
        lines.append(f"{customer},{iso_day if i % 2 else iso_day + 'T10:30:00+02:00'},{amount}")
    converted.write_text("\n".join(lines) + "\n")

    out = tmp_path / "out"
    argv = [
        "--log",
        str(converted),
        "--calibration-end",
        "1997-09-30",
        "--holdout-end",
        "1998-06-30",
        "--out",
        str(out),
    ]
    assert backtest.main(argv) == 0
    assert "2357 customers" in capsys.readouterr().out

    from_cdnow, from_csv = read_params(sample_run[1]), read_params(out)
    for model in ("mbgnbd", "bgnbd", "gamma_gamma"):
        assert from_csv[model] == pytest.approx(from_cdnow[model], rel=1e-9)
    assert from_csv["holdout"]["actual_purchases"] == from_cdnow["holdout"]["actual_purchases"]
    assert from_csv["churn"]["auc"] == pytest.approx(from_cdnow["churn"]["auc"], rel=1e-9)


def test_the_command_prints_the_churn_aucs(
    sample_run: tuple[BacktestResult, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--log", str(SAMPLE), "--calibration-end", "1997-09-30", "--holdout-end", "1998-06-30"]
    assert backtest.main([*argv, "--out", str(tmp_path / "default")]) == 0
    printed = capsys.readouterr().out
    churn = sample_run[0].churn
    assert (
        f"churn AUC (no purchase in the holdout): churn risk {churn.churn_risk_auc:.3f}, "
        f"recency alone {churn.recency_auc:.3f}, 1 - P(alive) MBG/NBD {churn.mbgnbd_not_alive_auc:.3f}, "
        f"BG/NBD {churn.bgnbd_not_alive_auc:.3f}\n"
    ) in printed
    assert "churn risk = P(no purchase in the next 90 days)" in printed
    assert re.search(r"holdout purchases: predicted [\d.]+ by MBG/NBD \([\d.]+ by BG/NBD\), actual 1882;", printed)


def test_the_churn_horizon_is_an_option(
    sample_run: tuple[BacktestResult, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "30-days"
    argv = ["--log", str(SAMPLE), "--calibration-end", "1997-09-30", "--holdout-end", "1998-06-30", "--out", str(out)]
    assert backtest.main([*argv, "--churn-horizon-days", "30"]) == 0
    assert "churn risk = P(no purchase in the next 30 days)" in capsys.readouterr().out
    assert read_params(out)["churn"]["horizon_days"] == 30
    rows = read_predictions(out)
    x, t_x, T = (np.array([float(row[name]) for row in rows]) for name in ("x", "t_x", "T"))
    expected = lifetime.mbgnbd_probability_no_purchase(sample_run[0].mbgnbd, 30 / 7, x, t_x, T)
    assert [float(row["churn_risk"]) for row in rows] == pytest.approx(list(expected), rel=1e-12)
    with pytest.raises(SystemExit):
        backtest.main([*argv, "--churn-horizon-days", "0"])


def test_the_master_format_with_its_header_is_read_like_the_sample(tmp_path: Path) -> None:
    master = tmp_path / "master.txt"
    lines = [" customer_id  date number_of_cds  dollar_value"]
    for line in SAMPLE.read_text().splitlines():
        customer, _sample_id, day, cds, amount = line.split()
        lines.append(f" {customer} {day}  {cds}   {amount}")
    master.write_text("\n".join(lines) + "\n")
    assert backtest.detect_format(master) == "cdnow_master"
    assert backtest.detect_format(SAMPLE) == "cdnow_sample"
    from_master, from_sample = backtest.read_purchase_log(master), backtest.read_purchase_log(SAMPLE)
    assert list(from_master.customer_id) == list(from_sample.customer_id)
    assert list(from_master.day) == list(from_sample.day)
    assert list(from_master.amount) == list(from_sample.amount)


def test_a_csv_without_the_expected_header_is_refused(tmp_path: Path) -> None:
    log = tmp_path / "bad.csv"
    log.write_text("id,when,value\n1,2024-01-01,3.0\n")
    with pytest.raises(ValueError, match="customer_id,time,amount"):
        backtest.detect_format(log)
