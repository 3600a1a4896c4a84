"""The sales database's `pipelines` and `opportunities` collections.

An opportunity document carries the agreed fields (`customer_id`, `account_id`, `owner_id`, `territory`,
`pipeline_id`, `stage`, `status`, `amount` as Decimal128, `currency`, `probability`, `forecast_category`,
`expected_close` at midnight UTC, `opened_at`, `closed_at`, `stage_history` [{stage, entered_at, left_at}],
`lead_id`, `source`, `reason`, `order_id`) plus `name` and `category_overridden`. A pipeline document is
`_id`, `name`, `stages` [{stage_id, name, probability, forecast_category, requires}], `updated_at`.
"""

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel

from crm_sales.opportunities.domain import (
    DEFAULT_PIPELINE,
    DEFAULT_PIPELINE_ID,
    ClosedOutcome,
    Opportunity,
    Pipeline,
    Stage,
    StageVisit,
    days_in_stages,
    midnight,
)
from crm_shared.events import OrderLine
from crm_shared.money import ExchangeRates, UnknownCurrency
from crm_shared.store import IndexSpec, UnitOfWork

PIPELINES = "pipelines"
OPPORTUNITIES = "opportunities"

_NEWEST = [("opened_at", DESCENDING), ("_id", DESCENDING)]

INDEXES = (
    IndexSpec(OPPORTUNITIES, IndexModel(_NEWEST, name="newest_opened_first")),
    # A person's list is an $or of their owners and their territories: one index per branch.
    IndexSpec(OPPORTUNITIES, IndexModel([("owner_id", ASCENDING), *_NEWEST], name="by_owner_opened")),
    IndexSpec(OPPORTUNITIES, IndexModel([("territory", ASCENDING), *_NEWEST], name="by_territory_opened")),
    IndexSpec(OPPORTUNITIES, IndexModel([("customer_id", ASCENDING), *_NEWEST], name="by_customer_opened")),
    IndexSpec(OPPORTUNITIES, IndexModel([("account_id", ASCENDING), *_NEWEST], name="by_account_opened")),
    # The open opportunities of a stage (a pipeline change may not drop a stage they are in), and the closed
    # ones of a pipeline the learned probabilities count.
    IndexSpec(
        OPPORTUNITIES,
        IndexModel([("pipeline_id", ASCENDING), ("status", ASCENDING), ("stage", ASCENDING)], name="by_pipeline"),
    ),
    # A period's forecast: the open ones by expected close, the won ones by close.
    IndexSpec(OPPORTUNITIES, IndexModel([("status", ASCENDING), ("expected_close", ASCENDING)], name="by_close")),
    IndexSpec(OPPORTUNITIES, IndexModel([("status", ASCENDING), ("closed_at", ASCENDING)], name="by_closed")),
)


# ---------------------------------------------------------------- pipelines


def pipeline_to_document(pipeline: Pipeline, updated_at: datetime) -> dict[str, Any]:
    return {
        "_id": pipeline.pipeline_id,
        "name": pipeline.name,
        "stages": [
            {
                "stage_id": s.stage_id,
                "name": s.name,
                "probability": s.probability,
                "forecast_category": s.forecast_category,
                "requires": list(s.requires),
            }
            for s in pipeline.stages
        ],
        "updated_at": updated_at,
    }


def pipeline_from_document(doc: Mapping[str, Any]) -> Pipeline:
    return Pipeline(
        doc["_id"],
        doc["name"],
        tuple(
            Stage(
                s["stage_id"], s["name"], float(s["probability"]), s["forecast_category"], tuple(s.get("requires", ()))
            )
            for s in doc["stages"]
        ),
    )


async def get_pipeline(uow: UnitOfWork, pipeline_id: str) -> Pipeline | None:
    """The pipeline; the built-in default for `new-business` while none was stored under that id."""
    doc = await uow.db[PIPELINES].find_one({"_id": pipeline_id}, session=uow.session)
    if doc is not None:
        return pipeline_from_document(doc)
    return DEFAULT_PIPELINE if pipeline_id == DEFAULT_PIPELINE_ID else None


async def save_pipeline(uow: UnitOfWork, pipeline: Pipeline, at: datetime) -> None:
    await uow.db[PIPELINES].replace_one(
        {"_id": pipeline.pipeline_id}, pipeline_to_document(pipeline, at), upsert=True, session=uow.session
    )


async def open_in_stages(uow: UnitOfWork, pipeline_id: str, stages: tuple[str, ...]) -> dict[str, int]:
    """How many open opportunities each of `stages` of the pipeline holds (those with none left out)."""
    counts: dict[str, int] = {}
    for stage in stages:
        n = await uow.db[OPPORTUNITIES].count_documents(
            {"pipeline_id": pipeline_id, "status": "open", "stage": stage}, session=uow.session
        )
        if n:
            counts[stage] = n
    return counts


# ---------------------------------------------------------------- opportunities


def to_document(o: Opportunity) -> dict[str, Any]:
    return {
        "_id": o.opportunity_id,
        "customer_id": o.customer_id,
        "name": o.name,
        "account_id": o.account_id,
        "owner_id": o.owner_id,
        "territory": o.territory,
        "pipeline_id": o.pipeline_id,
        "stage": o.stage,
        "status": o.status,
        "amount": o.amount,
        "currency": o.currency,
        "probability": o.probability,
        "forecast_category": o.forecast_category,
        "category_overridden": o.category_overridden,
        "expected_close": midnight(o.expected_close) if o.expected_close else None,
        "opened_at": o.opened_at,
        "closed_at": o.closed_at,
        "stage_history": [
            {"stage": v.stage, "entered_at": v.entered_at, "left_at": v.left_at} for v in o.stage_history
        ],
        "lines": [line.model_dump() for line in o.lines],
        "lead_id": o.lead_id,
        "source": o.source,
        "reason": o.reason,
        "order_id": o.order_id,
    }


def from_document(doc: Mapping[str, Any]) -> Opportunity:
    expected = doc.get("expected_close")
    return Opportunity(
        opportunity_id=doc["_id"],
        customer_id=doc["customer_id"],
        name=doc.get("name") or doc["_id"],
        pipeline_id=doc["pipeline_id"],
        stage=doc["stage"],
        amount=doc["amount"],
        currency=doc["currency"],
        probability=float(doc["probability"]),
        forecast_category=doc["forecast_category"],
        category_overridden=bool(doc.get("category_overridden", False)),
        opened_at=doc["opened_at"],
        status=doc.get("status", "open"),
        expected_close=expected.date() if expected else None,
        owner_id=doc.get("owner_id"),
        territory=doc.get("territory"),
        account_id=doc.get("account_id"),
        lead_id=doc.get("lead_id"),
        source=doc.get("source"),
        closed_at=doc.get("closed_at"),
        reason=doc.get("reason"),
        order_id=doc.get("order_id"),
        stage_history=tuple(
            StageVisit(v["stage"], v["entered_at"], v.get("left_at")) for v in doc.get("stage_history", [])
        ),
        lines=tuple(OrderLine.model_validate(line) for line in doc.get("lines", [])),
    )


async def get_opportunity(uow: UnitOfWork, query: dict[str, Any]) -> Opportunity | None:
    doc = await uow.db[OPPORTUNITIES].find_one(query, session=uow.session)
    return from_document(doc) if doc else None


async def insert_opportunity(
    uow: UnitOfWork, opportunity: Opportunity, origin: Mapping[str, str] | None = None
) -> None:
    """Insert the opportunity; `origin`: the id it was asked for when it is filed under a merge's survivor."""
    await uow.db[OPPORTUNITIES].insert_one({**to_document(opportunity), **(origin or {})}, session=uow.session)


async def save_opportunity(uow: UnitOfWork, opportunity: Opportunity) -> None:
    # Set, not replaced: what an identity merge noted on it (origin_customer_id) stays.
    fields = {k: v for k, v in to_document(opportunity).items() if k != "_id"}
    await uow.db[OPPORTUNITIES].update_one({"_id": opportunity.opportunity_id}, {"$set": fields}, session=uow.session)


async def closed_outcomes(
    uow: UnitOfWork, pipeline_id: str, rates: ExchangeRates, source: str | None = None
) -> list[ClosedOutcome]:
    """The won and lost opportunities of the pipeline (of one lead source, when given): the stages they were in,
    the days in each, whether they were won and their amount in the reporting currency (None in a currency the
    table no longer knows). One query on the pipeline index, the stage history and amount only."""
    query: dict[str, Any] = {"pipeline_id": pipeline_id, "status": {"$in": ["won", "lost"]}}
    if source is not None:
        query["source"] = source
    projection = {"status": 1, "stage_history": 1, "closed_at": 1, "amount": 1, "currency": 1}
    outcomes: list[ClosedOutcome] = []
    async for doc in uow.db[OPPORTUNITIES].find(query, projection, session=uow.session):
        history = [StageVisit(v["stage"], v["entered_at"], v.get("left_at")) for v in doc.get("stage_history", [])]
        try:
            amount: Decimal | None = rates.convert(doc["amount"], doc["currency"])
        except UnknownCurrency:
            amount = None
        outcomes.append(
            ClosedOutcome(
                frozenset(v.stage for v in history),
                doc["status"] == "won",
                days_in_stages(history, doc["closed_at"]),
                amount,
            )
        )
    return outcomes
