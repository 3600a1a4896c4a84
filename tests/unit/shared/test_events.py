"""The public event contract: what it accepts, what it refuses, and how precisely it says why."""

import re
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from crm_shared.events import (
    EVENT_TYPES,
    CloudEvent,
    CustomerReferred,
    OrderPlaced,
    OrderPlacedEvent,
    SurveyAnswered,
    derived_event_id,
    parse_event,
)


def envelope(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "/channels/pos",
        "type": "crm.order.placed.v1",
        "time": "2026-11-20T10:00:00+01:00",
        "subject": "C-1",
        "data": {"customer_id": "C-1", "order_id": "O-1", "currency": "EUR", "total": "20.00"},
    }
    event.update(overrides)
    return event


def test_a_valid_order_event_parses_to_its_type_with_decimal_money() -> None:
    event = parse_event(envelope())
    assert isinstance(event, OrderPlacedEvent)
    assert event.data.total == Decimal("20.00")
    assert event.customer_id == "C-1"


def test_the_subject_must_be_the_customer_of_the_payload() -> None:
    with pytest.raises(ValidationError, match=re.escape("subject 'C-2' must equal data.customer_id 'C-1'")):
        parse_event(envelope(subject="C-2"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"specversion": "0.3"}, "specversion"),
        ({"type": "crm.order.teleported.v1"}, "does not match any of the expected tags"),
        ({"time": "2026-11-20T10:00:00"}, "timezone"),
        ({"id": ""}, "at least 1 character"),
    ],
)
def test_envelope_errors_are_precise(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_event(envelope(**overrides))


def test_order_total_must_equal_its_lines() -> None:
    with pytest.raises(ValidationError, match=re.escape("total 30.00 does not equal the sum of the lines 20.00")):
        OrderPlaced(
            order_id="O-1",
            customer_id="C-1",
            currency="EUR",
            total=Decimal("30.00"),
            lines=[{"sku": "A", "quantity": 2, "unit_price": "10.00"}],  # type: ignore[list-item]
        )


@pytest.mark.parametrize("total", ["-1", "NaN", "1.23456", "1e12"])
def test_money_refuses_negative_non_finite_too_precise_and_absurd_amounts(total: str) -> None:
    with pytest.raises(ValidationError):
        parse_event(envelope(data={"customer_id": "C-1", "order_id": "O-1", "currency": "EUR", "total": total}))


@pytest.mark.parametrize(
    ("kind", "score", "ok"), [("csat", 1, True), ("csat", 6, False), ("nps", 0, True), ("nps", 11, False)]
)
def test_survey_scores_stay_on_their_scale(kind: str, score: int, ok: bool) -> None:
    def build() -> SurveyAnswered:
        return SurveyAnswered(survey_id="S-1", customer_id="C-1", kind=kind, score=score)  # type: ignore[arg-type]

    if ok:
        assert build().score == score
    else:
        with pytest.raises(ValidationError, match=f"a {kind} score must be between"):
            build()


def test_unknown_payload_fields_are_refused() -> None:
    data = {"customer_id": "C-1", "order_id": "O-1", "currency": "EUR", "total": "1", "discount": "5"}
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        parse_event(envelope(data=data))


def test_derived_ids_are_stable_and_distinct() -> None:
    assert derived_event_id("/crm/sales", "e-1") == derived_event_id("/crm/sales", "e-1")
    assert derived_event_id("/crm/sales", "e-1") != derived_event_id("/crm/sales", "e-2")
    assert derived_event_id("a", "bc") != derived_event_id("ab", "c")


def test_create_carries_correlation_and_causation_forward() -> None:
    cause = parse_event(envelope(correlationid="flow-9"))
    effect = OrderPlacedEvent.create(cause.data, source="/crm/sales", cause=cause)
    assert effect.correlationid == "flow-9"
    assert effect.causationid == cause.id
    first = OrderPlacedEvent.create(cause.data, source="/crm/sales", cause=parse_event(envelope()))
    assert first.correlationid == "evt-1"


def test_every_event_type_round_trips_through_json() -> None:
    assert len(EVENT_TYPES) == 15
    for type_name, cls in EVENT_TYPES.items():
        assert type_name == cls.TYPE
        assert type_name.startswith("crm.") and type_name.endswith(".v1")
    event = parse_event(envelope())
    again = parse_event(event.to_bytes())
    assert again == event
    assert isinstance(again, CloudEvent)


def test_a_customer_cannot_refer_themselves() -> None:
    with pytest.raises(ValidationError, match="customer C-1 cannot refer themselves"):
        CustomerReferred(customer_id="C-1", referral_id="R-1", referred_customer_id="C-1")
    assert CustomerReferred(customer_id="C-1", referral_id="R-1", referred_customer_id="C-2").channel is None
