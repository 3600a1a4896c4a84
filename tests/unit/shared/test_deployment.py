"""The reference deployment (docker-compose.yml, deploy/) agrees with the code.

No Docker engine runs here, so the files are checked against what the code reads: every service,
its port, its build, every CRM_* variable (one its settings class actually reads), its own Kafka and
MongoDB user, and the Kafka ACLs, which must grant exactly the topics and groups its code uses.
"""

from __future__ import annotations

import importlib
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from crm_shared import acls
from crm_shared.cli import build_parser
from crm_shared.service import Runtime
from crm_shared.settings import SERVICES, ServiceSettings
from crm_shared.topics import ALL_TOPICS, Topic

ROOT = Path(__file__).resolve().parents[3]
INFRASTRUCTURE = {"kafka", "mongo", "kafka-acls", "topics"}
ACL_TABLE = ROOT / "deploy" / "kafka" / "acls.txt"
MONGO_USERS_SCRIPT = ROOT / "deploy" / "mongo" / "initdb" / "10-crm-users.js"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


def settings_class(service: str) -> type[ServiceSettings]:
    module = importlib.import_module(f"crm_{service}.settings")
    cls: type[ServiceSettings] = getattr(module, f"{service.capitalize()}Settings")
    return cls


def runtime_of(service: str) -> Runtime:
    runtime: Runtime = importlib.import_module(f"crm_{service}.app").create_service().state.runtime
    return runtime


def password_variable(value: str) -> str:
    """`${CRM_SALES_KAFKA_PASSWORD:-default}` -> `CRM_SALES_KAFKA_PASSWORD`; other values are refused."""
    match = re.fullmatch(r"\$\{(CRM_[A-Z_]+_PASSWORD):-change-me-[a-z-]+\}", value)
    assert match, f"expected ${{CRM_<NAME>_PASSWORD:-change-me-...}}, got {value!r}"
    return match.group(1)


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
    assert set(compose["services"]) == set(SERVICES) | INFRASTRUCTURE | {"console"}


def test_the_console_is_built_like_a_service_and_calls_each_one_by_its_compose_name(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from crm_console.settings import ConsoleSettings

    spec = compose["services"]["console"]
    assert spec["build"]["dockerfile"] == "deploy/Dockerfile"
    assert spec["build"]["args"]["SERVICE"] == "console"
    assert spec["ports"] == ["8000:8000"]
    environment = {k: str(v) for k, v in spec["environment"].items()}
    assert not set(environment) - variables_read_by(ConsoleSettings)
    for name in list(os.environ):
        if name.startswith("CRM_"):
            monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value))
    settings = ConsoleSettings()
    assert settings.host == "0.0.0.0" and settings.port == 8000
    assert settings.service_urls() == {name: f"http://{name}:{port}" for name, port in SERVICES.items()}
    assert not settings.password_sign_in


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
    assert settings.kafka_security_protocol == "SASL_PLAINTEXT"
    assert settings.kafka_sasl_mechanism == "SCRAM-SHA-512"
    assert settings.database_name == f"crm_{service}"


def test_topics_are_created_by_the_cli_from_the_code_catalog(compose: dict[str, Any]) -> None:
    job = compose["services"]["topics"]
    assert job["command"][:2] == ["crm", "topics"]
    assert build_parser().parse_args(job["command"][1:]).command == "topics"
    assert job["environment"]["CRM_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert job["environment"]["CRM_KAFKA_SASL_USERNAME"] == acls.TOPICS_PRINCIPAL
    assert job["depends_on"]["kafka-acls"]["condition"] == "service_completed_successfully"
    kafka_env = compose["services"]["kafka"]["environment"]
    # With auto-creation off, a topic missing from the catalog would fail loudly rather than appear with defaults.
    assert kafka_env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert kafka_env["KAFKA_ADVERTISED_LISTENERS"] == "CLIENT://kafka:9092"


def test_the_broker_authenticates_every_client_and_authorizes_by_acl(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    env = kafka["environment"]
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert protocols == {"CLIENT": "SASL_PLAINTEXT", "CONTROLLER": "PLAINTEXT"}
    # The one PLAINTEXT listener (whose principal is ANONYMOUS, a super user) is bound to localhost.
    assert env["KAFKA_LISTENERS"] == "CLIENT://:9092,CONTROLLER://localhost:9093"
    assert env["KAFKA_SASL_ENABLED_MECHANISMS"] == env["KAFKA_SASL_MECHANISM_INTER_BROKER_PROTOCOL"] == "SCRAM-SHA-512"
    assert env["KAFKA_AUTHORIZER_CLASS_NAME"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert env["KAFKA_SUPER_USERS"] == "User:admin;User:ANONYMOUS"
    assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert kafka["command"] == ["bash", "/crm/broker.sh"]
    assert "./deploy/kafka:/crm:ro" in kafka["volumes"]
    # No KAFKA_ variable holds a password: the image would copy it into server.properties.
    assert not [name for name, value in env.items() if name.startswith("KAFKA_") and "PASSWORD" in str(value)]
    broker = (ROOT / "deploy" / "kafka" / "broker.sh").read_text()
    assert '--add-scram "SCRAM-SHA-512=[name=admin,password=${CRM_KAFKA_ADMIN_PASSWORD}]"' in broker
    assert "exec /etc/kafka/docker/run" in broker


def test_the_acl_table_is_the_one_the_code_computes() -> None:
    expected = acls.render(acls.acl_lines(acls.platform_access()))
    assert ACL_TABLE.read_text() == expected, "stale: python -m crm_shared.acls > deploy/kafka/acls.txt"


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_each_service_is_granted_exactly_the_topics_and_groups_its_code_uses(service: str) -> None:
    runtime = runtime_of(service)
    consumed = {str(topic) for subscription in runtime.subscriptions for topic in subscription.topics}
    published = {str(publisher.topic) for publisher in runtime.spec.publishers}  # type: ignore[attr-defined]
    groups = {subscription.group_id for subscription in runtime.subscriptions}
    rules: dict[tuple[str, tuple[str, ...]], set[str]] = {}
    for line in acls.parse(ACL_TABLE.read_text()):
        if line.principal == f"crm-{service}":
            rules.setdefault((line.resource, line.operations), set()).update(line.names)
    # Every service also tails and publishes the API key records, and dead-letters what it rejects.
    assert rules == {
        ("topic", ("Read", "Describe")): consumed | {Topic.SECURITY_KEYS},
        ("topic", ("Write", "Describe")): published | {Topic.DEADLETTER, Topic.SECURITY_KEYS},
        ("group", ("Read",)): groups,
    }
    assert runtime.settings.consumer_group in groups


def test_only_the_topics_job_may_create_topics_and_only_those_of_the_catalog() -> None:
    lines = acls.parse(ACL_TABLE.read_text())
    creators = [line for line in lines if "Create" in line.operations]
    assert [(c.principal, c.resource, set(c.names)) for c in creators] == [
        (acls.TOPICS_PRINCIPAL, "topic", set(ALL_TOPICS))
    ]
    assert {line.principal for line in lines} == {f"crm-{s}" for s in SERVICES} | {acls.TOPICS_PRINCIPAL}
    assert {op for line in lines for op in line.operations} <= {"Read", "Write", "Describe", "Create"}
    assert {line.resource for line in lines} == {"topic", "group"}


def test_every_kafka_user_has_its_own_password_given_to_the_acl_job(compose: dict[str, Any]) -> None:
    job = compose["services"]["kafka-acls"]
    assert job["command"] == ["bash", "/crm/acls.sh"]
    assert "./deploy/kafka:/crm:ro" in job["volumes"]
    assert job["depends_on"]["kafka"]["condition"] == "service_healthy"
    clients = {name: compose["services"][name]["environment"] for name in (*SERVICES, "topics")}
    seen: set[str] = set()
    for name, env in clients.items():
        principal = acls.TOPICS_PRINCIPAL if name == "topics" else f"crm-{name}"
        assert env["CRM_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
        assert env["CRM_KAFKA_SASL_USERNAME"] == principal
        password = env["CRM_KAFKA_SASL_PASSWORD"]
        variable = password_variable(password)
        # acls.sh reads crm-<name>'s password from CRM_<NAME>_KAFKA_PASSWORD.
        assert variable == f"CRM_{principal.removeprefix('crm-').upper()}_KAFKA_PASSWORD"
        assert job["environment"][variable] == password
        seen.add(password)
    assert len(seen) == len(clients), "two Kafka users share a password"
    admin = compose["services"]["kafka"]["environment"]["CRM_KAFKA_ADMIN_PASSWORD"]
    assert password_variable(admin) == "CRM_KAFKA_ADMIN_PASSWORD"
    assert job["environment"]["CRM_KAFKA_ADMIN_PASSWORD"] == admin
    assert admin not in seen


def test_every_service_has_its_own_mongo_user_on_its_own_database_only(compose: dict[str, Any]) -> None:
    mongo = compose["services"]["mongo"]
    script = MONGO_USERS_SCRIPT.read_text()
    listed = re.search(r"const SERVICES = \[([^\]]*)\];", script)
    assert listed and re.findall(r'"([a-z]+)"', listed.group(1)) == list(SERVICES)
    assert 'const roles = [{ role: "readWrite", db: `crm_${service}` }];' in script
    assert "process.env[variable]" in script and "`CRM_${service.toUpperCase()}_MONGO_PASSWORD`" in script
    seen: set[str] = set()
    for service in SERVICES:
        env = compose["services"][service]["environment"]
        assert env["CRM_MONGO_USERNAME"] == f"crm-{service}"
        assert env["CRM_MONGO_AUTH_SOURCE"] == "admin"
        password = env["CRM_MONGO_PASSWORD"]
        variable = password_variable(password)
        assert variable == f"CRM_{service.upper()}_MONGO_PASSWORD"
        assert mongo["environment"][variable] == password
        seen.add(password)
    assert len(seen) == len(SERVICES), "two MongoDB users share a password"
    assert password_variable(mongo["environment"]["MONGO_INITDB_ROOT_PASSWORD"]) == "CRM_MONGO_ROOT_PASSWORD"


def test_mongo_runs_a_replica_set_with_access_control(compose: dict[str, Any]) -> None:
    mongo = compose["services"]["mongo"]
    assert mongo["entrypoint"] == ["bash", "/crm/entrypoint.sh"]
    assert mongo["command"][:3] == ["mongod", "--replSet", "rs0"]
    assert "./deploy/mongo/initdb:/docker-entrypoint-initdb.d:ro" in mongo["volumes"]
    entrypoint = (ROOT / "deploy" / "mongo" / "entrypoint.sh").read_text()
    assert 'exec docker-entrypoint.sh "$@" --keyFile "$keyfile"' in entrypoint
    assert "$$MONGO_INITDB_ROOT_PASSWORD" in mongo["healthcheck"]["test"][1]


def test_services_wait_for_the_topics_and_a_healthy_replica_set(compose: dict[str, Any]) -> None:
    for service in SERVICES:
        depends = compose["services"][service]["depends_on"]
        assert depends["topics"]["condition"] == "service_completed_successfully"
        assert depends["mongo"]["condition"] == "service_healthy"


def test_the_dockerfile_installs_shared_and_one_service_and_runs_it() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "pip install /app/shared /app/services/${SERVICE}" in dockerfile
    assert "python -m crm_${CRM_SERVICE}" in dockerfile


def test_only_the_service_apis_are_published_on_the_host(compose: dict[str, Any]) -> None:
    # Credentials or not, the broker and the database stay on the network the services share.
    for infrastructure in INFRASTRUCTURE:
        assert "ports" not in compose["services"][infrastructure], infrastructure
    for service, port in SERVICES.items():
        assert compose["services"][service]["ports"] == [f"{port}:{port}"]
