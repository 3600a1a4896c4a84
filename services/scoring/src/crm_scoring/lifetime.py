"""Customer-base models: how many more purchases a customer will make, and what each will be worth.

MBG/NBD (Batislam, Denizel and Filiztekin 2007, "Empirical validation and comparison of models for customer base
analysis", International Journal of Research in Marketing 24(3)) for the purchase process, and Gamma-Gamma (Fader,
Hardie and Lee 2005, "RFM and CLV", Journal of Marketing Research 42(4)) for the spend per purchase. BG/NBD (Fader,
Hardie and Lee 2005, "Counting Your Customers the Easy Way", Marketing Science 24(2)) is kept beside MBG/NBD: it is
the published reference the backtest compares with. Scoring uses MBG/NBD because BG/NBD lets a customer drop out
only after a repeat purchase, so it calls every one-time buyer alive however long they have been silent (half of
the CDNOW base); MBG/NBD lets a customer drop out right after any purchase, the first included, with the same four
parameters and closed forms. Pure: numpy and scipy only, no I/O.

Time is in weeks from each customer's birth (their first purchase, which is not a repeat). Purchases on the
same day are one purchase whose amount is their sum, as in the paper's CDNOW data. Amounts are floats here: the
models are statistical estimates, not ledgers, so the Decimal rule for money stops at this module's boundary.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.differentiate import hessian, jacobian
from scipy.optimize import minimize
from scipy.special import expit, gammaln, hyp2f1

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

DAYS_PER_WEEK = 7.0
WEEKS_PER_YEAR = 365.25 / 7.0
MONTH_IN_WEEKS = WEEKS_PER_YEAR / 12.0

Transaction = tuple[Any, date | datetime, float | int | Decimal]


@dataclass(frozen=True)
class PurchaseSummary:
    """One customer's calibration-period history, in weeks from their birth."""

    customer_id: Any
    x: int
    t_x: float
    T: float
    mean_repeat_spend: float
    mean_spend: float = 0.0


@dataclass(frozen=True)
class CustomerSummaries:
    """The summaries of many customers as parallel arrays, sorted by customer id.

    `mean_repeat_spend` is 0.0 for a customer with no repeat purchase: every formula here weighs it by x.
    `mean_spend` is the mean over all x + 1 purchases, the first included.
    """

    customer_id: npt.NDArray[Any]
    birth: npt.NDArray[np.datetime64]
    x: IntArray
    t_x: FloatArray
    T: FloatArray
    mean_repeat_spend: FloatArray
    mean_spend: FloatArray

    def __len__(self) -> int:
        return len(self.customer_id)

    def __iter__(self) -> Iterator[PurchaseSummary]:
        for i in range(len(self)):
            customer_id = self.customer_id[i]
            yield PurchaseSummary(
                customer_id=customer_id.item() if isinstance(customer_id, np.generic) else customer_id,
                x=int(self.x[i]),
                t_x=float(self.t_x[i]),
                T=float(self.T[i]),
                mean_repeat_spend=float(self.mean_repeat_spend[i]),
                mean_spend=float(self.mean_spend[i]),
            )


@dataclass(frozen=True)
class BgNbdParams:
    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float


@dataclass(frozen=True)
class MbgNbdParams:
    """MBG/NBD: purchases at a gamma(r, alpha)-distributed rate; after each purchase, the first included, the
    customer drops out with a beta(a, b)-distributed probability."""

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float


@dataclass(frozen=True)
class GammaGammaParams:
    p: float
    q: float
    v: float
    log_likelihood: float


@dataclass(frozen=True)
class FitQuality:
    """How far a maximum-likelihood fit can be trusted, from the likelihood's shape at the parameters.

    `gradient` is the largest slope of the mean log-likelihood along the parameters' logs (near 0 at a maximum);
    `maximum` whether the Hessian there is negative definite; `relative_errors` each parameter's standard error
    over its value (the standard error of its log, from the inverse Hessian), None when it is not a maximum.
    """

    gradient: float
    maximum: bool
    relative_errors: dict[str, float] | None

    def standard_errors(self, params: dict[str, float]) -> dict[str, float] | None:
        """Each parameter's standard error by the delta method: value x relative error."""
        if self.relative_errors is None:
            return None
        return {name: params[name] * error for name, error in self.relative_errors.items()}


def purchase_day(when: date | datetime) -> date:
    """The calendar day of a purchase; an aware datetime is taken in UTC."""
    if isinstance(when, datetime):
        return when.astimezone(UTC).date() if when.tzinfo is not None else when.date()
    return when


def merge_same_day(
    customer_index: IntArray, day: IntArray, amount: FloatArray
) -> tuple[IntArray, IntArray, FloatArray]:
    """One purchase per customer and day, with the day's amounts added; sorted by customer, then day."""
    order = np.lexsort((day, customer_index))
    customer_index, day, amount = customer_index[order], day[order], amount[order]
    if len(order) == 0:
        return customer_index, day, amount
    starts = np.flatnonzero(np.concatenate(([True], (np.diff(customer_index) != 0) | (np.diff(day) != 0))))
    return customer_index[starts], day[starts], np.add.reduceat(amount, starts)


def summarise_arrays(
    customer_ids: npt.ArrayLike,
    days: npt.ArrayLike,
    amounts: npt.ArrayLike,
    calibration_end: date,
) -> CustomerSummaries:
    """Summaries of the customers born on or before `calibration_end`, from their purchases up to it (inclusive).

    `days` is anything numpy reads as datetime64[D]; purchases after `calibration_end` are ignored.
    """
    ids = np.asarray(customer_ids)
    day = np.asarray(days, dtype="datetime64[D]").astype(np.int64)
    amount = np.asarray(amounts, dtype=np.float64)
    end = np.datetime64(calibration_end, "D").astype(np.int64)
    in_period = day <= end
    ids, day, amount = ids[in_period], day[in_period], amount[in_period]
    unique_ids, customer_index = np.unique(ids, return_inverse=True)
    customer, day, amount = merge_same_day(customer_index.astype(np.int64), day, amount)

    starts = np.flatnonzero(np.concatenate(([True], np.diff(customer) != 0))) if len(customer) else np.array([], int)
    n_days = np.diff(np.append(starts, len(customer)))
    birth = day[starts]
    last = day[starts + n_days - 1]
    total = np.add.reduceat(amount, starts) if len(customer) else np.array([], np.float64)
    x = (n_days - 1).astype(np.int64)
    repeat_total = total - amount[starts]
    mean_repeat_spend = np.divide(repeat_total, x, out=np.zeros(len(x)), where=x > 0)
    return CustomerSummaries(
        customer_id=unique_ids,
        birth=birth.astype("datetime64[D]"),
        x=x,
        t_x=(last - birth) / DAYS_PER_WEEK,
        T=(end - birth) / DAYS_PER_WEEK,
        mean_repeat_spend=mean_repeat_spend,
        mean_spend=total / (x + 1),
    )


def summarise(transactions: Iterable[Transaction], calibration_end: date) -> CustomerSummaries:
    """Summaries from (customer id, date or datetime, amount) transactions; see `summarise_arrays`."""
    rows = list(transactions)
    return summarise_arrays(
        [row[0] for row in rows],
        np.array([purchase_day(row[1]) for row in rows], dtype="datetime64[D]"),
        np.array([float(row[2]) for row in rows], dtype=np.float64),
        calibration_end,
    )


def _as_float(values: npt.ArrayLike) -> FloatArray:
    return np.asarray(values, dtype=np.float64)


def _compress(*columns: FloatArray) -> tuple[list[FloatArray], FloatArray]:
    """The distinct rows of the columns and how often each occurs: the likelihood is a weighted sum over them."""
    rows, counts = np.unique(np.column_stack(columns), axis=0, return_counts=True)
    return [rows[:, i] for i in range(rows.shape[1])], counts.astype(np.float64)


def bgnbd_log_likelihoods(
    r: float, alpha: float, a: float, b: float, x: npt.ArrayLike, t_x: npt.ArrayLike, T: npt.ArrayLike
) -> FloatArray:
    """Each customer's BG/NBD log-likelihood (eq. 6 of the paper, in logs)."""
    x, t_x, T = _as_float(x), _as_float(t_x), _as_float(T)
    ln_a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    ln_a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
    ln_a3 = -(r + x) * np.log(alpha + T)
    repeat = x > 0
    # b + x - 1 may be negative when x == 0: that term is absent then, so keep it out of the log.
    ln_a4 = np.where(
        repeat,
        np.log(a) - np.log(np.where(repeat, b + x - 1, 1.0)) - (r + x) * np.log(alpha + t_x),
        -np.inf,
    )
    return np.asarray(ln_a1 + ln_a2 + np.logaddexp(ln_a3, ln_a4), dtype=np.float64)


def fit_bgnbd(x: npt.ArrayLike, t_x: npt.ArrayLike, T: npt.ArrayLike) -> BgNbdParams:
    """Maximum-likelihood BG/NBD parameters (optimised on their logs, so they stay positive)."""
    (ux, ut_x, uT), weight = _compress(_as_float(x), _as_float(t_x), _as_float(T))
    n = weight.sum()

    def negative_mean_ll(log_params: FloatArray) -> float:
        r, alpha, a, b = np.exp(log_params)
        return float(-np.dot(weight, bgnbd_log_likelihoods(r, alpha, a, b, ux, ut_x, uT)) / n)

    log_params = _maximise(negative_mean_ll, np.zeros(4))
    r, alpha, a, b = (float(v) for v in np.exp(log_params))
    return BgNbdParams(r, alpha, a, b, log_likelihood=float(-negative_mean_ll(log_params) * n))


def _maximise(negative_mean_ll: Any, start: FloatArray) -> FloatArray:
    """Nelder-Mead to get near the optimum from anywhere, then L-BFGS-B to settle it precisely."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        rough = minimize(negative_mean_ll, start, method="Nelder-Mead", options={"xatol": 1e-6, "fatol": 1e-10})
        fine = minimize(negative_mean_ll, rough.x, method="L-BFGS-B", options={"ftol": 1e-14, "gtol": 1e-9})
    best = fine if fine.fun <= rough.fun else rough
    if not np.isfinite(best.fun):
        raise ValueError("the likelihood could not be maximised: check the data")
    return np.asarray(best.x, dtype=np.float64)


def _quality(negative_mean_ll: Any, log_params: FloatArray, names: tuple[str, ...], n: float) -> FitQuality:
    """Gradient and Hessian of the mean log-likelihood at `log_params`, by scipy's adaptive finite differences."""

    def vectorised(points: FloatArray) -> FloatArray:
        flat = points.reshape(points.shape[0], -1)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            values = np.array([negative_mean_ll(flat[:, i]) for i in range(flat.shape[1])])
        return values.reshape(points.shape[1:])

    at = np.asarray(log_params, dtype=np.float64)
    # Central differences of a fixed step in the parameters' logs: at an optimum the likelihood is smooth, and
    # the adaptive refinement scipy does by default costs ten times the evaluations for digits no check needs.
    steps = {"initial_step": 1e-3, "order": 2, "maxiter": 1}
    gradient = jacobian(vectorised, at, **steps).df
    curvature = hessian(vectorised, at, **steps).ddf
    steepest = float(np.max(np.abs(gradient))) if np.all(np.isfinite(gradient)) else math.inf
    if not np.all(np.isfinite(curvature)):
        return FitQuality(steepest, False, None)
    curvature = (curvature + curvature.T) / 2
    if np.linalg.eigvalsh(curvature).min() <= 0:
        return FitQuality(steepest, False, None)
    try:
        variances = np.diag(np.linalg.inv(curvature * n))
    except np.linalg.LinAlgError:
        # Positive eigenvalues can still be too small to invert in floating point: as flat as not curved at all.
        return FitQuality(steepest, False, None)
    return FitQuality(steepest, True, {name: float(math.sqrt(v)) for name, v in zip(names, variances, strict=True)})


def expected_purchases(
    params: BgNbdParams, t: npt.ArrayLike, x: npt.ArrayLike, t_x: npt.ArrayLike, T: npt.ArrayLike
) -> FloatArray:
    """E[Y(t) | x, t_x, T]: expected purchases in the next t weeks of a customer so far seen (eq. 10)."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    t, x, t_x, T = _as_float(t), _as_float(x), _as_float(t_x), _as_float(T)
    ln_ratio = (r + x) * np.log((alpha + T) / (alpha + T + t))
    tail = 1.0 - np.exp(ln_ratio) * hyp2f1(r + x, b + x, a + b + x - 1.0, t / (alpha + T + t))
    return np.asarray((a + b + x - 1.0) / (a - 1.0) * tail * probability_alive(params, x, t_x, T), dtype=np.float64)


def expected_purchases_from_birth(params: BgNbdParams, t: npt.ArrayLike) -> FloatArray:
    """E[X(t)]: expected repeat purchases of a new customer in their first t weeks (eq. 9)."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    t = _as_float(t)
    ln_ratio = r * np.log(alpha / (alpha + t))
    value = (a + b - 1.0) / (a - 1.0) * (1.0 - np.exp(ln_ratio) * hyp2f1(r, b, a + b - 1.0, t / (alpha + t)))
    return np.asarray(value, dtype=np.float64)


def probability_alive(params: BgNbdParams, x: npt.ArrayLike, t_x: npt.ArrayLike, T: npt.ArrayLike) -> FloatArray:
    """P(alive | x, t_x, T). A customer with no repeat purchase cannot have dropped out yet: 1."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    x, t_x, T = _as_float(x), _as_float(t_x), _as_float(T)
    repeat = x > 0
    safe_b = np.where(repeat, b + x - 1.0, 1.0)
    ln_odds_dead = np.log(a) - np.log(safe_b) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
    return np.asarray(np.where(repeat, expit(-ln_odds_dead), 1.0), dtype=np.float64)


def mbgnbd_log_likelihoods(
    r: float, alpha: float, a: float, b: float, x: npt.ArrayLike, t_x: npt.ArrayLike, T: npt.ArrayLike
) -> FloatArray:
    """Each customer's MBG/NBD log-likelihood: alive at T after x repeat purchases, or dropped out at the last one.

    Unlike BG/NBD, the customer may drop out right after the first purchase, so both terms are there for x == 0.
    """
    x, t_x, T = _as_float(x), _as_float(t_x), _as_float(T)
    gamma_part = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    beta_part = gammaln(a + b) + gammaln(b + x + 1) - gammaln(b) - gammaln(a + b + x + 1)
    alive = -(r + x) * np.log(alpha + T)
    dropped = np.log(a) - np.log(b + x) - (r + x) * np.log(alpha + t_x)
    return np.asarray(gamma_part + beta_part + np.logaddexp(alive, dropped), dtype=np.float64)


def _mbgnbd_objective(x: FloatArray, t_x: FloatArray, T: FloatArray, weight: FloatArray) -> Any:
    n = weight.sum()

    def negative_mean_ll(log_params: FloatArray) -> float:
        r, alpha, a, b = np.exp(log_params)
        return float(-np.dot(weight, mbgnbd_log_likelihoods(r, alpha, a, b, x, t_x, T)) / n)

    return negative_mean_ll


def fit_mbgnbd(x: npt.ArrayLike, t_x: npt.ArrayLike, T: npt.ArrayLike) -> MbgNbdParams:
    """Maximum-likelihood MBG/NBD parameters (optimised on their logs, so they stay positive)."""
    (ux, ut_x, uT), weight = _compress(_as_float(x), _as_float(t_x), _as_float(T))
    objective = _mbgnbd_objective(ux, ut_x, uT, weight)
    log_params = _maximise(objective, np.zeros(4))
    r, alpha, a, b = (float(v) for v in np.exp(log_params))
    return MbgNbdParams(r, alpha, a, b, log_likelihood=float(-objective(log_params) * weight.sum()))


def mbgnbd_quality(params: MbgNbdParams, x: npt.ArrayLike, t_x: npt.ArrayLike, T: npt.ArrayLike) -> FitQuality:
    """The quality of an MBG/NBD fit on the same data (see FitQuality)."""
    (ux, ut_x, uT), weight = _compress(_as_float(x), _as_float(t_x), _as_float(T))
    at = np.log([params.r, params.alpha, params.a, params.b])
    return _quality(_mbgnbd_objective(ux, ut_x, uT, weight), at, ("r", "alpha", "a", "b"), float(weight.sum()))


def mbgnbd_probability_alive(
    params: MbgNbdParams, x: npt.ArrayLike, t_x: npt.ArrayLike, T: npt.ArrayLike
) -> FloatArray:
    """P(alive | x, t_x, T) under MBG/NBD: below 1 for every customer, and falling with silence (T - t_x)."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    x, t_x, T = _as_float(x), _as_float(t_x), _as_float(T)
    ln_odds_dead = np.log(a) - np.log(b + x) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
    return np.asarray(expit(-ln_odds_dead), dtype=np.float64)


def mbgnbd_expected_purchases(
    params: MbgNbdParams, t: npt.ArrayLike, x: npt.ArrayLike, t_x: npt.ArrayLike, T: npt.ArrayLike
) -> FloatArray:
    """E[Y(t) | x, t_x, T] under MBG/NBD: expected purchases in the next t weeks of a customer so far seen."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    t, x, t_x, T = _as_float(t), _as_float(x), _as_float(t_x), _as_float(T)
    ln_ratio = (r + x) * np.log((alpha + T) / (alpha + T + t))
    tail = 1.0 - np.exp(ln_ratio) * hyp2f1(r + x, b + x + 1.0, a + b + x, t / (alpha + T + t))
    alive = mbgnbd_probability_alive(params, x, t_x, T)
    return np.asarray((a + b + x) / (a - 1.0) * tail * alive, dtype=np.float64)


def mbgnbd_expected_purchases_from_birth(params: MbgNbdParams, t: npt.ArrayLike) -> FloatArray:
    """E[X(t)] under MBG/NBD: expected repeat purchases of a new customer in their first t weeks."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    t = _as_float(t)
    ln_ratio = r * np.log(alpha / (alpha + t))
    value = b / (a - 1.0) * (1.0 - np.exp(ln_ratio) * hyp2f1(r, b + 1.0, a + b, t / (alpha + t)))
    return np.asarray(value, dtype=np.float64)


def mbgnbd_probability_no_purchase(
    params: MbgNbdParams, t: npt.ArrayLike, x: npt.ArrayLike, t_x: npt.ArrayLike, T: npt.ArrayLike
) -> FloatArray:
    """P(no purchase in the next t weeks | x, t_x, T): dropped out already, or alive and not buying for t weeks.

    A customer alive at T who makes no purchase cannot drop out (that happens only at a purchase), and their rate's
    posterior given alive is gamma(r + x, alpha + T), so P(none in t | alive) = ((alpha + T) / (alpha + T + t))^(r+x).
    It rises with silence for every customer, one-time buyers included.
    """
    r, alpha = params.r, params.alpha
    t, x, t_x, T = _as_float(t), _as_float(x), _as_float(t_x), _as_float(T)
    quiet_if_alive = np.exp((r + x) * np.log((alpha + T) / (alpha + T + t)))
    alive = mbgnbd_probability_alive(params, x, t_x, T)
    return np.asarray(1.0 - alive * (1.0 - quiet_if_alive), dtype=np.float64)


def gamma_gamma_log_likelihoods(
    p: float, q: float, v: float, frequency: npt.ArrayLike, mean_spend: npt.ArrayLike
) -> FloatArray:
    """Each repeat buyer's log-density of their mean spend over x purchases under the Gamma-Gamma model."""
    x, z = _as_float(frequency), _as_float(mean_spend)
    px = p * x
    value = (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(v)
        + (px - 1.0) * np.log(z)
        + px * np.log(x)
        - (px + q) * np.log(v + x * z)
    )
    return np.asarray(value, dtype=np.float64)


def fit_gamma_gamma(frequency: npt.ArrayLike, mean_spend: npt.ArrayLike) -> GammaGammaParams:
    """Maximum-likelihood Gamma-Gamma parameters on the customers with x > 0; the others are left out.

    `frequency` is how many purchases `mean_spend` is the mean of: the repeat purchases in the paper, every purchase
    (the first included) in scoring. Spend is divided by its mean for the fit, so the optimiser starts near the
    answer in any currency and v is bounded on a scale-free value; v is returned in the money's own unit.
    """
    x, z = _as_float(frequency), _as_float(mean_spend)
    buyers = x > 0
    if not np.any(buyers):
        raise ValueError("the Gamma-Gamma model needs at least one repeat buyer")
    if np.any(z[buyers] <= 0):
        raise ValueError("the Gamma-Gamma model needs a positive mean spend for every repeat buyer")
    (ux, uz), weight = _compress(x[buyers], z[buyers])
    scale = float(np.dot(weight, uz) / weight.sum())
    log_params = _maximise(_gamma_gamma_objective(ux, uz / scale, weight), np.zeros(3))
    p, q, v_scaled = (float(value) for value in np.exp(log_params))
    v = v_scaled * scale
    log_likelihood = float(np.dot(weight, gamma_gamma_log_likelihoods(p, q, v, ux, uz)))
    return GammaGammaParams(p, q, v, log_likelihood=log_likelihood)


def _gamma_gamma_objective(x: FloatArray, z: FloatArray, weight: FloatArray) -> Any:
    n = weight.sum()

    def negative_mean_ll(log_params: FloatArray) -> float:
        p, q, v = np.exp(log_params)
        return float(-np.dot(weight, gamma_gamma_log_likelihoods(p, q, v, x, z)) / n)

    return negative_mean_ll


def gamma_gamma_quality(params: GammaGammaParams, frequency: npt.ArrayLike, mean_spend: npt.ArrayLike) -> FitQuality:
    """The quality of a Gamma-Gamma fit on the same data (see FitQuality); v on the fit's scale-free value."""
    x, z = _as_float(frequency), _as_float(mean_spend)
    buyers = (x > 0) & (z > 0)
    (ux, uz), weight = _compress(x[buyers], z[buyers])
    scale = float(np.dot(weight, uz) / weight.sum())
    at = np.log([params.p, params.q, params.v / scale])
    return _quality(_gamma_gamma_objective(ux, uz / scale, weight), at, ("p", "q", "v"), float(weight.sum()))


def expected_spend(params: GammaGammaParams, x: npt.ArrayLike, mean_spend: npt.ArrayLike) -> FloatArray:
    """E[M | p, q, v, mean spend, x]: a weighted mean of the population mean p v / (q - 1) and the customer's own.

    With x == 0 this is the population mean, whatever `mean_spend` holds.
    """
    p, q, v = params.p, params.q, params.v
    x, z = _as_float(x), _as_float(mean_spend)
    return np.asarray((v + x * z) * p / (p * x + q - 1.0), dtype=np.float64)


def discounted_purchases(
    params: BgNbdParams | MbgNbdParams,
    x: npt.ArrayLike,
    t_x: npt.ArrayLike,
    T: npt.ArrayLike,
    horizon_weeks: float,
    annual_discount_rate: float,
    step_weeks: float = MONTH_IN_WEEKS,
) -> FloatArray:
    """Expected purchases over the next `horizon_weeks`, each discounted to today; times the expected spend per
    purchase it is the discounted lifetime value (the spend model takes spend independent of the purchases).

    The approximation: the horizon is cut into steps of `step_weeks` (a month by default); the purchases
    expected in step k are E[Y(t_k)] - E[Y(t_{k-1})], each discounted as if made at the step's end, by
    (1 + annual_discount_rate) ** (t_k / weeks per year).
    """
    if horizon_weeks <= 0 or step_weeks <= 0:
        raise ValueError("horizon_weeks and step_weeks must be positive")
    expected = mbgnbd_expected_purchases if isinstance(params, MbgNbdParams) else expected_purchases
    x, t_x, T = _as_float(x), _as_float(t_x), _as_float(T)
    steps = np.minimum(np.arange(1, math.ceil(horizon_weeks / step_weeks) + 1) * step_weeks, horizon_weeks)
    purchases = np.zeros(np.broadcast(x, t_x, T).shape)
    previous = np.zeros_like(purchases)
    for end in steps:
        cumulative = expected(params, end, x, t_x, T)  # type: ignore[arg-type]
        purchases += (cumulative - previous) / (1.0 + annual_discount_rate) ** (end / WEEKS_PER_YEAR)
        previous = cumulative
    return np.asarray(purchases, dtype=np.float64)


def model_version(purchases: MbgNbdParams, spend: GammaGammaParams, fitted_on: date) -> str:
    """A version naming the fit: "mbgnbd-gg-<YYYYMMDD>-<8 hex of the parameters rounded to 6 significant digits>"."""
    params = {
        "r": purchases.r,
        "alpha": purchases.alpha,
        "a": purchases.a,
        "b": purchases.b,
        "p": spend.p,
        "q": spend.q,
        "v": spend.v,
    }
    rounded = {name: float(f"{value:.6g}") for name, value in params.items()}
    digest = hashlib.sha256(json.dumps(rounded, sort_keys=True).encode()).hexdigest()[:8]
    return f"mbgnbd-gg-{fitted_on:%Y%m%d}-{digest}"
