"""Use cases of scoring: apply an order, ticket, interaction or referral event to the customer's facts, rescore,
and publish every segment change, exactly once; recompute the population statistics, pass over the customers due for
time decay, fit the customer-base models, and rebuild every customer's scores from the stored facts."""

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal

import numpy as np
from pymongo.errors import BulkWriteError, DuplicateKeyError

from crm_scoring import domain, fitting, lifetime, merging, population, repository
from crm_scoring.repository import CustomerScores
from crm_shared import identity
from crm_shared.consumer import Rejected
from crm_shared.events import (
    ActivityCompleted,
    ActivityCompletedEvent,
    CloudEvent,
    ComplaintFiled,
    ComplaintFiledEvent,
    CustomerReferred,
    CustomerReferredEvent,
    InteractionLogged,
    InteractionLoggedEvent,
    OrderCancelled,
    OrderCancelledEvent,
    OrderPaid,
    OrderPaidEvent,
    OrderPlaced,
    OrderPlacedEvent,
    OrderRefunded,
    OrderRefundedEvent,
    ScoreSnapshot,
    SegmentChanged,
    SegmentChangedEvent,
    SurveyAnswered,
    SurveyAnsweredEvent,
    derived_event_id,
    utc_now,
)
from crm_shared.logging import get_logger
from crm_shared.money import ExchangeRates
from crm_shared.store import Batch, BatchOutcome, Store, UnitOfWork, is_duplicate_key
from crm_shared.topics import Topic

SOURCE = "/crm/scoring"
DEFAULT_THRESHOLDS = domain.Thresholds()

log = get_logger(__name__)


@dataclass(frozen=True)
class Scored:
    """The customer as scored after the event, and the segment changes it published."""

    customer: CustomerScores | None
    changes: list[SegmentChangedEvent]


ACTIVITY_CHANNELS = {"call": "phone", "meeting": "face_to_face", "visit": "face_to_face", "email": "email"}
"""The sales activities that are interactions with the customer once done, and the channel each is in."""


def fact_of(event: CloudEvent[Any]) -> domain.Fact:
    """The domain fact an event carries, at the event's own time."""
    data, at = event.data, event.time
    if isinstance(data, OrderPlaced):
        return domain.Placed(data.order_id, data.total, data.currency, at, data.product_line)
    if isinstance(data, OrderCancelled):
        return domain.Cancelled(data.order_id, at)
    if isinstance(data, OrderRefunded):
        return domain.Refunded(data.order_id, event.id, data.amount, at, data.currency)
    if isinstance(data, OrderPaid):
        return domain.Paid(data.order_id, event.id, data.amount, at, data.currency)
    if isinstance(data, ComplaintFiled):
        return domain.Complaint(data.complaint_id, data.severity, data.dimension, at)
    if isinstance(data, SurveyAnswered):
        return domain.Survey(data.survey_id, data.kind, data.score, data.dimension, at)
    if isinstance(data, InteractionLogged):
        return domain.Interaction(data.interaction_id, data.kind, data.channel, at)
    if isinstance(data, CustomerReferred):
        return domain.Referral(data.referral_id, data.referred_customer_id, at)
    if isinstance(data, ActivityCompleted) and data.kind in ACTIVITY_CHANNELS:
        return domain.Interaction(data.activity_id, data.kind, ACTIVITY_CHANNELS[data.kind], at)
    raise Rejected(f"scoring does not handle events of type {event.type}")


def check_priced(fact: domain.Fact, rates: ExchangeRates) -> None:
    """Raises Rejected for an order, refund or payment in a currency with no rate: it could not be converted into
    the reporting currency, and adding it to other currencies as it is would be wrong (sales refuses these, but
    its table may differ from scoring's, or the event predate the check)."""
    if not isinstance(fact, domain.Placed | domain.Refunded | domain.Paid):
        return
    if fact.currency is not None and not rates.knows(fact.currency):
        what = {domain.Placed: "order", domain.Refunded: "refund on order", domain.Paid: "payment on order"}[type(fact)]
        raise Rejected(f"{what} {fact.order_id} not scored: {rates.unknown_currency_reason(fact.currency)}")


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
        rfm_score=scores.rfm_score,
        rfm_segment=scores.rfm_segment,
        loyalty_stage=scores.loyalty_stage,
        probability_alive=scores.probability_alive,
        lifetime_value=scores.lifetime_value,
    )


def change_document(event: SegmentChangedEvent) -> dict[str, Any]:
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


CONSUMER = "scoring"
ORDER_FACTS = (domain.Placed, domain.Cancelled, domain.Refunded, domain.Paid)


def segment_change_events(
    customer_id: str,
    old_segments: domain.Segments,
    scores: domain.Scores,
    cause: CloudEvent[Any],
    *id_parts: str,
) -> list[SegmentChangedEvent]:
    """One crm.segment.changed.v1 per dimension that moved from `old_segments`, caused by `cause` (at its time),
    with ids derived from (*`id_parts`, dimension)."""
    return [
        SegmentChangedEvent.create(
            SegmentChanged(
                customer_id=customer_id,
                dimension=dimension,
                old=old,
                new=new,
                scores=snapshot(scores),
                model_version=domain.MODEL_VERSION,
                changed_at=cause.time,
                caused_by=cause.id,
            ),
            source=SOURCE,
            id=derived_event_id(SOURCE, *id_parts, dimension),
            time=cause.time,
            cause=cause,
        )
        for dimension, old, new in domain.segment_changes(old_segments, scores.segments)
    ]


def scored_customer(
    facts: domain.CustomerFacts,
    as_of: datetime,
    thresholds: domain.Thresholds,
    pop: population.Population | None,
    origins: merging.Origins,
) -> CustomerScores:
    """The customer's document scored from `facts` as of `as_of` (pure but for the update time)."""
    scores = domain.score(facts, as_of, thresholds, pop)
    version = pop.version if pop else None
    return CustomerScores(facts, scores, scores.segments, as_of, utc_now(), population_version=version, origins=origins)


def score_event(
    before: CustomerScores | None,
    event: CloudEvent[Any],
    fact: domain.Fact,
    thresholds: domain.Thresholds,
    pop: population.Population | None,
) -> Scored:
    """The customer after `fact` and the segment changes it causes (pure). Raises Rejected on a contradiction. A
    fact from an event that named a merged id (filed under the survivor) is remembered as that id's."""
    known = before.facts if before else domain.CustomerFacts(event.customer_id)
    try:
        facts = domain.record(known, fact)
    except domain.FactRejected as exc:
        raise Rejected(str(exc)) from exc
    if before is not None and facts == known:
        return Scored(before, [])
    # The newest fact's time, not the wall clock: replaying the same events gives the same scores. Never
    # before the time the customer was last scored as of (a decay pass), so a stage is not undone by a
    # late event that is older than the pass.
    as_of = max(facts.latest_at or event.time, before.scored_as_of if before else event.time)
    origins = merging.attribute(before.origins if before else {}, known, facts, event.origin_customer_id)
    customer = scored_customer(facts, as_of, thresholds, pop, origins)
    old_segments = before.segments if before else domain.initial_segments(thresholds)
    return Scored(customer, segment_change_events(event.customer_id, old_segments, customer.scores, event, event.id))


async def apply_events(
    store: Store,
    events: Sequence[CloudEvent[Any]],
    thresholds: domain.Thresholds = DEFAULT_THRESHOLDS,
    *,
    relevant: Callable[[CloudEvent[Any]], bool] | None = None,
) -> BatchOutcome:
    """Add each event's fact, rescore as of the newest fact, and emit one crm.segment.changed.v1 per dimension that
    changed, the batch in one transaction, each event seeing the ones before it; a redelivered event changes
    nothing. A contradiction (an order another customer owns, facts that disagree), or money in a currency with no
    rate in `thresholds.exchange_rates`, rejects that event with Rejected (the consumer dead-letters it with the
    reason); the others are applied. The result of each applied event is its `Scored`."""

    async def work(uow: UnitOfWork, batch: Batch[CloudEvent[Any]]) -> None:
        facts: dict[str, domain.Fact] = {}
        for event in batch.events:
            try:
                fact = fact_of(event)
                check_priced(fact, thresholds.exchange_rates)
            except Rejected as exc:
                batch.reject(event, exc)
                continue
            facts[event.id] = fact
        if not facts:
            return
        named = {e.customer_id for e in batch.events if e.id in facts}
        customers = await repository.get_customers(uow, named)
        filed = await _filed_under_survivors(uow, [e for e in batch.events if e.id in facts], named - customers.keys())
        if survivors := {e.customer_id for e in filed} - named:
            customers |= await repository.get_customers(uow, survivors)
        owners = await repository.get_order_owners(
            uow, (f.order_id for f in facts.values() if isinstance(f, ORDER_FACTS))
        )
        pop = await repository.get_population(uow)
        claimed: dict[str, str] = {}
        claimed_for: dict[str, str] = {}
        changed: dict[str, CustomerScores] = {}
        change_documents: list[dict[str, Any]] = []
        for event in filed:
            fact, customer_id = facts[event.id], event.customer_id
            before = customers.get(customer_id)
            try:
                if isinstance(fact, ORDER_FACTS):
                    owner = owners.get(fact.order_id, customer_id)
                    if owner != customer_id:
                        raise Rejected(f"order {fact.order_id} belongs to customer {owner}, not {customer_id}")
                scored = score_event(before, event, fact, thresholds, pop)
            except Rejected as exc:
                batch.reject(event, exc)
                continue
            # The first event of the batch to claim an order owns it, as when the events are applied one by one.
            if isinstance(fact, ORDER_FACTS) and fact.order_id not in owners:
                owners[fact.order_id] = claimed[fact.order_id] = customer_id
                if event.origin_customer_id != customer_id:
                    claimed_for[fact.order_id] = event.origin_customer_id
            batch.done(event, scored)
            if scored.customer is not None and scored.customer is not before:
                customers[customer_id] = changed[customer_id] = scored.customer
            for change in scored.changes:
                change_documents.append(change_document(change))
                uow.emit(change, Topic.SCORING_SEGMENTS)
        await repository.save_customers(uow, changed.values())
        await repository.claim_orders(uow, claimed, claimed_for)
        await repository.insert_segment_changes(uow, change_documents)

    outcome = await store.apply_batch(CONSUMER, events, work, relevant=relevant)
    for event_id in outcome.applied:
        result: Scored = outcome.results[event_id]
        for change in result.changes:
            log.info(
                "segment_changed",
                event_id=event_id,
                customer_id=change.data.customer_id,
                dimension=change.data.dimension,
                old=change.data.old,
                new=change.data.new,
            )
    return outcome


async def _filed_under_survivors(
    uow: UnitOfWork, events: list[CloudEvent[Any]], unknown: set[str]
) -> list[CloudEvent[Any]]:
    """The events, each naming an id merged away filed under its survivor, as the batch consumer files them
    (crm_shared.identity.redirect), but in this transaction: a merge that committed after the consumer looked
    would otherwise leave an event for the merged id to bring its document back. Only an id with no document
    (`unknown`) can be merged away: a merge moves the document out with the alias it writes."""
    aliases = uow.db[identity.ALIASES]
    if not unknown or await aliases.find_one({}, {"_id": 1}, session=uow.session) is None:
        return events
    survivors = await identity.resolve(uow.db, unknown, session=uow.session)
    if not survivors:
        return events
    filed: list[CloudEvent[Any]] = []
    for event in events:
        survivor = survivors.get(event.subject)
        if survivor is None or isinstance(event, identity.NOT_REDIRECTED):
            filed.append(event)
            continue
        data = event.data.model_copy(update={"customer_id": survivor})
        original = event.originalsubject or event.subject
        filed.append(event.model_copy(update={"subject": survivor, "data": data, "originalsubject": original}))
    return filed


def is_sales_fact(event: CloudEvent[Any]) -> bool:
    """Of sales' events, the order facts are scoring's concern, and activities done with the customer that are
    interactions (a call, meeting, visit or email); opportunities, quotes, leads and tasks are not."""
    if isinstance(event, ActivityCompletedEvent):
        return event.data.kind in ACTIVITY_CHANNELS
    return isinstance(event, OrderPlacedEvent | OrderPaidEvent | OrderCancelledEvent | OrderRefundedEvent)


async def apply_sales_events(
    store: Store, events: Sequence[CloudEvent[Any]], thresholds: domain.Thresholds = DEFAULT_THRESHOLDS
) -> BatchOutcome:
    """Order facts and interactions from sales (see apply_events); the other sales events are ignored."""
    outcome = await apply_events(store, events, thresholds, relevant=is_sales_fact)
    for event_id in outcome.ignored:
        log.debug("sales_event_not_used", event_id=event_id)
    return outcome


def is_support_fact(event: CloudEvent[Any]) -> bool:
    """Of support's events, complaints and survey answers are scoring's concern; tickets' lifecycle is not."""
    return isinstance(event, ComplaintFiledEvent | SurveyAnsweredEvent)


async def apply_support_events(
    store: Store, events: Sequence[CloudEvent[Any]], thresholds: domain.Thresholds = DEFAULT_THRESHOLDS
) -> BatchOutcome:
    """Complaints and survey answers from support (see apply_events); the other support events are ignored."""
    outcome = await apply_events(store, events, thresholds, relevant=is_support_fact)
    for event_id in outcome.ignored:
        log.debug("support_event_not_used", event_id=event_id)
    return outcome


def is_customer_fact(event: CloudEvent[Any]) -> bool:
    """Of the customer service's events, interactions and referrals are scoring's concern."""
    return isinstance(event, InteractionLoggedEvent | CustomerReferredEvent)


async def apply_customer_events(
    store: Store, events: Sequence[CloudEvent[Any]], thresholds: domain.Thresholds = DEFAULT_THRESHOLDS
) -> BatchOutcome:
    """Interactions and referrals become facts of the customer (see apply_events); sign-ups and consent changes
    are not scoring's concern and are ignored."""
    outcome = await apply_events(store, events, thresholds, relevant=is_customer_fact)
    for event_id in outcome.ignored:
        log.debug("customer_event_not_used", event_id=event_id)
    return outcome


async def apply_event(
    store: Store, event: CloudEvent[Any], thresholds: domain.Thresholds = DEFAULT_THRESHOLDS
) -> Scored:
    """One event (see apply_events): the customer after it and the changes published; raises AlreadyApplied for
    a redelivery, Rejected for a contradiction or money in a currency with no rate."""
    scored: Scored = (await apply_events(store, [event], thresholds)).result_of(event)
    return scored


async def apply_customer_event(
    store: Store, event: CloudEvent[Any], thresholds: domain.Thresholds = DEFAULT_THRESHOLDS
) -> Scored | None:
    """One event of the customer service (see apply_customer_events): None for a type scoring does not use."""
    scored: Scored | None = (await apply_customer_events(store, [event], thresholds)).result_of(event)
    return scored


RESCORE_CHUNK = 200


async def _rescore(
    store: Store,
    customer_ids: Sequence[str],
    thresholds: domain.Thresholds,
    *,
    as_of_for: Callable[[CustomerScores], datetime],
    caused_by: str,
    changed_at: datetime,
    id_parts: Callable[[str, str], tuple[str, ...]],
    only_if: Callable[[CustomerScores], bool] = lambda _: True,
) -> list[SegmentChangedEvent]:
    """Rescore customers from their stored facts, RESCORE_CHUNK of them per transaction (one read and one bulk
    write per collection); emit a change per segment that moved, with ids derived from (customer,
    *`id_parts(dimension, new)`) so a rerun cannot publish a change twice."""

    async def rescore(ids: Sequence[str]) -> list[SegmentChangedEvent]:
        async def work(uow: UnitOfWork) -> list[SegmentChangedEvent]:
            found = await repository.get_customers(uow, ids)
            pop = await repository.get_population(uow)
            version = pop.version if pop else None
            saved: list[CustomerScores] = []
            changes: list[SegmentChangedEvent] = []
            for customer_id in ids:
                before = found.get(customer_id)
                if before is None or not only_if(before):
                    continue
                as_of = as_of_for(before)
                scores = domain.score(before.facts, as_of, thresholds, pop)
                if scores == before.scores and as_of == before.scored_as_of and version == before.population_version:
                    continue
                saved.append(
                    CustomerScores(
                        before.facts,
                        scores,
                        scores.segments,
                        as_of,
                        utc_now(),
                        population_version=version,
                        origins=before.origins,
                    )
                )
                for dimension, old, new in domain.segment_changes(before.segments, scores.segments):
                    changes.append(
                        SegmentChangedEvent.create(
                            SegmentChanged(
                                customer_id=customer_id,
                                dimension=dimension,
                                old=old,
                                new=new,
                                scores=snapshot(scores),
                                model_version=domain.MODEL_VERSION,
                                changed_at=changed_at,
                                caused_by=caused_by,
                            ),
                            source=SOURCE,
                            id=derived_event_id(SOURCE, customer_id, *id_parts(dimension, new)),
                            time=changed_at,
                        )
                    )
            await repository.save_customers(uow, saved)
            await repository.insert_segment_changes(uow, [change_document(c) for c in changes])
            for change in changes:
                uow.emit(change, Topic.SCORING_SEGMENTS)
            return changes

        return await store.transaction(work)

    changes: list[SegmentChangedEvent] = []
    for start in range(0, len(customer_ids), RESCORE_CHUNK):
        chunk = customer_ids[start : start + RESCORE_CHUNK]
        try:
            changes += await rescore(chunk)
        except (DuplicateKeyError, BulkWriteError) as exc:
            if not is_duplicate_key(exc):
                raise
            # A concurrent pass published one of the same changes (same derived id) first: one by one, the others
            # still go through and the duplicate alone is skipped.
            for customer_id in chunk:
                try:
                    changes += await rescore([customer_id])
                except (DuplicateKeyError, BulkWriteError) as exc:
                    if not is_duplicate_key(exc):
                        raise
    for change in changes:
        log.info(
            "segment_changed",
            customer_id=change.data.customer_id,
            dimension=change.data.dimension,
            old=change.data.old,
            new=change.data.new,
            caused_by=caused_by,
        )
    return changes


async def decay_pass(store: Store, thresholds: domain.Thresholds, now: datetime) -> list[SegmentChangedEvent]:
    """Rescore as of `now` the customers whose next review is due (a lifecycle boundary crossed with no event):
    caused_by "decay:<date>", ids from (customer, dimension, new value, date), so a rerun emits nothing new."""
    day = f"{now:%Y-%m-%d}"
    due = store.db[repository.CUSTOMERS].find({"next_review_at": {"$lte": now}}, {"_id": 1}).sort("next_review_at", 1)
    return await _rescore(
        store,
        [str(doc["_id"]) for doc in await due.to_list(None)],
        thresholds,
        as_of_for=lambda c: max(now, c.scored_as_of),
        caused_by=f"decay:{day}",
        changed_at=now,
        id_parts=lambda dimension, new: ("decay", dimension, new, day),
        only_if=lambda c: c.scores.next_review_at is not None and c.scores.next_review_at <= now,
    )


class FitRefused(Exception):
    """The models were not fitted, or the fit failed a check; the reasons are the message."""


FitStatus = Literal["adopted", "within_tolerance", "refused"]
FIT_HISTORY = timedelta(days=30)


@dataclass(frozen=True)
class FitOutcome:
    """A fit and what became of it: adopted (it is in force now), within_tolerance (it passed every check but
    moved no parameter by more than the tolerance, so the models in force stay), or refused (see `fit.refusals`)."""

    fit_id: str
    fit: fitting.BaseFit
    status: FitStatus
    models: population.FittedModels | None
    moved: list[str]
    fitted_at: datetime


async def _buyers(store: Store) -> list[dict[str, Any]]:
    query = {"scores.frequency": {"$gte": 1}}
    return await store.db[repository.CUSTOMERS].find(query, {"scores": 1}).to_list(None)


async def fit_models(
    store: Store, thresholds: domain.Thresholds, now: datetime, in_force: population.FittedModels | None = None
) -> FitOutcome:
    """Fit MBG/NBD and Gamma-Gamma on every customer's counted orders (time in weeks, up to the newest order's
    day), check the fit (fitting.py), and record it in `model_params` with its outcome; `in_force` is what it would
    replace. A refused fit is logged with its reasons and the models in force stay (or the rules, without any)."""
    docs = await store.db[repository.CUSTOMERS].find({"scores.frequency": {"$gte": 1}}, {"facts": 1}).to_list(None)
    ids: list[str] = []
    days: list[date] = []
    amounts: list[float] = []
    for doc in docs:
        facts = repository.facts_from_document(str(doc["_id"]), doc["facts"])
        for placed, value in domain.counted_orders(facts, thresholds.exchange_rates):
            ids.append(facts.customer_id)
            days.append(lifetime.purchase_day(placed.at))
            amounts.append(float(value))
    limits = thresholds.fit_limits

    def fit() -> fitting.BaseFit:
        if not ids:
            return fitting.BaseFit(now.date(), 0, 0, refusals=(_too_few(0, limits),))
        return fitting.fit_customer_base(
            np.array(ids), np.array(days, dtype="datetime64[D]"), np.array(amounts), max(days), limits
        )

    result = await asyncio.to_thread(fit)
    models: population.FittedModels | None = None
    moved: list[str] = []
    status: FitStatus = "refused"
    if result.accepted and result.mbgnbd is not None and result.gamma_gamma is not None:
        version = lifetime.model_version(result.mbgnbd, result.gamma_gamma, result.data_end)
        models = population.FittedModels(
            version, result.mbgnbd, result.gamma_gamma, now, result.customers, result.repeat_buyers
        )
        if in_force is None:
            status, moved = "adopted", ["models"]
        else:
            candidate = (result.mbgnbd, result.gamma_gamma)
            moved = fitting.moved_beyond(
                (in_force.mbgnbd, in_force.gamma_gamma), candidate, thresholds.population_tolerance
            )
            status = "adopted" if moved else "within_tolerance"
    fit_id = f"fit-{now:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:6]}"
    document = repository.fit_to_document(fit_id, result, status, now, models, moved)
    fits = store.db[repository.MODEL_PARAMS]
    await fits.insert_one(document)
    # A fit runs every population interval: keep those that were not adopted for FIT_HISTORY only.
    await fits.delete_many({"status": {"$ne": "adopted"}, "fitted_at": {"$lt": now - FIT_HISTORY}})
    if status == "refused":
        # Too little data is the normal state of a young platform; a fit that ran and failed its checks is news.
        report = log.warning if result.mbgnbd is not None else log.info
        report("models_refused", fit_id=fit_id, customers=result.customers, reasons=list(result.refusals))
    else:
        log.info("models_fitted", fit_id=fit_id, status=status, model_version=models and models.model_version)
    return FitOutcome(fit_id, result, status, models, moved, now)


def _too_few(customers: int, limits: fitting.FitLimits) -> str:
    return (
        f"{customers} customers have ordered; fitting needs at least {limits.min_customers} "
        "(CRM_SCORING_MIN_FIT_CUSTOMERS)"
    )


async def recent_fits(store: Store, limit: int = 20) -> list[dict[str, Any]]:
    """The newest fits first, whatever became of them (BG/NBD fits stored before fits were checked are left out)."""
    query = {"status": {"$exists": True}}
    return await store.db[repository.MODEL_PARAMS].find(query).sort("fitted_at", -1).limit(limit).to_list(None)


@dataclass(frozen=True)
class Refreshed:
    """A refresh: the population in force after it, whether the recomputed one replaced it (`adopted`, because
    `moved` moved beyond the tolerance), how many customers were rescored, and the fit, when one was made."""

    population: population.Population
    computed_at: datetime
    rescored: int
    changes: list[SegmentChangedEvent]
    adopted: bool = False
    moved: list[str] = field(default_factory=list)
    fit: FitOutcome | None = None


async def refresh_population(
    store: Store, thresholds: domain.Thresholds, now: datetime, *, fit: bool = True
) -> Refreshed:
    """Recompute the population statistics (fitting the models first when `fit`) and put them in force only when
    one moved by more than the tolerance (CRM_SCORING_POPULATION_TOLERANCE) or the models changed; then rescore
    only the customers whose segments the move can change (population.affected_ranges), and label the others with
    the new version in one write. A segment change is caused_by "population:<version>", with ids derived from
    that version, so a rerun emits nothing new. Customers scored under any other version are rescored too."""
    found = await current_population(store)
    in_force = found[0] if found else None
    models = in_force.models if in_force else None
    outcome: FitOutcome | None = None
    if fit:
        outcome = await fit_models(store, thresholds, now, models)
        if outcome.status == "adopted":
            models = outcome.models
    values = [
        population.CustomerValue(
            d["scores"]["last_order_at"],
            d["scores"]["frequency"],
            d["scores"]["monetary"],
            d["scores"]["average_order_value"],
        )
        for d in await _buyers(store)
    ]
    candidate = population.compute(
        values,
        revenue_share=thresholds.high_value_revenue_share,
        min_population=thresholds.min_population,
        models=models,
        exchange_rates=thresholds.exchange_rates.describe(),
    )
    newest = max((v.last_order_at for v in values), default=None)
    moved = (
        ["first"]
        if in_force is None
        else population.moved(in_force, candidate, thresholds.population_tolerance, newest)
    )
    customers = store.db[repository.CUSTOMERS]
    relabelled = 0
    in_force_since = now
    if moved:
        pop = candidate
        document = repository.population_to_document(pop, now)
        await store.db[repository.POPULATION].replace_one({"_id": repository.CURRENT}, document, upsert=True)
        log.info("population_changed", version=pop.version, customers=pop.customers, moved=moved)
        stale_query: dict[str, Any] = {"population_version": {"$ne": pop.version}}
        if in_force is not None and not population.whole_base_changes(in_force, pop):
            near = [
                {field: {"$gte": low, "$lte": high}} for field, low, high in population.affected_ranges(in_force, pop)
            ]
            old = {"population_version": in_force.version}
            relabel = {**old, "$nor": near} if near else old
            result = await customers.update_many(relabel, {"$set": {"population_version": pop.version}})
            relabelled = result.modified_count
    else:
        assert in_force is not None and found is not None
        pop, in_force_since = in_force, found[1].get("computed_at", now)
        stale_query = {"population_version": {"$ne": pop.version}}
        if candidate.version == in_force.version and candidate != in_force:
            # Statistics not in force share one version (they change nobody's scores): show the current ones.
            pop = candidate
            document = repository.population_to_document(pop, in_force_since)
            await store.db[repository.POPULATION].replace_one({"_id": repository.CURRENT}, document, upsert=True)
    ids = [str(d["_id"]) for d in await customers.find(stale_query, {"_id": 1}).to_list(None)]
    version = pop.version
    changes = await _rescore(
        store,
        ids,
        thresholds,
        as_of_for=lambda c: c.scored_as_of,
        caused_by=f"population:{version}",
        changed_at=now,
        id_parts=lambda dimension, new: ("population", version, dimension, new),
    )
    last_refresh = {
        "at": now,
        "customers": candidate.customers,
        "adopted": bool(moved),
        "moved": moved,
        "rescored": len(ids),
        "relabelled": relabelled,
        "fit": outcome.status if outcome else None,
    }
    await store.db[repository.POPULATION].update_one(
        {"_id": repository.CURRENT}, {"$set": {"last_refresh": last_refresh}}
    )
    log.info("population_refreshed", version=version, adopted=bool(moved), moved=moved, rescored=len(ids))
    return Refreshed(pop, in_force_since, len(ids), changes, bool(moved), moved, outcome)


async def current_population(store: Store) -> tuple[population.Population, dict[str, Any]] | None:
    doc = await store.db[repository.POPULATION].find_one({"_id": repository.CURRENT})
    return (repository.population_from_document(doc), doc) if doc else None


@dataclass(frozen=True)
class Rebuilt:
    customers: int
    different: list[str]


async def rebuild(store: Store, thresholds: domain.Thresholds) -> Rebuilt:
    """Recompute every customer's scores from their stored facts, as of the time they were scored, under the
    population in force; the ids of those whose live scores or segments differ."""
    found = await current_population(store)
    pop = found[0] if found else None
    different: list[str] = []
    count = 0
    async for doc in store.db[repository.CUSTOMERS].find({}):
        count += 1
        live = repository.from_document(doc)
        scores = domain.score(live.facts, live.scored_as_of, thresholds, pop)
        if scores != live.scores or scores.segments != live.segments:
            different.append(live.facts.customer_id)
    return Rebuilt(count, different)


async def every(seconds: float, job: Callable[[], Awaitable[Any]], name: str, *, first_after: float) -> None:
    """Run `job` every `seconds` until cancelled; a failing run is logged and the next one still happens."""
    await asyncio.sleep(first_after)
    while True:
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("job_failed", job=name, error=f"{type(exc).__name__}: {str(exc)[:300]}")
        await asyncio.sleep(seconds)


async def find_customer(store: Store, customer_id: str) -> CustomerScores | None:
    doc = await store.db[repository.CUSTOMERS].find_one({"_id": customer_id})
    return repository.from_document(doc) if doc else None
