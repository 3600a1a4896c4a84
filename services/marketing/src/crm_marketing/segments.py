"""Named segments in a small typed rule language, compiled to a MongoDB filter. Pure: no I/O.

A definition is `{"all": [...]}` or `{"any": [...]}` of rules `{"field", "op", "value"}` (or nested
groups). Fields come from an enum, each with the operators and values it accepts, so a wrong rule is
refused with a precise message. The filter is built only from the validated model, with explicit
operators ($eq, $in, ...), so no user-supplied key or operator ever reaches MongoDB.

A definition is bounded (the limits below): every read of a segment validates and compiles it again,
so its size is the cost of every count, export and launch. Every value that validates compiles to a
filter MongoDB can encode (a time is within the planned window, 1900 to 2199), so nothing that is
accepted can fail later.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Self, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Strict,
    Tag,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from crm_marketing.journeys import SEGMENT_VALUES
from crm_shared.events import Channel, PlannedTime

# The size of a definition: each bounds the work of every read (see the module docstring).
MAX_DEPTH = 4
"""Groups nest at most this deep (the top group is depth 1)."""
MAX_GROUP_MEMBERS = 20
"""Rules and groups directly in one group."""
MAX_RULES = 200
"""Rules in the whole definition."""
MAX_IN_VALUES = 50
"""Values in one `in` / `not_in` list."""
MAX_VALUES = 1000
"""Values in the whole definition (a list counts each of its values)."""
MAX_DAYS = 3660
"""The longest `within_days` / `not_within_days` period."""

CHANNELS = frozenset(get_args(Channel))


class SegmentField(StrEnum):
    VALUE_TIER = "value_tier"
    LIFECYCLE_STAGE = "lifecycle_stage"
    RFM_SEGMENT = "rfm_segment"
    CHURN_RISK_BAND = "churn_risk_band"
    SATISFACTION = "satisfaction"
    CONSENT = "consent"
    PREFERRED_CHANNEL = "preferred_channel"
    REGION = "region"
    LAST_ORDER_AT = "last_order_at"


class Op(StrEnum):
    EQ = "eq"
    NE = "ne"
    IN = "in"
    NOT_IN = "not_in"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    CONTAINS = "contains"
    NOT_CONTAINS = "not_contains"
    WITHIN_DAYS = "within_days"
    NOT_WITHIN_DAYS = "not_within_days"


CATEGORICAL_OPS = frozenset({Op.EQ, Op.NE, Op.IN, Op.NOT_IN})
NUMERIC_OPS = frozenset({Op.EQ, Op.NE, Op.GT, Op.GTE, Op.LT, Op.LTE})
TIME_OPS = frozenset({Op.GT, Op.GTE, Op.LT, Op.LTE, Op.WITHIN_DAYS, Op.NOT_WITHIN_DAYS})
CONSENT_OPS = frozenset({Op.CONTAINS, Op.NOT_CONTAINS})

# Where each field lives in marketing's `customer_attributes` projection.
DOCUMENT_FIELD: dict[SegmentField, str] = {
    SegmentField.VALUE_TIER: "value_tier",
    SegmentField.LIFECYCLE_STAGE: "lifecycle_stage",
    SegmentField.RFM_SEGMENT: "rfm_segment",
    SegmentField.CHURN_RISK_BAND: "churn_risk_band",
    SegmentField.SATISFACTION: "satisfaction",
    SegmentField.CONSENT: "granted",
    SegmentField.PREFERRED_CHANNEL: "preferred_channel",
    SegmentField.REGION: "region",
    SegmentField.LAST_ORDER_AT: "last_order_at",
}


def _vocabulary(field: SegmentField) -> frozenset[str] | None:
    if field in (SegmentField.CONSENT, SegmentField.PREFERRED_CHANNEL):
        return CHANNELS
    if field.value in SEGMENT_VALUES:
        return SEGMENT_VALUES[field.value]  # type: ignore[index]
    return None


def _ops(field: SegmentField) -> frozenset[Op]:
    if field == SegmentField.SATISFACTION:
        return NUMERIC_OPS
    if field == SegmentField.LAST_ORDER_AT:
        return TIME_OPS
    if field == SegmentField.CONSENT:
        return CONSENT_OPS
    return CATEGORICAL_OPS


Word = Annotated[str, Strict(), Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")]
_WORD: TypeAdapter[str] = TypeAdapter(Word)
_WORDS: TypeAdapter[list[str]] = TypeAdapter(
    Annotated[list[Word], Strict(), Field(min_length=1, max_length=MAX_IN_VALUES)]
)
# Strict: true is no satisfaction and "30" no number of days.
_SATISFACTION: TypeAdapter[float] = TypeAdapter(Annotated[float, Strict(), Field(ge=0, le=1, allow_inf_nan=False)])
_TIME: TypeAdapter[datetime] = TypeAdapter(PlannedTime)
_DAYS: TypeAdapter[int] = TypeAdapter(Annotated[int, Strict(), Field(ge=1, le=MAX_DAYS)])


def _schema(adapter: TypeAdapter[Any], description: str) -> dict[str, Any]:
    return {**adapter.json_schema(), "description": description}


# The value's schema, from the very adapters that check it, so the OpenAPI document and the checks agree.
VALUE_SCHEMA: dict[str, Any] = {
    "description": "What the rule compares with; which of these depends on the field and op.",
    "anyOf": [
        _schema(_WORD, "eq, ne on a categorical field; contains, not_contains on consent (a channel)."),
        _schema(_WORDS, f"in, not_in: 1 to {MAX_IN_VALUES} values."),
        _schema(_SATISFACTION, "satisfaction: 0 to 1."),
        _schema(_DAYS, f"within_days, not_within_days on last_order_at: 1 to {MAX_DAYS} days."),
        {
            **_schema(_TIME, "gt, gte, lt, lte on last_order_at: an RFC 3339 time with an offset, 1900 to 2199."),
            "examples": ["2026-10-01T00:00:00Z"],
        },
    ],
}


def _typed(adapter: TypeAdapter[Any], value: Any, what: str) -> Any:
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        message = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise ValueError(f"{what}: {message}") from None


class Rule(BaseModel):
    """One condition on one field of the customer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: SegmentField
    op: Op
    # Checked against the field and op below, so a wrong value gets one precise message.
    value: Annotated[Any, WithJsonSchema(VALUE_SCHEMA)]

    @model_validator(mode="after")
    def _op_and_value_fit_the_field(self) -> Self:
        f, op = self.field, self.op
        allowed = _ops(f)
        if op not in allowed:
            raise ValueError(
                f"{f.value} does not take op {op.value!r}; use one of {', '.join(sorted(o.value for o in allowed))}"
            )
        what = f"{f.value} {op.value}"
        if f == SegmentField.SATISFACTION:
            value: Any = _typed(_SATISFACTION, self.value, what)
        elif op in (Op.WITHIN_DAYS, Op.NOT_WITHIN_DAYS):
            value = _typed(_DAYS, self.value, what)
        elif f == SegmentField.LAST_ORDER_AT:
            value = _typed(_TIME, self.value, what)
        else:
            many = op in (Op.IN, Op.NOT_IN)
            value = _typed(_WORDS, self.value, what) if many else _typed(_WORD, self.value, what)
            vocabulary = _vocabulary(f)
            unknown = [v for v in (value if many else [value]) if vocabulary is not None and v not in vocabulary]
            if unknown:
                raise ValueError(
                    f"{f.value} is never {', '.join(repr(u) for u in unknown)}; expected one of"
                    f" {', '.join(sorted(vocabulary or ()))}"
                )
        object.__setattr__(self, "value", value)
        return self


def _kind(member: Any) -> str:
    if isinstance(member, dict):
        return "rule" if "field" in member else "group"
    return "rule" if isinstance(member, Rule) else "group"


Member = Annotated[Annotated[Rule, Tag("rule")] | Annotated["Group", Tag("group")], Discriminator(_kind)]


class Group(BaseModel):
    """All (and) or any (or) of its rules and groups; exactly one of the two keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    all: list[Member] | None = Field(default=None, min_length=1, max_length=MAX_GROUP_MEMBERS)
    any: list[Member] | None = Field(default=None, min_length=1, max_length=MAX_GROUP_MEMBERS)

    @model_validator(mode="after")
    def _exactly_one_and_bounded(self) -> Self:
        if (self.all is None) == (self.any is None):
            raise ValueError("a group has exactly one of 'all' or 'any'")
        if self.depth > MAX_DEPTH:
            raise ValueError(f"groups nest at most {MAX_DEPTH} deep")
        if (rules := self.rule_count) > MAX_RULES:
            raise ValueError(f"a segment definition holds at most {MAX_RULES} rules in all; this one holds {rules}")
        if (values := self.value_count) > MAX_VALUES:
            raise ValueError(
                f"a segment definition holds at most {MAX_VALUES} values in all (each value of an 'in' list "
                f"counts); this one holds {values}"
            )
        return self

    @property
    def members(self) -> list[Rule | Group]:
        return self.all if self.all is not None else (self.any or [])

    @property
    def depth(self) -> int:
        return 1 + max((m.depth for m in self.members if isinstance(m, Group)), default=0)

    @property
    def rule_count(self) -> int:
        return sum(m.rule_count if isinstance(m, Group) else 1 for m in self.members)

    @property
    def value_count(self) -> int:
        return sum(
            m.value_count if isinstance(m, Group) else len(m.value) if isinstance(m.value, list) else 1
            for m in self.members
        )


def _rule_filter(rule: Rule, now: datetime) -> dict[str, Any]:
    name = DOCUMENT_FIELD[rule.field]
    v = rule.value
    match rule.op:
        case Op.EQ:
            return {name: {"$eq": v}}
        case Op.NE:
            return {name: {"$ne": v}}
        case Op.IN:
            return {name: {"$in": v}}
        case Op.NOT_IN:
            return {name: {"$nin": v}}
        case Op.GT:
            return {name: {"$gt": v}}
        case Op.GTE:
            return {name: {"$gte": v}}
        case Op.LT:
            return {name: {"$lt": v}}
        case Op.LTE:
            return {name: {"$lte": v}}
        case Op.CONTAINS:
            # On an array, $eq matches when any element equals the value, and $ne when none does.
            return {name: {"$eq": v}}
        case Op.NOT_CONTAINS:
            return {name: {"$ne": v}}
        case Op.WITHIN_DAYS:
            assert isinstance(v, int)
            return {name: {"$gte": now - timedelta(days=v)}}
        case Op.NOT_WITHIN_DAYS:
            assert isinstance(v, int)
            return {"$or": [{name: {"$lt": now - timedelta(days=v)}}, {name: {"$eq": None}}]}
    raise AssertionError(f"unhandled op {rule.op}")


def to_filter(group: Group, now: datetime) -> dict[str, Any]:
    """The MongoDB filter on `customer_attributes` for this definition, at time `now` (for relative rules)."""
    parts = [_rule_filter(m, now) if isinstance(m, Rule) else to_filter(m, now) for m in group.members]
    return {"$and": parts} if group.all is not None else {"$or": parts}
