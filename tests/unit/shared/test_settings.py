import pytest
from pydantic import ValidationError

from crm_shared.settings import ServiceSettings


def test_defaults_and_database_name() -> None:
    settings = ServiceSettings(service_name="sales")
    assert settings.database_name == "crm_sales"
    assert settings.consumer_group == "crm-sales"


def test_shared_variables_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_KAFKA_BOOTSTRAP", "k1:9092,k2:9092")
    monkeypatch.setenv("CRM_MONGO_URI", "mongodb://m1:27017/?replicaSet=rs0")
    settings = ServiceSettings()
    assert settings.kafka_bootstrap == "k1:9092,k2:9092"
    assert settings.mongo_uri.startswith("mongodb://m1")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CRM_KAFKA_BOOTSTRAP", "localhost", "expected host:port"),
        ("CRM_MONGO_URI", "postgres://x", "expected a mongodb://"),
        ("CRM_LOG_LEVEL", "LOUD", "Input should be"),
    ],
)
def test_bad_values_are_refused_at_start_up(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=message):
        ServiceSettings()
