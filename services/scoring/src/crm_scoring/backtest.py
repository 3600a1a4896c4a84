"""Backtest of the customer-base models on a purchase log: fit on a calibration period, predict the holdout.

MBG/NBD and Gamma-Gamma are the models scoring uses, so the model version, the predictions and the churn risk come
from them; BG/NBD is fitted beside them as the published reference. The churn check ranks the calibration cohort
by churn risk and measures, as an AUC, how well that ranking picks out the customers who bought nothing in the
holdout, beside recency alone and 1 - P(alive) of each purchase model.

Reads the CDNOW sample format (master id, sample id, YYYYMMDD, CDs, dollars), the CDNOW master format
(id, YYYYMMDD, CDs, dollars; an optional header line) or a CSV with the header `customer_id,time,amount`
(ISO dates or datetimes; an aware time is taken in UTC). Writes params.json, predictions.csv and tracking.png.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy.stats import mannwhitneyu

from crm_scoring import fitting, lifetime
from crm_scoring.lifetime import BgNbdParams, CustomerSummaries, GammaGammaParams, MbgNbdParams

LogFormat = Literal["cdnow_sample", "cdnow_master", "csv"]

CSV_HEADER = ("customer_id", "time", "amount")
DEFAULT_CHURN_HORIZON_DAYS = 90.0
PREDICTION_COLUMNS = (
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
)


@dataclass(frozen=True)
class PurchaseLog:
    """A purchase log as parallel arrays: one entry per transaction line."""

    format: LogFormat
    customer_id: npt.NDArray[np.str_]
    day: npt.NDArray[np.datetime64]
    amount: npt.NDArray[np.float64]


@dataclass(frozen=True)
class ChurnRanking:
    """How well each score ranks the cohort's customers who made no purchase in the holdout above those who did.

    Each AUC is the probability that a customer without a holdout purchase scores higher than one with, ties
    counting half: 0.5 is a coin toss, 1 a perfect ranking. None when one of the two groups is empty.
    `churn_risk_auc` is MBG/NBD's P(no purchase in the next `horizon_days`), scoring's churn risk before the
    complaint and survey penalties (a purchase log has none); `recency_auc` the weeks since the last purchase
    alone; the `*_not_alive_auc` 1 - P(alive) of each purchase model.
    """

    horizon_days: float
    churn_risk_auc: float | None
    recency_auc: float | None
    mbgnbd_not_alive_auc: float | None
    bgnbd_not_alive_auc: float | None
    customers_without_holdout_purchase: int
    customers_with_holdout_purchase: int


@dataclass(frozen=True)
class BacktestResult:
    """The fits and how they did on the holdout; predictions and spend are MBG/NBD's and Gamma-Gamma's."""

    model_version: str
    mbgnbd: MbgNbdParams
    bgnbd: BgNbdParams
    gamma_gamma: GammaGammaParams
    customers: int
    repeat_buyers: int
    predicted_holdout_purchases: float
    bgnbd_predicted_holdout_purchases: float
    actual_holdout_purchases: int
    predicted_holdout_spend: float
    actual_holdout_spend: float
    mean_absolute_error: float
    churn: ChurnRanking
    out_dir: Path


def detect_format(path: Path) -> LogFormat:
    """Which of the three formats the log is in, from its first line with data."""
    return _sniff(path)[0]


def _sniff(path: Path) -> tuple[LogFormat, int]:
    """The log's format and how many lines (blank or a header) come before its first purchase."""
    with path.open(encoding="utf-8") as log:
        for number, line in enumerate(log):
            if not line.strip():
                continue
            if "," in line:
                header = tuple(field.strip() for field in line.strip().split(","))
                if header != CSV_HEADER:
                    raise ValueError(
                        f"{path}: a CSV purchase log needs the header {','.join(CSV_HEADER)}, not {line!r}"
                    )
                return "csv", number
            fields = line.split()
            if not all(_is_number(field) for field in fields):
                continue
            if len(fields) == 5:
                return "cdnow_sample", number
            if len(fields) == 4:
                return "cdnow_master", number
            raise ValueError(f"{path}: {len(fields)} columns, expected 5 (CDNOW sample) or 4 (CDNOW master)")
    raise ValueError(f"{path}: no purchases")


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def read_purchase_log(path: Path) -> PurchaseLog:
    log_format, skip = _sniff(path)
    if log_format == "csv":
        frame = pd.read_csv(path, skiprows=skip, dtype={"customer_id": str, "time": str, "amount": np.float64})
        times = pd.to_datetime(frame["time"], format="ISO8601", utc=True).dt.tz_localize(None)
        days = times.to_numpy().astype("datetime64[D]")
    else:
        names = ["customer_id", "sample_id", "date", "cds", "amount"]
        if log_format == "cdnow_master":
            names.remove("sample_id")
        frame = pd.read_csv(
            path,
            sep=r"\s+",
            header=None,
            skiprows=skip,
            names=names,
            dtype={"customer_id": str, "sample_id": str, "date": str, "amount": np.float64},
        )
        days = pd.to_datetime(frame["date"], format="%Y%m%d").to_numpy().astype("datetime64[D]")
    return PurchaseLog(
        format=log_format,
        customer_id=frame["customer_id"].to_numpy(dtype=str),
        day=days,
        amount=frame["amount"].to_numpy(dtype=np.float64),
    )


def holdout_actuals(
    log: PurchaseLog, cohort: CustomerSummaries, calibration_end: date, holdout_end: date
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Each cohort customer's purchases (same-day ones merged) and spend after calibration_end up to holdout_end."""
    frame = pd.DataFrame({"customer_id": log.customer_id, "day": log.day, "amount": log.amount})
    in_holdout = (frame["day"] > pd.Timestamp(calibration_end)) & (frame["day"] <= pd.Timestamp(holdout_end))
    per_customer = frame[in_holdout].groupby("customer_id").agg(purchases=("day", "nunique"), spend=("amount", "sum"))
    per_customer = per_customer.reindex(cohort.customer_id, fill_value=0)
    return per_customer["purchases"].to_numpy(dtype=np.int64), per_customer["spend"].to_numpy(dtype=np.float64)


def auc(score: npt.ArrayLike, positive: npt.ArrayLike) -> float | None:
    """The area under the ROC curve of `score` for telling the `positive` customers from the others, ties counting
    half (the Mann-Whitney U over n1 n2); None when either group is empty."""
    score, positive = np.asarray(score, dtype=np.float64), np.asarray(positive, dtype=bool)
    n_positive, n_negative = int(positive.sum()), int((~positive).sum())
    if n_positive == 0 or n_negative == 0:
        return None
    u = mannwhitneyu(score[positive], score[~positive]).statistic
    return float(u) / (n_positive * n_negative)


def churn_ranking(
    cohort: CustomerSummaries,
    mbg: MbgNbdParams,
    bg: BgNbdParams,
    churn_risk: npt.NDArray[np.float64],
    holdout_purchases: npt.NDArray[np.int64],
    horizon_days: float,
) -> ChurnRanking:
    """The churn AUCs of the cohort against "no purchase in the holdout" (see ChurnRanking)."""
    lapsed = holdout_purchases == 0
    return ChurnRanking(
        horizon_days=horizon_days,
        churn_risk_auc=auc(churn_risk, lapsed),
        recency_auc=auc(cohort.T - cohort.t_x, lapsed),
        mbgnbd_not_alive_auc=auc(1.0 - lifetime.mbgnbd_probability_alive(mbg, cohort.x, cohort.t_x, cohort.T), lapsed),
        bgnbd_not_alive_auc=auc(1.0 - lifetime.probability_alive(bg, cohort.x, cohort.t_x, cohort.T), lapsed),
        customers_without_holdout_purchase=int(lapsed.sum()),
        customers_with_holdout_purchase=int((~lapsed).sum()),
    )


@dataclass(frozen=True)
class Tracking:
    """Cumulative repeat purchases of the cohort at the end of each week since its first birth, actual and as
    each purchase model predicts them."""

    week: npt.NDArray[np.int64]
    actual: npt.NDArray[np.int64]
    predicted_mbgnbd: npt.NDArray[np.float64]
    predicted_bgnbd: npt.NDArray[np.float64]
    calibration_weeks: float


def tracking(
    log: PurchaseLog,
    cohort: CustomerSummaries,
    mbg: MbgNbdParams,
    bg: BgNbdParams,
    calibration_end: date,
    holdout_end: date,
) -> Tracking:
    """Actual vs predicted cumulative repeat purchases; each prediction sums the model's expected repeat purchases
    from birth over the customers.

    Week k ends on day 7k - 1 from the first birth, inclusive; a customer born on day d has then been watched
    for (7k - 1 - d) / 7 weeks, the same day convention as T.
    """
    origin = cohort.birth.min().astype(np.int64)
    weeks = (np.datetime64(holdout_end, "D").astype(np.int64) - origin) // 7 + 1
    week = np.arange(1, weeks + 1, dtype=np.int64)

    index = np.searchsorted(cohort.customer_id, log.customer_id)
    index = np.minimum(index, len(cohort) - 1)
    in_cohort = cohort.customer_id[index] == log.customer_id
    day = log.day.astype(np.int64)
    purchases = np.unique(np.column_stack((index[in_cohort], day[in_cohort])), axis=0)
    birth = cohort.birth.astype(np.int64)[purchases[:, 0]]
    repeat_day = purchases[:, 1][(purchases[:, 1] > birth) & (purchases[:, 1] <= origin + 7 * weeks - 1)]
    actual = np.cumsum(np.bincount((repeat_day - origin) // 7, minlength=weeks))[:weeks]

    birth_offset, born = np.unique(cohort.birth.astype(np.int64) - origin, return_counts=True)
    watched = np.maximum(7 * week[:, None] - 1 - birth_offset[None, :], 0) / lifetime.DAYS_PER_WEEK
    calibration_weeks = (np.datetime64(calibration_end, "D").astype(np.int64) - origin + 1) / 7
    return Tracking(
        week=week,
        actual=actual.astype(np.int64),
        predicted_mbgnbd=lifetime.mbgnbd_expected_purchases_from_birth(mbg, watched) @ born,
        predicted_bgnbd=lifetime.expected_purchases_from_birth(bg, watched) @ born,
        calibration_weeks=calibration_weeks,
    )


def plot_tracking(track: Tracking, path: Path) -> None:
    figure = Figure(figsize=(8, 5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(track.week, track.actual, color="black", label="Actual")
    axes.plot(track.week, track.predicted_mbgnbd, color="tab:orange", linestyle="--", label="MBG/NBD")
    axes.plot(track.week, track.predicted_bgnbd, color="tab:blue", linestyle="-.", label="BG/NBD")
    axes.axvline(track.calibration_weeks, color="grey", linestyle=":", label="End of calibration")
    axes.set_xlabel("Week")
    axes.set_ylabel("Cumulative repeat purchases")
    axes.set_title("Tracking cumulative repeat purchases")
    axes.legend(loc="upper left")
    figure.savefig(path, format="png", dpi=100)


def run_backtest(
    log_path: Path,
    calibration_end: date,
    holdout_end: date,
    out_dir: Path,
    churn_horizon_days: float = DEFAULT_CHURN_HORIZON_DAYS,
) -> BacktestResult:
    """Fit MBG/NBD, BG/NBD and Gamma-Gamma on the calibration period (inclusive), compare with the holdout, write
    the files. Churn risk is P(no purchase in the next `churn_horizon_days`), as scoring computes it.

    The model version is dated by calibration_end, the as-of date of the data, so a rerun gives the same version.
    """
    if holdout_end <= calibration_end:
        raise ValueError("the holdout must end after the calibration period")
    if not churn_horizon_days > 0:
        raise ValueError("the churn horizon must be positive")
    log = read_purchase_log(Path(log_path))
    cohort = lifetime.summarise_arrays(log.customer_id, log.day, log.amount, calibration_end)
    if len(cohort) == 0:
        raise ValueError(f"no customer was born on or before {calibration_end}")
    mbg = lifetime.fit_mbgnbd(cohort.x, cohort.t_x, cohort.T)
    bg = lifetime.fit_bgnbd(cohort.x, cohort.t_x, cohort.T)
    frequency, mean_spend = fitting.spend_sample(cohort)
    gg = lifetime.fit_gamma_gamma(frequency, mean_spend)
    version = lifetime.model_version(mbg, gg, calibration_end)

    holdout_weeks = (holdout_end - calibration_end).days / lifetime.DAYS_PER_WEEK
    expected = lifetime.mbgnbd_expected_purchases(mbg, holdout_weeks, cohort.x, cohort.t_x, cohort.T)
    bg_expected = lifetime.expected_purchases(bg, holdout_weeks, cohort.x, cohort.t_x, cohort.T)
    alive = lifetime.mbgnbd_probability_alive(mbg, cohort.x, cohort.t_x, cohort.T)
    churn_risk = lifetime.mbgnbd_probability_no_purchase(
        mbg, churn_horizon_days / lifetime.DAYS_PER_WEEK, cohort.x, cohort.t_x, cohort.T
    )
    # Over all x + 1 purchases, as the fit counts them. A customer whose purchases add up to nothing (or less, with
    # refunds) was left out of the fit, a gamma density having no mass there, but still gets the posterior mean of
    # a zero mean spend: shrunk below the population's, never negative.
    spend = lifetime.expected_spend(gg, cohort.x + 1, mean_spend)
    actual_purchases, actual_spend = holdout_actuals(log, cohort, calibration_end, holdout_end)

    result = BacktestResult(
        model_version=version,
        mbgnbd=mbg,
        bgnbd=bg,
        gamma_gamma=gg,
        customers=len(cohort),
        repeat_buyers=int(np.count_nonzero(cohort.x)),
        predicted_holdout_purchases=float(expected.sum()),
        bgnbd_predicted_holdout_purchases=float(bg_expected.sum()),
        actual_holdout_purchases=int(actual_purchases.sum()),
        predicted_holdout_spend=float((expected * spend).sum()),
        actual_holdout_spend=round(float(actual_spend.sum()), 2),
        mean_absolute_error=float(np.abs(expected - actual_purchases).mean()),
        churn=churn_ranking(cohort, mbg, bg, churn_risk, actual_purchases, churn_horizon_days),
        out_dir=Path(out_dir),
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "customer_id": cohort.customer_id,
            "x": cohort.x,
            "t_x": cohort.t_x,
            "T": cohort.T,
            "expected_holdout_purchases": expected,
            "probability_alive": alive,
            "churn_risk": churn_risk,
            "expected_spend": spend,
            "actual_holdout_purchases": actual_purchases,
            "actual_holdout_spend": actual_spend.round(2),
        },
        columns=list(PREDICTION_COLUMNS),
    ).to_csv(out / "predictions.csv", index=False)
    (out / "params.json").write_text(
        json.dumps(_params_document(result, log, cohort, calibration_end, holdout_end), indent=2) + "\n"
    )
    plot_tracking(tracking(log, cohort, mbg, bg, calibration_end, holdout_end), out / "tracking.png")
    return result


def _params_document(
    result: BacktestResult, log: PurchaseLog, cohort: CustomerSummaries, calibration_end: date, holdout_end: date
) -> dict[str, object]:
    churn = result.churn
    return {
        "model_version": result.model_version,
        "mbgnbd": asdict(result.mbgnbd),
        "bgnbd": asdict(result.bgnbd),
        "gamma_gamma": asdict(result.gamma_gamma),
        "periods": {
            "calibration": {"start": str(cohort.birth.min()), "end": calibration_end.isoformat()},
            "holdout": {"start": (calibration_end + timedelta(days=1)).isoformat(), "end": holdout_end.isoformat()},
            "holdout_weeks": (holdout_end - calibration_end).days / lifetime.DAYS_PER_WEEK,
            "time_unit": "week",
        },
        "counts": {
            "log_format": log.format,
            "transactions": len(log.day),
            "customers": result.customers,
            "repeat_buyers": result.repeat_buyers,
            "calibration_repeat_purchases": int(cohort.x.sum()),
            "holdout_purchases": result.actual_holdout_purchases,
        },
        "holdout": {
            "predicted_purchases": result.predicted_holdout_purchases,
            "bgnbd_predicted_purchases": result.bgnbd_predicted_holdout_purchases,
            "actual_purchases": result.actual_holdout_purchases,
            "predicted_spend": result.predicted_holdout_spend,
            "actual_spend": result.actual_holdout_spend,
            "mean_absolute_error": result.mean_absolute_error,
        },
        "churn": {
            "target": "no purchase in the holdout",
            "horizon_days": churn.horizon_days,
            "horizon_weeks": churn.horizon_days / lifetime.DAYS_PER_WEEK,
            "auc": {
                "churn_risk": churn.churn_risk_auc,
                "recency": churn.recency_auc,
                "mbgnbd_not_alive": churn.mbgnbd_not_alive_auc,
                "bgnbd_not_alive": churn.bgnbd_not_alive_auc,
            },
            "customers_without_holdout_purchase": churn.customers_without_holdout_purchase,
            "customers_with_holdout_purchase": churn.customers_with_holdout_purchase,
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="crm scoring backtest",
        description="Backtest the MBG/NBD, BG/NBD and Gamma-Gamma models and the churn risk on a purchase log.",
    )
    parser.add_argument("--log", type=Path, required=True, help="CDNOW sample or master file, or a CSV")
    parser.add_argument("--calibration-end", type=date.fromisoformat, required=True, help="last day fitted on")
    parser.add_argument("--holdout-end", type=date.fromisoformat, required=True, help="last day predicted")
    parser.add_argument("--out", type=Path, required=True, help="folder for params.json, predictions.csv, tracking.png")
    parser.add_argument(
        "--churn-horizon-days",
        type=float,
        default=DEFAULT_CHURN_HORIZON_DAYS,
        help=f"churn risk is P(no purchase in this many days); default {DEFAULT_CHURN_HORIZON_DAYS:g}",
    )
    args = parser.parse_args(argv)
    if args.holdout_end <= args.calibration_end:
        parser.error("--holdout-end must come after --calibration-end")
    if not args.churn_horizon_days > 0:
        parser.error("--churn-horizon-days must be positive")
    try:
        result = run_backtest(args.log, args.calibration_end, args.holdout_end, args.out, args.churn_horizon_days)
    except (OSError, ValueError) as exc:
        print(f"crm scoring backtest: {exc}", file=sys.stderr)
        return 2
    mbg, bg, gg, churn = result.mbgnbd, result.bgnbd, result.gamma_gamma, result.churn
    print(f"model {result.model_version}: {result.customers} customers, {result.repeat_buyers} repeat buyers")
    for name, fit in (("MBG/NBD", mbg), ("BG/NBD", bg)):
        print(
            f"{name} r={fit.r:.3f} alpha={fit.alpha:.3f} a={fit.a:.3f} b={fit.b:.3f} "
            f"(log-likelihood {fit.log_likelihood:.1f})"
        )
    print(
        f"Gamma-Gamma p={gg.p:.2f} q={gg.q:.2f} v={gg.v:.2f} (log-likelihood {gg.log_likelihood:.1f}; "
        "every purchase counted, the first included)"
    )
    print(
        f"holdout purchases: predicted {result.predicted_holdout_purchases:.1f} by MBG/NBD "
        f"({result.bgnbd_predicted_holdout_purchases:.1f} by BG/NBD), actual {result.actual_holdout_purchases}; "
        f"mean absolute error per customer {result.mean_absolute_error:.3f}"
    )
    print(f"holdout spend: predicted {result.predicted_holdout_spend:.2f}, actual {result.actual_holdout_spend:.2f}")
    print(
        f"churn AUC (no purchase in the holdout): churn risk {_shown(churn.churn_risk_auc)}, "
        f"recency alone {_shown(churn.recency_auc)}, 1 - P(alive) MBG/NBD {_shown(churn.mbgnbd_not_alive_auc)}, "
        f"BG/NBD {_shown(churn.bgnbd_not_alive_auc)}"
    )
    print(
        f"churn risk = P(no purchase in the next {churn.horizon_days:g} days); "
        f"{churn.customers_without_holdout_purchase} customers without a holdout purchase, "
        f"{churn.customers_with_holdout_purchase} with"
    )
    print(f"wrote params.json, predictions.csv, tracking.png to {result.out_dir}")
    return 0


def _shown(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    sys.exit(main())
