"""The backtest on the CDNOW sample: published parameters, holdout counts checked by hand, all three log formats."""

import csv
import json
from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from crm_scoring import backtest, lifetime
from crm_scoring.backtest import BacktestResult

CDNOW = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "cdnow"
SAMPLE = CDNOW / "CDNOW_sample.txt"
CALIBRATION_END = date(1997, 9, 30)
HOLDOUT_END = date(1998, 6, 30)

PUBLISHED = {
    "bgnbd": {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426},
    "gamma_gamma": {"p": 6.25, "q": 3.74, "v": 15.44},
}
COLUMNS = [
    "customer_id",
    "x",
    "t_x",
    "T",
    "expected_holdout_purchases",
    "probability_alive",
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


def test_the_backtest_reproduces_the_published_parameters(sample_run: tuple[BacktestResult, Path]) -> None:
    result, out = sample_run
    params = read_params(out)
    for model, published in PUBLISHED.items():
        for name, value in published.items():
            assert params[model][name] == pytest.approx(value, rel=0.01), (model, name)
    assert params["bgnbd"]["log_likelihood"] == pytest.approx(-9582.4, rel=0.001)
    assert params["model_version"] == result.model_version
    assert params["model_version"].startswith("bgnbd-gg-19970930-")


def test_predictions_have_one_row_per_customer_and_the_actual_holdout(
    sample_run: tuple[BacktestResult, Path],
) -> None:
    result, out = sample_run
    with (out / "predictions.csv").open(newline="") as file:
        reader = csv.DictReader(file)
        assert reader.fieldnames == COLUMNS
        rows = list(reader)
    assert len(rows) == 2357 == result.customers

    direct = direct_holdout_counts()
    assert {row["customer_id"] for row in rows} == set(direct)
    for row in rows:
        purchases, dollars = direct[row["customer_id"]]
        assert int(row["actual_holdout_purchases"]) == purchases
        assert float(row["actual_holdout_spend"]) == pytest.approx(dollars, abs=0.005)
        assert 0.0 <= float(row["probability_alive"]) <= 1.0
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


def test_the_tracking_plot_is_a_png(sample_run: tuple[BacktestResult, Path]) -> None:
    _, out = sample_run
    assert (out / "tracking.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_the_tracking_ends_with_all_repeat_purchases_of_both_periods(
    sample_run: tuple[BacktestResult, Path],
) -> None:
    result, _ = sample_run
    log = backtest.read_purchase_log(SAMPLE)
    cohort = lifetime.summarise_arrays(log.customer_id, log.day, log.amount, CALIBRATION_END)
    track = backtest.tracking(log, cohort, result.bgnbd, CALIBRATION_END, HOLDOUT_END)
    assert len(track.week) == 78
    assert track.calibration_weeks == 39
    assert track.actual[38] == int(cohort.x.sum())
    assert track.actual[-1] == int(cohort.x.sum()) + result.actual_holdout_purchases


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
    for model in ("bgnbd", "gamma_gamma"):
        assert from_csv[model] == pytest.approx(from_cdnow[model], rel=1e-9)
    assert from_csv["holdout"]["actual_purchases"] == from_cdnow["holdout"]["actual_purchases"]


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
