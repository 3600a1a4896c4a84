"""The segment rule language: typed rules, precise refusals, and a filter built only from the model."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from crm_marketing.segments import DOCUMENT_FIELD, Group, to_filter

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
            "timezone",
        ),
        ({"all": [{"field": "last_order_at", "op": "within_days", "value": 0}]}, "all.0.rule", "greater than"),
        ({"all": []}, "all", "at least 1 item"),
        ({"all": [{"field": "region", "op": "eq", "value": "n"}], "any": []}, "any", "at least 1 item"),
        ({}, "", "exactly one of 'all' or 'any'"),
        ({"all": [{"field": "region", "op": "eq", "value": "n", "x": 1}]}, "all.0.rule.x", "Extra inputs"),
        (
            {"all": [{"all": [{"all": [{"all": [{"all": [{"field": "region", "op": "eq", "value": "n"}]}]}]}]}]},
            "",
            "groups nest at most 4 deep",
        ),
    ],
)
def test_a_wrong_rule_is_refused_saying_where_and_why(definition: dict[str, Any], location: str, message: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Group.model_validate(definition)
    errors = refused.value.errors()
    assert any(message in e["msg"] and ".".join(str(p) for p in e["loc"]).startswith(location) for e in errors), errors
