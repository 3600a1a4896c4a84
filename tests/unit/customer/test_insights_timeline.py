"""The timeline's kinds and cause order, without a database."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from crm_customer import domain
from crm_customer.insights.timeline import KINDS, cause_depths, in_cause_order, kind_of, types_of
from crm_shared.events import (
    EVENT_TYPES,
    CampaignEnrolled,
    CampaignEnrolledEvent,
    OrderPlaced,
    OrderPlacedEvent,
    ScoreSnapshot,
    SegmentChanged,
    SegmentChangedEvent,
)

T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)
SNAPSHOT = ScoreSnapshot(
    recency_days=0,
    frequency=1,
    monetary=Decimal("1500.00"),
    average_order_value=Decimal("1500.00"),
    value_tier="high_value",
    lifecycle_stage="first_time_buyer",
    churn_risk=0.1,
    churn_risk_band="low",
    satisfaction=None,
)


def test_a_kind_is_the_types_second_segment_and_a_consent_change_is_a_consent() -> None:
    assert kind_of("crm.order.placed.v1") == "order"
    assert kind_of("crm.sla.breached.v1") == "sla"
    assert kind_of("crm.customer.registered.v1") == "customer"
    assert kind_of("crm.customer.consent_changed.v1") == "consent"
    assert kind_of("not-a-type") == "not-a-type"


def test_every_kind_the_issue_names_is_one_of_the_catalog() -> None:
    named = {"order", "ticket", "survey", "campaign", "activity", "interaction", "segment", "opportunity", "quote"}
    named |= {"lead", "consent", "visit", "sla", "complaint", "customer"}
    assert named <= KINDS


def test_the_types_of_a_kind_are_those_of_the_catalog_in_that_family() -> None:
    assert types_of(["ticket"]) == {t for t in EVENT_TYPES if t.startswith("crm.ticket.")}
    assert types_of(["consent"]) == {"crm.customer.consent_changed.v1"}
    assert "crm.customer.consent_changed.v1" not in types_of(["customer"])
    assert types_of(["order", "sla"]) == types_of(["order"]) | types_of(["sla"])
    assert types_of([]) == frozenset()


def test_a_depth_counts_the_causes_among_the_entries_of_one_time() -> None:
    assert cause_depths({"a": None, "b": "a", "c": "b", "d": "a", "e": "elsewhere"}) == {
        "a": 0,
        "b": 1,
        "c": 2,
        "d": 1,
        "e": 0,
    }
    # Whichever entry is met first, the chain gives the same depths.
    assert cause_depths({"c": "b", "b": "a", "a": None}) == {"a": 0, "b": 1, "c": 2}
    # A cycle (no catalog event makes one) still gives every entry a depth.
    assert set(cause_depths({"x": "y", "y": "x"})) == {"x", "y"}


def _chain() -> list[domain.TimelineEntry]:
    """An order, the segment change it caused and the enrolment that caused, all at one time."""
    order = OrderPlacedEvent.create(
        OrderPlaced(customer_id="C-1", order_id="O-1", currency="EUR", total=Decimal("1500.00")),
        source="/crm/sales",
        id="z-order",
        time=T0,
    )
    change = SegmentChangedEvent.create(
        SegmentChanged(
            customer_id="C-1",
            dimension="value_tier",
            old="potential",
            new="high_value",
            scores=SNAPSHOT,
            model_version="1",
            changed_at=T0,
            caused_by=order.id,
        ),
        source="/crm/scoring",
        id="m-change",
        time=T0,
        cause=order,
    )
    enrolled = CampaignEnrolledEvent.create(
        CampaignEnrolled(
            customer_id="C-1",
            enrolment_id="E-1",
            campaign_id="thanks",
            journey="high-value-thank-you",
            episode="1",
            channel="email",
            status="contacted",
            trigger_event_id=change.id,
        ),
        source="/crm/marketing",
        id="a-enrolled",
        time=T0,
        cause=change,
    )
    return [domain.timeline_entry(e) for e in (enrolled, change, order)]


def test_at_one_time_a_cause_lists_before_what_it_caused_whatever_the_ids() -> None:
    enrolled, change, order = _chain()
    earlier = domain.TimelineEntry("zz-earlier", "C-1", "crm.order.placed.v1", T0 - timedelta(hours=1), "/", "", {})
    assert change.cause == order.event_id and enrolled.cause == change.event_id
    ordered = in_cause_order([enrolled, earlier, change, order])
    assert [e.event_id for e in ordered] == ["zz-earlier", "z-order", "m-change", "a-enrolled"]
