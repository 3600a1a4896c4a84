"""Fitting the customer-base models, and refusing a fit that cannot be trusted. Pure: no I/O.

A fit is used only when every check passes: enough customers and repeat buyers; the likelihood at a clear maximum
(a near-zero slope and a negative definite Hessian there); every parameter, spend taken relative to its mean,
within a sane range and known to a stated precision (its standard error from the Hessian); and a holdout check on
the base's own data: fitted on the first part of the period, MBG/NBD must predict the purchases of the rest within
a stated error. A refused fit carries every reason it failed, in words an operator can act on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import numpy.typing as npt

from crm_scoring import lifetime
from crm_scoring.lifetime import FitQuality, GammaGammaParams, MbgNbdParams


@dataclass(frozen=True)
class FitLimits:
    """What a fit must meet before scores use it (CRM_SCORING_MIN_FIT_* and CRM_SCORING_FIT_* settings)."""

    min_customers: int = 50
    min_repeat_buyers: int = 20
    parameter_range: tuple[float, float] = (1e-3, 1e4)
    max_relative_error: float = 1.0
    max_gradient: float = 1e-3
    holdout_share: float = 0.25
    min_holdout_purchases: int = 10
    max_holdout_error: float = 0.3

    def __post_init__(self) -> None:
        low, high = self.parameter_range
        if self.min_customers < 2 or self.min_repeat_buyers < 1:
            raise ValueError("a fit needs at least 2 customers and 1 repeat buyer")
        if not 0 < low < 1 < high or not self.max_relative_error > 0 or not self.max_gradient > 0:
            raise ValueError("parameter_range must surround 1, and the error and gradient limits be positive")
        if not 0 < self.holdout_share < 1 or self.min_holdout_purchases < 1 or not self.max_holdout_error > 0:
            raise ValueError("holdout_share must be in (0, 1), min_holdout_purchases and max_holdout_error positive")


@dataclass(frozen=True)
class HoldoutCheck:
    """MBG/NBD fitted on the customers' purchases up to `calibration_end`, against their purchases after it."""

    calibration_end: date
    holdout_weeks: float
    customers: int
    predicted_purchases: float
    actual_purchases: int

    @property
    def relative_error(self) -> float | None:
        if self.actual_purchases == 0:
            return None
        return abs(self.predicted_purchases - self.actual_purchases) / self.actual_purchases


@dataclass(frozen=True)
class BaseFit:
    """A fit of the customer-base models on the data up to `data_end`, and the checks it passed or failed."""

    data_end: date
    customers: int
    repeat_buyers: int
    mbgnbd: MbgNbdParams | None = None
    gamma_gamma: GammaGammaParams | None = None
    mbgnbd_quality: FitQuality | None = None
    gamma_gamma_quality: FitQuality | None = None
    spend_scale: float | None = None
    holdout: HoldoutCheck | None = None
    refusals: tuple[str, ...] = field(default=())

    @property
    def accepted(self) -> bool:
        return not self.refusals and self.mbgnbd is not None and self.gamma_gamma is not None


def spend_sample(summaries: lifetime.CustomerSummaries) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The Gamma-Gamma sample: every purchase counts, the first included (a one-time buyer's own order is evidence
    of what they spend); customers whose purchases add up to nothing are left out (weight 0)."""
    positive = summaries.mean_spend > 0
    return ((summaries.x + 1) * positive).astype(np.float64), np.where(positive, summaries.mean_spend, 0.0)


def _parameter_checks(
    model: str, params: dict[str, float], quality: FitQuality, limits: FitLimits, scaled: dict[str, float]
) -> list[str]:
    """Why the parameters of `model` cannot be trusted; `scaled` holds the scale-free value of a parameter whose
    own value is in money (v), for the range check."""
    reasons: list[str] = []
    low, high = limits.parameter_range
    for name, value in params.items():
        free = scaled.get(name, value)
        if not (math.isfinite(free) and low <= free <= high):
            shown = f"{name} = {value:.4g}" + (f" ({free:.4g} times the mean spend)" if name in scaled else "")
            reasons.append(
                f"{model}: {shown} is outside [{low:g}, {high:g}]: the fit ran to the edge of what the data can "
                "tell (e.g. every customer alike)"
            )
    if not quality.maximum or quality.gradient > limits.max_gradient:
        hessian = "negative definite" if quality.maximum else "not negative definite"
        reasons.append(
            f"{model}: the fit did not converge to a maximum of the likelihood (largest slope {quality.gradient:.2g}"
            f", at most {limits.max_gradient:g}; Hessian {hessian})"
        )
    for name, error in (quality.relative_errors or {}).items():
        if not error <= limits.max_relative_error:
            reasons.append(
                f"{model}: {name} is known only to {error:.0%} of its value (standard error from the Hessian; at most "
                f"{limits.max_relative_error:.0%}): too few customers to tell"
            )
    return reasons


def holdout_check(
    customer_ids: npt.ArrayLike, days: npt.ArrayLike, data_end: date, limits: FitLimits
) -> tuple[HoldoutCheck | None, list[str]]:
    """Fit MBG/NBD on the first part of the period and predict the purchases of the rest (the last holdout_share
    of the time from the first purchase to `data_end`)."""
    day = np.asarray(days, dtype="datetime64[D]")
    ids = np.asarray(customer_ids)
    first = day.min().astype(date)
    span_days = (data_end - first).days
    holdout_days = math.floor(span_days * limits.holdout_share)
    if holdout_days < 7:
        return None, [f"holdout check: the orders span {span_days} days, too short to keep a holdout of a week or more"]
    calibration_end = data_end - timedelta(days=holdout_days)
    cohort = lifetime.summarise_arrays(ids, day, np.ones(len(day)), calibration_end)
    later = (day > np.datetime64(calibration_end)) & np.isin(ids, cohort.customer_id)
    # Purchases on the same day are one purchase, as in the summaries.
    buyer = np.unique(ids[later], return_inverse=True)[1]
    actual = len(np.unique(np.column_stack((buyer, day[later].astype(np.int64))), axis=0)) if later.any() else 0
    if actual < limits.min_holdout_purchases:
        return None, [
            f"holdout check: {actual} purchases after {calibration_end} by the customers known then; the check needs "
            f"at least {limits.min_holdout_purchases} (CRM_SCORING_FIT_MIN_HOLDOUT_PURCHASES)"
        ]
    weeks = holdout_days / lifetime.DAYS_PER_WEEK
    try:
        params = lifetime.fit_mbgnbd(cohort.x, cohort.t_x, cohort.T)
    except ValueError as exc:
        return None, [f"holdout check: MBG/NBD could not be fitted on the purchases up to {calibration_end}: {exc}"]
    predicted = float(lifetime.mbgnbd_expected_purchases(params, weeks, cohort.x, cohort.t_x, cohort.T).sum())
    check = HoldoutCheck(calibration_end, weeks, len(cohort), predicted, actual)
    error = check.relative_error
    if error is None or not math.isfinite(predicted) or error > limits.max_holdout_error:
        shown = "an undefined error" if error is None or not math.isfinite(predicted) else f"{error:.0%}"
        return check, [
            f"holdout check: fitted up to {calibration_end}, MBG/NBD predicts {predicted:.1f} purchases in the "
            f"{weeks:.1f} weeks after, where there were {actual} ({shown}; at most {limits.max_holdout_error:.0%}, "
            "CRM_SCORING_FIT_MAX_HOLDOUT_ERROR)"
        ]
    return check, []


def fit_customer_base(
    customer_ids: npt.ArrayLike, days: npt.ArrayLike, amounts: npt.ArrayLike, data_end: date, limits: FitLimits
) -> BaseFit:
    """Fit MBG/NBD and Gamma-Gamma on the purchases up to `data_end` and check them (see the module's doc)."""
    summaries = lifetime.summarise_arrays(customer_ids, days, amounts, data_end)
    customers, repeat_buyers = len(summaries), int(np.count_nonzero(summaries.x))
    base = BaseFit(data_end, customers, repeat_buyers)
    if customers < limits.min_customers:
        return _refused(
            base,
            f"{customers} customers have ordered; fitting needs at least {limits.min_customers} "
            "(CRM_SCORING_MIN_FIT_CUSTOMERS)",
        )
    if repeat_buyers < limits.min_repeat_buyers:
        return _refused(
            base,
            f"{repeat_buyers} customers bought again on a later day; fitting needs at least "
            f"{limits.min_repeat_buyers} (CRM_SCORING_MIN_FIT_REPEAT_BUYERS)",
        )
    frequency, mean_spend = spend_sample(summaries)
    if not np.any(frequency > 0):
        return _refused(base, "no customer's orders add up to a positive amount: the spend model has nothing to fit")
    try:
        purchases = lifetime.fit_mbgnbd(summaries.x, summaries.t_x, summaries.T)
        spend = lifetime.fit_gamma_gamma(frequency, mean_spend)
    except ValueError as exc:
        return _refused(base, f"the likelihood could not be maximised: {exc}")
    purchases_quality = lifetime.mbgnbd_quality(purchases, summaries.x, summaries.t_x, summaries.T)
    spend_quality = lifetime.gamma_gamma_quality(spend, frequency, mean_spend)
    weight = frequency > 0
    scale = float(mean_spend[weight].mean())
    reasons = _parameter_checks(
        "MBG/NBD",
        {"r": purchases.r, "alpha": purchases.alpha, "a": purchases.a, "b": purchases.b},
        purchases_quality,
        limits,
        {},
    )
    reasons += _parameter_checks(
        "Gamma-Gamma", {"p": spend.p, "q": spend.q, "v": spend.v}, spend_quality, limits, {"v": spend.v / scale}
    )
    if not spend.q > 1:
        reasons.append(f"Gamma-Gamma: q = {spend.q:.4g} is at most 1, so the mean spend per purchase is infinite")
    holdout, holdout_reasons = holdout_check(customer_ids, days, data_end, limits)
    return BaseFit(
        data_end,
        customers,
        repeat_buyers,
        purchases,
        spend,
        purchases_quality,
        spend_quality,
        scale,
        holdout,
        tuple(reasons + holdout_reasons),
    )


def _refused(base: BaseFit, reason: str) -> BaseFit:
    return BaseFit(base.data_end, base.customers, base.repeat_buyers, refusals=(reason,))


def moved_beyond(
    in_force: tuple[MbgNbdParams, GammaGammaParams], candidate: tuple[MbgNbdParams, GammaGammaParams], tolerance: float
) -> list[str]:
    """The parameters of `candidate` that differ from those in force by more than `tolerance` of their value."""
    names = {"mbgnbd": ("r", "alpha", "a", "b"), "gamma_gamma": ("p", "q", "v")}
    moved: list[str] = []
    for (model, fields), old, new in zip(names.items(), in_force, candidate, strict=True):
        for name in fields:
            before, after = getattr(old, name), getattr(new, name)
            if abs(after - before) > tolerance * abs(before):
                moved.append(f"{model}.{name}")
    return moved
