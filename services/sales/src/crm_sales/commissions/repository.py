"""The sales database's `commission_plans` (`_id` the plan id, `owner_id` or `territory`, `base_rate`,
`tiers` [{from_quota, rate}], `updated_at`) and `commission_statements` (closed ones: `_id` "<owner>|<period>",
the statement's figures, its clawbacks, `effective_rate` and `closed_at`)."""

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, IndexModel

from crm_sales.commissions.domain import Clawback, Plan, Statement, Tier
from crm_shared.store import IndexSpec

PLANS = "commission_plans"
STATEMENTS = "commission_statements"

INDEXES = (IndexSpec(STATEMENTS, IndexModel([("owner_id", ASCENDING), ("period_end", ASCENDING)], name="by_owner")),)


def plan_to_document(plan: Plan, at: datetime) -> dict[str, Any]:
    return {
        "_id": plan.plan_id,
        "owner_id": plan.owner_id,
        "territory": plan.territory,
        "base_rate": plan.base_rate,
        "tiers": [{"from_quota": t.from_quota, "rate": t.rate} for t in plan.tiers],
        "updated_at": at,
    }


def plan_from_document(doc: Mapping[str, Any]) -> Plan:
    return Plan(
        plan_id=doc["_id"],
        base_rate=doc["base_rate"],
        tiers=tuple(Tier(t["from_quota"], t["rate"]) for t in doc.get("tiers", [])),
        owner_id=doc.get("owner_id"),
        territory=doc.get("territory"),
    )


def statement_id(owner_id: str, period: str) -> str:
    return f"{owner_id}|{period}"


def statement_to_document(
    s: Statement, *, period_start: datetime, period_end: datetime, closed_at: datetime
) -> dict[str, Any]:
    return {
        "_id": statement_id(s.owner_id, s.period),
        "owner_id": s.owner_id,
        "period": s.period,
        "period_start": period_start,
        "period_end": period_end,
        "plan_id": s.plan_id,
        "paid": s.paid,
        "refunded": s.refunded,
        "quota": s.quota,
        "commission": s.commission,
        "clawbacks": [
            {"order_id": c.order_id, "refunded": c.refunded, "period": c.period, "rate": c.rate} for c in s.clawbacks
        ],
        "payable": s.payable,
        "effective_rate": s.effective_rate,
        "closed_at": closed_at,
    }


def statement_from_document(doc: Mapping[str, Any]) -> Statement:
    return Statement(
        owner_id=doc["owner_id"],
        period=doc["period"],
        plan_id=doc.get("plan_id"),
        paid=doc["paid"],
        refunded=doc["refunded"],
        revenue=doc["paid"] - doc["refunded"],
        quota=doc.get("quota"),
        commission=doc["commission"],
        clawbacks=tuple(Clawback(c["order_id"], c["refunded"], c["period"], c["rate"]) for c in doc["clawbacks"]),
        payable=doc["payable"],
    )
