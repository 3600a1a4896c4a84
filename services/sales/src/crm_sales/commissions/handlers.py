"""Use cases of commissions: define a plan (for an owner or a territory), compute an owner's statement for a
period from the paid revenue of the orders they sold, and close it once the period is over, after which it no
longer changes and a refund of its revenue is clawed back in a later statement."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from crm_sales.commissions import domain, repository
from crm_sales.forecasts.domain import Period
from crm_sales.forecasts.repository import QUOTAS, quota_id
from crm_sales.orders.repository import ORDERS
from crm_sales.territories.repository import TERRITORIES
from crm_shared.money import ExchangeRates
from crm_shared.store import Store, UnitOfWork, as_stored, is_duplicate_key


class PlanConflict(Exception):
    """Another plan is for the same owner or territory."""


class PeriodNotOver(Exception):
    """A statement is closed only once its period is over."""


async def define_plan(store: Store, plan: domain.Plan, at: datetime) -> domain.Plan:
    """Keep the plan (new, or replacing the one with its id). Raises PlanConflict when another plan is for the
    same owner or territory."""

    async def work(uow: UnitOfWork) -> domain.Plan:
        holder = {"owner_id": plan.owner_id} if plan.owner_id is not None else {"territory": plan.territory}
        other = await uow.db[repository.PLANS].find_one(
            {**holder, "_id": {"$ne": plan.plan_id}}, {"_id": 1}, session=uow.session
        )
        if other is not None:
            whose = f"owner {plan.owner_id}" if plan.owner_id is not None else f"territory {plan.territory}"
            raise PlanConflict(f"plan {other['_id']} is already the plan of {whose}")
        await uow.db[repository.PLANS].replace_one(
            {"_id": plan.plan_id}, repository.plan_to_document(plan, at), upsert=True, session=uow.session
        )
        return plan

    return await store.transaction(work)


async def plans(store: Store) -> list[domain.Plan]:
    return [repository.plan_from_document(d) async for d in store.db[repository.PLANS].find().sort("_id", 1)]


@dataclass(frozen=True)
class StatementAnswer:
    statement: domain.Statement
    closed_at: datetime | None


def _in(at: datetime, start: datetime, end: datetime) -> bool:
    return start <= at < end


async def compute(store: Store, owner_id: str, period: Period, rates: ExchangeRates) -> StatementAnswer:
    """The owner's statement for the period: the closed one when it was closed, else computed now."""
    closed = await store.db[repository.STATEMENTS].find_one({"_id": repository.statement_id(owner_id, period.name)})
    if closed is not None:
        return StatementAnswer(repository.statement_from_document(closed), closed["closed_at"])
    start, end = period.start_at, period.end_at
    earlier = [
        d
        async for d in store.db[repository.STATEMENTS].find(
            {"owner_id": owner_id, "period_end": {"$lte": start}},
            {"period": 1, "period_start": 1, "period_end": 1, "effective_rate": 1},
        )
    ]
    window = {"$gte": start, "$lt": end}
    paid = refunded = Decimal(0)
    clawbacks: list[domain.Clawback] = []
    query: dict[str, Any] = {"owner_id": owner_id, "$or": [{"payments.at": window}, {"refunds.at": window}]}
    async for order in store.db[ORDERS].find(query, {"payments": 1, "refunds": 1, "placed.currency": 1}):
        currency = (order.get("placed") or {}).get("currency")
        if currency is None or not rates.knows(currency):
            continue  # an order not placed yet, or in a currency with no rate: nothing to pay commission on
        paid_at = [p["at"] for p in order.get("payments", [])]
        for payment in order.get("payments", []):
            if _in(payment["at"], start, end):
                paid += rates.convert(payment["amount"], currency)
        for refund in order.get("refunds", []):
            if not _in(refund["at"], start, end):
                continue
            amount = rates.convert(refund["amount"], currency)
            paying = next(
                (s for s in earlier if any(_in(at, s["period_start"], s["period_end"]) for at in paid_at)), None
            )
            if paying is None:
                refunded += amount
            else:
                clawbacks.append(domain.Clawback(order["_id"], amount, paying["period"], paying["effective_rate"]))
    quota_doc = await store.db[QUOTAS].find_one({"_id": quota_id(owner_id, period.name)})
    territories = [t["_id"] async for t in store.db[TERRITORIES].find({"reps.user_id": owner_id}, {"_id": 1})]
    plan = domain.plan_for(await plans(store), owner_id, territories)
    made = domain.statement(
        owner_id,
        period.name,
        plan,
        paid=paid,
        refunded=refunded,
        clawbacks=sorted(clawbacks, key=lambda c: (c.period, c.order_id)),
        quota=quota_doc["amount"] if quota_doc else None,
    )
    return StatementAnswer(made, None)


async def close(store: Store, owner_id: str, period: Period, rates: ExchangeRates, now: datetime) -> StatementAnswer:
    """Close the statement as computed now (closing it again answers the closed one). Raises PeriodNotOver."""
    now = as_stored(now)
    if not period.is_over(now):
        raise PeriodNotOver(
            f"period {period.name} is not over: its statement can change until {period.end_at.isoformat()}"
        )
    answer = await compute(store, owner_id, period, rates)
    if answer.closed_at is not None:
        return answer
    document = repository.statement_to_document(
        answer.statement, period_start=period.start_at, period_end=period.end_at, closed_at=now
    )
    try:
        await store.db[repository.STATEMENTS].insert_one(document)
    except Exception as exc:  # closed at the same moment by another call: answer that one
        if not is_duplicate_key(exc):
            raise
        return await compute(store, owner_id, period, rates)
    return StatementAnswer(answer.statement, now)
