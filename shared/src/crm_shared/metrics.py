"""What every service counts, served as Prometheus metrics at `/metrics` (prometheus-client).

One registry per process, which is one service in production; in-process tests that run several
services side by side tell them apart by the consumer group label.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

RECORDS_CONSUMED = Counter(
    "crm_records_consumed", "Records read from Kafka, by consumer group and topic", ["group", "topic"]
)
RECORDS_APPLIED = Counter("crm_records_applied", "Events applied (state changed, once)", ["group", "topic"])
RECORDS_DUPLICATE = Counter(
    "crm_records_duplicate", "Events delivered again and ignored (applied before)", ["group", "topic"]
)
RECORDS_IGNORED = Counter(
    "crm_records_ignored", "Valid events of a type this consumer does not use", ["group", "topic"]
)
RECORDS_DEAD_LETTERED = Counter(
    "crm_records_dead_lettered", "Records refused and sent to crm.deadletter with their reason", ["group", "topic"]
)
BATCH_SIZE = Histogram(
    "crm_batch_size",
    "Records per partition batch",
    ["group"],
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2000),
)
BATCH_APPLY_SECONDS = Histogram(
    "crm_batch_apply_seconds",
    "Time to apply one partition batch, parse to commit",
    ["group"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CONSUMER_LAG = Gauge(
    "crm_consumer_lag",
    "Records on the partition not yet applied (high watermark - next offset)",
    ["group", "topic", "partition"],
)
OUTBOX_BACKLOG = Gauge("crm_outbox_backlog", "Outbox records committed and not yet published", ["database"])
OUTBOX_PUBLISHED = Counter("crm_outbox_published", "Outbox records published to Kafka", ["database", "topic"])
OUTBOX_RELAY_SECONDS = Histogram(
    "crm_outbox_relay_seconds",
    "From the commit of an outbox record to the broker's acknowledgement",
    ["database"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
LEASE_HELD = Gauge(
    "crm_lease_held",
    "1 while this process holds the lease (of a periodic job, or the outbox relay), else 0",
    ["database", "lease"],
)


def exposition() -> tuple[bytes, str]:
    """The metrics in the text format, and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST
