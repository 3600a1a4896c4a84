"""Where the instances of each service listen and what they are called; no process is started."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from pydantic import ValidationError

from crm_shared.cli import build_parser, console_identity
from crm_shared.platform import Platform, PortScheme, instance_name, instance_ports, service_env
from crm_shared.settings import SERVICES, ServiceSettings


def platform(
    ports: dict[str, int], instances: int = 1, further_ports: Mapping[str, Sequence[int]] | PortScheme = "offset"
) -> Platform:
    return Platform(
        "127.0.0.1:9092",
        "mongodb://127.0.0.1:27017",
        ports,
        Path("unused"),
        instances=instances,
        further_ports=further_ports,
    )


def test_instance_k_of_the_defaults_listens_ten_times_k_minus_one_above_instance_1() -> None:
    ports = instance_ports(SERVICES, 3)
    assert ports["customer"] == [8001, 8011, 8021]
    assert ports["marketing"] == [8005, 8015, 8025]
    every = [port for service_ports in ports.values() for port in service_ports]
    assert len(set(every)) == len(every) == 15


def test_one_instance_keeps_the_ports_it_was_given() -> None:
    one = platform({"sales": 8002, "scoring": 8004})
    assert one.urls("sales") == ["http://127.0.0.1:8002"]
    assert one.instance_names("scoring") == ["scoring"]
    assert one.url("scoring") == "http://127.0.0.1:8004"


def test_instances_are_named_after_their_service_and_number() -> None:
    two = platform(dict(SERVICES), instances=2)
    assert instance_name("sales", 1) == "sales"
    assert two.instance_names("sales") == ["sales", "sales-2"]
    assert two.urls("sales") == ["http://127.0.0.1:8002", "http://127.0.0.1:8012"]
    assert two.url("sales", 2) == "http://127.0.0.1:8012"
    with pytest.raises(KeyError, match="sales-3"):
        two.url("sales", 3)
    with pytest.raises(KeyError, match="not been started"):
        two.process("sales-2")


def test_further_instances_take_explicit_or_free_ports() -> None:
    explicit = platform({"scoring": 9000}, instances=3, further_ports={"scoring": [9100, 9200]})
    assert explicit.urls("scoring") == ["http://127.0.0.1:9000", "http://127.0.0.1:9100", "http://127.0.0.1:9200"]
    free = instance_ports({"scoring": 9000, "sales": 9001}, 3, "free")
    every = [port for ports in free.values() for port in ports]
    assert len(set(every)) == 6 and free["scoring"][0] == 9000


@pytest.mark.parametrize(
    ("ports", "instances", "further", "message"),
    [
        ({"sales": 8002}, 0, "offset", "1 or more"),
        ({"sales": 8002, "scoring": 8012}, 2, "offset", r"share port\(s\) \[8012\]"),
        ({"sales": 65530}, 2, "offset", "out of range"),
        ({"sales": 8002}, 3, {"sales": [9000]}, "2 further port"),
    ],
)
def test_impossible_ports_are_refused(
    ports: dict[str, int], instances: int, further: Mapping[str, Sequence[int]] | PortScheme, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        instance_ports(ports, instances, further)


def test_each_process_is_told_which_instance_it_is() -> None:
    env = service_env("sales", "k:9092", "mongodb://m", 8012, {"CRM_INSTANCE": "7"}, instance=2)
    assert env["CRM_INSTANCE"] == "2" and env["CRM_SALES_PORT"] == "8012"


def test_the_instance_names_the_kafka_client_and_refuses_numbers_below_one(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ServiceSettings(service_name="sales").client_id == "crm-sales"
    monkeypatch.setenv("CRM_INSTANCE", "2")
    second = ServiceSettings(service_name="sales")
    assert second.instance == 2 and second.client_id == "crm-sales-2"
    assert second.consumer_group == "crm-sales"
    monkeypatch.setenv("CRM_INSTANCE", "0")
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        ServiceSettings()


@pytest.mark.parametrize("value", ["0", "5", "two"])
def test_crm_run_refuses_an_instance_count_out_of_1_to_4(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--instances", value])
    assert "--instances" in capsys.readouterr().err


def test_crm_run_starts_one_instance_unless_told() -> None:
    assert build_parser().parse_args(["run"]).instances == 1
    assert build_parser().parse_args(["run", "--instances", "4"]).instances == 4


def test_the_console_is_a_process_of_the_platform_on_a_port_of_its_own() -> None:
    with_console = Platform("k:1", "m", dict(SERVICES), Path("unused"), console_port=8000)
    assert with_console.console_url == "http://127.0.0.1:8000"
    with pytest.raises(ValueError, match="service's"):
        Platform("k:1", "m", dict(SERVICES), Path("unused"), console_port=SERVICES["sales"])
    with pytest.raises(KeyError, match="no console"):
        _ = platform(dict(SERVICES)).console_url


def test_crm_run_makes_a_development_identity_the_services_trust(tmp_path: Path) -> None:
    env: dict[str, str] = {}
    password = console_identity(build_parser().parse_args(["run"]), tmp_path, env)
    assert password and (tmp_path / "console" / "password").read_text() == password
    assert Path(env["CRM_AUTH_JWT_PUBLIC_KEY_FILE"]).is_file()
    assert env["CRM_AUTH_JWT_ISSUER"] == env["CRM_CONSOLE_TOKEN_ISSUER"]
    assert Path(env["CRM_CONSOLE_USERS_FILE"]).is_file()
    assert len(env["CRM_CONSOLE_SESSION_SECRET"]) >= 32


def test_crm_run_leaves_an_identity_provider_of_ones_own_alone(tmp_path: Path) -> None:
    env = {"CRM_AUTH_JWKS_URL": "https://idp.example/jwks", "CRM_AUTH_JWT_ISSUER": "https://idp.example"}
    assert console_identity(build_parser().parse_args(["run"]), tmp_path, env) is None
    assert env["CRM_AUTH_JWT_ISSUER"] == "https://idp.example"
    assert "CRM_AUTH_JWT_PUBLIC_KEY_FILE" not in env and "CRM_CONSOLE_USERS_FILE" not in env
    assert "CRM_CONSOLE_SESSION_SECRET" in env


def test_crm_run_without_the_console_makes_nothing_for_it(tmp_path: Path) -> None:
    env: dict[str, str] = {}
    assert console_identity(build_parser().parse_args(["run", "--no-console"]), tmp_path, env) is None
    assert env == {} and not (tmp_path / "console").exists()
