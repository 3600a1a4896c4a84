"""Every service's OpenAPI document builds (FastAPI builds it lazily, at the first /docs request) and is complete:
it says what the API answers, errors included (schemathesis checks the answers against it)."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from crm_shared.security import SCOPES
from crm_shared.service import OPEN_PATHS, open_operations
from crm_shared.settings import SERVICES

PROBLEM_JSON = "application/problem+json"

Operation = tuple[str, str, dict[str, Any]]


@pytest.fixture(scope="module", params=sorted(SERVICES))
def document(request: pytest.FixtureRequest) -> dict[str, Any]:
    document: dict[str, Any] = importlib.import_module(f"crm_{request.param}.app").create_service().openapi()
    return document


def operations(document: dict[str, Any]) -> list[Operation]:
    return [(path, method, op) for path, item in document["paths"].items() for method, op in item.items()]


def test_the_openapi_document_builds_with_every_route_described(document: dict[str, Any]) -> None:
    ops = operations(document)
    assert any(path.startswith("/v1/") for path, _, _ in ops)
    undescribed = [f"{method.upper()} {path}" for path, method, op in ops if not op.get("summary")]
    assert not undescribed, f"operations without a summary: {undescribed}"
    unversioned = [path for path, _, _ in ops if not path.startswith(("/v1/", "/healthz", "/readyz", "/metrics"))]
    assert not unversioned, f"paths outside /v1: {unversioned}"


def test_every_error_answer_is_documented_as_problem_json(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    wrong: list[str] = []
    for path, method, op in operations(document):
        for code, response in op["responses"].items():
            if not code.startswith(("4", "5")) or (path, code) == ("/readyz", "503"):
                continue
            wanted = "ValidationProblemDetails" if code == "422" else "ProblemDetails"
            if response.get("content") != {PROBLEM_JSON: {"schema": {"$ref": f"#/components/schemas/{wanted}"}}}:
                wrong.append(f"{method.upper()} {path} {code}: {response.get('content')}")
    assert not wrong, f"error answers not documented as problem+json: {wrong}"
    problem = schemas["ProblemDetails"]
    assert set(problem["required"]) == {"type", "title", "status", "detail", "instance"}
    assert "errors" in schemas["ValidationProblemDetails"]["properties"]
    # FastAPI's default 422 body ({"detail": [...]}) is never sent, so it is not described either.
    assert "HTTPValidationError" not in schemas


def test_readiness_documents_its_own_answer_when_not_ready(document: dict[str, Any]) -> None:
    not_ready = document["paths"]["/readyz"]["get"]["responses"]["503"]
    assert not_ready["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Readiness"}


def test_every_operation_taking_a_cursor_documents_the_400_for_a_bad_one(document: dict[str, Any]) -> None:
    paged = [
        (path, method, op)
        for path, method, op in operations(document)
        if any(p["in"] == "query" and p["name"] == "cursor" for p in op.get("parameters", []))
    ]
    assert paged, "every service has a paged list"
    missing = [f"{method.upper()} {path}" for path, method, op in paged if "400" not in op["responses"]]
    assert not missing, f"cursor operations without a 400: {missing}"


def test_every_operation_taking_a_body_documents_the_413(document: dict[str, Any]) -> None:
    with_body = [(path, method, op) for path, method, op in operations(document) if "requestBody" in op]
    missing = [f"{method.upper()} {path}" for path, method, op in with_body if "413" not in op["responses"]]
    assert not missing, f"operations taking a body without a 413: {missing}"


def test_every_operation_but_health_and_metrics_needs_a_credential_and_says_which_scope(
    document: dict[str, Any],
) -> None:
    assert open_operations(document) == []
    schemes = set(document["components"]["securitySchemes"])
    assert schemes - {"CalendarFeedToken"} == {"ApiKey", "BearerToken"}
    # The one other credential: a calendar's secret address, for that calendar's feed and nothing else.
    feed_only = [
        f"{method.upper()} {path}"
        for path, method, op in operations(document)
        if any("CalendarFeedToken" in requirement for requirement in op.get("security", []))
    ]
    assert feed_only == (["GET /v1/calendars/{owner_id}/feed.ics"] if "CalendarFeedToken" in schemes else [])
    for path, method, op in operations(document):
        if path in OPEN_PATHS:
            assert "security" not in op, f"{method.upper()} {path} reveals nothing and needs no credential"
            continue
        scopes = {scope for requirement in op["security"] for names in requirement.values() for scope in names}
        assert scopes <= set(SCOPES), f"{method.upper()} {path}: unknown scopes {scopes - set(SCOPES)}"
        if path != "/v1/auth/whoami":
            assert scopes, f"{method.upper()} {path} names no scope"
        assert {"401", "403", "429"} <= op["responses"].keys(), f"{method.upper()} {path} lacks 401/403/429"


async def test_a_route_without_a_credential_check_stops_the_service_at_start_up() -> None:
    from fastapi import APIRouter

    from crm_shared.service import Runtime, create_app
    from crm_shared.settings import ServiceSettings

    router = APIRouter()

    @router.get("/v1/forgotten", summary="Open by mistake")
    async def forgotten() -> dict[str, str]:
        return {}

    app = create_app(Runtime.for_service(ServiceSettings()), title="t", description="d", routers=[router])
    assert open_operations(app.openapi()) == ["GET /v1/forgotten"]
    # Refused before it connects to anything.
    with pytest.raises(RuntimeError, match="GET /v1/forgotten"):
        async with app.router.lifespan_context(app):
            pass


def test_every_id_in_a_path_has_a_pattern_and_a_length(document: dict[str, Any]) -> None:
    loose = [
        f"{method.upper()} {path} {p['name']}"
        for path, method, op in operations(document)
        for p in op.get("parameters", [])
        if p["in"] == "path" and p["name"].endswith("_id") and not {"pattern", "maxLength"} <= p["schema"].keys()
    ]
    assert not loose, f"ids in paths taken as any string: {loose}"
