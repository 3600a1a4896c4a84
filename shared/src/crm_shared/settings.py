"""Settings from environment variables, refused at start-up when they are wrong.

Shared settings use the `CRM_` prefix (`CRM_KAFKA_BOOTSTRAP`, `CRM_MONGO_URI`, `CRM_LOG_LEVEL`);
each service's own use `CRM_<SERVICE>_` (`CRM_SALES_PORT`, `CRM_SALES_DB`, ...).
"""

from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import AliasChoices, AwareDatetime, Field, field_validator
from pydantic_settings import SettingsConfigDict

from crm_shared.events import TimeWindow
from crm_shared.security.settings import AuthSettings
from crm_shared.transport import TransportSettings

SERVICES: dict[str, int] = {
    "customer": 8001,
    "sales": 8002,
    "support": 8003,
    "scoring": 8004,
    "marketing": 8005,
}
"""Every service and its default HTTP port."""


def _shared(name: str) -> AliasChoices:
    return AliasChoices(f"CRM_{name}")


class ServiceSettings(TransportSettings, AuthSettings):
    """What every service needs. Subclass it with `env_prefix="CRM_<SERVICE>_"`."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    service_name: str = "crm"
    kafka_bootstrap: str = Field(
        default="127.0.0.1:9092",
        validation_alias=_shared("KAFKA_BOOTSTRAP"),
        description="Comma-separated host:port list of the Kafka brokers.",
    )
    mongo_uri: str = Field(
        default="mongodb://127.0.0.1:27017/?replicaSet=rs0",
        validation_alias=_shared("MONGO_URI"),
        description="MongoDB URI; a replica set, because writes use transactions.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", validation_alias=_shared("LOG_LEVEL")
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    instance: int = Field(
        default=1,
        ge=1,
        validation_alias=_shared("INSTANCE"),
        description="Which instance of the service this process is (`crm run --instances`): it tells instances "
        "apart in the logs and in the broker's client ids; every instance shares the consumer groups and database.",
    )
    db: str = Field(default="", description="This service's own MongoDB database; defaults to crm_<service>.")
    relay_poll_seconds: float = Field(default=0.5, gt=0, le=60)
    outbox_redeliver_hours: float = Field(
        default=24,
        ge=0,
        le=7 * 24,
        validation_alias=_shared("OUTBOX_REDELIVER_HOURS"),
        description="When the broker lost records it had acknowledged (the embedded broker after a restart), the "
        "outbox records sent in these last hours are published again; 0 turns the check off. At most the 7 days "
        "sent records are kept.",
    )
    consumer_retry_attempts: int = Field(default=5, ge=1, le=20)
    consumer_retry_base_seconds: float = Field(default=0.5, gt=0, le=30)
    consumer_batch_max_records: int = Field(
        default=500,
        ge=1,
        le=10_000,
        description="At most this many records per consumer round; each partition's share is applied in one "
        "transaction.",
    )
    consumer_batch_max_wait_ms: int = Field(
        default=100,
        ge=0,
        le=10_000,
        description="How long a consumer waits for records when none are buffered; records already buffered are "
        "taken at once.",
    )
    max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="A request body over this many bytes is refused with a 413 before it is parsed.",
    )
    earliest_event_time: AwareDatetime = Field(
        default=datetime(1900, 1, 1, tzinfo=UTC),
        validation_alias=_shared("EARLIEST_EVENT_TIME"),
        description="Events dated before this are refused as implausible.",
    )
    max_clock_skew_seconds: float = Field(
        default=300,
        ge=0,
        le=86400,
        validation_alias=_shared("MAX_CLOCK_SKEW_SECONDS"),
        description="How far ahead of this service's clock an event's time may be.",
    )
    lease_seconds: float = Field(
        default=15,
        ge=3,
        le=600,
        allow_inf_nan=False,
        validation_alias=_shared("LEASE_SECONDS"),
        description="How long the lease of a periodic job or of the outbox relay lasts (crm_shared.leases): the "
        "holder renews it every third of this; another instance takes over this long after the holder died.",
    )

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap_is_host_port(cls, value: str) -> str:
        for part in value.split(","):
            host, sep, port = part.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port...], got {value!r}")
        return value

    @field_validator("mongo_uri")
    @classmethod
    def _mongo_scheme(cls, value: str) -> str:
        if not value.startswith(("mongodb://", "mongodb+srv://")):
            raise ValueError(f"expected a mongodb:// or mongodb+srv:// URI, got {value!r}")
        return value

    @field_validator("earliest_event_time")
    @classmethod
    def _earliest_is_plausible(cls, value: datetime) -> datetime:
        if not datetime(1800, 1, 1, tzinfo=UTC) <= value <= datetime.now(UTC):
            raise ValueError(f"expected a time between 1800-01-01 and now, got {value.isoformat()}")
        return value

    @property
    def time_window(self) -> TimeWindow:
        return TimeWindow(self.earliest_event_time, timedelta(seconds=self.max_clock_skew_seconds))

    @property
    def database_name(self) -> str:
        return self.db or f"crm_{self.service_name}"

    @property
    def consumer_group(self) -> str:
        return f"crm-{self.service_name}"

    @property
    def client_id(self) -> str:
        """The Kafka client id; instance 1 keeps the plain one, so quotas and tooling set on it still apply."""
        base = f"crm-{self.service_name}"
        return base if self.instance == 1 else f"{base}-{self.instance}"
