"""Kafka and MongoDB security settings: refused when inconsistent, turned into the clients' own options."""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import certifi
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from faststream.kafka import KafkaBroker
from faststream.kafka.security import parse_security
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from pydantic import ValidationError
from pymongo import AsyncMongoClient

from crm_shared.service import build_broker
from crm_shared.settings import ServiceSettings
from crm_shared.transport import (
    TransportSettings,
    kafka_broker_security,
    kafka_client_options,
    kafka_options_from_env,
    mongo_client_options,
)

PASSWORD = "s3cret-hunter2"


@dataclass(frozen=True)
class Pki:
    ca: Path
    cert: Path
    key: Path
    encrypted_key: Path
    both: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A self-signed client certificate and its key: plain, encrypted, and both in one PEM file."""
    folder = tmp_path_factory.mktemp("pki")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "crm-sales")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    encrypted_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(PASSWORD.encode()),
    )
    files = Pki(folder / "ca.pem", folder / "cert.pem", folder / "key.pem", folder / "key.enc.pem", folder / "both.pem")
    files.ca.write_bytes(cert_pem)
    files.cert.write_bytes(cert_pem)
    files.key.write_bytes(key_pem)
    files.encrypted_key.write_bytes(encrypted_pem)
    files.both.write_bytes(cert_pem + key_pem)
    return files


@pytest.fixture(autouse=True)
def _no_transport_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("CRM_KAFKA_", "CRM_MONGO_")):
            monkeypatch.delenv(name)


def settings(**variables: str | Path) -> TransportSettings:
    """Settings as the environment would give them (keys are the variables' names)."""
    return TransportSettings(**{name: str(value) for name, value in variables.items()})


def sasl(protocol: str = "SASL_PLAINTEXT", mechanism: str = "SCRAM-SHA-512", **more: str | Path) -> TransportSettings:
    return settings(
        CRM_KAFKA_SECURITY_PROTOCOL=protocol,
        CRM_KAFKA_SASL_MECHANISM=mechanism,
        CRM_KAFKA_SASL_USERNAME="crm-sales",
        CRM_KAFKA_SASL_PASSWORD=PASSWORD,
        **more,
    )


def test_the_defaults_are_plaintext_without_credentials_as_the_embedded_servers_speak() -> None:
    plain = TransportSettings()
    assert kafka_client_options(plain) == {"security_protocol": "PLAINTEXT"}
    assert kafka_broker_security(plain) is None
    assert mongo_client_options(plain) == {}


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"CRM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "SASL_SSL needs CRM_KAFKA_SASL_USERNAME and CRM_KAFKA_SASL_PASS"),
        (
            {"CRM_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "CRM_KAFKA_SASL_USERNAME": "crm-sales"},
            "SASL_PLAINTEXT needs CRM_KAFKA_SASL_USERNAME and CRM_KAFKA_SASL_PASSWORD",
        ),
        ({"CRM_KAFKA_SASL_USERNAME": "crm-sales"}, "PLAINTEXT sends no credentials"),
        ({"CRM_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "CRM_KAFKA_SASL_PASSWORD": ""}, "at least 1"),
        ({"CRM_KAFKA_SECURITY_PROTOCOL": "TLS"}, "Input should be 'PLAINTEXT', 'SSL', 'SASL_PLAINTEXT' or 'SASL_SSL'"),
        ({"CRM_KAFKA_SASL_MECHANISM": "GSSAPI"}, "Input should be 'SCRAM-SHA-256', 'SCRAM-SHA-512' or 'PLAIN'"),
        ({"CRM_KAFKA_SSL_CAFILE": certifi.where()}, "CRM_KAFKA_SSL_CAFILE set, but .*PLAINTEXT does not use TLS"),
        (
            {"CRM_KAFKA_SECURITY_PROTOCOL": "SSL", "CRM_KAFKA_SSL_CAFILE": "/nowhere/ca.pem"},
            "CRM_KAFKA_SSL_CAFILE: no readable file at /nowhere/ca.pem",
        ),
        ({"CRM_MONGO_TLS_CA_FILE": certifi.where()}, "CRM_MONGO_TLS_CA_FILE set, but CRM_MONGO_TLS is false"),
        ({"CRM_MONGO_TLS": "true", "CRM_MONGO_TLS_CA_FILE": "/nowhere"}, "CRM_MONGO_TLS_CA_FILE: no readable file"),
        ({"CRM_MONGO_USERNAME": "crm-sales"}, "CRM_MONGO_USERNAME and CRM_MONGO_PASSWORD go together"),
        ({"CRM_MONGO_PASSWORD": PASSWORD}, "CRM_MONGO_USERNAME and CRM_MONGO_PASSWORD go together"),
        ({"CRM_MONGO_TLS": "maybe"}, "Input should be a valid boolean"),
    ],
)
def test_inconsistent_settings_are_refused_at_start_up(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], message: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=message):
        ServiceSettings()


def test_plain_is_refused_without_tls_because_it_sends_the_password_itself() -> None:
    with pytest.raises(ValidationError, match="PLAIN sends the password in clear"):
        sasl("SASL_PLAINTEXT", "PLAIN")
    assert kafka_client_options(sasl("SASL_SSL", "PLAIN"))["sasl_mechanism"] == "PLAIN"


def test_a_client_certificate_needs_its_key_and_a_key_password_needs_a_key(pki: Pki) -> None:
    with pytest.raises(ValidationError, match="CRM_KAFKA_SSL_CERTFILE and CRM_KAFKA_SSL_KEYFILE go together"):
        settings(CRM_KAFKA_SECURITY_PROTOCOL="SSL", CRM_KAFKA_SSL_CERTFILE=pki.cert)
    with pytest.raises(ValidationError, match="CRM_KAFKA_SSL_CERTFILE and CRM_KAFKA_SSL_KEYFILE go together"):
        settings(CRM_KAFKA_SECURITY_PROTOCOL="SSL", CRM_KAFKA_SSL_KEYFILE=pki.key)
    with pytest.raises(ValidationError, match="CRM_KAFKA_SSL_KEY_PASSWORD set without CRM_KAFKA_SSL_KEYFILE"):
        settings(CRM_KAFKA_SECURITY_PROTOCOL="SSL", CRM_KAFKA_SSL_KEY_PASSWORD=PASSWORD)
    with pytest.raises(ValidationError, match="CRM_MONGO_TLS_CERTIFICATE_KEY_FILE_PASSWORD set without"):
        settings(CRM_MONGO_TLS="true", CRM_MONGO_TLS_CERTIFICATE_KEY_FILE_PASSWORD=PASSWORD)


def test_every_problem_is_named_at_once_and_no_input_is_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_KAFKA_SASL_PASSWORD", PASSWORD)
    monkeypatch.setenv("CRM_MONGO_PASSWORD", PASSWORD)
    with pytest.raises(ValidationError) as refused:
        ServiceSettings()
    text = str(refused.value)
    assert "CRM_KAFKA_SASL_PASSWORD set, but CRM_KAFKA_SECURITY_PROTOCOL=PLAINTEXT sends no credentials" in text
    assert "CRM_MONGO_USERNAME and CRM_MONGO_PASSWORD go together" in text
    assert PASSWORD not in text


def test_passwords_are_never_in_the_settings_repr_or_dump(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("CRM_KAFKA_SASL_USERNAME", "crm-sales")
    monkeypatch.setenv("CRM_KAFKA_SASL_PASSWORD", PASSWORD)
    monkeypatch.setenv("CRM_MONGO_USERNAME", "crm-sales")
    monkeypatch.setenv("CRM_MONGO_PASSWORD", PASSWORD)
    service = ServiceSettings(service_name="sales")
    for shown in (repr(service), str(service), service.model_dump_json(), str(service.model_dump())):
        assert PASSWORD not in shown
    assert "**********" in repr(service)
    assert service.kafka_sasl_password is not None and service.kafka_sasl_password.get_secret_value() == PASSWORD


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_plaintext_gives_the_mechanism_and_credentials_and_no_tls(mechanism: str) -> None:
    assert kafka_client_options(sasl("SASL_PLAINTEXT", mechanism)) == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "crm-sales",
        "sasl_plain_password": PASSWORD,
    }


def test_sasl_ssl_gives_a_verifying_tls_context_with_the_ca_and_the_mechanism(pki: Pki) -> None:
    options = kafka_client_options(sasl("SASL_SSL", "SCRAM-SHA-512", CRM_KAFKA_SSL_CAFILE=pki.ca))
    context = options.pop("ssl_context")
    assert options == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "crm-sales",
        "sasl_plain_password": PASSWORD,
    }
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "crm-sales"),),)]


@pytest.mark.parametrize("key", ["key", "both", "encrypted_key"])
def test_ssl_with_a_client_certificate_loads_it_and_sends_no_credentials(pki: Pki, key: str) -> None:
    variables: dict[str, str | Path] = {
        "CRM_KAFKA_SECURITY_PROTOCOL": "SSL",
        "CRM_KAFKA_SSL_CERTFILE": pki.both if key == "both" else pki.cert,
        "CRM_KAFKA_SSL_KEYFILE": getattr(pki, key),
    }
    if key == "encrypted_key":
        variables["CRM_KAFKA_SSL_KEY_PASSWORD"] = PASSWORD
    options = kafka_client_options(settings(**variables))
    assert set(options) == {"security_protocol", "ssl_context"}
    assert options["security_protocol"] == "SSL"
    assert isinstance(options["ssl_context"], ssl.SSLContext)


def test_a_wrong_key_password_fails_when_the_context_is_made(pki: Pki) -> None:
    wrong = settings(
        CRM_KAFKA_SECURITY_PROTOCOL="SSL",
        CRM_KAFKA_SSL_CERTFILE=pki.cert,
        CRM_KAFKA_SSL_KEYFILE=pki.encrypted_key,
        CRM_KAFKA_SSL_KEY_PASSWORD="not-it",
    )
    with pytest.raises(ssl.SSLError):
        kafka_client_options(wrong)


@pytest.mark.parametrize(
    ("protocol", "mechanism", "kind"),
    [
        ("SASL_PLAINTEXT", "SCRAM-SHA-256", SASLScram256),
        ("SASL_PLAINTEXT", "SCRAM-SHA-512", SASLScram512),
        ("SASL_SSL", "SCRAM-SHA-512", SASLScram512),
        ("SASL_SSL", "PLAIN", SASLPlaintext),
    ],
)
def test_faststream_security_turns_back_into_the_same_aiokafka_options(
    pki: Pki, protocol: str, mechanism: str, kind: type[BaseSecurity]
) -> None:
    configured = sasl(protocol, mechanism, **({"CRM_KAFKA_SSL_CAFILE": pki.ca} if protocol == "SASL_SSL" else {}))
    security = kafka_broker_security(configured)
    assert type(security) is kind
    assert PASSWORD not in repr(security)
    assert _comparable(parse_security(security)) == _comparable(kafka_client_options(configured))


def test_faststream_security_for_ssl_alone(pki: Pki) -> None:
    configured = settings(CRM_KAFKA_SECURITY_PROTOCOL="SSL", CRM_KAFKA_SSL_CAFILE=pki.ca)
    security = kafka_broker_security(configured)
    assert type(security) is BaseSecurity and security.use_ssl
    assert _comparable(parse_security(security)) == _comparable(kafka_client_options(configured))


def _comparable(options: dict[str, Any]) -> dict[str, Any]:
    """The options with the TLS context reduced to whether there is one (each call makes its own)."""
    context = options.get("ssl_context")
    return {**options, "ssl_context": isinstance(context, ssl.SSLContext)}


async def test_the_aiokafka_clients_and_the_broker_accept_the_options(pki: Pki) -> None:
    configured = sasl("SASL_SSL", "SCRAM-SHA-512", CRM_KAFKA_SSL_CAFILE=pki.ca)
    options = kafka_client_options(configured)
    # The clients check the combination when they are made; nothing connects before start().
    consumer = AIOKafkaConsumer("crm.sales.events", bootstrap_servers="kafka:9092", **options)
    producer = AIOKafkaProducer(bootstrap_servers="kafka:9092", **options)
    assert consumer._client._security_protocol == "SASL_SSL"
    assert producer.client._sasl_mechanism == "SCRAM-SHA-512"
    await producer.stop()
    await consumer.stop()
    broker = KafkaBroker("kafka:9092", security=kafka_broker_security(configured))
    assert broker.specification.protocol == "kafka-secure"


def test_the_service_broker_takes_the_security_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("CRM_KAFKA_SASL_USERNAME", "crm-sales")
    monkeypatch.setenv("CRM_KAFKA_SASL_PASSWORD", PASSWORD)
    broker = build_broker(ServiceSettings(service_name="sales"))
    assert isinstance(broker.specification.security, SASLScram512)
    assert broker.specification.security.username == "crm-sales"


async def test_mongo_tls_and_credentials_become_client_options(pki: Pki) -> None:
    configured = settings(
        CRM_MONGO_TLS="true",
        CRM_MONGO_TLS_CA_FILE=certifi.where(),
        CRM_MONGO_TLS_CERTIFICATE_KEY_FILE=pki.both,
        CRM_MONGO_USERNAME="crm-sales",
        CRM_MONGO_PASSWORD=PASSWORD,
        CRM_MONGO_AUTH_SOURCE="admin",
    )
    options = mongo_client_options(configured)
    assert options == {
        "tls": True,
        "tlsCAFile": certifi.where(),
        "tlsCertificateKeyFile": str(pki.both),
        "username": "crm-sales",
        "password": PASSWORD,
        "authSource": "admin",
    }
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        "mongodb://mongo:27017/?replicaSet=rs0", connect=False, **options
    )
    try:
        credentials = client.options.pool_options._credentials
        assert credentials is not None and credentials.username == "crm-sales" and credentials.source == "admin"
        assert client.options.pool_options._ssl_context is not None
    finally:
        await client.close()


def test_mongo_tls_off_leaves_the_uri_in_charge() -> None:
    # No tls=False: a mongodb+srv:// URI, or tls=true in the URI, keeps its TLS.
    assert mongo_client_options(settings(CRM_MONGO_USERNAME="crm-sales", CRM_MONGO_PASSWORD=PASSWORD)) == {
        "username": "crm-sales",
        "password": PASSWORD,
    }


def test_the_cli_reads_the_same_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("CRM_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("CRM_KAFKA_SASL_USERNAME", "admin")
    monkeypatch.setenv("CRM_KAFKA_SASL_PASSWORD", PASSWORD)
    assert kafka_options_from_env() == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "admin",
        "sasl_plain_password": PASSWORD,
    }
    monkeypatch.setenv("CRM_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    with pytest.raises(ValidationError, match="sends no credentials"):
        kafka_options_from_env()
