"""Every service's OpenAPI document builds (FastAPI builds it lazily, at the first /docs request) and is complete."""

from __future__ import annotations

import importlib

import pytest

from crm_shared.settings import SERVICES


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_the_openapi_document_builds_with_every_route_described(service: str) -> None:
    app = importlib.import_module(f"crm_{service}.app").create_service()
    document = app.openapi()
    operations = [(path, method, op) for path, item in document["paths"].items() for method, op in item.items()]
    assert any(path.startswith("/v1/") for path, _, _ in operations)
    undescribed = [f"{method.upper()} {path}" for path, method, op in operations if not op.get("summary")]
    assert not undescribed, f"{service}: operations without a summary: {undescribed}"
    unversioned = [path for path, _, _ in operations if not path.startswith(("/v1/", "/healthz", "/readyz"))]
    assert not unversioned, f"{service}: paths outside /v1: {unversioned}"
