"""The public event contract: what it accepts, what it refuses, and how precisely it says why."""

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from crm_shared.events import (
    EVENT_TYPES,
    CloudEvent,
    ConsentChanged,
    CustomerReferred,
    CustomerRegistered,
    InteractionLogged,
    OrderPlaced,
    OrderPlacedEvent,
    SurveyAnswered,
    TimeWindow,
    configure_time_window,
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
        ({"time": "2026-11-20T10:00:00"}, "with an offset"),
        ({"id": ""}, "at least 1 character"),
    ],
)
def test_envelope_errors_are_precise(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_event(envelope(**overrides))


def test_order_total_must_equal_its_lines() -> None:
    with pytest.raises(
        ValidationError, match=re.escape("total 30.00 does not equal the sum of the lines net of discounts 20.00")
    ):
        OrderPlaced(
            order_id="O-1",
            customer_id="C-1",
            currency="EUR",
            total=Decimal("30.00"),
            lines=[{"sku": "A", "quantity": 2, "unit_price": "10.00"}],  # type: ignore[list-item]
        )


def test_an_order_total_is_its_lines_net_of_discounts_and_a_discount_cannot_exceed_its_line() -> None:
    lines = [{"sku": "A", "quantity": 2, "unit_price": "10.00", "discount": "3.00", "unit_cost": "4.00"}]
    placed = OrderPlaced(order_id="O-1", customer_id="C-1", currency="EUR", total=Decimal("17.00"), lines=lines)  # type: ignore[arg-type]
    assert (placed.lines[0].gross, placed.lines[0].net) == (Decimal("20.00"), Decimal("17.00"))
    with pytest.raises(ValidationError, match="discount"):
        OrderPlaced(
            order_id="O-1",
            customer_id="C-1",
            currency="EUR",
            total=Decimal(0),
            lines=[{"sku": "A", "quantity": 1, "unit_price": "10.00", "discount": "11.00"}],  # type: ignore[list-item]
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
    assert len(EVENT_TYPES) == 44
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


# ---------------------------------------------------------------- times, money and text at the edge


@pytest.mark.parametrize(
    ("time", "message"),
    [
        ("0001-01-01T00:00:00+01:00", "before 1900-01-01"),
        ("9999-12-31T23:59:59-01:00", "in the future"),
        ("9999-12-30T00:00:00Z", "in the future"),
        (1_700_000_000, "RFC 3339 string"),
        ("2026-11-24 10:00:00Z", "RFC 3339 timestamp"),
        ("2026-02-30T10:00:00Z", "not a valid date"),
        ("2026-11-24T10:00:60Z", "not a valid date"),
    ],
)
def test_event_times_outside_the_window_or_not_rfc3339_are_refused(time: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_event(envelope(time=time))


def test_an_event_time_is_normalised_to_utc_and_may_be_a_little_ahead() -> None:
    ahead = (datetime.now(UTC) + timedelta(minutes=2)).isoformat()
    assert parse_event(envelope(time=ahead)).time.utcoffset() == timedelta(0)
    event = parse_event(envelope(time="2026-11-20T10:00:00.123456789+05:30"))
    assert event.time == datetime(2026, 11, 20, 4, 30, 0, 123000, tzinfo=UTC)


def test_the_time_window_is_configurable() -> None:
    try:
        configure_time_window(TimeWindow(datetime(2000, 1, 1, tzinfo=UTC), timedelta(0)))
        with pytest.raises(ValidationError, match="before 2000-01-01"):
            parse_event(envelope(time="1999-12-31T23:59:59Z"))
        with pytest.raises(ValidationError, match="in the future"):
            parse_event(envelope(time=(datetime.now(UTC) + timedelta(seconds=30)).isoformat()))
    finally:
        configure_time_window(TimeWindow())


@given(
    st.one_of(st.datetimes(min_value=datetime(1899, 12, 31), max_value=datetime(2026, 1, 1)), st.datetimes()),
    st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59),
)
def test_any_rfc3339_time_is_accepted_exactly_or_refused_with_a_reason(naive: datetime, offset_min: int) -> None:
    sign = "+" if offset_min >= 0 else "-"
    text = naive.isoformat() + f"{sign}{abs(offset_min) // 60:02d}:{abs(offset_min) % 60:02d}"
    try:
        event = parse_event(envelope(time=text))
    except ValidationError as exc:
        assert "time" in str(exc)
        return
    exact = datetime.fromisoformat(text)
    instant = exact.replace(microsecond=exact.microsecond // 1000 * 1000)  # milliseconds, as MongoDB keeps them
    assert event.time == instant and event.time.tzinfo == UTC
    assert parse_event(event.to_bytes()).time == instant


@pytest.mark.parametrize(
    "amount", ["1E+9", "-0", "-1.00", "1_000", " 12.50", "12.5000000000000000001", "", "NaN", 12.5, 12]
)
def test_money_is_a_plain_decimal_string(amount: Any) -> None:
    data = envelope()["data"] | {"total": amount}
    with pytest.raises(ValidationError, match="amount must be"):
        OrderPlaced.model_validate(data)


def test_money_is_normalised_but_keeps_its_scale() -> None:
    assert str(OrderPlaced.model_validate(envelope()["data"] | {"total": "0012.50"}).total) == "12.50"


@pytest.mark.parametrize("name", ["Ada\u202eecalevol", "Ada\x00", "Ada\nLovelace", " Ada", "Ada\u2066x\u2069"])
def test_names_with_control_or_bidi_characters_are_refused(name: str) -> None:
    with pytest.raises(ValidationError, match=r"control characters|spaces"):
        CustomerRegistered(customer_id="C-1", name=name)


def test_free_text_keeps_newlines_but_not_other_controls() -> None:
    assert (
        "\n"
        in InteractionLogged(
            customer_id="C-1", interaction_id="I-1", kind="call", channel="phone", summary="a\nb"
        ).summary
    )  # type: ignore[operator]
    with pytest.raises(ValidationError, match="control characters"):
        InteractionLogged(customer_id="C-1", interaction_id="I-1", kind="call", channel="phone", summary="a\x1bb")


def test_the_preferred_channel_must_be_granted() -> None:
    with pytest.raises(ValidationError, match="must be a channel the customer granted"):
        CustomerRegistered(customer_id="C-1", name="Ada", preferred_channel="sms")
    with pytest.raises(ValidationError, match="must be a channel the customer granted"):
        CustomerRegistered(
            customer_id="C-1", name="Ada", preferred_channel="sms", consents=[{"channel": "sms", "granted": False}]
        )
    with pytest.raises(ValidationError, match="while it is refused"):
        ConsentChanged(customer_id="C-1", channel="sms", granted=False, preferred_channel="sms")
    assert (
        CustomerRegistered(
            customer_id="C-1", name="Ada", preferred_channel="sms", consents=[{"channel": "sms", "granted": True}]
        ).preferred_channel
        == "sms"
    )
