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


def test_population_decay_model_and_clv_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_SCORING_HIGH_VALUE_REVENUE_SHARE", "0.7")
    monkeypatch.setenv("CRM_SCORING_MIN_POPULATION", "30")
    monkeypatch.setenv("CRM_SCORING_AT_RISK_DAYS", "60")
    monkeypatch.setenv("CRM_SCORING_LOST_DAYS", "120")
    monkeypatch.setenv("CRM_SCORING_DECAY_INTERVAL_SECONDS", "5")
    monkeypatch.setenv("CRM_SCORING_MIN_FIT_CUSTOMERS", "80")
    monkeypatch.setenv("CRM_SCORING_CLV_HORIZON_WEEKS", "104")
    monkeypatch.setenv("CRM_SCORING_ANNUAL_DISCOUNT_RATE", "0.05")
    monkeypatch.setenv(
        "CRM_SCORING_CLV_INPUTS",
        '{"default": {"A": 1, "B": 2, "C": 3, "E": 0}, "atm": {"A": 800, "B": 1200, "C": 30, "E": 2}}',
    )
    settings = ScoringSettings()
    thresholds = settings.thresholds
    assert (thresholds.high_value_revenue_share, thresholds.min_population) == (0.7, 30)
    assert (thresholds.at_risk_days, thresholds.lost_days, settings.decay_interval_seconds) == (60, 120, 5)
    assert (thresholds.fit_limits.min_customers, thresholds.clv_horizon_weeks, thresholds.annual_discount_rate) == (
        80,
        104,
        0.05,
    )
    line, inputs = settings.formula_inputs("atm")
    assert (line, inputs.lifetime_units, inputs.referrals) == ("atm", Decimal(30), Decimal(2))
    assert settings.formula_inputs("unknown")[0] == "default"
    assert settings.formula_inputs(None)[0] == "default"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CRM_SCORING_HIGH_VALUE_REVENUE_SHARE": "0"}, "greater than 0"),
        ({"CRM_SCORING_HIGH_VALUE_REVENUE_SHARE": "1.5"}, "less than or equal to 1"),
        ({"CRM_SCORING_MIN_POPULATION": "0"}, "greater than or equal to 1"),
        ({"CRM_SCORING_AT_RISK_DAYS": "200"}, "lost_days .180. must be greater than at_risk_days .200."),
        ({"CRM_SCORING_DECAY_INTERVAL_SECONDS": "0"}, "greater than 0"),
        ({"CRM_SCORING_MIN_FIT_CUSTOMERS": "1"}, "greater than or equal to 2"),
        ({"CRM_SCORING_ANNUAL_DISCOUNT_RATE": "-0.1"}, "greater than or equal to 0"),
        ({"CRM_SCORING_CLV_HORIZON_WEEKS": "0"}, "greater than 0"),
        ({"CRM_SCORING_CLV_INPUTS": '{"atm": {"A": 1, "B": 1, "C": 1, "E": 1}}'}, 'needs a "default" entry'),
        ({"CRM_SCORING_CLV_INPUTS": '{"default": {"A": -1, "B": 1, "C": 1, "E": 1}}'}, "greater than or equal to 0"),
        ({"CRM_SCORING_CLV_INPUTS": "not json"}, "Expecting value|Invalid JSON|JSON"),
    ],
)
def test_bad_population_decay_and_clv_settings_are_refused(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises((ValidationError, ValueError), match=message):
        ScoringSettings()
