"""Scoring's own settings are read from CRM_SCORING_* and bad values are refused at start-up."""

from decimal import Decimal

import pytest
from pydantic import ValidationError

from crm_scoring.domain import Thresholds
from crm_scoring.settings import ScoringSettings


def test_thresholds_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_SCORING_HIGH_VALUE_MONETARY", "2500.50")
    monkeypatch.setenv("CRM_SCORING_STABLE_AFTER_ORDERS", "4")
    settings = ScoringSettings()
    assert (settings.service_name, settings.port, settings.database_name) == ("scoring", 8004, "crm_scoring")
    assert settings.thresholds == Thresholds(high_value_monetary=Decimal("2500.50"), stable_after_orders=4)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CRM_SCORING_HIGH_VALUE_MONETARY", "0", "greater than 0"),
        ("CRM_SCORING_HIGH_VALUE_MONETARY", "-5", "greater than 0"),
        ("CRM_SCORING_HIGH_VALUE_MONETARY", "lots", "valid decimal"),
        ("CRM_SCORING_STABLE_AFTER_ORDERS", "1", "greater than or equal to 2"),
    ],
)
def test_bad_thresholds_are_refused_at_start_up(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=message):
        ScoringSettings()
