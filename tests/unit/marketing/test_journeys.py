"""Journeys are data: the defaults, what triggers them, and a configuration refused with a precise error."""

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from crm_marketing.journeys import DEFAULT_JOURNEYS, Journey, journeys_for_complaint, journeys_triggered
from crm_marketing.settings import MarketingSettings
from crm_shared.events import ScoreSnapshot, SegmentChanged


def change(dimension: Any, old: str, new: str, **scores: Any) -> SegmentChanged:
    snapshot = ScoreSnapshot(
        **{
            "recency_days": 400,
            "frequency": 2,
            "monetary": Decimal("80.00"),
            "average_order_value": Decimal("40.00"),
            "value_tier": "low_value",
            "lifecycle_stage": "lost",
            "churn_risk": 0.9,
            "churn_risk_band": "high",
            "satisfaction": None,
            **scores,
        }
    )
    return SegmentChanged(
        customer_id="C-1",
        dimension=dimension,
        old=old,
        new=new,
        scores=snapshot,
        model_version="v1",
        changed_at=datetime(2026, 11, 1, tzinfo=UTC),
        caused_by="decay:2026-11-01",
    )


def test_the_defaults_cover_every_journey_of_the_issue() -> None:
    by_name = {j.name: j for j in DEFAULT_JOURNEYS}
    assert list(by_name) == ["welcome", "high-value-thank-you", "service-recovery", "complaint-recovery", "win-back"]
    assert (by_name["win-back"].dimension, by_name["win-back"].new_value) == ("lifecycle_stage", "lost")
    assert by_name["complaint-recovery"].trigger == "complaint_filed"
    assert not by_name["complaint-recovery"].frequency_capped


def test_becoming_lost_starts_win_back() -> None:
    lost = change("lifecycle_stage", "at_risk", "lost", value_tier="low_value", lifecycle_stage="lost")
    assert [j.name for j in journeys_triggered(lost, DEFAULT_JOURNEYS)] == ["win-back"]


def test_a_complaint_starts_complaint_recovery_only() -> None:
    assert [j.name for j in journeys_for_complaint(DEFAULT_JOURNEYS)] == ["complaint-recovery"]


def test_the_environment_replaces_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    configured = [{"name": "vip", "dimension": "rfm_segment", "new_value": "champions", "description": "VIP"}]
    monkeypatch.setenv("CRM_MARKETING_JOURNEYS", json.dumps(configured))
    settings = MarketingSettings()
    assert [j.name for j in settings.journeys] == ["vip"]
    assert settings.journeys[0].campaign == "vip"


@pytest.mark.parametrize(
    ("journeys", "message"),
    [
        ([{"name": "x", "dimension": "value_tier", "new_value": "high-value"}], "value_tier is never 'high-value'"),
        ([{"name": "x", "dimension": "tier", "new_value": "high_value"}], "journeys.0.dimension"),
        ([{"name": "x"}], "needs dimension and new_value"),
        ([{"name": "x", "trigger": "complaint_filed", "new_value": "high"}], "takes no dimension or new_value"),
        ([{"name": "x", "trigger": "complaint_filed"}] * 2, "journey names must be unique, repeated: x"),
        ([{"name": "Bad Name", "trigger": "complaint_filed"}], "journeys.0.name"),
        ([{"name": "x", "trigger": "complaint_filed", "surprise": 1}], "journeys.0.surprise"),
        (
            [{"name": "x", "dimension": "churn_risk_band", "new_value": "high", "requires_value_tier": "gold"}],
            "requires_value_tier 'gold'",
        ),
    ],
)
def test_a_wrong_configuration_stops_the_service_saying_why(
    monkeypatch: pytest.MonkeyPatch, journeys: list[dict[str, Any]], message: str
) -> None:
    monkeypatch.setenv("CRM_MARKETING_JOURNEYS", json.dumps(journeys))
    with pytest.raises(ValidationError) as refused:
        MarketingSettings()
    assert message in str(refused.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [("HOLDOUT_SHARE", "1.5"), ("HOLDOUT_SHARE", "-0.1"), ("MAX_CONTACTS_PER_PERIOD", "-1"), ("CAP_PERIOD_DAYS", "0")],
)
def test_contact_rules_out_of_range_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(f"CRM_MARKETING_{name}", value)
    with pytest.raises(ValidationError, match=name.lower()):
        MarketingSettings()


def test_a_journey_is_immutable_data() -> None:
    journey = Journey(name="x", trigger="complaint_filed")
    with pytest.raises(ValidationError):
        journey.name = "y"  # type: ignore[misc]
