"""The audit log: every admin call, export, erasure, key change and authorisation failure.

Who (a key id or a token subject, hashed when it is an address), what (method and route), which
records (the path's ids), when, and the outcome. Nothing personal in clear: no bodies, no query
strings, no client addresses. Each service keeps its own in `audit_log` for a year.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crm_shared.events import utc_now
from crm_shared.logging import get_logger
from crm_shared.store import IndexSpec

log = get_logger(__name__)

AUDIT_LOG = "audit_log"
AUDIT_INDEXES = (
    IndexSpec(AUDIT_LOG, IndexModel([("at", DESCENDING), ("_id", DESCENDING)], name="newest_first")),
    IndexSpec(AUDIT_LOG, IndexModel([("principal", ASCENDING), ("at", DESCENDING)], name="by_principal")),
    IndexSpec(AUDIT_LOG, IndexModel([("at", ASCENDING)], expireAfterSeconds=400 * 24 * 3600, name="kept_a_year")),
)

AUDIT_STATE = "crm_audit"


@dataclass
class AuditNote:
    """What a route or the authentication step wants recorded about this request."""

    action: str
    principal: str | None = None
    reason: str | None = None


def note(scope: Scope, action: str, *, principal: str | None = None, reason: str | None = None) -> None:
    scope.setdefault("state", {})[AUDIT_STATE] = AuditNote(action, principal, reason)


class AuditTrail:
    """ASGI middleware: writes the audit record of a noted request once its status is known."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            audit: AuditNote | None = scope.get("state", {}).get(AUDIT_STATE)
            if audit is not None:
                await self._record(scope, audit, status)

    async def _record(self, scope: Scope, audit: AuditNote, status: int) -> None:
        runtime = scope["app"].state.runtime
        if runtime.store is None:
            return
        outcome = "denied" if status in (401, 403) else "allowed" if status < 400 else "failed"
        record: dict[str, Any] = {
            "_id": uuid.uuid4().hex,
            "at": utc_now(),
            "service": self.service,
            "principal": audit.principal or "anonymous",
            "action": audit.action,
            "target": {k: str(v)[:200] for k, v in (scope.get("path_params") or {}).items()},
            "status": status,
            "outcome": outcome,
            "reason": audit.reason,
        }
        try:
            await runtime.store.db[AUDIT_LOG].insert_one(record)
        except Exception as exc:
            # The answer has gone; losing the record is logged, never hidden.
            log.error("audit_write_failed", action=audit.action, status=status, error=str(exc)[:300])
