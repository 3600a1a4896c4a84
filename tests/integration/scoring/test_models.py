"""Fitting the customer-base models in the service, on the real database, and the scores they add."""

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import numpy as np

from crm_scoring import handlers, repository
from crm_scoring.app import create_service
from crm_scoring.settings import ScoringSettings
from crm_shared.events import OrderPlaced, OrderPlacedEvent
from crm_shared.store import Store

from helpers import ADMIN_HEADERS

NewStore = Callable[..., Awaitable[Store]]
START = datetime(2026, 1, 5, 12, tzinfo=UTC)
END_WEEKS = 39


def synthetic_orders(customers: int, seed: int = 7) -> list[tuple[str, datetime, Decimal]]:
    """A BG/NBD process: each customer buys at a gamma-distributed weekly rate and drops out after each purchase
    with a beta-distributed probability; spend per order is gamma-distributed around a customer's own mean."""
    rng = np.random.default_rng(seed)
    prefix = uuid.uuid4().hex[:6]
    orders: list[tuple[str, datetime, Decimal]] = []
    for i in range(customers):
        customer = f"C-{prefix}-{i:03d}"
        rate, dropout = rng.gamma(0.9, 1 / 3.0), rng.beta(0.8, 3.0)
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
    for n, (customer, at, amount) in enumerate(orders):
        data = OrderPlaced(customer_id=customer, order_id=f"O-{customer}-{n}", currency="EUR", total=amount)
        await handlers.apply_event(
            store, OrderPlacedEvent.create(data, source="/web", time=at), app_settings.thresholds
        )


async def test_fitting_with_too_few_customers_is_a_409_with_the_reason(new_store: NewStore) -> None:
    store = await new_store("scoring_models", repository.INDEXES)
    settings = ScoringSettings()
    await apply_orders(store, settings, synthetic_orders(10))
    app = create_service(settings)
    app.state.runtime.store = store

    async with httpx.AsyncClient(
        headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://scoring"
    ) as http:
        response = await http.post("/v1/models/fit")

    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == (
        "10 customers have ordered; fitting needs at least 50 (CRM_SCORING_MIN_FIT_CUSTOMERS)"
    )
    assert await store.db[repository.MODEL_PARAMS].count_documents({}) == 0


async def test_fitted_params_are_stored_and_every_customer_gets_p_alive_and_lifetime_value(
    new_store: NewStore,
) -> None:
    store = await new_store("scoring_models", repository.INDEXES)
    settings = ScoringSettings()
    orders = synthetic_orders(70)
    await apply_orders(store, settings, orders)
    app = create_service(settings)
    app.state.runtime.store = store
    some = orders[0][0]

    async with httpx.AsyncClient(
        headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://scoring"
    ) as http:
        fitted = await http.post("/v1/models/fit")
        scores = await http.get(f"/v1/customers/{some}/scores")

    assert fitted.status_code == 200, fitted.text
    body = fitted.json()
    assert body["customers"] == 70 and 0 < body["repeat_buyers"] < 70
    assert body["model_version"].startswith("bgnbd-gg-")
    stored = await store.db[repository.MODEL_PARAMS].find_one({"_id": body["model_version"]})
    assert stored is not None
    assert stored["bgnbd"]["log_likelihood"] < 0 and stored["time_unit"] == "weeks"
    assert set(stored["bgnbd"]) == {"r", "alpha", "a", "b", "log_likelihood"}
    assert set(stored["gamma_gamma"]) == {"p", "q", "v", "log_likelihood"}

    view = scores.json()
    assert 0 < view["probability_alive"] <= 1
    assert Decimal(view["lifetime_value"]) > 0 and Decimal(view["expected_average_spend"]) > 0
    assert view["expected_purchases_90d"] > 0
    assert view["population"]["models"]["model_version"] == body["model_version"]
    # Churn risk starts from 1 - P(alive) once the models are fitted (no complaint or survey here).
    assert view["churn_risk"] == round(1 - view["probability_alive"], 4)
    without = await store.db[repository.CUSTOMERS].count_documents({"scores.probability_alive": None})
    assert without == 0

    rebuilt = await handlers.rebuild(store, settings.thresholds)
    assert (rebuilt.customers, rebuilt.different) == (70, [])
