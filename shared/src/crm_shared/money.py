"""Money in several currencies: one platform rate table brings amounts into the reporting currency.

Facts keep their own currency. Only figures that add up several orders (a customer's monetary value, the
80/20 threshold, RFM quintiles, lifetime value) are converted, each order's amount through the table. A
currency the table does not know cannot be converted, so it cannot be scored: sales refuses it and scoring
dead-letters it, rather than add it to other currencies as if it were one of them.

Sales and scoring read the same two variables, CRM_REPORTING_CURRENCY and CRM_EXCHANGE_RATES
(`RateTableSettings`), so they accept and convert the same currencies.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Annotated, Self

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

CURRENCY_PATTERN = r"^[A-Z]{3}$"
_ISO_4217 = re.compile(CURRENCY_PATTERN)
DEFAULT_REPORTING_CURRENCY = "EUR"
# Bounds the product of a contract amount (at most 1e9) and a rate well inside Decimal's 28 digits.
MAX_RATE = Decimal(1_000_000_000)
# Contract amounts have at most 4 decimal places; a converted amount keeps that precision, no more.
CONVERTED_QUANTUM = Decimal("0.0001")
CONVERTED_EXPONENT = -4


class UnknownCurrency(ValueError):
    """The rate table has no rate for the currency: amounts in it cannot be brought into the reporting currency."""


@dataclass(frozen=True)
class ExchangeRates:
    """How many units of the reporting currency one unit of each known currency is worth.

    The reporting currency is in the table with rate 1; every rate is a positive, finite Decimal.
    """

    reporting_currency: str
    rates: tuple[tuple[str, Decimal], ...]
    _by_currency: Mapping[str, Decimal] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        by_currency: dict[str, Decimal] = {}
        for currency, rate in self.rates:
            if not isinstance(currency, str) or not _ISO_4217.match(currency):
                raise ValueError(f"exchange rate currency {currency!r} is not an ISO 4217 code (three capital letters)")
            if currency in by_currency:
                raise ValueError(f"exchange rate for {currency} given twice")
            if not isinstance(rate, Decimal) or not rate.is_finite() or not 0 < rate <= MAX_RATE:
                raise ValueError(
                    f"exchange rate of {currency} must be a positive finite decimal of at most {MAX_RATE}, got {rate}"
                )
            by_currency[currency] = rate
        reporting = self.reporting_currency
        if not isinstance(reporting, str) or not _ISO_4217.match(reporting):
            raise ValueError(f"reporting currency {reporting!r} is not an ISO 4217 code (three capital letters)")
        if reporting not in by_currency:
            raise ValueError(
                f"the exchange rates have no rate for the reporting currency {reporting}: it must be there with rate 1"
            )
        if by_currency[reporting] != 1:
            raise ValueError(
                f"the reporting currency {reporting} must have rate 1 in the exchange rates, "
                f"got {by_currency[reporting]}"
            )
        object.__setattr__(self, "_by_currency", by_currency)

    @classmethod
    def of(cls, reporting_currency: str, rates: Mapping[str, Decimal | int | str]) -> ExchangeRates:
        """The table from a mapping currency -> rate (a Decimal, an int or a decimal string)."""
        converted: list[tuple[str, Decimal]] = []
        for currency, rate in rates.items():
            try:
                converted.append((currency, rate if isinstance(rate, Decimal) else Decimal(str(rate))))
            except InvalidOperation:
                raise ValueError(f"exchange rate of {currency} is not a decimal number: {rate!r}") from None
        return cls(reporting_currency, tuple(sorted(converted)))

    @classmethod
    def default(cls) -> ExchangeRates:
        """The honest default: only the reporting currency, EUR, which needs no rate."""
        return cls.of(DEFAULT_REPORTING_CURRENCY, {DEFAULT_REPORTING_CURRENCY: Decimal(1)})

    @property
    def currencies(self) -> tuple[str, ...]:
        """The currencies the table knows, sorted."""
        return tuple(currency for currency, _ in self.rates)

    def knows(self, currency: str) -> bool:
        return currency in self._by_currency

    def rate(self, currency: str) -> Decimal:
        try:
            return self._by_currency[currency]
        except KeyError:
            raise UnknownCurrency(self.unknown_currency_reason(currency)) from None

    def convert(self, amount: Decimal, currency: str) -> Decimal:
        """`amount` in `currency`, in the reporting currency: exact, at the amount's own scale when that holds it
        (100.00 x 0.92 is 92.00), else rounded half-even to 4 decimal places (1234 x 0.006187 is 7.6348). Each
        amount is rounded on its own, so sums of converted amounts are exact and do not depend on their order.
        Raises UnknownCurrency when the table has no rate for `currency`."""
        converted = amount * self.rate(currency)
        scale = amount.as_tuple().exponent
        if isinstance(scale, int):
            at_own_scale = converted.quantize(Decimal(1).scaleb(min(scale, 0)))
            if at_own_scale == converted:
                return at_own_scale
        exponent = converted.as_tuple().exponent
        if isinstance(exponent, int) and exponent < CONVERTED_EXPONENT:
            return converted.quantize(CONVERTED_QUANTUM, rounding=ROUND_HALF_EVEN)
        return converted

    def unknown_currency_reason(self, currency: str) -> str:
        return (
            f"currency {currency} has no exchange rate into the reporting currency {self.reporting_currency}, so the "
            f"platform cannot score it; the accepted currencies are {', '.join(self.currencies)} (CRM_EXCHANGE_RATES)"
        )

    def describe(self) -> str:
        """The table as one stable line, e.g. 'EUR: EUR=1, USD=0.92' (what a population version depends on)."""
        return f"{self.reporting_currency}: " + ", ".join(f"{c}={r}" for c, r in self.rates)


CurrencyCode = Annotated[str, Field(pattern=CURRENCY_PATTERN)]
Rate = Annotated[Decimal, Field(gt=0, le=MAX_RATE, allow_inf_nan=False)]


class RateTableSettings(BaseSettings):
    """The platform's rate table, read alike by sales and scoring; mix it into a service's settings class.

    CRM_REPORTING_CURRENCY: the ISO 4217 code scores are computed in (default EUR).
    CRM_EXCHANGE_RATES: a JSON object currency -> decimal string, how many units of the reporting currency one
    unit of that currency is worth (default {"EUR": "1"}: only the reporting currency is accepted).
    """

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    reporting_currency: CurrencyCode = Field(
        default=DEFAULT_REPORTING_CURRENCY,
        validation_alias=AliasChoices("CRM_REPORTING_CURRENCY"),
        description="ISO 4217 code of the currency scores are computed in; it must be in the rate table with rate 1.",
    )
    exchange_rates: Annotated[dict[CurrencyCode, Rate], NoDecode] = Field(
        default_factory=lambda: {DEFAULT_REPORTING_CURRENCY: Decimal(1)},
        validation_alias=AliasChoices("CRM_EXCHANGE_RATES"),
        description='Units of the reporting currency one unit of each currency is worth, as JSON: {"EUR": "1", '
        '"USD": "0.92"}. Orders, payments and refunds in any other currency are refused.',
    )

    @field_validator("exchange_rates", mode="before")
    @classmethod
    def _rates_json(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        try:
            # Numbers are read as Decimal, so a rate written as a JSON number loses no digit either.
            return json.loads(value, parse_float=Decimal, parse_int=Decimal)
        except ValueError as exc:
            raise ValueError(f'expected a JSON object such as {{"EUR": "1", "USD": "0.92"}}: {exc}') from None

    @model_validator(mode="after")
    def _reporting_currency_has_rate_one(self) -> Self:
        try:
            ExchangeRates.of(self.reporting_currency, self.exchange_rates)
        except ValueError as exc:
            raise ValueError(f"CRM_REPORTING_CURRENCY and CRM_EXCHANGE_RATES disagree: {exc}") from None
        return self

    @property
    def rate_table(self) -> ExchangeRates:
        return ExchangeRates.of(self.reporting_currency, self.exchange_rates)
