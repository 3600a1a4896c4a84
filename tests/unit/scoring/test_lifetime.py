"""BG/NBD, MBG/NBD and Gamma-Gamma: the published CDNOW fits, and the formulas against independent transcriptions
and numerical integrations."""

import functools
import math
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from scipy.integrate import quad

from crm_scoring import fitting, lifetime
from crm_scoring.lifetime import BgNbdParams, CustomerSummaries, GammaGammaParams, MbgNbdParams

CDNOW = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "cdnow"
CALIBRATION_END = date(1997, 9, 30)

# Fader, Hardie and Lee (2005), as quoted in the data set's README.
PUBLISHED_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PUBLISHED_BGNBD_LOG_LIKELIHOOD = -9582.4
PUBLISHED_GAMMA_GAMMA = {"p": 6.25, "q": 3.74, "v": 15.44}
# BTYDplus (Platzer), its MBG/NBD fit of the same sample and calibration period.
PUBLISHED_MBGNBD = {"r": 0.525, "alpha": 6.183, "a": 0.891, "b": 1.614}

PARAMS = BgNbdParams(r=0.5, alpha=3.0, a=0.8, b=2.5, log_likelihood=0.0)
MBG_PARAMS = MbgNbdParams(r=0.5, alpha=3.0, a=0.8, b=2.5, log_likelihood=0.0)


def read_sample_transactions() -> list[tuple[str, date, float]]:
    transactions = []
    for line in (CDNOW / "CDNOW_sample.txt").read_text().splitlines():
        master_id, _sample_id, day, _cds, dollars = line.split()
        transactions.append((master_id, datetime.strptime(day, "%Y%m%d").date(), float(dollars)))
    return transactions


@pytest.fixture(scope="module")
def cdnow() -> CustomerSummaries:
    return lifetime.summarise(read_sample_transactions(), CALIBRATION_END)


@pytest.fixture(scope="module")
def cdnow_bgnbd(cdnow: CustomerSummaries) -> BgNbdParams:
    return lifetime.fit_bgnbd(cdnow.x, cdnow.t_x, cdnow.T)


def test_the_bgnbd_fit_on_cdnow_reproduces_the_published_parameters(
    cdnow: CustomerSummaries, cdnow_bgnbd: BgNbdParams
) -> None:
    assert len(cdnow) == 2357
    for name, published in PUBLISHED_BGNBD.items():
        assert getattr(cdnow_bgnbd, name) == pytest.approx(published, rel=0.01), name
    assert cdnow_bgnbd.log_likelihood == pytest.approx(PUBLISHED_BGNBD_LOG_LIKELIHOOD, rel=0.001)


def test_the_mbgnbd_fit_on_cdnow_reproduces_btydpluss_parameters(cdnow: CustomerSummaries) -> None:
    fitted = lifetime.fit_mbgnbd(cdnow.x, cdnow.t_x, cdnow.T)
    for name, published in PUBLISHED_MBGNBD.items():
        assert getattr(fitted, name) == pytest.approx(published, rel=0.01), name
    at_fit = lifetime.mbgnbd_log_likelihoods(fitted.r, fitted.alpha, fitted.a, fitted.b, cdnow.x, cdnow.t_x, cdnow.T)
    assert at_fit.sum() == pytest.approx(fitted.log_likelihood, rel=1e-12)


def test_the_gamma_gamma_fit_on_cdnow_reproduces_the_published_parameters(cdnow: CustomerSummaries) -> None:
    fitted = lifetime.fit_gamma_gamma(cdnow.x, cdnow.mean_repeat_spend)
    for name, published in PUBLISHED_GAMMA_GAMMA.items():
        assert getattr(fitted, name) == pytest.approx(published, rel=0.01), name


def test_the_fit_is_a_maximum_of_the_likelihood(cdnow: CustomerSummaries, cdnow_bgnbd: BgNbdParams) -> None:
    best = (cdnow_bgnbd.r, cdnow_bgnbd.alpha, cdnow_bgnbd.a, cdnow_bgnbd.b)
    at_best = lifetime.bgnbd_log_likelihoods(*best, cdnow.x, cdnow.t_x, cdnow.T).sum()
    assert at_best == pytest.approx(cdnow_bgnbd.log_likelihood, rel=1e-12)
    for i in range(4):
        for factor in (0.98, 1.02):
            r, alpha, a, b_ = (value * factor if j == i else value for j, value in enumerate(best))
            assert lifetime.bgnbd_log_likelihoods(r, alpha, a, b_, cdnow.x, cdnow.t_x, cdnow.T).sum() < at_best


def direct_bgnbd_log_likelihood(r: float, alpha: float, a: float, b: float, x: int, t_x: float, T: float) -> float:
    """Eq. 6 of the paper as written, with beta functions, one customer at a time."""

    def log_beta(u: float, v: float) -> float:
        return math.lgamma(u) + math.lgamma(v) - math.lgamma(u + v)

    gamma_part = math.lgamma(r + x) - math.lgamma(r) + r * math.log(alpha)
    alive = math.exp(log_beta(a, b + x) - log_beta(a, b) + gamma_part - (r + x) * math.log(alpha + T))
    dropped = 0.0
    if x > 0:
        dropped = math.exp(log_beta(a + 1, b + x - 1) - log_beta(a, b) + gamma_part - (r + x) * math.log(alpha + t_x))
    return math.log(alive + dropped)


def direct_mbgnbd_log_likelihood(r: float, alpha: float, a: float, b: float, x: int, t_x: float, T: float) -> float:
    """The MBG/NBD likelihood with beta functions, one customer at a time: alive at T after x + 1 purchases that
    each spared them, or dropped out at the last one (the first included, so even when x == 0)."""

    def beta(u: float, v: float) -> float:
        return math.exp(math.lgamma(u) + math.lgamma(v) - math.lgamma(u + v))

    gamma_part = math.exp(math.lgamma(r + x) - math.lgamma(r)) * alpha**r
    alive = beta(a, b + x + 1) / beta(a, b) * gamma_part / (alpha + T) ** (r + x)
    dropped = beta(a + 1, b + x) / beta(a, b) * gamma_part / (alpha + t_x) ** (r + x)
    return math.log(alive + dropped)


def test_the_vectorised_mbgnbd_likelihood_matches_the_formula_customer_by_customer() -> None:
    customers = [(0, 0.0, 10.0), (0, 0.0, 0.0), (1, 2.0, 10.0), (3, 8.5, 12.0), (2, 1.5, 5.5), (7, 30.0, 38.0)]
    x, t_x, T = (np.array(column, dtype=float) for column in zip(*customers, strict=True))
    r, alpha, a, b = MBG_PARAMS.r, MBG_PARAMS.alpha, MBG_PARAMS.a, MBG_PARAMS.b
    vectorised = lifetime.mbgnbd_log_likelihoods(r, alpha, a, b, x, t_x, T)
    direct = [direct_mbgnbd_log_likelihood(r, alpha, a, b, *c) for c in customers]
    assert vectorised == pytest.approx(direct, rel=1e-12)


def test_the_vectorised_bgnbd_likelihood_matches_the_formula_customer_by_customer() -> None:
    customers = [(0, 0.0, 10.0), (1, 2.0, 10.0), (3, 8.5, 12.0), (2, 1.5, 5.5), (7, 30.0, 38.0)]
    x, t_x, T = (np.array(column, dtype=float) for column in zip(*customers, strict=True))
    vectorised = lifetime.bgnbd_log_likelihoods(PARAMS.r, PARAMS.alpha, PARAMS.a, PARAMS.b, x, t_x, T)
    direct = [direct_bgnbd_log_likelihood(PARAMS.r, PARAMS.alpha, PARAMS.a, PARAMS.b, *c) for c in customers]
    assert vectorised == pytest.approx(direct, rel=1e-12)


def test_the_gamma_gamma_likelihood_matches_the_formula_customer_by_customer() -> None:
    p, q, v = 6.0, 3.5, 15.0
    buyers = [(1, 20.0), (2, 35.5), (5, 12.25)]
    direct = [
        math.lgamma(p * x + q)
        - math.lgamma(p * x)
        - math.lgamma(q)
        + math.log(v**q * z ** (p * x - 1) * x ** (p * x) / (v + x * z) ** (p * x + q))
        for x, z in buyers
    ]
    frequency, mean_spend = zip(*buyers, strict=True)
    assert lifetime.gamma_gamma_log_likelihoods(p, q, v, frequency, mean_spend) == pytest.approx(direct, rel=1e-12)


def test_the_gamma_gamma_fit_is_scale_invariant(cdnow: CustomerSummaries) -> None:
    frequency, mean_spend = fitting.spend_sample(cdnow)
    in_dollars = lifetime.fit_gamma_gamma(frequency, mean_spend)
    in_millis = lifetime.fit_gamma_gamma(frequency, mean_spend * 1000)
    assert in_millis.v == pytest.approx(in_dollars.v * 1000, rel=1e-4)
    assert in_millis.p == pytest.approx(in_dollars.p, rel=1e-4)
    assert in_millis.q == pytest.approx(in_dollars.q, rel=1e-4)


def test_the_gamma_gamma_fit_leaves_out_customers_without_a_repeat_purchase() -> None:
    frequency = np.array([1, 2, 3, 1, 4, 2])
    mean_spend = np.array([10.0, 25.0, 12.0, 40.0, 18.0, 30.0])
    alone = lifetime.fit_gamma_gamma(frequency, mean_spend)
    with_one_timers = lifetime.fit_gamma_gamma(np.append(frequency, [0, 0]), np.append(mean_spend, [0.0, 0.0]))
    assert with_one_timers.log_likelihood == pytest.approx(alone.log_likelihood, rel=1e-9)


def test_a_customer_without_a_repeat_purchase_is_alive() -> None:
    T = np.array([0.5, 10.0, 39.0, 78.0])
    assert np.all(lifetime.probability_alive(PARAMS, np.zeros(4), np.zeros(4), T) == 1.0)


def test_a_long_silence_after_repeat_purchases_lowers_the_probability_of_being_alive() -> None:
    alive = lifetime.probability_alive(PARAMS, 3, 5.0, np.array([5.0, 10.0, 20.0, 40.0]))
    assert np.all(np.diff(alive) < 0)
    assert 0.0 < alive[-1] < alive[0] < 1.0


def test_a_silent_one_time_buyer_is_ever_less_likely_alive_and_ever_more_likely_to_buy_nothing() -> None:
    T = np.array([0.0, 0.5, 4.0, 13.0, 39.0, 78.0, 520.0])
    zeros = np.zeros(len(T))
    alive = lifetime.mbgnbd_probability_alive(MBG_PARAMS, zeros, zeros, T)
    assert np.all(np.diff(alive) < 0)
    assert np.all(alive < 1.0)
    # At birth, only the chance of dropping out at the first purchase, b / (a + b) of staying.
    assert alive[0] == pytest.approx(MBG_PARAMS.b / (MBG_PARAMS.a + MBG_PARAMS.b), rel=1e-12)
    no_purchase = lifetime.mbgnbd_probability_no_purchase(MBG_PARAMS, 13.0, zeros, zeros, T)
    assert np.all(np.diff(no_purchase) > 0)
    assert np.all((no_purchase > 1.0 - alive) & (no_purchase < 1.0))


def test_expected_purchases_grow_with_the_horizon() -> None:
    t = np.array([0.0, 1.0, 4.0, 13.0, 39.0, 104.0])
    for x, t_x, T in [(0, 0.0, 20.0), (2, 15.0, 30.0), (6, 29.0, 30.0)]:
        expected = lifetime.expected_purchases(PARAMS, t, x, t_x, T)
        assert expected[0] == pytest.approx(0.0, abs=1e-12)
        assert np.all(np.diff(expected) > 0)


def beta_integral(integrand: Callable[[float], float], a: float, b: float) -> float:
    """The integral over p in (0, 1) of integrand(p) p^(a-1) (1-p)^(b-1), singular ends handled by quad."""
    value, _error = quad(integrand, 0.0, 1.0, weight="alg", wvar=(a - 1.0, b - 1.0), epsabs=0.0, epsrel=1e-11)
    return float(value)


def power_difference_over_p(base: float, k: float, p: float, t: float) -> float:
    """(base^-k - (base + p t)^-k) / p, and its limit k t base^-(k+1) at p = 0, where quad looks too."""
    if p == 0.0:
        return k * t * math.pow(base, -(k + 1))
    return -math.pow(base, -k) * math.expm1(-k * math.log1p(p * t / base)) / p


@pytest.mark.parametrize(("x", "t_x", "T", "t"), [(0, 0.0, 25.0, 39.0), (2, 30.43, 38.86, 39.0), (5, 12.0, 30.0, 10.0)])
def test_the_conditional_expectation_and_p_alive_match_a_numerical_integration(
    x: int, t_x: float, T: float, t: float
) -> None:
    # Integrate lambda out in closed form and p numerically: no hypergeometric function involved.
    r, alpha, a, b = PARAMS.r, PARAMS.alpha, PARAMS.a, PARAMS.b
    k = r + x
    evidence = beta_integral(
        lambda p: (1 - p) ** x * (alpha + T) ** -k + (p * (1 - p) ** (x - 1) * (alpha + t_x) ** -k if x else 0.0),
        a,
        b,
    )
    alive = beta_integral(lambda p: (1 - p) ** x * (alpha + T) ** -k, a, b)
    future = beta_integral(lambda p: (1 - p) ** x * power_difference_over_p(alpha + T, k, p, t), a, b)
    assert lifetime.probability_alive(PARAMS, x, t_x, T) == pytest.approx(alive / evidence, rel=1e-8)
    assert lifetime.expected_purchases(PARAMS, t, x, t_x, T) == pytest.approx(future / evidence, rel=1e-8)


def test_the_expectation_from_birth_matches_a_numerical_integration() -> None:
    r, alpha, a, b = PARAMS.r, PARAMS.alpha, PARAMS.a, PARAMS.b
    beta_ab = math.exp(math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))
    for t in (1.0, 39.0, 78.0):
        integrand = functools.partial(power_difference_over_p, alpha, r, t=t)
        numerical = math.pow(alpha, r) * beta_integral(integrand, a, b) / beta_ab
        assert lifetime.expected_purchases_from_birth(PARAMS, t) == pytest.approx(numerical, rel=1e-8)
        assert lifetime.expected_purchases(PARAMS, t, 0, 0.0, 0.0) == pytest.approx(numerical, rel=1e-8)


def posterior_integral(params: MbgNbdParams, integrand: Callable[[float, float], float]) -> float:
    """The integral of integrand(lambda, p) times the gamma(r, alpha) x beta(a, b) prior density, both numerically."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    log_norm = r * math.log(alpha) - math.lgamma(r) - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))

    def over_lambda(p: float) -> float:
        value, _error = quad(
            lambda lam: math.exp(log_norm + (r - 1) * math.log(lam) - alpha * lam) * integrand(lam, p),
            0.0,
            math.inf,
            epsabs=0.0,
            epsrel=1e-10,
            limit=200,
        )
        return float(value)

    value, _error = quad(over_lambda, 0.0, 1.0, weight="alg", wvar=(a - 1.0, b - 1.0), epsabs=0.0, epsrel=1e-10)
    return float(value)


@pytest.mark.parametrize(("x", "t_x", "T", "t"), [(0, 0.0, 25.0, 13.0), (2, 30.43, 38.86, 13.0), (5, 12.0, 30.0, 39.0)])
def test_the_mbgnbd_predictions_match_a_numerical_integration_over_the_posterior(
    x: int, t_x: float, T: float, t: float
) -> None:
    # Given lambda and p, the history's likelihood: lambda^x e^(-lambda T) (1 - p)^(x+1) if alive at T (each of the
    # x + 1 purchases spared them), lambda^x e^(-lambda t_x) p (1 - p)^x if they dropped out at the last one. Alive,
    # they buy nothing in t with probability e^(-lambda t), and drop out at rate lambda p, so they make
    # (1 - e^(-lambda p t)) / p purchases on average. No hypergeometric function and no conjugacy involved.
    def alive(lam: float, p: float) -> float:
        return lam**x * math.exp(-lam * T) * (1 - p) ** (x + 1)

    def dropped(lam: float, p: float) -> float:
        return lam**x * math.exp(-lam * t_x) * p * (1 - p) ** x

    def purchases_if_alive(lam: float, p: float) -> float:
        return -math.expm1(-lam * p * t) / p if p > 0 else lam * t

    evidence = posterior_integral(MBG_PARAMS, lambda lam, p: alive(lam, p) + dropped(lam, p))
    p_alive = posterior_integral(MBG_PARAMS, alive) / evidence
    bought = posterior_integral(MBG_PARAMS, lambda lam, p: alive(lam, p) * -math.expm1(-lam * t)) / evidence
    expected = posterior_integral(MBG_PARAMS, lambda lam, p: alive(lam, p) * purchases_if_alive(lam, p)) / evidence
    # The integrals are good to about 1e-10; 1e-7 leaves room for the closed forms' rounding.
    assert lifetime.mbgnbd_probability_alive(MBG_PARAMS, x, t_x, T) == pytest.approx(p_alive, rel=1e-7)
    assert lifetime.mbgnbd_probability_no_purchase(MBG_PARAMS, t, x, t_x, T) == pytest.approx(1 - bought, rel=1e-7)
    assert lifetime.mbgnbd_expected_purchases(MBG_PARAMS, t, x, t_x, T) == pytest.approx(expected, rel=1e-7)


def test_the_mbgnbd_expectation_from_birth_is_the_conditional_one_at_birth() -> None:
    t = np.array([1.0, 13.0, 39.0, 78.0])
    from_birth = lifetime.mbgnbd_expected_purchases_from_birth(MBG_PARAMS, t)
    assert from_birth == pytest.approx(lifetime.mbgnbd_expected_purchases(MBG_PARAMS, t, 0, 0.0, 0.0), rel=1e-12)


def test_the_expected_spend_of_a_customer_without_repeat_purchases_is_the_population_mean() -> None:
    gg = GammaGammaParams(p=6.0, q=4.0, v=15.0, log_likelihood=0.0)
    assert lifetime.expected_spend(gg, 0, 123.0) == pytest.approx(6.0 * 15.0 / 3.0)
    many = lifetime.expected_spend(gg, np.array([1, 10, 1000]), 50.0)
    assert np.all(np.diff(np.abs(many - 50.0)) < 0)


@pytest.mark.parametrize(
    ("params", "expected_purchases"),
    [(PARAMS, lifetime.expected_purchases), (MBG_PARAMS, lifetime.mbgnbd_expected_purchases)],
)
def test_discounted_purchases_are_the_expected_purchases_discounted(
    params: BgNbdParams | MbgNbdParams, expected_purchases: Callable[..., np.ndarray]
) -> None:
    x, t_x, T = np.array([0, 3]), np.array([0.0, 20.0]), np.array([30.0, 30.0])
    undiscounted = lifetime.discounted_purchases(params, x, t_x, T, 52.0, 0.0)
    assert undiscounted == pytest.approx(expected_purchases(params, 52.0, x, t_x, T), rel=1e-12)
    discounted = lifetime.discounted_purchases(params, x, t_x, T, 52.0, 0.1)
    # Every purchase is made within the year, so each is discounted by less than a year's rate.
    assert np.all(discounted < undiscounted)
    assert np.all(discounted > undiscounted / 1.1)


def test_same_day_purchases_are_one_purchase_with_their_amounts_added() -> None:
    summaries = lifetime.summarise(
        [
            ("c", datetime(2024, 1, 1, 9, tzinfo=UTC), 10.0),
            ("c", datetime(2024, 1, 1, 17, tzinfo=UTC), 5.0),
            ("c", date(2024, 1, 8), 20.0),
            ("c", datetime(2024, 1, 8, 23, tzinfo=UTC), 4.0),
            ("c", date(2024, 1, 15), 6.0),
        ],
        date(2024, 1, 29),
    )
    [summary] = list(summaries)
    assert (summary.x, summary.t_x, summary.T) == (2, 2.0, 4.0)
    assert summary.mean_repeat_spend == pytest.approx((24.0 + 6.0) / 2)


def test_summaries_of_three_customers_by_hand() -> None:
    end = date(2024, 3, 31)
    transactions = [
        ("bob", date(2024, 1, 7), 30.0),
        ("ann", date(2024, 1, 1), 10.0),
        ("bob", date(2024, 2, 4), 20.0),
        ("ann", date(2024, 1, 15), 12.0),
        ("ann", date(2024, 3, 31), 18.0),
        ("ann", date(2024, 4, 1), 99.0),
        ("cyd", date(2024, 3, 3), 7.0),
        ("dan", date(2024, 4, 2), 50.0),
    ]
    by_id = {s.customer_id: s for s in lifetime.summarise(transactions, end)}
    assert sorted(by_id) == ["ann", "bob", "cyd"]
    ann, bob, cyd = by_id["ann"], by_id["bob"], by_id["cyd"]
    assert (ann.x, ann.t_x, ann.T, ann.mean_repeat_spend) == (2, 90 / 7, 90 / 7, 15.0)
    assert (bob.x, bob.t_x, bob.T, bob.mean_repeat_spend) == (1, 4.0, 84 / 7, 20.0)
    assert (cyd.x, cyd.t_x, cyd.T, cyd.mean_repeat_spend) == (0, 0.0, 4.0, 0.0)


def test_an_aware_purchase_time_counts_on_its_utc_day() -> None:
    late_evening_in_new_york = datetime(2024, 1, 1, 22, tzinfo=timezone(timedelta(hours=-5)))
    [summary] = lifetime.summarise(
        [("c", date(2024, 1, 1), 1.0), ("c", late_evening_in_new_york, 1.0)], date(2024, 1, 8)
    )
    assert (summary.x, summary.t_x) == (1, 1 / 7)


def test_the_model_version_names_the_date_and_changes_with_the_parameters() -> None:
    gg = GammaGammaParams(p=6.0, q=4.0, v=15.0, log_likelihood=0.0)
    version = lifetime.model_version(MBG_PARAMS, gg, date(2024, 5, 6))
    assert version.startswith("mbgnbd-gg-20240506-")
    assert version == lifetime.model_version(MBG_PARAMS, gg, date(2024, 5, 6))
    other = MbgNbdParams(r=0.51, alpha=3.0, a=0.8, b=2.5, log_likelihood=0.0)
    assert lifetime.model_version(other, gg, date(2024, 5, 6)) != version
