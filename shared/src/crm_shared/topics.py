"""The topic catalog of the public event contract (BRIEF.md section 5)."""

from enum import StrEnum


class Topic(StrEnum):
    # Written by channel systems (web shop, POS, call centre).
    INGEST_ORDERS = "crm.ingest.orders"
    INGEST_TICKETS = "crm.ingest.tickets"
    INGEST_INTERACTIONS = "crm.ingest.interactions"
    INGEST_CUSTOMERS = "crm.ingest.customers"
    # Written by the services, read by anyone.
    CUSTOMER_EVENTS = "crm.customer.events"
    SALES_EVENTS = "crm.sales.events"
    SUPPORT_EVENTS = "crm.support.events"
    MARKETING_EVENTS = "crm.marketing.events"
    SCORING_SEGMENTS = "crm.scoring.segments"
    # Written by every service, read by the customer service: what each did about a merge, an unmerge, an
    # erasure or an export request (an export's answers hold personal data: no one else reads this topic).
    IDENTITY_ANSWERS = "crm.identity.answers"
    # Every record a service rejects.
    DEADLETTER = "crm.deadletter"
    # API key records (not CloudEvents): every service issues and revokes keys, and every service reads them all.
    SECURITY_KEYS = "crm.security.keys"


ALL_TOPICS: tuple[str, ...] = tuple(t.value for t in Topic)
INGEST_TOPICS: frozenset[str] = frozenset(
    {Topic.INGEST_ORDERS, Topic.INGEST_TICKETS, Topic.INGEST_INTERACTIONS, Topic.INGEST_CUSTOMERS}
)
"""The topics channel systems write: what an operator may replay a corrected record to (crm_shared.deadletters)."""

# Three partitions keep one customer's events in order (key = customer id) while letting
# a service run up to three consumers per group; enough for the embedded default.
DEFAULT_PARTITIONS = 3
