"""The platform rate table: conversion into the reporting currency, and the settings that refuse a bad table."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from crm_shared.money import ExchangeRates, RateTableSettings, UnknownCurrency

RATES = ExchangeRates.of("EUR", {"EUR": "1", "USD": "0.92", "GBP": "1.17"})


def test_an_amount_is_converted_at_its_currencys_rate_and_its_own_scale_when_exact() -> None:
    assert str(RATES.convert(Decimal("100.00"), "USD")) == "92.00"
    assert str(RATES.convert(Decimal("40.00"), "GBP")) == "46.80"
    assert str(RATES.convert(Decimal("10.01"), "USD")) == "9.2092"
    # The reporting currency is itself at rate 1: the amount as it is, its scale too.
    assert str(RATES.convert(Decimal("1500.00"), "EUR")) == "1500.00"


def test_a_converted_amount_keeps_at_most_four_decimal_places() -> None:
    rates = ExchangeRates.of("EUR", {"EUR": "1", "JPY": "0.006187"})
    # 1234 x 0.006187 = 7.634758, rounded half-even to 4 places.
    assert str(rates.convert(Decimal("1234"), "JPY")) == "7.6348"
    assert str(rates.convert(Decimal("0.5"), "JPY")) == "0.0031"  # 0.0030935


def test_a_currency_without_a_rate_is_not_converted() -> None:
    assert RATES.knows("USD") and not RATES.knows("XXX")
    with pytest.raises(UnknownCurrency, match=r"currency XXX has no exchange rate into the reporting currency EUR"):
        RATES.convert(Decimal(1), "XXX")
    assert "the accepted currencies are EUR, GBP, USD" in RATES.unknown_currency_reason("XXX")


def test_the_default_table_knows_only_the_reporting_currency() -> None:
    default = ExchangeRates.default()
    assert (default.reporting_currency, default.currencies) == ("EUR", ("EUR",))
    assert default.describe() == "EUR: EUR=1"
    assert RATES.describe() == "EUR: EUR=1, GBP=1.17, USD=0.92"


@pytest.mark.parametrize(
    ("reporting", "rates", "message"),
    [
        ("EUR", {"USD": "1"}, "no rate for the reporting currency EUR"),
        ("EUR", {"EUR": "1.1"}, "must have rate 1"),
        ("EUR", {"EUR": "1", "USD": "0"}, "positive finite"),
        ("EUR", {"EUR": "1", "USD": "-2"}, "positive finite"),
        ("EUR", {"EUR": "1", "USD": "NaN"}, "positive finite"),
        ("EUR", {"EUR": "1", "USD": "Infinity"}, "positive finite"),
        ("EUR", {"EUR": "1", "USD": "lots"}, "not a decimal number"),
        ("EUR", {"EUR": "1", "usd": "1"}, "not an ISO 4217 code"),
        ("euro", {"EUR": "1"}, "not an ISO 4217 code"),
    ],
)
def test_a_bad_table_is_refused(reporting: str, rates: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ExchangeRates.of(reporting, rates)


amounts = st.decimals(min_value=0, max_value=1_000_000_000, places=4, allow_nan=False, allow_infinity=False)
rates = st.decimals(min_value=Decimal("0.000001"), max_value=100_000, places=6, allow_nan=False, allow_infinity=False)


@given(amounts=st.lists(amounts, max_size=20), rate=rates, data=st.data())
def test_the_sum_of_converted_amounts_does_not_depend_on_their_order(
    amounts: list[Decimal], rate: Decimal, data: st.DataObject
) -> None:
    table = ExchangeRates.of("EUR", {"EUR": "1", "USD": rate})
    shuffled = data.draw(st.permutations(amounts))
    total = sum((table.convert(a, "USD") for a in amounts), Decimal(0))
    assert sum((table.convert(a, "USD") for a in shuffled), Decimal(0)) == total
    assert all(table.convert(a, "USD") == table.convert(a, "USD").quantize(Decimal("0.0001")) for a in amounts)


# ---------------------------------------------------------------- the settings


def test_the_table_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_REPORTING_CURRENCY", "USD")
    monkeypatch.setenv("CRM_EXCHANGE_RATES", '{"USD": "1", "EUR": "1.08", "GBP": 1.27}')
    table = RateTableSettings().rate_table
    assert table == ExchangeRates.of("USD", {"USD": "1", "EUR": "1.08", "GBP": "1.27"})


def test_the_default_is_eur_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CRM_REPORTING_CURRENCY", raising=False)
    monkeypatch.delenv("CRM_EXCHANGE_RATES", raising=False)
    assert RateTableSettings().rate_table == ExchangeRates.default()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CRM_REPORTING_CURRENCY": "usd"}, "should match pattern"),
        ({"CRM_REPORTING_CURRENCY": "USD"}, "no rate for the reporting currency USD"),
        ({"CRM_EXCHANGE_RATES": '{"EUR": "2"}'}, "must have rate 1"),
        ({"CRM_EXCHANGE_RATES": '{"EUR": "1", "US": "1"}'}, "should match pattern"),
        ({"CRM_EXCHANGE_RATES": '{"EUR": "1", "USD": "0"}'}, "greater than 0"),
        ({"CRM_EXCHANGE_RATES": '{"EUR": "1", "USD": "NaN"}'}, "finite number"),
        ({"CRM_EXCHANGE_RATES": "EUR=1"}, "expected a JSON object"),
        ({"CRM_EXCHANGE_RATES": '["EUR"]'}, "valid dictionary"),
    ],
)
def test_a_bad_table_stops_the_service_at_start_up(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=message):
        RateTableSettings()
