"""Opportunities in pipelines, and the win probability learned from closed ones. Pure: no I/O, no framework.

A pipeline is data: an ordered list of stages, each with a default win probability, a forecast category and the
fields an opportunity must have to enter it. An open opportunity sits in one stage of its pipeline; moving it
records the stage history and takes the stage's probability and forecast category (the caller may override the
category). Closing is not a stage: an opportunity is won (probability 1, category `closed`) or lost (probability
0, category `omitted`, with a reason), and a closed opportunity refuses every change.

The learned win probability of a stage is the share won among the closed opportunities of the pipeline that were
in that stage; below a minimum sample the stage's default is used, and the answer says which (`basis`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Literal, get_args

from crm_shared.events import ForecastCategory, LeadSource, OrderLine

OpportunityStatus = Literal["open", "won", "lost"]
STATUSES: tuple[OpportunityStatus, ...] = get_args(OpportunityStatus)
RequiredField = Literal["amount", "expected_close", "account_id"]
"""What a stage may require of an opportunity entering it: an amount above zero, an expected close date, an
account."""
StageCategory = Literal["pipeline", "best_case", "commit", "omitted"]
"""The forecast categories an open stage may have: `closed` is for won opportunities only."""
ProbabilityBasis = Literal["default", "learned"]

DEFAULT_MIN_SAMPLE = 20
"""Closed opportunities a stage needs before its learned probability replaces its default."""
WON_CATEGORY: ForecastCategory = "closed"
LOST_CATEGORY: ForecastCategory = "omitted"


class OpportunityRefused(Exception):
    """The change contradicts the opportunity or its pipeline (an unknown stage, a missing required field)."""


class OpportunityClosed(OpportunityRefused):
    """The opportunity is won or lost: it changes no more."""


class PipelineRefused(Exception):
    """The pipeline definition is not usable."""


# ---------------------------------------------------------------- pipelines


@dataclass(frozen=True)
class Stage:
    stage_id: str
    name: str
    probability: float
    forecast_category: StageCategory
    requires: tuple[RequiredField, ...] = ()


@dataclass(frozen=True)
class Pipeline:
    pipeline_id: str
    name: str
    stages: tuple[Stage, ...]

    def __post_init__(self) -> None:
        if not self.stages:
            raise PipelineRefused(f"pipeline {self.pipeline_id} needs at least one stage")
        ids = [s.stage_id for s in self.stages]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise PipelineRefused(f"pipeline {self.pipeline_id}: stage id(s) {', '.join(repeated)} appear twice")
        for stage in self.stages:
            if not 0 <= stage.probability <= 1:
                raise PipelineRefused(f"stage {stage.stage_id}: probability must be between 0 and 1")

    @property
    def first_stage(self) -> Stage:
        return self.stages[0]

    @property
    def stage_ids(self) -> tuple[str, ...]:
        return tuple(s.stage_id for s in self.stages)

    def stage(self, stage_id: str) -> Stage:
        """The stage, or OpportunityRefused naming the stages there are."""
        for stage in self.stages:
            if stage.stage_id == stage_id:
                return stage
        raise OpportunityRefused(
            f"pipeline {self.pipeline_id} has no stage {stage_id}; its stages are {', '.join(self.stage_ids)}"
        )


DEFAULT_PIPELINE_ID = "new-business"
DEFAULT_PIPELINE = Pipeline(
    DEFAULT_PIPELINE_ID,
    "New business",
    (
        Stage("qualify", "Qualify", 0.1, "pipeline"),
        Stage("develop", "Develop", 0.3, "pipeline"),
        Stage("propose", "Propose", 0.6, "best_case", ("amount", "expected_close")),
        Stage("negotiate", "Negotiate", 0.8, "commit", ("amount", "expected_close")),
    ),
)
"""The pipeline every opportunity is in when no other was defined; a PUT of `new-business` replaces it."""


def removed_stages(before: Pipeline, after: Pipeline) -> tuple[str, ...]:
    """The stages of `before` that `after` no longer has."""
    return tuple(s for s in before.stage_ids if s not in after.stage_ids)


# ---------------------------------------------------------------- opportunities


def midnight(day: date) -> datetime:
    """A date as the database keeps it: midnight UTC."""
    return datetime.combine(day, time(), tzinfo=UTC)


@dataclass(frozen=True)
class StageVisit:
    stage: str
    entered_at: datetime
    left_at: datetime | None = None


@dataclass(frozen=True)
class Opportunity:
    opportunity_id: str
    customer_id: str
    name: str
    pipeline_id: str
    stage: str
    amount: Decimal
    currency: str
    probability: float
    forecast_category: ForecastCategory
    opened_at: datetime
    status: OpportunityStatus = "open"
    expected_close: date | None = None
    owner_id: str | None = None
    territory: str | None = None
    account_id: str | None = None
    lead_id: str | None = None
    source: LeadSource | None = None
    closed_at: datetime | None = None
    reason: str | None = None
    order_id: str | None = None
    category_overridden: bool = False
    stage_history: tuple[StageVisit, ...] = field(default_factory=tuple)
    lines: tuple[OrderLine, ...] = ()
    """The products and their prices, when known: then `amount` is their sum net of discounts."""

    @property
    def is_open(self) -> bool:
        return self.status == "open"


def _check_open(opportunity: Opportunity) -> None:
    if not opportunity.is_open:
        raise OpportunityClosed(
            f"opportunity {opportunity.opportunity_id} is {opportunity.status}: a closed opportunity changes no more"
        )


def missing_for(opportunity: Opportunity, stage: Stage) -> tuple[RequiredField, ...]:
    """The fields `stage` requires that `opportunity` lacks."""
    have: Mapping[RequiredField, bool] = {
        "amount": opportunity.amount > 0,
        "expected_close": opportunity.expected_close is not None,
        "account_id": opportunity.account_id is not None,
    }
    return tuple(f for f in stage.requires if not have[f])


def check_lines(amount: Decimal, lines: Sequence[OrderLine]) -> None:
    """Raise OpportunityRefused when there are lines and `amount` is not their sum net of discounts."""
    if lines:
        total = sum((line.net for line in lines), Decimal(0))
        if total != amount:
            raise OpportunityRefused(f"amount {amount} does not equal the sum of the lines net of discounts {total}")


def _check_requirements(opportunity: Opportunity, stage: Stage) -> None:
    missing = missing_for(opportunity, stage)
    if missing:
        raise OpportunityRefused(
            f"stage {stage.stage_id} requires {', '.join(missing)}: opportunity {opportunity.opportunity_id} has "
            f"no {' and no '.join(_FIELD_WORDS[f] for f in missing)}"
        )


_FIELD_WORDS: Mapping[RequiredField, str] = {
    "amount": "amount above zero",
    "expected_close": "expected close date",
    "account_id": "account",
}


def open_opportunity(
    *,
    opportunity_id: str,
    customer_id: str,
    name: str,
    pipeline: Pipeline,
    amount: Decimal,
    currency: str,
    at: datetime,
    stage_id: str | None = None,
    probability: float | None = None,
    forecast_category: StageCategory | None = None,
    expected_close: date | None = None,
    owner_id: str | None = None,
    territory: str | None = None,
    account_id: str | None = None,
    lead_id: str | None = None,
    source: LeadSource | None = None,
    lines: Sequence[OrderLine] = (),
) -> Opportunity:
    """A new open opportunity in `stage_id` (the pipeline's first stage by default) with `probability` (the
    stage's default when None: pass the learned one when it has enough sample) and the stage's forecast category
    unless `forecast_category` overrides it. Raises OpportunityRefused for an unknown stage or a missing field the
    stage requires."""
    stage = pipeline.stage(stage_id) if stage_id is not None else pipeline.first_stage
    opportunity = Opportunity(
        opportunity_id=opportunity_id,
        customer_id=customer_id,
        name=name,
        pipeline_id=pipeline.pipeline_id,
        stage=stage.stage_id,
        amount=amount,
        currency=currency,
        probability=stage.probability if probability is None else probability,
        forecast_category=forecast_category or stage.forecast_category,
        category_overridden=forecast_category is not None,
        opened_at=at,
        expected_close=expected_close,
        owner_id=owner_id,
        territory=territory,
        account_id=account_id,
        lead_id=lead_id,
        source=source,
        stage_history=(StageVisit(stage.stage_id, at),),
        lines=tuple(lines),
    )
    check_lines(amount, lines)
    _check_requirements(opportunity, stage)
    return opportunity


class Keep:
    """A field `change` leaves as it is."""


KEEP = Keep()


def change(
    opportunity: Opportunity,
    pipeline: Pipeline,
    *,
    amount: Decimal | None = None,
    expected_close: date | Keep | None = KEEP,
    owner_id: str | Keep | None = KEEP,
    territory: str | Keep | None = KEEP,
    forecast_category: StageCategory | None = None,
    lines: Sequence[OrderLine] | None = None,
) -> Opportunity:
    """The open opportunity with the fields given changed (an absent one stays); a forecast category given
    overrides the stage's until the next move. Raises OpportunityClosed, or OpportunityRefused when the change
    takes away a field the current stage requires or the amount is not the lines' sum."""
    _check_open(opportunity)
    changed = opportunity
    if lines is not None:
        changed = replace(changed, lines=tuple(lines))
    if amount is not None:
        changed = replace(changed, amount=amount)
    check_lines(changed.amount, changed.lines)
    if not isinstance(expected_close, Keep):
        changed = replace(changed, expected_close=expected_close)
    if not isinstance(owner_id, Keep):
        changed = replace(changed, owner_id=owner_id)
    if not isinstance(territory, Keep):
        changed = replace(changed, territory=territory)
    if forecast_category is not None:
        changed = replace(changed, forecast_category=forecast_category, category_overridden=True)
    current = next((s for s in pipeline.stages if s.stage_id == changed.stage), None)
    if current is not None and changed != opportunity:
        _check_requirements(changed, current)
    return changed


def move(
    opportunity: Opportunity,
    pipeline: Pipeline,
    stage_id: str,
    at: datetime,
    *,
    probability: float | None = None,
    forecast_category: StageCategory | None = None,
) -> Opportunity:
    """The open opportunity in stage `stage_id` of its pipeline since `at`: the stage history gains the visit,
    the probability becomes `probability` (the stage's default when None) and the forecast category the stage's,
    unless `forecast_category` overrides it. Moving to the stage it is in changes nothing but an override.
    Raises OpportunityClosed, or OpportunityRefused for another pipeline, an unknown stage or a required field
    the opportunity lacks."""
    _check_open(opportunity)
    if pipeline.pipeline_id != opportunity.pipeline_id:
        raise OpportunityRefused(
            f"opportunity {opportunity.opportunity_id} is in pipeline {opportunity.pipeline_id}, "
            f"not {pipeline.pipeline_id}"
        )
    stage = pipeline.stage(stage_id)
    if stage_id == opportunity.stage:
        return change(opportunity, pipeline, forecast_category=forecast_category)
    _check_requirements(opportunity, stage)
    history = (*_close(opportunity, at), StageVisit(stage_id, at))
    return replace(
        opportunity,
        stage=stage_id,
        probability=stage.probability if probability is None else probability,
        forecast_category=forecast_category or stage.forecast_category,
        category_overridden=forecast_category is not None,
        stage_history=history,
    )


def _close(opportunity: Opportunity, at: datetime) -> tuple[StageVisit, ...]:
    return tuple(replace(v, left_at=at) if v.left_at is None else v for v in opportunity.stage_history)


def win(
    opportunity: Opportunity,
    at: datetime,
    *,
    reason: str | None = None,
    order_id: str | None = None,
    amount: Decimal | None = None,
) -> Opportunity:
    """The opportunity won at `at` (with the order it became and the amount it closed at, when given).
    Raises OpportunityClosed when it is closed already."""
    _check_open(opportunity)
    return replace(
        opportunity,
        status="won",
        probability=1.0,
        forecast_category=WON_CATEGORY,
        category_overridden=False,
        closed_at=at,
        reason=reason,
        order_id=order_id,
        amount=opportunity.amount if amount is None else amount,
        stage_history=_close(opportunity, at),
    )


def lose(opportunity: Opportunity, at: datetime, *, reason: str) -> Opportunity:
    """The opportunity lost at `at`, for `reason`. Raises OpportunityRefused without a reason, OpportunityClosed
    when it is closed already."""
    _check_open(opportunity)
    if not reason.strip():
        raise OpportunityRefused("losing an opportunity needs a reason")
    return replace(
        opportunity,
        status="lost",
        probability=0.0,
        forecast_category=LOST_CATEGORY,
        category_overridden=False,
        closed_at=at,
        reason=reason.strip(),
        stage_history=_close(opportunity, at),
    )


# ---------------------------------------------------------------- learned win probability


@dataclass(frozen=True)
class ClosedOutcome:
    """A closed opportunity as the learned probability sees it: the stages it was in, whether it was won, the
    days it spent in each stage (all its visits of it) and its amount in the reporting currency."""

    stages: frozenset[str]
    won: bool
    days_in: Mapping[str, float] = field(default_factory=dict)
    amount: Decimal | None = None


def days_in_stages(history: Iterable[StageVisit], closed_at: datetime) -> dict[str, float]:
    """Days spent in each stage over every visit of it; an open visit ends at `closed_at`."""
    days: dict[str, float] = {}
    for visit in history:
        left = visit.left_at or closed_at
        days[visit.stage] = days.get(visit.stage, 0.0) + max((left - visit.entered_at).total_seconds(), 0) / 86400
    return days


def in_amount_band(outcome: ClosedOutcome, low: Decimal | None, high: Decimal | None) -> bool:
    """Whether the outcome's amount is in [low, high) (an outcome without an amount is in no band)."""
    if low is None and high is None:
        return True
    if outcome.amount is None:
        return False
    return (low is None or outcome.amount >= low) and (high is None or outcome.amount < high)


@dataclass(frozen=True)
class StageTally:
    reached: int = 0
    won: int = 0


@dataclass(frozen=True)
class StageProbability:
    stage_id: str
    default_probability: float
    learned_probability: float | None
    """The share won among the closed opportunities that were in the stage; None when none were."""
    sample_size: int
    won: int
    basis: ProbabilityBasis

    @property
    def probability(self) -> float:
        """What an opportunity in the stage is given: the learned share when its sample is large enough."""
        if self.basis == "learned" and self.learned_probability is not None:
            return self.learned_probability
        return self.default_probability


def tally(
    outcomes: Iterable[ClosedOutcome], stage_ids: Sequence[str], *, min_days_in_stage: float | None = None
) -> dict[str, StageTally]:
    """Per stage, how many of the closed opportunities were in it and how many of those were won; with
    `min_days_in_stage`, only those that spent at least that long in the stage (the age of an open one in it):
    a deal that lingers is not judged by the ones that moved on quickly."""
    reached = dict.fromkeys(stage_ids, 0)
    won = dict.fromkeys(stage_ids, 0)
    for outcome in outcomes:
        for stage in outcome.stages:
            if min_days_in_stage is not None and outcome.days_in.get(stage, 0.0) < min_days_in_stage:
                continue
            if stage in reached:
                reached[stage] += 1
                won[stage] += outcome.won
    return {s: StageTally(reached[s], won[s]) for s in stage_ids}


def stage_probability(stage: Stage, counts: StageTally, min_sample: int = DEFAULT_MIN_SAMPLE) -> StageProbability:
    """The stage's probability from its tally: learned when at least `min_sample` closed opportunities were in
    it, the stage's default otherwise."""
    if not 0 <= counts.won <= counts.reached:
        raise ValueError(f"stage {stage.stage_id}: {counts.won} won of {counts.reached} reached")
    learned = round(counts.won / counts.reached, 4) if counts.reached else None
    basis: ProbabilityBasis = "learned" if counts.reached >= max(min_sample, 1) else "default"
    return StageProbability(stage.stage_id, stage.probability, learned, counts.reached, counts.won, basis)


def learned_probabilities(
    pipeline: Pipeline, tallies: Mapping[str, StageTally], min_sample: int = DEFAULT_MIN_SAMPLE
) -> tuple[StageProbability, ...]:
    """Every stage's probability, in pipeline order; a stage missing from `tallies` has no sample."""
    return tuple(stage_probability(s, tallies.get(s.stage_id, StageTally()), min_sample) for s in pipeline.stages)
