"""How the services reach Kafka and MongoDB securely: SASL/SCRAM and TLS to Kafka, authenticated TLS to MongoDB.

The defaults (PLAINTEXT, no TLS, no credentials) are what the embedded servers of `crm run` speak. A
deployment sets `CRM_KAFKA_SECURITY_PROTOCOL` and the credentials; deploy/SECURITY.md lists them.
The option dicts built here hold passwords in clear, as the clients need them: never log one.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal, Self

from aiokafka.helpers import create_ssl_context
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"]

_SASL_SECURITY: dict[str, type[SASLPlaintext | SASLScram256 | SASLScram512]] = {
    "PLAIN": SASLPlaintext,
    "SCRAM-SHA-256": SASLScram256,
    "SCRAM-SHA-512": SASLScram512,
}


def _kafka(name: str) -> AliasChoices:
    return AliasChoices(f"CRM_KAFKA_{name}")


def _mongo(name: str) -> AliasChoices:
    return AliasChoices(f"CRM_MONGO_{name}")


class TransportSettings(BaseSettings):
    """The shared CRM_KAFKA_* and CRM_MONGO_* security settings (mixed into ServiceSettings)."""

    # A refused value is not echoed: the input holds the passwords.
    model_config = SettingsConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)

    kafka_security_protocol: KafkaSecurityProtocol = Field(
        default="PLAINTEXT",
        validation_alias=_kafka("SECURITY_PROTOCOL"),
        description="PLAINTEXT, SSL (TLS), SASL_PLAINTEXT (credentials, no TLS) or SASL_SSL (credentials over TLS).",
    )
    kafka_sasl_mechanism: SaslMechanism = Field(
        default="SCRAM-SHA-512",
        validation_alias=_kafka("SASL_MECHANISM"),
        description="How the credentials are proven; PLAIN sends the password itself, so it needs SASL_SSL.",
    )
    kafka_sasl_username: str | None = Field(default=None, min_length=1, validation_alias=_kafka("SASL_USERNAME"))
    kafka_sasl_password: SecretStr | None = Field(default=None, min_length=1, validation_alias=_kafka("SASL_PASSWORD"))
    kafka_ssl_cafile: Path | None = Field(
        default=None,
        validation_alias=_kafka("SSL_CAFILE"),
        description="PEM file of the CAs that sign the brokers' certificates; the system's CAs when unset.",
    )
    kafka_ssl_certfile: Path | None = Field(
        default=None, validation_alias=_kafka("SSL_CERTFILE"), description="PEM client certificate (mutual TLS)."
    )
    kafka_ssl_keyfile: Path | None = Field(
        default=None,
        validation_alias=_kafka("SSL_KEYFILE"),
        description="PEM private key of the client certificate; the certificate's own path when one file holds both.",
    )
    kafka_ssl_key_password: SecretStr | None = Field(
        default=None, validation_alias=_kafka("SSL_KEY_PASSWORD"), description="Decrypts an encrypted key file."
    )
    mongo_tls: bool = Field(
        default=False,
        validation_alias=_mongo("TLS"),
        description="Require TLS; false leaves it to the URI (mongodb+srv:// and tls=true in the URI still apply).",
    )
    mongo_tls_ca_file: Path | None = Field(
        default=None,
        validation_alias=_mongo("TLS_CA_FILE"),
        description="PEM file of the CAs that sign the servers' certificates; the system's CAs when unset.",
    )
    mongo_tls_certificate_key_file: Path | None = Field(
        default=None,
        validation_alias=_mongo("TLS_CERTIFICATE_KEY_FILE"),
        description="PEM file holding the client certificate and its key (mutual TLS, or MONGODB-X509).",
    )
    mongo_tls_certificate_key_file_password: SecretStr | None = Field(
        default=None, validation_alias=_mongo("TLS_CERTIFICATE_KEY_FILE_PASSWORD")
    )
    mongo_username: str | None = Field(default=None, min_length=1, validation_alias=_mongo("USERNAME"))
    mongo_password: SecretStr | None = Field(default=None, min_length=1, validation_alias=_mongo("PASSWORD"))
    mongo_auth_source: str | None = Field(
        default=None,
        min_length=1,
        validation_alias=_mongo("AUTH_SOURCE"),
        description="The database holding the user; MongoDB's default (the URI's database, else admin) when unset.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems = [*self._kafka_problems(), *self._mongo_problems(), *self._missing_files()]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def kafka_uses_sasl(self) -> bool:
        return self.kafka_security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @property
    def kafka_uses_tls(self) -> bool:
        return self.kafka_security_protocol in ("SSL", "SASL_SSL")

    def _kafka_problems(self) -> list[str]:
        protocol = f"{_env('kafka_security_protocol')}={self.kafka_security_protocol}"
        credentials = [f for f in ("kafka_sasl_username", "kafka_sasl_password") if getattr(self, f) is not None]
        files = [f for f in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile") if getattr(self, f)]
        problems: list[str] = []
        if self.kafka_uses_sasl and len(credentials) < 2:
            problems.append(f"{protocol} needs {_env('kafka_sasl_username')} and {_env('kafka_sasl_password')}")
        # Credentials or certificates the protocol would silently not use are a mistake, not a default.
        if credentials and not self.kafka_uses_sasl:
            problems.append(
                f"{_names(credentials)} set, but {protocol} sends no credentials: use SASL_SSL or SASL_PLAINTEXT"
            )
        if files and not self.kafka_uses_tls:
            problems.append(f"{_names(files)} set, but {protocol} does not use TLS: use SSL or SASL_SSL")
        if self.kafka_uses_sasl and self.kafka_sasl_mechanism == "PLAIN" and not self.kafka_uses_tls:
            problems.append(f"{_env('kafka_sasl_mechanism')}=PLAIN sends the password in clear: use SASL_SSL or SCRAM")
        if (self.kafka_ssl_certfile is None) != (self.kafka_ssl_keyfile is None):
            problems.append(
                f"{_env('kafka_ssl_certfile')} and {_env('kafka_ssl_keyfile')} go together "
                "(the same path twice when one PEM file holds both)"
            )
        if self.kafka_ssl_key_password is not None and self.kafka_ssl_keyfile is None:
            problems.append(f"{_env('kafka_ssl_key_password')} set without {_env('kafka_ssl_keyfile')}")
        return problems

    def _mongo_problems(self) -> list[str]:
        files = [f for f in ("mongo_tls_ca_file", "mongo_tls_certificate_key_file") if getattr(self, f)]
        problems: list[str] = []
        if files and not self.mongo_tls:
            problems.append(f"{_names(files)} set, but {_env('mongo_tls')} is false: set it to true")
        if (self.mongo_username is None) != (self.mongo_password is None):
            problems.append(f"{_env('mongo_username')} and {_env('mongo_password')} go together")
        if self.mongo_tls_certificate_key_file_password is not None and self.mongo_tls_certificate_key_file is None:
            problems.append(
                f"{_env('mongo_tls_certificate_key_file_password')} set without "
                f"{_env('mongo_tls_certificate_key_file')}"
            )
        return problems

    def _missing_files(self) -> list[str]:
        names = (
            "kafka_ssl_cafile",
            "kafka_ssl_certfile",
            "kafka_ssl_keyfile",
            "mongo_tls_ca_file",
            "mongo_tls_certificate_key_file",
        )
        paths: list[tuple[str, Path]] = [(n, p) for n in names if (p := getattr(self, n)) is not None]
        return [f"{_env(name)}: no readable file at {path}" for name, path in paths if not _readable(path)]


def _env(field: str) -> str:
    """The environment variable a TransportSettings field is read from."""
    alias = TransportSettings.model_fields[field].validation_alias
    assert isinstance(alias, AliasChoices)
    return str(alias.choices[0])


def _names(fields: list[str]) -> str:
    return " and ".join(_env(f) for f in fields)


def _readable(path: Path) -> bool:
    try:
        with path.open("rb"):
            return path.is_file()
    except OSError:
        return False


def kafka_ssl_context(settings: TransportSettings) -> ssl.SSLContext:
    """A client TLS context that verifies the broker's certificate and host name, with the client certificate if set."""
    password = settings.kafka_ssl_key_password
    context: ssl.SSLContext = create_ssl_context(
        cafile=settings.kafka_ssl_cafile,
        certfile=settings.kafka_ssl_certfile,
        keyfile=settings.kafka_ssl_keyfile,
        password=password.get_secret_value() if password is not None else None,
    )
    return context


def kafka_client_options(settings: TransportSettings) -> dict[str, Any]:
    """Keyword arguments for AIOKafkaProducer, AIOKafkaConsumer and AIOKafkaAdminClient."""
    options: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if settings.kafka_uses_tls:
        options["ssl_context"] = kafka_ssl_context(settings)
    if settings.kafka_uses_sasl:
        assert settings.kafka_sasl_password is not None  # the validator refused SASL without it
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return options


def kafka_broker_security(settings: TransportSettings) -> BaseSecurity | None:
    """The `security` of a FastStream KafkaBroker, which takes no raw aiokafka security arguments.

    FastStream turns it back into the same aiokafka arguments as `kafka_client_options`.
    """
    context = kafka_ssl_context(settings) if settings.kafka_uses_tls else None
    if settings.kafka_uses_sasl:
        assert settings.kafka_sasl_username is not None and settings.kafka_sasl_password is not None
        security = _SASL_SECURITY[settings.kafka_sasl_mechanism]
        return security(
            settings.kafka_sasl_username,
            settings.kafka_sasl_password.get_secret_value(),
            ssl_context=context,
            use_ssl=settings.kafka_uses_tls,
        )
    if context is not None:
        return BaseSecurity(ssl_context=context, use_ssl=True)
    return None


def kafka_options_from_env() -> dict[str, Any]:
    """`kafka_client_options` from the CRM_KAFKA_* variables, for clients outside a service (the `crm` CLI)."""
    return kafka_client_options(TransportSettings())


def mongo_client_options(settings: TransportSettings) -> dict[str, Any]:
    """Keyword arguments for AsyncMongoClient; they take precedence over the same options in the URI."""
    options: dict[str, Any] = {}
    if settings.mongo_tls:
        options["tls"] = True
        if settings.mongo_tls_ca_file is not None:
            options["tlsCAFile"] = str(settings.mongo_tls_ca_file)
        if settings.mongo_tls_certificate_key_file is not None:
            options["tlsCertificateKeyFile"] = str(settings.mongo_tls_certificate_key_file)
        if settings.mongo_tls_certificate_key_file_password is not None:
            secret = settings.mongo_tls_certificate_key_file_password.get_secret_value()
            options["tlsCertificateKeyFilePassword"] = secret
    if settings.mongo_username is not None and settings.mongo_password is not None:
        options["username"] = settings.mongo_username
        options["password"] = settings.mongo_password.get_secret_value()
    if settings.mongo_auth_source is not None:
        options["authSource"] = settings.mongo_auth_source
    return options
