"""Opportunities in pipelines, pure: stages and their requirements, the stage history, winning and losing, and
the win probability learned from closed opportunities beside each stage's default."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm_sales.opportunities import domain
from crm_shared.events import OrderLine

T0 = datetime(2026, 11, 2, 9, tzinfo=UTC)
PIPELINE = domain.DEFAULT_PIPELINE


def opened(**fields: object) -> domain.Opportunity:
    arguments: dict[str, object] = {
        "opportunity_id": "O-1",
        "customer_id": "C-1",
        "name": "Machines",
        "pipeline": PIPELINE,
        "amount": Decimal("1000.00"),
        "currency": "EUR",
        "at": T0,
    }
    return domain.open_opportunity(**(arguments | fields))  # type: ignore[arg-type]


def test_an_opportunity_opens_in_the_first_stage_with_its_default_probability_and_category() -> None:
    o = opened()
    assert (o.stage, o.probability, o.forecast_category, o.status) == ("qualify", 0.1, "pipeline", "open")
    assert o.stage_history == (domain.StageVisit("qualify", T0),)
    assert not o.category_overridden


def test_moving_records_when_each_stage_was_left_and_entered() -> None:
    o = opened(expected_close=date(2027, 1, 31))
    later = T0 + timedelta(days=3)
    moved = domain.move(o, PIPELINE, "propose", later)
    assert (moved.stage, moved.probability, moved.forecast_category) == ("propose", 0.6, "best_case")
    assert moved.stage_history == (
        domain.StageVisit("qualify", T0, later),
        domain.StageVisit("propose", later),
    )
    back = domain.move(moved, PIPELINE, "develop", later + timedelta(days=1), forecast_category="omitted")
    assert (back.stage, back.forecast_category, back.category_overridden) == ("develop", "omitted", True)
    assert len(back.stage_history) == 3


def test_a_stage_refuses_an_opportunity_without_what_it_requires_naming_the_fields() -> None:
    o = opened(amount=Decimal(0))
    with pytest.raises(domain.OpportunityRefused) as refused:
        domain.move(o, PIPELINE, "negotiate", T0)
    assert str(refused.value) == (
        "stage negotiate requires amount, expected_close: opportunity O-1 has no amount above zero and no "
        "expected close date"
    )
    with pytest.raises(domain.OpportunityRefused, match="has no stage nowhere; its stages are qualify, develop"):
        domain.move(o, PIPELINE, "nowhere", T0)
    # Nor may a change take away what the current stage requires.
    proposing = domain.move(opened(expected_close=date(2027, 1, 31)), PIPELINE, "propose", T0)
    with pytest.raises(domain.OpportunityRefused, match="requires expected_close"):
        domain.change(proposing, PIPELINE, expected_close=None)


def test_the_amount_must_be_the_lines_sum_net_of_discounts() -> None:
    lines = [OrderLine(sku="A", quantity=2, unit_price=Decimal("500.00"), discount=Decimal("50.00"))]
    assert opened(amount=Decimal("950.00"), lines=lines).lines == tuple(lines)
    with pytest.raises(domain.OpportunityRefused, match=r"amount 1000\.00 does not equal the sum of the lines"):
        opened(lines=lines)
    o = opened(amount=Decimal("950.00"), lines=lines)
    with pytest.raises(domain.OpportunityRefused, match="does not equal"):
        domain.change(o, PIPELINE, amount=Decimal("999"))
    assert domain.change(o, PIPELINE, lines=[], amount=Decimal("999")).amount == Decimal("999")


def test_won_and_lost_opportunities_change_no_more() -> None:
    o = opened()
    won = domain.win(o, T0 + timedelta(days=9), order_id="SO-O-1")
    assert (won.status, won.probability, won.forecast_category, won.order_id) == ("won", 1.0, "closed", "SO-O-1")
    assert won.stage_history[-1].left_at == T0 + timedelta(days=9)
    for attempt in (
        lambda: domain.move(won, PIPELINE, "develop", T0),
        lambda: domain.lose(won, T0, reason="late"),
        lambda: domain.change(won, PIPELINE, amount=Decimal(1)),
    ):
        with pytest.raises(domain.OpportunityClosed, match="O-1 is won"):
            attempt()
    with pytest.raises(domain.OpportunityRefused, match="needs a reason"):
        domain.lose(o, T0, reason="  ")
    lost = domain.lose(o, T0, reason=" price ")
    assert (lost.status, lost.probability, lost.forecast_category, lost.reason) == ("lost", 0.0, "omitted", "price")


def test_a_pipeline_needs_stages_each_once_with_a_probability_between_0_and_1() -> None:
    with pytest.raises(domain.PipelineRefused, match="needs at least one stage"):
        domain.Pipeline("p", "P", ())
    with pytest.raises(domain.PipelineRefused, match=r"stage id\(s\) a appear twice"):
        domain.Pipeline("p", "P", (domain.Stage("a", "A", 0.1, "pipeline"), domain.Stage("a", "A", 0.2, "commit")))
    with pytest.raises(domain.PipelineRefused, match="between 0 and 1"):
        domain.Pipeline("p", "P", (domain.Stage("a", "A", 1.5, "pipeline"),))


def test_the_learned_probability_is_the_share_won_of_those_that_were_in_the_stage() -> None:
    ids = PIPELINE.stage_ids
    outcomes = [
        *[domain.ClosedOutcome(frozenset({"qualify", "develop", "propose"}), won=True)] * 15,
        *[domain.ClosedOutcome(frozenset({"qualify", "develop"}), won=False)] * 10,
        *[domain.ClosedOutcome(frozenset({"qualify"}), won=False)] * 5,
    ]
    tallies = domain.tally(outcomes, ids)
    assert tallies["qualify"] == domain.StageTally(30, 15)
    assert tallies["develop"] == domain.StageTally(25, 15)
    assert tallies["negotiate"] == domain.StageTally(0, 0)
    learned = {p.stage_id: p for p in domain.learned_probabilities(PIPELINE, tallies, min_sample=20)}
    assert (learned["qualify"].basis, learned["qualify"].probability, learned["qualify"].sample_size) == (
        "learned",
        0.5,
        30,
    )
    assert (learned["develop"].basis, learned["develop"].probability) == ("learned", 0.6)
    # Too small a sample: the stage's default stands, with what was learned shown beside it.
    assert (learned["propose"].basis, learned["propose"].probability, learned["propose"].learned_probability) == (
        "default",
        0.6,
        1.0,
    )
    assert (learned["negotiate"].learned_probability, learned["negotiate"].sample_size) == (None, 0)


@given(st.lists(st.tuples(st.sets(st.sampled_from(PIPELINE.stage_ids), min_size=1), st.booleans()), max_size=60))
def test_a_learned_probability_is_a_share_and_never_counts_more_than_were_closed(
    closed: list[tuple[set[str], bool]],
) -> None:
    outcomes = [domain.ClosedOutcome(frozenset(stages), won) for stages, won in closed]
    for p in domain.learned_probabilities(PIPELINE, domain.tally(outcomes, PIPELINE.stage_ids), min_sample=1):
        assert 0 <= p.won <= p.sample_size <= len(outcomes)
        if p.sample_size:
            assert (p.basis, round(p.won / p.sample_size, 4)) == ("learned", p.probability)
        else:
            assert (p.basis, p.probability) == ("default", p.default_probability)


def test_the_evidence_can_be_an_amount_band_and_a_least_age_in_the_stage() -> None:
    history = (
        domain.StageVisit("qualify", T0, T0 + timedelta(days=2)),
        domain.StageVisit("develop", T0 + timedelta(days=2), T0 + timedelta(days=5)),
        domain.StageVisit("qualify", T0 + timedelta(days=5)),
    )
    # Every visit counts; the open one ends when the opportunity closed.
    assert domain.days_in_stages(history, T0 + timedelta(days=6)) == {"qualify": 3.0, "develop": 3.0}
    quick = domain.ClosedOutcome(frozenset({"qualify"}), True, {"qualify": 1.0}, Decimal("500"))
    slow = domain.ClosedOutcome(frozenset({"qualify"}), False, {"qualify": 30.0}, Decimal("50000"))
    assert domain.tally([quick, slow], ["qualify"])["qualify"] == domain.StageTally(2, 1)
    # An opportunity 10 days in qualify is judged by those that stayed at least that long.
    assert domain.tally([quick, slow], ["qualify"], min_days_in_stage=10)["qualify"] == domain.StageTally(1, 0)
    assert [domain.in_amount_band(o, Decimal("1000"), None) for o in (quick, slow)] == [False, True]
    assert [domain.in_amount_band(o, None, Decimal("50000")) for o in (quick, slow)] == [True, False]
    unpriced = domain.ClosedOutcome(frozenset({"qualify"}), True)
    assert domain.in_amount_band(unpriced, None, None) and not domain.in_amount_band(unpriced, Decimal(1), None)
