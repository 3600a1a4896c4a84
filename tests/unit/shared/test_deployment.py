"""The reference deployment (docker-compose.yml, deploy/Dockerfile) agrees with the code.

No Docker engine runs here, so the files are checked against what the code reads: every service,
its port, its build, and every CRM_* variable, which must be one its settings class actually reads.
"""

from __future__ import annotations

import importlib
import os
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from crm_shared.cli import build_parser
from crm_shared.settings import SERVICES, ServiceSettings

ROOT = Path(__file__).resolve().parents[3]
INFRASTRUCTURE = {"kafka", "mongo", "topics"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


def settings_class(service: str) -> type[ServiceSettings]:
    module = importlib.import_module(f"crm_{service}.settings")
    cls: type[ServiceSettings] = getattr(module, f"{service.capitalize()}Settings")
    return cls


def variables_read_by(cls: type[BaseSettings]) -> set[str]:
    """The environment variables a settings class reads: its aliases, else prefix + field name."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    names: set[str] = set()
    for name, field in cls.model_fields.items():
        alias = field.validation_alias
        choices = getattr(alias, "choices", None)
        if choices:
            names.update(str(c) for c in choices)
        else:
            names.add(f"{prefix}{name}".upper())
    return names


def test_every_service_and_only_those_are_deployed(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == set(SERVICES) | INFRASTRUCTURE


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_each_service_is_built_from_its_own_package_and_listens_on_its_port(
    compose: dict[str, Any], service: str
) -> None:
    spec = compose["services"][service]
    assert spec["build"]["dockerfile"] == "deploy/Dockerfile"
    assert spec["build"]["args"]["SERVICE"] == service
    port = SERVICES[service]
    assert spec["ports"] == [f"{port}:{port}"]
    assert (ROOT / "services" / service / "src" / f"crm_{service}" / "__main__.py").is_file()
    project = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())["project"]
    assert project["name"] == f"crm-{service}"
    assert any(dep.startswith("crm-shared") for dep in project["dependencies"])


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_variable_is_one_the_service_reads_and_takes_effect(
    compose: dict[str, Any], service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    environment: dict[str, str] = {k: str(v) for k, v in compose["services"][service]["environment"].items()}
    cls = settings_class(service)
    unknown = set(environment) - variables_read_by(cls)
    assert not unknown, f"{service}: variables no setting reads: {sorted(unknown)}"
    for name in list(os.environ):
        if name.startswith("CRM_"):
            monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    settings = cls()
    assert settings.service_name == service
    assert settings.port == SERVICES[service]
    assert settings.host == "0.0.0.0"
    assert settings.kafka_bootstrap == "kafka:9092"
    assert settings.mongo_uri.startswith("mongodb://mongo:27017/") and "replicaSet=rs0" in settings.mongo_uri


def test_topics_are_created_by_the_cli_from_the_code_catalog(compose: dict[str, Any]) -> None:
    job = compose["services"]["topics"]
    assert job["command"][:2] == ["crm", "topics"]
    assert build_parser().parse_args(job["command"][1:]).command == "topics"
    assert job["environment"]["CRM_KAFKA_BOOTSTRAP"] == "kafka:9092"
    kafka_env = compose["services"]["kafka"]["environment"]
    # With auto-creation off, a topic missing from the catalog would fail loudly rather than appear with defaults.
    assert kafka_env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert kafka_env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092"


def test_services_wait_for_the_topics_and_a_healthy_replica_set(compose: dict[str, Any]) -> None:
    mongo = compose["services"]["mongo"]
    assert mongo["command"][:2] == ["--replSet", "rs0"]
    for service in SERVICES:
        depends = compose["services"][service]["depends_on"]
        assert depends["topics"]["condition"] == "service_completed_successfully"
        assert depends["mongo"]["condition"] == "service_healthy"


def test_the_dockerfile_installs_shared_and_one_service_and_runs_it() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "pip install /app/shared /app/services/${SERVICE}" in dockerfile
    assert "python -m crm_${CRM_SERVICE}" in dockerfile


def test_only_the_service_apis_are_published_on_the_host(compose: dict[str, Any]) -> None:
    # The broker and the database have no credentials: they stay on the network the services share.
    for infrastructure in INFRASTRUCTURE:
        assert "ports" not in compose["services"][infrastructure], infrastructure
    for service, port in SERVICES.items():
        assert compose["services"][service]["ports"] == [f"{port}:{port}"]
