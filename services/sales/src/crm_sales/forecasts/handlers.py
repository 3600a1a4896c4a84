"""Use cases of forecasts: a period's forecast for some owners (a person, a team) or a territory, quotas, and
snapshots of the forecast compared, once their period is over, with the revenue actually paid in it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from crm_sales.forecasts import domain, repository
from crm_sales.opportunities.repository import OPPORTUNITIES
from crm_sales.orders.repository import ORDERS
from crm_shared.money import ExchangeRates, UnknownCurrency
from crm_shared.store import Store


@dataclass(frozen=True)
class Scope:
    """Whose forecast: some owners (None: everyone) and, optionally, one territory."""

    owners: tuple[str, ...] | None = None
    territory: str | None = None

    def query(self) -> dict[str, Any]:
        query: dict[str, Any] = {}
        if self.owners is not None:
            query["owner_id"] = {"$in": list(self.owners)}
        if self.territory is not None:
            query["territory"] = self.territory
        return query


@dataclass(frozen=True)
class Computed:
    forecast: domain.Forecast
    currency: str
    unpriced: tuple[str, ...]
    """Opportunities left out: their currency has no rate in the table any more."""


async def quota_of(store: Store, period: domain.Period, scope: Scope) -> Decimal | None:
    """The quota of the scope's owners for the period (their sum); None when none of them has one. A territory's
    forecast has no quota (quotas are per owner)."""
    if scope.territory is not None and scope.owners is None:
        return None
    query: dict[str, Any] = {"period": period.name}
    if scope.owners is not None:
        query["owner_id"] = {"$in": list(scope.owners)}
    amounts = [d["amount"] async for d in store.db[repository.QUOTAS].find(query, {"amount": 1})]
    return sum(amounts, Decimal(0)) if amounts else None


async def compute(store: Store, period: domain.Period, scope: Scope, rates: ExchangeRates) -> Computed:
    """The period's forecast: open opportunities expected to close in it, those won in it, the quota."""
    window = {"$gte": period.start_at, "$lt": period.end_at}
    unpriced: list[str] = []
    deals: list[domain.OpenDeal] = []
    projection = {"amount": 1, "currency": 1, "probability": 1, "forecast_category": 1}
    async for doc in store.db[OPPORTUNITIES].find(
        {**scope.query(), "status": "open", "expected_close": window}, projection
    ):
        try:
            amount = rates.convert(doc["amount"], doc["currency"])
        except UnknownCurrency:
            unpriced.append(doc["_id"])
            continue
        deals.append(
            domain.OpenDeal(doc["_id"], amount, domain.probability(doc["probability"]), doc["forecast_category"])
        )
    won: list[Decimal] = []
    async for doc in store.db[OPPORTUNITIES].find(
        {**scope.query(), "status": "won", "closed_at": window}, {"amount": 1, "currency": 1}
    ):
        try:
            won.append(rates.convert(doc["amount"], doc["currency"]))
        except UnknownCurrency:
            unpriced.append(doc["_id"])
    quota = await quota_of(store, period, scope)
    return Computed(domain.forecast(period, deals, won, quota), rates.reporting_currency, tuple(sorted(unpriced)))


async def set_quota(store: Store, owner_id: str, period: domain.Period, amount: Decimal, at: datetime) -> None:
    await store.db[repository.QUOTAS].replace_one(
        {"_id": repository.quota_id(owner_id, period.name)},
        {"owner_id": owner_id, "period": period.name, "amount": amount, "updated_at": at},
        upsert=True,
    )


async def quotas(store: Store, *, owners: Sequence[str] | None, period: str | None) -> list[dict[str, Any]]:
    query: dict[str, Any] = {}
    if owners is not None:
        query["owner_id"] = {"$in": list(owners)}
    if period is not None:
        query["period"] = period
    return await store.db[repository.QUOTAS].find(query).sort([("period", 1), ("owner_id", 1)]).to_list(1000)


async def take_snapshot(
    store: Store, period: domain.Period, scope: Scope, rates: ExchangeRates, at: datetime
) -> dict[str, Any]:
    """Keep the forecast as it is now, to compare it with what is paid once the period is over."""
    computed = await compute(store, period, scope, rates)
    f = computed.forecast
    snapshot = {
        "_id": f"FS-{uuid.uuid4().hex}",
        "period": period.name,
        "owners": list(scope.owners) if scope.owners is not None else None,
        "territory": scope.territory,
        "taken_at": at,
        "weighted_pipeline": f.weighted_pipeline,
        "closed_won": f.closed_won,
        "commit": f.commit,
        "best_case": f.best_case,
        "currency": computed.currency,
    }
    await store.db[repository.SNAPSHOTS].insert_one(snapshot)
    return snapshot


async def paid_in(store: Store, period: domain.Period, scope: Scope, rates: ExchangeRates) -> Decimal:
    """Revenue paid in the period by the scope's orders: payments in it less refunds in it, in the reporting
    currency (an order in a currency the table no longer knows is left out)."""
    window = {"$gte": period.start_at, "$lt": period.end_at}
    query = {**scope.query(), "$or": [{"payments.at": window}, {"refunds.at": window}]}
    total = Decimal(0)
    async for doc in store.db[ORDERS].find(query, {"payments": 1, "refunds": 1, "placed.currency": 1}):
        for kind, sign in (("payments", 1), ("refunds", -1)):
            for fact in doc.get(kind, []):
                if period.start_at <= fact["at"] < period.end_at:
                    currency = fact.get("currency") or (doc.get("placed") or {}).get("currency")
                    if currency is None or not rates.knows(currency):
                        continue
                    total += sign * rates.convert(fact["amount"], currency)
    return total


async def accuracy(
    store: Store, scope: Scope, rates: ExchangeRates, now: datetime, limit: int = 50
) -> list[domain.Accuracy]:
    """The snapshots of the scope whose period is over, newest first, each beside the revenue paid in it."""
    query = {"owners": list(scope.owners) if scope.owners is not None else None, "territory": scope.territory}
    found: list[domain.Accuracy] = []
    async for doc in store.db[repository.SNAPSHOTS].find(query).sort([("taken_at", -1), ("_id", -1)]).limit(500):
        period = domain.Period.parse(doc["period"])
        if not period.is_over(now):
            continue
        paid = await paid_in(store, period, scope, rates)
        found.append(
            domain.accuracy(period, doc["taken_at"], doc["weighted_pipeline"], doc["closed_won"], doc["commit"], paid)
        )
        if len(found) == limit:
            break
    return found
