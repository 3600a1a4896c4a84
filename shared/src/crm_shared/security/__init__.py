"""Who may call what: API keys and bearer tokens, scopes, row-level access, rate limits, the audit log."""

from crm_shared.security.guard import API_KEY_HEADER, Guard, audited, check_event_type, requires
from crm_shared.security.principal import (
    ADMIN,
    ALL_RECORDS,
    GROUPED,
    OWNED,
    SCOPES,
    Principal,
    RecordAccess,
    TerritoryId,
    UserId,
)

__all__ = [
    "ADMIN",
    "ALL_RECORDS",
    "API_KEY_HEADER",
    "GROUPED",
    "OWNED",
    "SCOPES",
    "Guard",
    "Principal",
    "RecordAccess",
    "TerritoryId",
    "UserId",
    "audited",
    "check_event_type",
    "requires",
]
