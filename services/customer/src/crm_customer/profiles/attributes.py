"""Custom attributes with declared types: an operator declares each attribute once (its type, which kind of
customer it applies to, its allowed values for an enum, whether it is personal data), and every value written is
checked against the declaration. Pure: no I/O.

Values are stored in a form the database compares correctly: a string or enum as itself, a number as a float, a
boolean as itself, a date as `YYYY-MM-DD` (which sorts as the date does), money as `{"amount": "<decimal>",
"currency": "EUR"}` with the amount also kept as a float under `value` for range filters within one currency.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, get_args

AttributeType = Literal["string", "number", "money", "date", "enum", "boolean"]
ATTRIBUTE_TYPES: tuple[AttributeType, ...] = get_args(AttributeType)
AppliesTo = Literal["person", "organisation", "any"]
NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
CURRENCY = re.compile(r"^[A-Z]{3}$")
MAX_STRING = 1_000
MAX_ENUM_VALUES = 200
RANGE_TYPES: frozenset[AttributeType] = frozenset({"number", "money", "date"})
"""The types a search can filter by range (gte / lte)."""


class AttributeInvalid(ValueError):
    """A definition that cannot be used, or a value that does not fit its attribute's definition."""


@dataclass(frozen=True)
class AttributeDefinition:
    name: str
    type: AttributeType
    label: str
    applies_to: AppliesTo = "any"
    enum_values: tuple[str, ...] = ()
    personal: bool = False
    """Personal data: never published in events, removed when the customer's personal data is erased."""
    description: str | None = None

    def __post_init__(self) -> None:
        if not NAME.match(self.name):
            raise AttributeInvalid(
                f"attribute name {self.name!r}: lower-case letters, digits and _, starting with a letter, 63 at most"
            )
        if self.type not in ATTRIBUTE_TYPES:
            raise AttributeInvalid(f"type {self.type!r} is not one of {', '.join(ATTRIBUTE_TYPES)}")
        if self.type == "enum":
            if not self.enum_values:
                raise AttributeInvalid(f"enum attribute {self.name} needs its values")
            if len(set(self.enum_values)) != len(self.enum_values):
                raise AttributeInvalid(f"enum attribute {self.name} lists a value twice")
            if len(self.enum_values) > MAX_ENUM_VALUES:
                raise AttributeInvalid(f"enum attribute {self.name}: at most {MAX_ENUM_VALUES} values")
        elif self.enum_values:
            raise AttributeInvalid(f"only an enum attribute has values; {self.name} is a {self.type}")

    def applies(self, kind: str) -> bool:
        return self.applies_to in ("any", kind)

    def check(self, value: Any) -> Any:
        """The value as stored; raises AttributeInvalid naming the attribute and what it expects."""
        where = f"attribute {self.name} ({self.type})"
        match self.type:
            case "string":
                if not isinstance(value, str):
                    raise AttributeInvalid(f"{where}: expected a string, got {_kind(value)}")
                if len(value) > MAX_STRING or any(ord(c) < 32 and c not in "\t\n" for c in value):
                    raise AttributeInvalid(f"{where}: at most {MAX_STRING} characters, no control characters")
                return value
            case "enum":
                if value not in self.enum_values:
                    raise AttributeInvalid(f"{where}: {value!r} is not one of {', '.join(self.enum_values)}")
                return value
            case "boolean":
                if not isinstance(value, bool):
                    raise AttributeInvalid(f"{where}: expected true or false, got {_kind(value)}")
                return value
            case "number":
                if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                    raise AttributeInvalid(f"{where}: expected a finite number, got {_kind(value)}")
                if abs(value) > 1e15:
                    raise AttributeInvalid(f"{where}: at most 1e15 in size")
                return float(value)
            case "date":
                if not isinstance(value, str) or len(value) != 10:
                    raise AttributeInvalid(f"{where}: expected a date YYYY-MM-DD, got {value!r}")
                try:
                    return date.fromisoformat(value).isoformat()
                except ValueError as exc:
                    raise AttributeInvalid(f"{where}: {value!r} is not a date YYYY-MM-DD") from exc
            case "money":
                return _money(where, value)
        raise AssertionError(self.type)

    def parse_query(self, raw: str) -> Any:
        """A search filter's text as a stored value of this attribute (money: `12.50 EUR`)."""
        match self.type:
            case "boolean":
                if raw not in ("true", "false"):
                    raise AttributeInvalid(f"attribute {self.name} (boolean): filter with true or false")
                return raw == "true"
            case "number":
                try:
                    return self.check(float(raw))
                except ValueError as exc:
                    raise AttributeInvalid(f"attribute {self.name} (number): {raw!r} is not a number") from exc
            case "money":
                amount, _, currency = raw.partition(" ")
                return self.check({"amount": amount, "currency": currency})
            case _:
                return self.check(raw)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _money(where: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping) or set(value) != {"amount", "currency"}:
        raise AttributeInvalid(f'{where}: expected {{"amount": "12.50", "currency": "EUR"}}')
    currency, amount = value["currency"], value["amount"]
    if not isinstance(currency, str) or not CURRENCY.match(currency):
        raise AttributeInvalid(f"{where}: currency is an ISO 4217 code such as EUR")
    if not isinstance(amount, str):
        raise AttributeInvalid(f'{where}: the amount is a decimal string such as "12.50" (no float rounding)')
    try:
        exact = Decimal(amount)
    except InvalidOperation as exc:
        raise AttributeInvalid(f"{where}: {amount!r} is not a decimal amount") from exc
    if not exact.is_finite() or exact.as_tuple().exponent < -4 or abs(exact) > Decimal("1e15"):  # type: ignore[operator]
        raise AttributeInvalid(f"{where}: a finite amount with at most 4 decimals, below 1e15")
    return {"amount": str(exact), "currency": currency, "value": float(exact)}


def check_values(
    definitions: Mapping[str, AttributeDefinition], kind: str, values: Mapping[str, Any]
) -> dict[str, Any]:
    """Each value (None: remove it) as stored, checked against its declared attribute; raises AttributeInvalid
    for an undeclared attribute, one that does not apply to this kind of customer, or a value that does not fit."""
    checked: dict[str, Any] = {}
    for name, value in values.items():
        definition = definitions.get(name)
        if definition is None:
            known = ", ".join(sorted(definitions)) or "none yet"
            raise AttributeInvalid(f"no attribute {name!r} is declared (PUT /v1/attributes/{{name}}); known: {known}")
        if not definition.applies(kind):
            article = "an" if kind == "organisation" else "a"
            raise AttributeInvalid(
                f"attribute {name} applies to {definition.applies_to} customers, not to {article} {kind}"
            )
        checked[name] = None if value is None else definition.check(value)
    return checked


def public_value(stored: Any) -> Any:
    """A stored value as the API and events show it (money without its float helper)."""
    if isinstance(stored, Mapping) and "currency" in stored:
        return {"amount": stored["amount"], "currency": stored["currency"]}
    return stored
