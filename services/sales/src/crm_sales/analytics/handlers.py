"""Use cases of the conversion analytics: read leads, opportunities, accounts and orders of some owners (None:
everyone) and hand them to the pure analytics. Each reads what its answer needs and nothing else."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any

from crm_sales.accounts.repository import ACCOUNTS
from crm_sales.analytics import domain
from crm_sales.forecasts.domain import Period
from crm_sales.leads.repository import LEADS
from crm_sales.opportunities import repository as opportunities
from crm_sales.orders.repository import ORDERS
from crm_shared.money import ExchangeRates, UnknownCurrency
from crm_shared.store import Store, UnitOfWork


def _owned(owners: tuple[str, ...] | None) -> dict[str, Any]:
    return {"owner_id": {"$in": list(owners)}} if owners is not None else {}


def _window(field: str, period: Period | None) -> dict[str, Any]:
    return {field: {"$gte": period.start_at, "$lt": period.end_at}} if period is not None else {}


async def lead_outcomes(
    store: Store, owners: tuple[str, ...] | None, period: Period | None
) -> list[domain.LeadOutcome]:
    """The leads (that arrived in the period), each with whether it converted and its customer's first order
    placed since the lead arrived."""
    leads = (
        await store.db[LEADS]
        .find(
            {**_owned(owners), **_window("created_at", period)},
            {"source": 1, "owner_id": 1, "created_at": 1, "status": 1, "customer_id": 1},
        )
        .to_list(None)
    )
    customers = sorted({d["customer_id"] for d in leads if d.get("customer_id")})
    placed: dict[str, list[datetime]] = defaultdict(list)
    if customers:
        query = {"customer_id": {"$in": customers}, "placed_at": {"$ne": None}}
        async for order in store.db[ORDERS].find(query, {"customer_id": 1, "placed_at": 1}):
            placed[order["customer_id"]].append(order["placed_at"])
    outcomes = []
    for lead in leads:
        since = [at for at in placed.get(lead.get("customer_id") or "", []) if at >= lead["created_at"]]
        outcomes.append(
            domain.LeadOutcome(
                lead_id=lead["_id"],
                source=lead.get("source", "other"),
                owner_id=lead.get("owner_id"),
                created_at=lead["created_at"],
                converted=lead.get("status") == "converted",
                first_order_at=min(since) if since else None,
            )
        )
    return outcomes


async def pipeline(
    store: Store, pipeline_id: str, owners: tuple[str, ...] | None, period: Period | None, rates: ExchangeRates
) -> tuple[list[str], list[domain.Closed], int] | None:
    """The pipeline's stage ids, its opportunities closed (in the period) and how many are open; None when
    there is no such pipeline."""

    async def read(uow: UnitOfWork) -> list[str] | None:
        found = await opportunities.get_pipeline(uow, pipeline_id)
        return list(found.stage_ids) if found is not None else None

    stage_ids = await store.transaction(read)
    if stage_ids is None:
        return None
    collection = store.db[opportunities.OPPORTUNITIES]
    closed: list[domain.Closed] = []
    query = {
        **_owned(owners),
        "pipeline_id": pipeline_id,
        "status": {"$in": ["won", "lost"]},
        **_window("closed_at", period),
    }
    projection = {"status": 1, "amount": 1, "currency": 1, "stage_history.stage": 1, "opened_at": 1, "closed_at": 1}
    async for doc in collection.find(query, projection):
        try:
            amount = rates.convert(doc["amount"], doc["currency"])
        except UnknownCurrency:
            continue
        stages = frozenset(v["stage"] for v in doc.get("stage_history", []))
        closed.append(domain.Closed(doc["status"] == "won", amount, stages, doc["opened_at"], doc["closed_at"]))
    open_count = await collection.count_documents({**_owned(owners), "pipeline_id": pipeline_id, "status": "open"})
    return stage_ids, closed, open_count


async def account_revenue(
    store: Store, owners: tuple[str, ...] | None, period: Period | None, rates: ExchangeRates
) -> tuple[dict[str, Decimal], dict[str, str]]:
    """Each account's revenue: its contacts' orders (placed in the period), not cancelled, net of refunds, in
    the reporting currency; and the accounts' names."""
    accounts = await store.db[ACCOUNTS].find(_owned(owners), {"name": 1, "contacts": 1}).to_list(None)
    names = {a["_id"]: a["name"] for a in accounts}
    account_of: dict[str, list[str]] = defaultdict(list)
    for account in accounts:
        for contact in account.get("contacts", []):
            account_of[contact].append(account["_id"])
    revenue = dict.fromkeys(names, Decimal(0))
    if account_of:
        query = {
            "customer_id": {"$in": sorted(account_of)},
            "placed": {"$ne": None},
            "cancelled_at": None,
            **_window("placed_at", period),
        }
        async for order in store.db[ORDERS].find(query, {"customer_id": 1, "placed": 1, "refunds": 1}):
            currency = order["placed"]["currency"]
            if not rates.knows(currency):
                continue
            net = order["placed"]["total"] - sum((r["amount"] for r in order.get("refunds", [])), Decimal(0))
            for account_id in account_of[order["customer_id"]]:
                revenue[account_id] += rates.convert(net, currency)
    return revenue, names
