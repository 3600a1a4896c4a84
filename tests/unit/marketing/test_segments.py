"""The segment rule language: typed rules, precise refusals, and a filter built only from the model."""

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import bson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from crm_marketing.segments import (
    DOCUMENT_FIELD,
    MAX_DAYS,
    MAX_DEPTH,
    MAX_GROUP_MEMBERS,
    MAX_IN_VALUES,
    MAX_RULES,
    MAX_VALUES,
    Group,
    Rule,
    to_filter,
)

NOW = datetime(2026, 11, 20, tzinfo=UTC)


def compiled(definition: dict[str, Any]) -> dict[str, Any]:
    return to_filter(Group.model_validate(definition), NOW)


def test_rules_compile_to_explicit_operators() -> None:
    definition = {
        "all": [
            {"field": "value_tier", "op": "eq", "value": "high_value"},
            {"field": "consent", "op": "contains", "value": "email"},
            {
                "any": [
                    {"field": "churn_risk_band", "op": "in", "value": ["medium", "high"]},
                    {"field": "last_order_at", "op": "not_within_days", "value": 90},
                ]
            },
            {"field": "satisfaction", "op": "lte", "value": 0.4},
            {"field": "rfm_segment", "op": "ne", "value": "champions"},
        ]
    }
    assert compiled(definition) == {
        "$and": [
            {"value_tier": {"$eq": "high_value"}},
            {"granted": {"$eq": "email"}},
            {
                "$or": [
                    {"churn_risk_band": {"$in": ["medium", "high"]}},
                    {"$or": [{"last_order_at": {"$lt": NOW - timedelta(days=90)}}, {"last_order_at": {"$eq": None}}]},
                ]
            },
            {"satisfaction": {"$lte": 0.4}},
            {"rfm_segment": {"$ne": "champions"}},
        ]
    }


def test_time_rules_take_an_aware_time_or_a_number_of_days() -> None:
    absolute = compiled({"all": [{"field": "last_order_at", "op": "gte", "value": "2026-10-01T00:00:00Z"}]})
    assert absolute == {"$and": [{"last_order_at": {"$gte": datetime(2026, 10, 1, tzinfo=UTC)}}]}
    recent = compiled({"any": [{"field": "last_order_at", "op": "within_days", "value": 30}]})
    assert recent == {"$or": [{"last_order_at": {"$gte": NOW - timedelta(days=30)}}]}


def keys(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set(node) | {k for v in node.values() for k in keys(v)}
    if isinstance(node, list):
        return {k for v in node for k in keys(v)}
    return set()


def test_every_key_of_the_filter_is_the_codes_never_the_users() -> None:
    definition = {
        "any": [
            {"field": field, "op": "ne", "value": "x_y"}
            for field in ("region", "rfm_segment", "value_tier", "lifecycle_stage", "churn_risk_band")
        ]
    }
    with pytest.raises(ValidationError):
        Group.model_validate(definition)  # 'x_y' is no value tier
    allowed_fields = set(DOCUMENT_FIELD.values())
    operators = {"$and", "$or", "$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte"}
    for field in ("region", "rfm_segment"):
        found = keys(compiled({"any": [{"field": field, "op": "in", "value": ["a-1", "b_2"]}]}))
        assert found <= allowed_fields | operators


@pytest.mark.parametrize(
    ("definition", "location", "message"),
    [
        ({"all": [{"field": "tier", "op": "eq", "value": "x"}]}, "all.0.rule.field", "Input should be 'value_tier'"),
        (
            {"all": [{"field": "value_tier", "op": "gte", "value": "high_value"}]},
            "all.0.rule",
            "value_tier does not take op 'gte'; use one of eq, in, ne, not_in",
        ),
        (
            {"all": [{"field": "value_tier", "op": "eq", "value": "gold"}]},
            "all.0.rule",
            "value_tier is never 'gold'; expected one of high_value, low_value, potential",
        ),
        (
            {"all": [{"field": "lifecycle_stage", "op": "in", "value": ["lost", "gone"]}]},
            "all.0.rule",
            "lifecycle_stage is never 'gone'",
        ),
        ({"all": [{"field": "satisfaction", "op": "gte", "value": 3}]}, "all.0.rule", "satisfaction gte"),
        ({"all": [{"field": "consent", "op": "contains", "value": "pigeon"}]}, "all.0.rule", "consent is never"),
        ({"all": [{"field": "consent", "op": "eq", "value": "email"}]}, "all.0.rule", "consent does not take op 'eq'"),
        (
            {"any": [{"field": "rfm_segment", "op": "eq", "value": {"$where": "1"}}]},
            "any.0.rule",
            "rfm_segment eq",
        ),
        ({"any": [{"field": "rfm_segment", "op": "eq", "value": "$where"}]}, "any.0.rule", "should match pattern"),
        (
            {"all": [{"field": "last_order_at", "op": "gte", "value": "2026-01-01T00:00:00"}]},
            "all.0.rule",
            "with an offset",
        ),
        (
            {"all": [{"field": "last_order_at", "op": "gt", "value": "0001-01-01T00:00:00+01:00"}]},
            "all.0.rule",
            "last_order_at gt: time 0001-01-01T00:00:00+01:00 is before 1900-01-01T00:00:00+00:00",
        ),
        (
            {
                "any": [
                    {"field": "region", "op": "eq", "value": "n"},
                    {"field": "last_order_at", "op": "lt", "value": "9999-12-31T23:59:59-01:00"},
                ]
            },
            "any.1.rule",
            "last_order_at lt: time 9999-12-31T23:59:59-01:00 is after 2200-01-01T00:00:00+00:00",
        ),
        ({"all": [{"field": "last_order_at", "op": "gt", "value": 1767225600}]}, "all.0.rule", "RFC 3339"),
        ({"all": [{"field": "last_order_at", "op": "within_days", "value": "30"}]}, "all.0.rule", "valid integer"),
        ({"all": [{"field": "last_order_at", "op": "within_days", "value": True}]}, "all.0.rule", "valid integer"),
        ({"all": [{"field": "satisfaction", "op": "gt", "value": True}]}, "all.0.rule", "valid number"),
        ({"all": [{"field": "satisfaction", "op": "gt", "value": "0.5"}]}, "all.0.rule", "valid number"),
        ({"all": [{"field": "region", "op": "eq"}]}, "all.0.rule.value", "Field required"),
        (
            {"all": [{"field": "region", "op": "in", "value": []}]},
            "all.0.rule",
            "region in: List should have at least 1",
        ),
        ({"any": []}, "any", "at least 1 item"),
        ({"all": [{"any": []}]}, "all.0.group.any", "at least 1 item"),
        (
            {"all": [{"field": "region", "op": "in", "value": [f"r{i}" for i in range(MAX_IN_VALUES + 1)]}]},
            "all.0.rule",
            f"at most {MAX_IN_VALUES} items",
        ),
        ({"all": [{"field": "last_order_at", "op": "within_days", "value": 0}]}, "all.0.rule", "greater than"),
        ({"all": []}, "all", "at least 1 item"),
        ({"all": [{"field": "region", "op": "eq", "value": "n"}], "any": []}, "any", "at least 1 item"),
        ({}, "", "exactly one of 'all' or 'any'"),
        ({"all": [{"field": "region", "op": "eq", "value": "n", "x": 1}]}, "all.0.rule.x", "Extra inputs"),
        (
            {"all": [{"all": [{"all": [{"all": [{"all": [{"field": "region", "op": "eq", "value": "n"}]}]}]}]}]},
            "",
            f"groups nest at most {MAX_DEPTH} deep",
        ),
    ],
)
def test_a_wrong_rule_is_refused_saying_where_and_why(definition: dict[str, Any], location: str, message: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Group.model_validate(definition)
    errors = refused.value.errors()
    assert any(message in e["msg"] and ".".join(str(p) for p in e["loc"]).startswith(location) for e in errors), errors


def region(i: int) -> dict[str, Any]:
    return {"field": "region", "op": "eq", "value": f"r{i}"}


def nested(leaves: int, width: int = MAX_GROUP_MEMBERS) -> dict[str, Any]:
    """A definition with `leaves` rules, `width` per group, as shallow as that allows."""
    members: list[dict[str, Any]] = [region(i) for i in range(leaves)]
    while len(members) > width:
        members = [{"any": members[i : i + width]} for i in range(0, len(members), width)]
    return {"all": members}


def test_a_definition_at_the_limits_is_accepted() -> None:
    assert Group.model_validate(nested(MAX_RULES)).rule_count == MAX_RULES
    lists = {
        "any": [
            {"field": "region", "op": "in", "value": [f"r{i}-{j}" for j in range(MAX_IN_VALUES)]}
            for i in range(MAX_VALUES // MAX_IN_VALUES)
        ]
    }
    assert Group.model_validate(lists).value_count == MAX_VALUES


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        (nested(MAX_RULES + 1), f"at most {MAX_RULES} rules in all; this one holds {MAX_RULES + 1}"),
        # The shape a probe stored 16,000 of (rules of 50 values, 20 per group), here 20 x 20 of them.
        (
            {"all": [{"any": [{"field": "region", "op": "in", "value": ["a"] * 50}] * 20}] * 20},
            f"at most {MAX_RULES} rules in all; this one holds 400",
        ),
        (
            {
                "any": [
                    {"any": [{"field": "region", "op": "in", "value": [f"r{j}" for j in range(50)]}] * n}
                    for n in (10, 11)
                ]
            },
            f"at most {MAX_VALUES} values in all",
        ),
    ],
)
def test_a_definition_over_a_limit_is_refused_saying_which(definition: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Group.model_validate(definition)
    assert any(message in e["msg"] for e in refused.value.errors()), refused.value.errors()


def test_the_schema_says_groups_and_lists_are_never_empty_and_bounded() -> None:
    schema = Group.model_json_schema()
    group = schema["$defs"]["Group"]["properties"]
    for key in ("all", "any"):
        [array] = [s for s in group[key]["anyOf"] if s.get("type") == "array"]
        assert (array["minItems"], array["maxItems"]) == (1, MAX_GROUP_MEMBERS)
    value = schema["$defs"]["Rule"]["properties"]["value"]
    [values] = [s for s in value["anyOf"] if s.get("type") == "array"]
    assert (values["minItems"], values["maxItems"]) == (1, MAX_IN_VALUES)
    assert {"type": "integer", "minimum": 1, "maximum": MAX_DAYS}.items() <= next(
        s for s in value["anyOf"] if s.get("type") == "integer"
    ).items()
    assert any(s.get("format") == "date-time" for s in value["anyOf"])
    assert "value" in schema["$defs"]["Rule"]["required"]


EARLIEST, LATEST = datetime(1900, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC)
offsets = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(lambda m: timedelta(minutes=m))
times = st.datetimes(min_value=datetime(1890, 1, 1), max_value=datetime(2210, 1, 1), timezones=st.just(UTC))


@given(at=times, offset=offsets, op=st.sampled_from(["gt", "gte", "lt", "lte"]))
def test_a_time_is_accepted_only_in_the_planned_window_and_then_always_compiles(
    at: datetime, offset: timedelta, op: str
) -> None:
    text = at.astimezone(timezone(offset)).isoformat()
    rule = {"field": "last_order_at", "op": op, "value": text}
    if not EARLIEST <= at <= LATEST:
        with pytest.raises(ValidationError):
            Rule.model_validate(rule)
        return
    validated = Rule.model_validate(rule)
    assert validated.value.tzinfo == UTC and timedelta(0) <= at - validated.value < timedelta(milliseconds=1)
    bson.encode(to_filter(Group(all=[validated]), NOW))


@given(days=st.integers(min_value=1, max_value=MAX_DAYS), now=times.filter(lambda t: EARLIEST <= t <= LATEST))
def test_a_number_of_days_always_compiles(days: int, now: datetime) -> None:
    for op in ("within_days", "not_within_days"):
        bson.encode(
            to_filter(Group.model_validate({"all": [{"field": "last_order_at", "op": op, "value": days}]}), now)
        )
