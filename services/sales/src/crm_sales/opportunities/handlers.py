"""Use cases of pipelines and opportunities: define a pipeline, open an opportunity, change it, move it through
the stages, win it (optionally as an order) or lose it; each change published on crm.sales.events, each
person only the opportunities they see. The win probability learned from closed opportunities is read beside
the stage default."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from crm_sales.opportunities import domain, repository
from crm_sales.orders import domain as orders_domain
from crm_sales.orders import handlers as orders
from crm_shared import identity
from crm_shared.events import (
    Channel,
    LeadSource,
    OpportunityLost,
    OpportunityLostEvent,
    OpportunityOpened,
    OpportunityOpenedEvent,
    OpportunityStageChanged,
    OpportunityStageChangedEvent,
    OpportunityWon,
    OpportunityWonEvent,
    OrderLine,
    OrderPlaced,
    derived_event_id,
)
from crm_shared.money import ExchangeRates
from crm_shared.security import OWNED, Principal
from crm_shared.store import Store, UnitOfWork, as_stored
from crm_shared.topics import Topic

SOURCE = orders.SOURCE

OPPORTUNITY_ACCESS = OWNED
"""A person sees the opportunities they own, their team's and their territories'; API keys and those who see
every record see every opportunity."""


class UnknownPipeline(LookupError):
    """No pipeline has this id."""


class PipelineInUse(Exception):
    """A pipeline change would drop stages that open opportunities are in."""

    def __init__(self, pipeline_id: str, stages: dict[str, int]) -> None:
        held = ", ".join(f"{stage} ({n} open)" for stage, n in sorted(stages.items()))
        super().__init__(f"pipeline {pipeline_id} would lose stages that open opportunities are in: {held}")
        self.stages = stages


class OpportunityIdTaken(Exception):
    """The Idempotency-Key (the opportunity id) opened another opportunity."""


def event_id(kind: str, *parts: str) -> str:
    """The id of an event a command emits, derived from the command, so a retry emits the same event."""
    return derived_event_id(SOURCE, f"opportunity.{kind}", *parts)


def seen_by(principal: Principal, query: dict[str, Any]) -> dict[str, Any]:
    """`query` narrowed to the opportunities `principal` sees."""
    return OPPORTUNITY_ACCESS.restrict(principal, query)


# ---------------------------------------------------------------- pipelines


async def define_pipeline(store: Store, pipeline: domain.Pipeline, at: datetime) -> domain.Pipeline:
    """Keep the pipeline (a new one, or a replacement). Raises PipelineInUse when a stage that open
    opportunities are in would go."""
    at = as_stored(at)

    async def work(uow: UnitOfWork) -> domain.Pipeline:
        before = await repository.get_pipeline(uow, pipeline.pipeline_id)
        if before is not None:
            gone = domain.removed_stages(before, pipeline)
            held = await repository.open_in_stages(uow, pipeline.pipeline_id, gone)
            if held:
                raise PipelineInUse(pipeline.pipeline_id, held)
        await repository.save_pipeline(uow, pipeline, at)
        return pipeline

    return await store.transaction(work)


async def pipelines(store: Store) -> list[domain.Pipeline]:
    """Every pipeline, by id; the built-in default among them while no other replaced it."""
    found = {d["_id"]: repository.pipeline_from_document(d) async for d in store.db[repository.PIPELINES].find()}
    found.setdefault(domain.DEFAULT_PIPELINE_ID, domain.DEFAULT_PIPELINE)
    return [found[k] for k in sorted(found)]


async def find_pipeline(store: Store, pipeline_id: str) -> domain.Pipeline | None:
    return await store.transaction(lambda uow: repository.get_pipeline(uow, pipeline_id))


@dataclass(frozen=True)
class Evidence:
    """Which closed opportunities a learned probability is drawn from."""

    source: LeadSource | None = None
    amount_min: Decimal | None = None
    """In the reporting currency, inclusive."""
    amount_max: Decimal | None = None
    """Exclusive."""
    min_days_in_stage: float | None = None


async def probabilities(
    store: Store,
    pipeline_id: str,
    rates: ExchangeRates,
    *,
    evidence: Evidence = Evidence(),
    min_sample: int = domain.DEFAULT_MIN_SAMPLE,
) -> tuple[domain.Pipeline, tuple[domain.StageProbability, ...]]:
    """Every stage's default and learned win probability, from the closed opportunities the evidence selects
    (a lead source, an amount band, a least age in the stage), with the sample behind it. Raises
    UnknownPipeline."""

    async def work(uow: UnitOfWork) -> tuple[domain.Pipeline, list[domain.ClosedOutcome]]:
        pipeline = await repository.get_pipeline(uow, pipeline_id)
        if pipeline is None:
            raise UnknownPipeline(pipeline_id)
        return pipeline, await repository.closed_outcomes(uow, pipeline_id, rates, evidence.source)

    pipeline, outcomes = await store.transaction(work)
    banded = [o for o in outcomes if domain.in_amount_band(o, evidence.amount_min, evidence.amount_max)]
    tallies = domain.tally(banded, pipeline.stage_ids, min_days_in_stage=evidence.min_days_in_stage)
    return pipeline, domain.learned_probabilities(pipeline, tallies, min_sample)


def days_in_current_stage(opportunity: domain.Opportunity, now: datetime) -> float:
    """How long the open opportunity has been in its stage, over every visit of it."""
    return domain.days_in_stages(opportunity.stage_history, now).get(opportunity.stage, 0.0)


async def stage_probability(
    store: Store, opportunity: domain.Opportunity, rates: ExchangeRates, now: datetime
) -> tuple[domain.StageProbability, float] | None:
    """The learned probability of the stage an open opportunity is in, from the closed opportunities of its
    pipeline that stayed in that stage at least as many whole days as it has so far; and its age in days. None
    for a closed opportunity, or a stage its pipeline no longer has."""
    if not opportunity.is_open:
        return None
    age = days_in_current_stage(opportunity, now)
    lingered = Evidence(min_days_in_stage=float(math.floor(age)))
    try:
        _, stages = await probabilities(store, opportunity.pipeline_id, rates, evidence=lingered)
    except UnknownPipeline:
        return None
    found = next((s for s in stages if s.stage_id == opportunity.stage), None)
    return (found, age) if found is not None else None


# ---------------------------------------------------------------- opportunities


@dataclass(frozen=True)
class NewOpportunity:
    """What opening an opportunity asks for (the API's body, or a lead conversion)."""

    customer_id: str
    name: str
    amount: Decimal
    currency: str
    pipeline_id: str = domain.DEFAULT_PIPELINE_ID
    stage: str | None = None
    expected_close: date | None = None
    owner_id: str | None = None
    territory: str | None = None
    account_id: str | None = None
    lead_id: str | None = None
    source: LeadSource | None = None
    lines: tuple[OrderLine, ...] = ()


def _same_request(found: domain.Opportunity, new: NewOpportunity) -> bool:
    asked = (new.customer_id, new.name, new.amount, new.currency, new.pipeline_id, new.lead_id)
    return asked == (found.customer_id, found.name, found.amount, found.currency, found.pipeline_id, found.lead_id)


async def open_in(
    uow: UnitOfWork, new: NewOpportunity, opportunity_id: str, at: datetime, *, rates: ExchangeRates
) -> tuple[domain.Opportunity, bool]:
    """Open the opportunity inside the caller's unit of work, published as crm.opportunity.opened.v1; (the one
    opened before with this id, False) when it exists and is the same request. Raises UnknownPipeline,
    OpportunityRefused, OpportunityIdTaken or CurrencyNotAccepted."""
    at = as_stored(at)
    # An opportunity for a customer merged into another is the survivor's; an unmerge gives it back.
    customer_id, origin = await identity.filed_under(uow.db, new.customer_id, session=uow.session)
    named = new.customer_id
    new = replace(new, customer_id=customer_id)
    found = await repository.get_opportunity(uow, {"_id": opportunity_id})
    if found is not None:
        if not _same_request(found, new):
            raise OpportunityIdTaken(f"opportunity {opportunity_id} exists with other content")
        return found, False
    orders.check_currency(new.currency, rates)
    pipeline = await repository.get_pipeline(uow, new.pipeline_id)
    if pipeline is None:
        raise UnknownPipeline(new.pipeline_id)
    opportunity = domain.open_opportunity(
        opportunity_id=opportunity_id,
        customer_id=new.customer_id,
        name=new.name,
        pipeline=pipeline,
        amount=new.amount,
        currency=new.currency,
        at=at,
        stage_id=new.stage,
        expected_close=new.expected_close,
        owner_id=new.owner_id,
        territory=new.territory,
        account_id=new.account_id,
        lead_id=new.lead_id,
        source=new.source,
        lines=new.lines,
    )
    await repository.insert_opportunity(uow, opportunity, origin)
    data = OpportunityOpened(
        customer_id=opportunity.customer_id,
        opportunity_id=opportunity_id,
        pipeline_id=opportunity.pipeline_id,
        stage=opportunity.stage,
        name=opportunity.name,
        amount=opportunity.amount,
        currency=opportunity.currency,
        expected_close=opportunity.expected_close,
        probability=opportunity.probability,
        forecast_category=opportunity.forecast_category,
        owner_id=opportunity.owner_id,
        account_id=opportunity.account_id,
        lead_id=opportunity.lead_id,
        source=opportunity.source,
    )
    opened = OpportunityOpenedEvent.create(data, source=SOURCE, id=event_id("opened", opportunity_id), time=at)
    uow.emit(opened.model_copy(update={"originalsubject": named}) if origin else opened, Topic.SALES_EVENTS)
    return opportunity, True


async def open_opportunity(
    store: Store, new: NewOpportunity, opportunity_id: str, at: datetime, *, rates: ExchangeRates
) -> tuple[domain.Opportunity, bool]:
    """Open the opportunity in its own transaction (see `open_in`); a concurrent retry of the same request
    answers the one that committed."""
    return await store.transaction_racing(lambda uow: open_in(uow, new, opportunity_id, at, rates=rates))


async def find_opportunity(store: Store, opportunity_id: str, *, principal: Principal) -> domain.Opportunity | None:
    """The opportunity, or None when there is none the principal sees (missing and hidden look the same)."""
    doc = await store.db[repository.OPPORTUNITIES].find_one(seen_by(principal, {"_id": opportunity_id}))
    return repository.from_document(doc) if doc else None


@dataclass(frozen=True)
class Changes:
    """What PATCH may change on an open opportunity: the fields set are changed, the others stay."""

    amount: Decimal | None = None
    expected_close: date | domain.Keep | None = domain.KEEP
    owner_id: str | domain.Keep | None = domain.KEEP
    territory: str | domain.Keep | None = domain.KEEP
    forecast_category: domain.StageCategory | None = None
    lines: tuple[OrderLine, ...] | None = None


async def change_opportunity(
    store: Store, opportunity_id: str, changes: Changes, *, principal: Principal
) -> domain.Opportunity | None:
    """Change the open opportunity; None when the caller sees no such opportunity. Raises OpportunityClosed or
    OpportunityRefused."""

    async def work(uow: UnitOfWork) -> domain.Opportunity | None:
        opportunity = await repository.get_opportunity(uow, seen_by(principal, {"_id": opportunity_id}))
        if opportunity is None:
            return None
        pipeline = await repository.get_pipeline(uow, opportunity.pipeline_id) or domain.DEFAULT_PIPELINE
        changed = domain.change(opportunity, pipeline, **changes.__dict__)
        if changed != opportunity:
            await repository.save_opportunity(uow, changed)
        return changed

    return await store.transaction(work)


async def move_opportunity(
    store: Store,
    opportunity_id: str,
    stage: str,
    at: datetime,
    *,
    principal: Principal,
    forecast_category: domain.StageCategory | None = None,
) -> domain.Opportunity | None:
    """Move the open opportunity to `stage`, published as crm.opportunity.stage_changed.v1; None when the caller
    sees no such opportunity. Raises OpportunityClosed or OpportunityRefused (an unknown stage, a field the
    stage requires and the opportunity lacks)."""
    at = as_stored(at)

    async def work(uow: UnitOfWork) -> domain.Opportunity | None:
        opportunity = await repository.get_opportunity(uow, seen_by(principal, {"_id": opportunity_id}))
        if opportunity is None:
            return None
        pipeline = await repository.get_pipeline(uow, opportunity.pipeline_id)
        if pipeline is None:
            gone = opportunity.pipeline_id
            raise domain.OpportunityRefused(f"opportunity {opportunity_id}'s pipeline {gone} is gone")
        moved = domain.move(opportunity, pipeline, stage, at, forecast_category=forecast_category)
        if moved == opportunity:
            return moved
        await repository.save_opportunity(uow, moved)
        if moved.stage != opportunity.stage:
            data = OpportunityStageChanged(
                customer_id=moved.customer_id,
                opportunity_id=opportunity_id,
                pipeline_id=moved.pipeline_id,
                from_stage=opportunity.stage,
                to_stage=moved.stage,
                probability=moved.probability,
                forecast_category=moved.forecast_category,
                amount=moved.amount,
                currency=moved.currency,
            )
            # One move per stage entered: the history's length makes a second visit of a stage another event.
            visit = str(len(moved.stage_history))
            uow.emit(
                OpportunityStageChangedEvent.create(
                    data, source=SOURCE, id=event_id("stage_changed", opportunity_id, visit), time=at
                ),
                Topic.SALES_EVENTS,
            )
        return moved

    return await store.transaction(work)


def order_id_of(opportunity_id: str) -> str:
    """The id of the order a won opportunity becomes."""
    return f"SO-{opportunity_id}"


async def win_opportunity(
    store: Store,
    opportunity_id: str,
    at: datetime,
    *,
    principal: Principal,
    rates: ExchangeRates,
    reason: str | None = None,
    place_order: bool = False,
    channel: Channel = "face_to_face",
) -> domain.Opportunity | None:
    """Win the open opportunity, published as crm.opportunity.won.v1; with `place_order` it becomes an order of
    its lines (crm.order.placed.v1, order id `SO-<opportunity id>`) in the same transaction. Winning it again
    answers it as it is. None when the caller sees no such opportunity. Raises OpportunityClosed (lost),
    OpportunityRefused (an order without lines) or CurrencyNotAccepted."""
    at = as_stored(at)

    async def work(uow: UnitOfWork) -> domain.Opportunity | None:
        opportunity = await repository.get_opportunity(uow, seen_by(principal, {"_id": opportunity_id}))
        if opportunity is None:
            return None
        if opportunity.status == "won":
            return opportunity
        order_id = None
        if place_order:
            if not opportunity.lines:
                raise domain.OpportunityRefused(
                    f"opportunity {opportunity_id} has no lines: an order needs its products and prices"
                )
            orders.check_currency(opportunity.currency, rates)
            order_id = order_id_of(opportunity_id)
        won = domain.win(opportunity, at, reason=reason, order_id=order_id)
        if order_id is not None:
            placed = OrderPlaced(
                customer_id=won.customer_id,
                order_id=order_id,
                currency=won.currency,
                total=won.amount,
                lines=list(won.lines),
                channel=channel,
            )
            attribution = orders_domain.Attribution(
                owner_id=won.owner_id, territory=won.territory, opportunity_id=opportunity_id
            )
            try:
                await orders.place_in(
                    uow, placed, at=at, event_id=event_id("order", opportunity_id), attribution=attribution
                )
            except orders_domain.OrderRejected as exc:
                refused = f"opportunity {opportunity_id} cannot become {order_id}: {exc}"
                raise domain.OpportunityRefused(refused) from exc
        await repository.save_opportunity(uow, won)
        data = OpportunityWon(
            customer_id=won.customer_id,
            opportunity_id=opportunity_id,
            pipeline_id=won.pipeline_id,
            amount=won.amount,
            currency=won.currency,
            reason=reason,
            order_id=order_id,
        )
        uow.emit(
            OpportunityWonEvent.create(data, source=SOURCE, id=event_id("won", opportunity_id), time=at),
            Topic.SALES_EVENTS,
        )
        return won

    return await store.transaction(work)


async def lose_opportunity(
    store: Store, opportunity_id: str, at: datetime, *, principal: Principal, reason: str
) -> domain.Opportunity | None:
    """Lose the open opportunity for `reason`, published as crm.opportunity.lost.v1; losing it again answers it
    as it is. None when the caller sees no such opportunity. Raises OpportunityClosed (won) or
    OpportunityRefused (no reason)."""
    at = as_stored(at)

    async def work(uow: UnitOfWork) -> domain.Opportunity | None:
        opportunity = await repository.get_opportunity(uow, seen_by(principal, {"_id": opportunity_id}))
        if opportunity is None:
            return None
        if opportunity.status == "lost":
            return opportunity
        lost = domain.lose(opportunity, at, reason=reason)
        await repository.save_opportunity(uow, lost)
        data = OpportunityLost(
            customer_id=lost.customer_id,
            opportunity_id=opportunity_id,
            pipeline_id=lost.pipeline_id,
            amount=lost.amount,
            currency=lost.currency,
            reason=lost.reason or reason,
        )
        uow.emit(
            OpportunityLostEvent.create(data, source=SOURCE, id=event_id("lost", opportunity_id), time=at),
            Topic.SALES_EVENTS,
        )
        return lost

    return await store.transaction(work)


def listing_query(
    *,
    customer_id: str | None = None,
    account_id: str | None = None,
    owner_id: str | None = None,
    pipeline_id: str | None = None,
    stage: str | None = None,
    status: domain.OpportunityStatus | None = None,
) -> dict[str, Any]:
    """The filters of the opportunity list, as a query (absent ones left out)."""
    given = {
        "customer_id": customer_id,
        "account_id": account_id,
        "owner_id": owner_id,
        "pipeline_id": pipeline_id,
        "stage": stage,
        "status": status,
    }
    return {k: v for k, v in given.items() if v is not None}
