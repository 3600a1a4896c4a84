"""Who is calling, what they may do (scopes) and which records they may see (row-level access)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field

UserId = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@|\-]*$")]
"""A person, as their token's subject names them: e-mail-like and `provider|id` subjects included (255 is
OpenID Connect's limit)."""
TerritoryId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]*$")]
"""A sales territory, or a ticket group."""

ADMIN = "admin"
ALL_RECORDS = "records:all"

SCOPES: Mapping[str, str] = {
    ADMIN: "Everything, API keys and the audit log included.",
    ALL_RECORDS: "Every record, not only one's own, one's team's, territories' or groups' (managers of all).",
    "events:write": "POST /v1/events: submit CloudEvents (an API key may be limited to some event types).",
    "customers:read": "Customer profiles, consents and the 360 timeline.",
    "customers:write": "Register customers, change their profiles and contacts, record referrals, assign owners.",
    "attributes:write": "Declare, change and remove custom attributes of customer profiles.",
    "consents:write": "Grant or refuse a channel for a customer.",
    "customers:erase": "Erase a customer's personal data, and see whether every service has.",
    "customers:merge": "Merge two customers into one, and undo a merge.",
    "customers:export": "Export everything the services hold about a customer.",
    "customers:unseal": "Read personal fields sealed in events, through the customer service.",
    "interactions:read": "Logged interactions.",
    "interactions:write": "Log interactions.",
    "orders:read": "Orders and their status.",
    "orders:write": "Place orders.",
    "leads:read": "Leads, their sources and assignment.",
    "leads:write": "Capture, import, assign, progress and convert leads.",
    "territories:read": "Territories, assignment rules and sales teams' capacity.",
    "territories:write": "Define territories and assignment rules, re-apply them to leads.",
    "opportunities:read": "Opportunities, pipelines, stage history and win probabilities.",
    "opportunities:write": "Open, move, win and lose opportunities; define pipelines.",
    "forecasts:read": "Forecasts, quotas, forecast accuracy and sales analytics.",
    "forecasts:write": "Set quotas.",
    "activities:read": "Calls, meetings, visits, tasks and reminders; calendars and their iCalendar feeds.",
    "activities:write": "Schedule and complete activities.",
    "quotes:read": "Price books and quotes.",
    "quotes:write": "Define price books, build, send, accept and reject quotes.",
    "commissions:read": "Commission plans and statements.",
    "commissions:write": "Define commission plans, close statements.",
    "expenses:read": "Expenses and cost-of-sale reports.",
    "expenses:write": "Record expenses.",
    "tickets:read": "Tickets and complaints and their SLA; SLA policies, calendars and the knowledge base.",
    "sla:write": "Define SLA policies and business-hours calendars.",
    "kb:write": "Write, publish and archive knowledge-base articles.",
    "field:write": "Define service contracts and technicians; book, dispatch, complete and cancel visits.",
    "tickets:write": "Open and work tickets (replies, notes, status, assignment), file complaints.",
    "surveys:read": "Satisfaction survey answers.",
    "surveys:write": "Record survey answers.",
    "scores:read": "Scores, segment changes and population views.",
    "scores:run": "Recompute the population statistics and fit the models.",
    "campaigns:read": "Journeys, campaigns, their enrolments and results; marketing's contact preferences.",
    "campaigns:write": "Plan, launch and archive campaigns.",
    "segments:read": "Segment definitions and counts.",
    "segments:write": "Define and delete segments, hand members to sales.",
    "segments:export": "Export a segment's member list (JSON or CSV).",
}
"""Every scope a key or token can carry, with what it allows (README and the OpenAPI documents show this)."""


@dataclass(frozen=True)
class Principal:
    """The caller: a channel system's API key or a person's (or internal caller's) bearer token.

    Row-level claims come from the token (`crm_team`: the user ids a manager leads; `crm_territories`;
    `crm_groups`: an agent's ticket groups). An API key belongs to a system, not a person: its scopes
    bound it, not records.
    """

    kind: Literal["api_key", "token"]
    id: str
    scopes: frozenset[str]
    read_only: bool = False
    event_types: frozenset[str] | None = None
    team: frozenset[str] = frozenset()
    territories: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    rate_limit: str | None = None

    def allows(self, scope: str) -> bool:
        if self.read_only and not scope.endswith(":read"):
            return False
        return ADMIN in self.scopes or scope in self.scopes

    def may_submit(self, event_type: str) -> bool:
        return self.event_types is None or event_type in self.event_types

    @property
    def sees_all_records(self) -> bool:
        return self.kind == "api_key" or ADMIN in self.scopes or ALL_RECORDS in self.scopes

    @property
    def audit_name(self) -> str:
        """How the audit log names the caller: a key id, or a token subject that is not an address."""
        if self.kind == "api_key":
            return f"key:{self.id}"
        if "@" in self.id or any(c.isspace() for c in self.id):
            return "token:sha256:" + hashlib.sha256(self.id.encode()).hexdigest()[:16]
        return f"token:{self.id}"


@dataclass(frozen=True)
class RecordAccess:
    """Which fields of an entity's documents decide who sees it.

    A person sees a record they own (`owner`), one owned by someone of their team, one of their
    territories, or one of their groups; a field set to None is not used for this entity.
    """

    owner: str | None = "owner_id"
    territory: str | None = "territory"
    group: str | None = None

    def query(self, principal: Principal) -> dict[str, Any] | None:
        """The filter to add to every query of the entity; None when the principal sees every record."""
        if principal.sees_all_records:
            return None
        clauses: list[dict[str, Any]] = []
        if self.owner:
            clauses.append({self.owner: {"$in": sorted({principal.id, *principal.team})}})
        if self.territory and principal.territories:
            clauses.append({self.territory: {"$in": sorted(principal.territories)}})
        if self.group and principal.groups:
            clauses.append({self.group: {"$in": sorted(principal.groups)}})
        return {"$or": clauses} if clauses else {"_id": {"$in": []}}

    def allows(self, principal: Principal, document: Mapping[str, Any]) -> bool:
        """Whether the principal sees this (already loaded) document."""
        if principal.sees_all_records:
            return True
        if self.owner and document.get(self.owner) in {principal.id, *principal.team}:
            return True
        if self.territory and document.get(self.territory) in principal.territories:
            return True
        return bool(self.group and document.get(self.group) in principal.groups)

    def restrict(self, principal: Principal, query: dict[str, Any]) -> dict[str, Any]:
        """`query` narrowed to what the principal sees."""
        clause = self.query(principal)
        if clause is None:
            return query
        if list(clause) == ["$or"] and len(clause["$or"]) == 1:
            clause = clause["$or"][0]
        if not set(clause) & set(query):
            # One flat filter: the embedded database scans the whole collection for an $and or an $or.
            return {**query, **clause}
        return {"$and": [query, clause]}


OWNED = RecordAccess()
"""Leads, opportunities, activities, customers: the owner, their manager, their territory."""
GROUPED = RecordAccess(owner="assignee_id", territory=None, group="group")
"""Tickets: the assignee, their manager, the agents of the ticket's group."""
