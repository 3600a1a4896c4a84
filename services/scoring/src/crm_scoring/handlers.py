"""Use cases of scoring: apply an order or ticket event to the customer's facts, rescore, and publish
every segment change, exactly once."""

from dataclasses import dataclass
from typing import Any

from crm_scoring import domain, repository
from crm_scoring.repository import CustomerScores
from crm_shared.consumer import Rejected
from crm_shared.events import (
    CloudEvent,
    ComplaintFiled,
    OrderCancelled,
    OrderPaid,
    OrderPlaced,
    OrderRefunded,
    ScoreSnapshot,
    SegmentChanged,
    SegmentChangedEvent,
    SurveyAnswered,
    derived_event_id,
    utc_now,
)
from crm_shared.logging import get_logger
from crm_shared.store import Store, UnitOfWork
from crm_shared.topics import Topic

SOURCE = "/crm/scoring"
DEFAULT_THRESHOLDS = domain.Thresholds()

log = get_logger(__name__)


@dataclass(frozen=True)
class Scored:
    """The customer as scored after the event, and the segment changes it published."""

    customer: CustomerScores | None
    changes: list[SegmentChangedEvent]


def fact_of(event: CloudEvent[Any]) -> domain.Fact:
    """The domain fact an event carries, at the event's own time."""
    data, at = event.data, event.time
    if isinstance(data, OrderPlaced):
        return domain.Placed(data.order_id, data.total, data.currency, at)
    if isinstance(data, OrderCancelled):
        return domain.Cancelled(data.order_id, at)
    if isinstance(data, OrderRefunded):
        return domain.Refunded(data.order_id, event.id, data.amount, at)
    if isinstance(data, OrderPaid):
        return domain.Paid(data.order_id, event.id, data.amount, at)
    if isinstance(data, ComplaintFiled):
        return domain.Complaint(data.complaint_id, data.severity, data.dimension, at)
    if isinstance(data, SurveyAnswered):
        return domain.Survey(data.survey_id, data.kind, data.score, data.dimension, at)
    raise Rejected(f"scoring does not handle events of type {event.type}")


def snapshot(scores: domain.Scores) -> ScoreSnapshot:
    return ScoreSnapshot(
        recency_days=scores.recency_days,
        frequency=scores.frequency,
        monetary=scores.monetary,
        average_order_value=scores.average_order_value,
        value_tier=scores.value_tier,
        lifecycle_stage=scores.lifecycle_stage,
        churn_risk=scores.churn_risk,
        churn_risk_band=scores.churn_risk_band,
        satisfaction=scores.satisfaction,
    )


def _change_document(event: SegmentChangedEvent) -> dict[str, Any]:
    change = event.data
    return {
        "_id": event.id,
        "customer_id": change.customer_id,
        "dimension": change.dimension,
        "old": change.old,
        "new": change.new,
        "changed_at": change.changed_at,
        "caused_by": change.caused_by,
        "model_version": change.model_version,
        "scores": change.scores.model_dump(mode="python"),
    }


async def apply_event(
    store: Store, event: CloudEvent[Any], thresholds: domain.Thresholds = DEFAULT_THRESHOLDS
) -> Scored:
    """Add the event's fact, rescore as of the newest fact, and emit one crm.segment.changed.v1 per
    dimension that changed. A redelivered event raises AlreadyApplied; a contradiction raises Rejected."""
    fact = fact_of(event)
    customer_id = event.customer_id

    async def work(uow: UnitOfWork) -> Scored:
        if isinstance(fact, domain.Placed | domain.Cancelled | domain.Refunded | domain.Paid):
            owner = await repository.claim_order(uow, fact.order_id, customer_id)
            if owner != customer_id:
                raise Rejected(f"order {fact.order_id} belongs to customer {owner}, not {customer_id}")
        before = await repository.get_customer(uow, customer_id)
        known = before.facts if before else domain.CustomerFacts(customer_id)
        try:
            facts = domain.record(known, fact)
        except domain.FactRejected as exc:
            raise Rejected(str(exc)) from exc
        if before is not None and facts == known:
            return Scored(before, [])
        # The newest fact's time, not the wall clock: replaying the same events gives the same scores.
        as_of = facts.latest_at or event.time
        scores = domain.score(facts, as_of, thresholds)
        customer = CustomerScores(facts, scores, scores.segments, as_of, utc_now())
        await repository.save_customer(uow, customer)
        old_segments = before.segments if before else domain.initial_segments(thresholds)
        changes = []
        for dimension, old, new in domain.segment_changes(old_segments, scores.segments):
            change = SegmentChangedEvent.create(
                SegmentChanged(
                    customer_id=customer_id,
                    dimension=dimension,
                    old=old,
                    new=new,
                    scores=snapshot(scores),
                    model_version=domain.MODEL_VERSION,
                    changed_at=event.time,
                    caused_by=event.id,
                ),
                source=SOURCE,
                id=derived_event_id(SOURCE, event.id, dimension),
                time=event.time,
                cause=event,
            )
            await repository.insert_segment_change(uow, _change_document(change))
            uow.emit(change, Topic.SCORING_SEGMENTS)
            changes.append(change)
        return Scored(customer, changes)

    result = await store.transaction(work, applies=f"scoring:{event.id}")
    for change in result.changes:
        log.info(
            "segment_changed",
            customer_id=customer_id,
            dimension=change.data.dimension,
            old=change.data.old,
            new=change.data.new,
        )
    return result


async def find_customer(store: Store, customer_id: str) -> CustomerScores | None:
    doc = await store.db[repository.CUSTOMERS].find_one({"_id": customer_id})
    return repository.from_document(doc) if doc else None
