"""Fitting the customer-base models in the service, on the real database, and the scores they add."""

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import numpy as np
import pytest

from crm_scoring import handlers, repository
from crm_scoring.app import create_service
from crm_scoring.settings import ScoringSettings
from crm_shared.events import OrderPlaced, OrderPlacedEvent
from crm_shared.store import Store

from helpers import ADMIN_HEADERS

NewStore = Callable[..., Awaitable[Store]]
START = datetime(2025, 1, 6, 12, tzinfo=UTC)
END_WEEKS = 52


def synthetic_orders(customers: int, seed: int = 7) -> list[tuple[str, datetime, Decimal]]:
    """An MBG/NBD process: each customer buys at a gamma-distributed weekly rate and drops out after each purchase,
    the first included, with a beta-distributed probability; spend per order is gamma-distributed around a
    customer's own mean."""
    rng = np.random.default_rng(seed)
    prefix = uuid.uuid4().hex[:6]
    orders: list[tuple[str, datetime, Decimal]] = []
    for i in range(customers):
        customer = f"C-{prefix}-{i:03d}"
        rate, dropout = rng.gamma(0.9, 1 / 2.0), rng.beta(0.8, 3.0)
        mean_spend = rng.gamma(4.0, 15.0)
        t = float(rng.uniform(0, 8))
        while t <= END_WEEKS:
            amount = Decimal(f"{max(1.0, rng.gamma(6.0, mean_spend / 6.0)):.2f}")
            orders.append((customer, START + timedelta(days=round(t * 7)), amount))
            if rng.random() < dropout:
                break
            t += float(rng.exponential(1 / rate))
    return orders


async def apply_orders(
    store: Store, app_settings: ScoringSettings, orders: list[tuple[str, datetime, Decimal]]
) -> None:
    events = [
        OrderPlacedEvent.create(
            OrderPlaced(customer_id=customer, order_id=f"O-{customer}-{n}", currency="EUR", total=amount),
            source="/web",
            time=at,
        )
        for n, (customer, at, amount) in enumerate(orders)
    ]
    for start in range(0, len(events), 250):
        await handlers.apply_events(store, events[start : start + 250], app_settings.thresholds)


def client(app_settings: ScoringSettings, store: Store) -> httpx.AsyncClient:
    app = create_service(app_settings)
    app.state.runtime.store = store
    return httpx.AsyncClient(headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://scoring")


async def test_fitting_with_too_few_customers_is_refused_with_the_reason_and_the_rules_stay(
    new_store: NewStore,
) -> None:
    store = await new_store("scoring_models", repository.INDEXES)
    settings = ScoringSettings()
    orders = synthetic_orders(10)
    await apply_orders(store, settings, orders)

    async with client(settings, store) as http:
        response = await http.post("/v1/models/fit")
        report = await http.get("/v1/models")
        scores = await http.get(f"/v1/customers/{orders[0][0]}/scores")

    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == (
        "10 customers have ordered; fitting needs at least 50 (CRM_SCORING_MIN_FIT_CUSTOMERS)"
    )
    body = report.json()
    assert body["in_force"] is None
    assert [(f["status"], f["refusals"]) for f in body["fits"]] == [("refused", [response.json()["detail"]])]
    view = scores.json()
    assert view["probability_alive"] is None and view["value"]["forecast"] is None
    assert "no fitted models are in force" in view["value"]["forecast_unavailable_because"]


async def test_a_base_of_one_time_buyers_gives_a_refused_fit_not_parameters(new_store: NewStore) -> None:
    store = await new_store("scoring_models", repository.INDEXES)
    settings = ScoringSettings()
    prefix = uuid.uuid4().hex[:6]
    one_each = [(f"C-{prefix}-{i:03d}", START + timedelta(days=i), Decimal("30.00")) for i in range(60)]
    await apply_orders(store, settings, one_each)

    async with client(settings, store) as http:
        response = await http.post("/v1/models/fit")

    assert response.status_code == 409
    assert response.json()["detail"] == (
        "0 customers bought again on a later day; fitting needs at least 20 (CRM_SCORING_MIN_FIT_REPEAT_BUYERS)"
    )
    stored = await store.db[repository.MODEL_PARAMS].find_one({})
    assert stored is not None and (stored["status"], stored["mbgnbd"]) == ("refused", None)


async def test_a_fit_that_passes_its_checks_is_adopted_and_every_customer_gets_the_forecast(
    new_store: NewStore,
) -> None:
    store = await new_store("scoring_models", repository.INDEXES)
    settings = ScoringSettings()
    orders = synthetic_orders(200)
    await apply_orders(store, settings, orders)
    some = orders[0][0]

    async with client(settings, store) as http:
        fitted = await http.post("/v1/models/fit")
        scores = await http.get(f"/v1/customers/{some}/scores")
        again = await http.post("/v1/models/fit")
        report = await http.get("/v1/models")

    assert fitted.status_code == 200, fitted.text
    body = fitted.json()
    fit = body["fit"]
    assert (fit["status"], fit["refusals"], fit["customers"]) == ("adopted", [], 200)
    assert 20 <= fit["repeat_buyers"] < 200
    assert fit["model_version"].startswith("mbgnbd-gg-") and body["in_force"]["model_version"] == fit["model_version"]
    assert body["rescored"] == 200
    for model, names in (("mbgnbd", {"r", "alpha", "a", "b"}), ("gamma_gamma", {"p", "q", "v"})):
        quality = fit["quality"][model]
        assert quality["maximum"] is True and quality["gradient"] < 1e-3
        assert set(quality["standard_errors"]) == names
        assert all(0 < e <= 1 for e in quality["relative_errors"].values())
    holdout = fit["holdout"]
    assert holdout["actual_purchases"] >= 10 and holdout["relative_error"] <= 0.3

    view = scores.json()
    assert 0 < view["probability_alive"] < 1
    assert Decimal(view["lifetime_value"]) > 0 and Decimal(view["expected_average_spend"]) > 0
    assert view["population"]["models"]["model_version"] == fit["model_version"]
    value = view["value"]
    forecast = value["forecast"]
    # Churn risk is the probability of no purchase in the horizon once the models are fitted (no complaint here).
    assert view["churn_risk"] == forecast["no_purchase_probability"]
    assert Decimal(forecast["amount"]) == Decimal(view["lifetime_value"])
    assert Decimal(value["realised"]["amount"]) == Decimal(view["monetary"])
    assert value["formula"]["G"] == view["formula_lifetime_value"]["G"]
    spend = forecast["own_spend_weight"] * float(forecast["mean_spend"]) + (1 - forecast["own_spend_weight"]) * float(
        forecast["population_mean_spend"]
    )
    assert float(forecast["expected_spend"]) == pytest.approx(spend, abs=0.01)
    without = await store.db[repository.CUSTOMERS].count_documents({"scores.probability_alive": None})
    assert without == 0

    # The same data again: the same parameters, so the models in force stay and nobody is rescored.
    assert again.status_code == 200, again.text
    assert (again.json()["fit"]["status"], again.json()["rescored"]) == ("within_tolerance", 0)
    assert [f["status"] for f in report.json()["fits"]] == ["within_tolerance", "adopted"]
    assert report.json()["in_force"]["model_version"] == fit["model_version"]

    rebuilt = await handlers.rebuild(store, settings.thresholds)
    assert (rebuilt.customers, rebuilt.different) == (200, [])


async def test_bgnbd_models_stored_before_the_checks_are_not_used_and_do_not_break_the_report(
    new_store: NewStore,
) -> None:
    store = await new_store("scoring_models", repository.INDEXES)
    settings = ScoringSettings()
    orders = synthetic_orders(10)
    await apply_orders(store, settings, orders)
    legacy = {
        "_id": "bgnbd-gg-20261101-0badf00d",
        "model_version": "bgnbd-gg-20261101-0badf00d",
        "bgnbd": {"r": 0.24, "alpha": 4.4, "a": 0.79, "b": 2.4, "log_likelihood": -1.0},
        "gamma_gamma": {"p": 6.25, "q": 3.74, "v": 15.44, "log_likelihood": -1.0},
        "fitted_at": START,
        "customers": 60,
        "repeat_buyers": 30,
        "time_unit": "weeks",
    }
    await store.db[repository.MODEL_PARAMS].insert_one(legacy)
    await handlers.refresh_population(store, settings.thresholds, START + timedelta(days=400), fit=False)
    await store.db[repository.POPULATION].update_one({"_id": repository.CURRENT}, {"$set": {"models": legacy}})

    async with client(settings, store) as http:
        report = await http.get("/v1/models")
        scores = await http.get(f"/v1/customers/{orders[0][0]}/scores")

    assert report.status_code == 200, report.text
    assert report.json() == {"in_force": None, "fits": []}
    assert scores.status_code == 200 and scores.json()["value"]["forecast"] is None
