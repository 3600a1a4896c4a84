"""The scoring database: `customers` (facts, scores and segments per customer), `segment_changes`,
`order_owners` (which customer each order id belongs to, so an order id reused by another customer is refused),
`population` (the statistics in force, one document), `model_params` (every model fit: adopted, kept out because
it moved less than the tolerance, or refused with its reasons) and `merged_customers` (the documents of customers
merged into another, as they were at the merge, for an unmerge: out of `customers`, so no population, decay pass,
rebuild or API listing sees them)."""

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel, ReplaceOne

from crm_scoring.domain import (
    MODEL_VERSION,
    Complaint,
    CustomerFacts,
    Interaction,
    OrderFacts,
    Paid,
    Placed,
    Referral,
    Refunded,
    Scores,
    Segments,
    Survey,
)
from crm_scoring.fitting import BaseFit
from crm_scoring.lifetime import FitQuality, GammaGammaParams, MbgNbdParams
from crm_scoring.merging import Origin, Origins
from crm_scoring.population import FittedModels, Population
from crm_shared.identity import ORIGIN
from crm_shared.store import IndexSpec, UnitOfWork

CUSTOMERS = "customers"
SEGMENT_CHANGES = "segment_changes"
ORDER_OWNERS = "order_owners"
POPULATION = "population"
MODEL_PARAMS = "model_params"
MERGED_CUSTOMERS = "merged_customers"
CURRENT = "current"

INDEXES = (
    IndexSpec(
        SEGMENT_CHANGES,
        IndexModel([("customer_id", ASCENDING), ("changed_at", ASCENDING), ("_id", ASCENDING)], name="by_customer"),
    ),
    IndexSpec(SEGMENT_CHANGES, IndexModel([("dimension", ASCENDING), ("changed_at", ASCENDING)], name="by_dimension")),
    # The decay pass reads only the customers that are due.
    IndexSpec(CUSTOMERS, IndexModel([("next_review_at", ASCENDING)], name="due_for_review", sparse=True)),
    IndexSpec(MODEL_PARAMS, IndexModel([("fitted_at", DESCENDING)], name="newest_first")),
)


@dataclass(frozen=True)
class CustomerScores:
    """A customer's document: the facts, the scores computed from them and the segments last published."""

    facts: CustomerFacts
    scores: Scores
    segments: Segments
    scored_as_of: datetime
    updated_at: datetime
    model_version: str = MODEL_VERSION
    population_version: str | None = None
    origins: Origins = field(default_factory=dict)
    """Which facts came from the ids merged into this customer (crm_scoring.merging), for an unmerge."""


# Facts are stored as lists sorted by key: ids may contain '.', which MongoDB field names should not.
def _order_to_document(order: OrderFacts) -> dict[str, Any]:
    return {
        "order_id": order.order_id,
        "placed": asdict(order.placed) if order.placed else None,
        "cancelled_at": order.cancelled_at,
        "refunds": [asdict(order.refunds[k]) for k in sorted(order.refunds)],
        "payments": [asdict(order.payments[k]) for k in sorted(order.payments)],
    }


def _order_from_document(doc: dict[str, Any]) -> OrderFacts:
    return OrderFacts(
        order_id=doc["order_id"],
        placed=Placed(**doc["placed"]) if doc.get("placed") else None,
        cancelled_at=doc.get("cancelled_at"),
        refunds={r["refund_id"]: Refunded(**r) for r in doc.get("refunds", [])},
        payments={p["payment_id"]: Paid(**p) for p in doc.get("payments", [])},
    )


def facts_to_document(facts: CustomerFacts) -> dict[str, Any]:
    return {
        "orders": [_order_to_document(facts.orders[k]) for k in sorted(facts.orders)],
        "complaints": [asdict(facts.complaints[k]) for k in sorted(facts.complaints)],
        "surveys": [asdict(facts.surveys[k]) for k in sorted(facts.surveys)],
        "interactions": [asdict(facts.interactions[k]) for k in sorted(facts.interactions)],
        "referrals": [asdict(facts.referrals[k]) for k in sorted(facts.referrals)],
    }


def facts_from_document(customer_id: str, doc: dict[str, Any]) -> CustomerFacts:
    return CustomerFacts(
        customer_id=customer_id,
        orders={o["order_id"]: _order_from_document(o) for o in doc.get("orders", [])},
        complaints={c["complaint_id"]: Complaint(**c) for c in doc.get("complaints", [])},
        surveys={s["survey_id"]: Survey(**s) for s in doc.get("surveys", [])},
        interactions={i["interaction_id"]: Interaction(**i) for i in doc.get("interactions", [])},
        referrals={r["referral_id"]: Referral(**r) for r in doc.get("referrals", [])},
    )


# A list, not a map by customer id: ids may contain '.' too.
def origins_to_document(origins: Origins) -> list[dict[str, Any]]:
    return [
        {
            "customer_id": origin.customer_id,
            "keys": sorted(origin.keys),
            "set_aside": facts_to_document(origin.set_aside),
        }
        for origin in (origins[k] for k in sorted(origins))
    ]


def origins_from_document(docs: Iterable[dict[str, Any]]) -> dict[str, Origin]:
    return {
        d["customer_id"]: Origin(
            d["customer_id"], frozenset(d["keys"]), facts_from_document(d["customer_id"], d.get("set_aside", {}))
        )
        for d in docs
    }


def to_document(customer: CustomerScores) -> dict[str, Any]:
    """The stored document; `origins` only on a customer others were merged into."""
    origins = {"origins": origins_to_document(customer.origins)} if customer.origins else {}
    return {
        "_id": customer.facts.customer_id,
        "facts": facts_to_document(customer.facts),
        "scores": asdict(customer.scores),
        "segments": asdict(customer.segments),
        "scored_as_of": customer.scored_as_of,
        "updated_at": customer.updated_at,
        "model_version": customer.model_version,
        "population_version": customer.population_version,
        "next_review_at": customer.scores.next_review_at,
        **origins,
    }


def from_document(doc: dict[str, Any]) -> CustomerScores:
    return CustomerScores(
        facts=facts_from_document(doc["_id"], doc["facts"]),
        scores=Scores(**doc["scores"]),
        segments=Segments(**doc["segments"]),
        scored_as_of=doc["scored_as_of"],
        updated_at=doc["updated_at"],
        model_version=doc.get("model_version", MODEL_VERSION),
        population_version=doc.get("population_version"),
        origins=origins_from_document(doc.get("origins", [])),
    )


async def get_customers(uow: UnitOfWork, customer_ids: Iterable[str]) -> dict[str, CustomerScores]:
    """The stored customers among `customer_ids`, by id."""
    docs = await uow.find_ids(CUSTOMERS, customer_ids)
    return {doc["_id"]: from_document(doc) for doc in docs}


async def save_customers(uow: UnitOfWork, customers: Iterable[CustomerScores]) -> None:
    """Write the customers in one bulk write."""
    writes = [ReplaceOne({"_id": c.facts.customer_id}, to_document(c), upsert=True) for c in customers]
    if writes:
        await uow.db[CUSTOMERS].bulk_write(writes, ordered=False, session=uow.session)


async def get_order_owners(uow: UnitOfWork, order_ids: Iterable[str]) -> dict[str, str]:
    """The customer each known order among `order_ids` belongs to, by order id."""
    docs = await uow.find_ids(ORDER_OWNERS, order_ids)
    return {doc["_id"]: str(doc["customer_id"]) for doc in docs}


async def claim_orders(uow: UnitOfWork, owners: Mapping[str, str], origins: Mapping[str, str] | None = None) -> None:
    """Record the owner of orders not known before (order id -> customer id), in one insert; `origins` gives the
    merged id an order was claimed for when its event named one (the order goes back to it on an unmerge)."""
    if owners:
        named = origins or {}
        documents = [
            {"_id": order_id, "customer_id": customer_id, **({ORIGIN: named[order_id]} if order_id in named else {})}
            for order_id, customer_id in owners.items()
        ]
        await uow.db[ORDER_OWNERS].insert_many(documents, ordered=False, session=uow.session)


async def insert_segment_changes(uow: UnitOfWork, changes: list[dict[str, Any]]) -> None:
    if changes:
        await uow.db[SEGMENT_CHANGES].insert_many(changes, ordered=False, session=uow.session)


def models_to_document(models: FittedModels) -> dict[str, Any]:
    return {
        "model_version": models.model_version,
        "mbgnbd": asdict(models.mbgnbd),
        "gamma_gamma": asdict(models.gamma_gamma),
        "fitted_at": models.fitted_at,
        "customers": models.customers,
        "repeat_buyers": models.repeat_buyers,
        "time_unit": "weeks",
    }


def models_from_document(doc: dict[str, Any]) -> FittedModels | None:
    """None for models stored before scoring used MBG/NBD (BG/NBD parameters): the next fit replaces them."""
    if "mbgnbd" not in doc:
        return None
    return FittedModels(
        model_version=doc["model_version"],
        mbgnbd=MbgNbdParams(**doc["mbgnbd"]),
        gamma_gamma=GammaGammaParams(**doc["gamma_gamma"]),
        fitted_at=doc["fitted_at"],
        customers=doc["customers"],
        repeat_buyers=doc["repeat_buyers"],
    )


def _quality_document(quality: FitQuality | None, params: dict[str, float] | None) -> dict[str, Any] | None:
    if quality is None or params is None:
        return None
    return {
        "gradient": quality.gradient,
        "maximum": quality.maximum,
        "relative_errors": quality.relative_errors,
        "standard_errors": quality.standard_errors(params),
    }


def fit_to_document(
    fit_id: str,
    fit: BaseFit,
    status: str,
    fitted_at: datetime,
    models: FittedModels | None,
    moved: list[str],
) -> dict[str, Any]:
    """A fit as `model_params` keeps it: the parameters (absurd ones too, for diagnosis), the checks and the
    outcome."""
    mbg = {k: v for k, v in asdict(fit.mbgnbd).items() if k != "log_likelihood"} if fit.mbgnbd else None
    gg = {k: v for k, v in asdict(fit.gamma_gamma).items() if k != "log_likelihood"} if fit.gamma_gamma else None
    holdout = fit.holdout
    return {
        "_id": fit_id,
        "status": status,
        "refusals": list(fit.refusals),
        "moved": moved,
        "model_version": models.model_version if models else None,
        "fitted_at": fitted_at,
        "data_end": fit.data_end.isoformat(),
        "customers": fit.customers,
        "repeat_buyers": fit.repeat_buyers,
        "mbgnbd": asdict(fit.mbgnbd) if fit.mbgnbd else None,
        "gamma_gamma": asdict(fit.gamma_gamma) if fit.gamma_gamma else None,
        "quality": {
            "mbgnbd": _quality_document(fit.mbgnbd_quality, mbg),
            "gamma_gamma": _quality_document(fit.gamma_gamma_quality, gg),
        },
        "spend_scale": fit.spend_scale,
        "holdout": {
            "calibration_end": holdout.calibration_end.isoformat(),
            "holdout_weeks": holdout.holdout_weeks,
            "customers": holdout.customers,
            "predicted_purchases": holdout.predicted_purchases,
            "actual_purchases": holdout.actual_purchases,
            "relative_error": holdout.relative_error,
        }
        if holdout
        else None,
        "time_unit": "weeks",
    }


def population_to_document(population: Population, computed_at: datetime) -> dict[str, Any]:
    doc = asdict(population)
    doc["models"] = models_to_document(population.models) if population.models else None
    for key in ("recency_cuts", "frequency_cuts", "monetary_cuts"):
        doc[key] = list(doc[key])
    return {**doc, "_id": CURRENT, "version": population.version, "computed_at": computed_at}


def population_from_document(doc: dict[str, Any]) -> Population:
    return Population(
        customers=doc["customers"],
        in_force=doc["in_force"],
        revenue_share=doc["revenue_share"],
        recency_cuts=tuple(doc["recency_cuts"]),
        frequency_cuts=tuple(doc["frequency_cuts"]),
        monetary_cuts=tuple(doc["monetary_cuts"]),
        high_value_monetary=doc["high_value_monetary"],
        median_frequency=doc["median_frequency"],
        median_average_order_value=doc["median_average_order_value"],
        models=models_from_document(doc["models"]) if doc.get("models") else None,
        exchange_rates=doc.get("exchange_rates"),
    )


async def get_population(uow: UnitOfWork) -> Population | None:
    doc = await uow.db[POPULATION].find_one({"_id": CURRENT}, session=uow.session)
    return population_from_document(doc) if doc else None
