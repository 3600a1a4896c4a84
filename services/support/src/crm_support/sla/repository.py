"""The support database's SLA data: `sla_calendars` and `sla_policies` (one document per id, as an operator
defined them, with `updated_at`), and `customer_tiers`: each customer's value tier as scoring last published it
(`value_tier`, `changed_at`), what policies match on."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from pymongo import DESCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from crm_shared.store import IndexSpec, UnitOfWork, upsert_newest
from crm_support.sla.calendar import CALENDAR_HOURS, BusinessCalendar
from crm_support.sla.policies import Conditions, SlaPolicy, Target, TimerKind

SLA_CALENDARS = "sla_calendars"
SLA_POLICIES = "sla_policies"
CUSTOMER_TIERS = "customer_tiers"
DEFAULT_CALENDAR_ID = "default"
"""A calendar under this id is the one policies without a calendar of their own count on; without it they
count calendar hours."""

_NEWEST = [("updated_at", DESCENDING), ("_id", DESCENDING)]
INDEXES = (
    IndexSpec(SLA_CALENDARS, IndexModel(_NEWEST, name="newest_first")),
    IndexSpec(SLA_POLICIES, IndexModel(_NEWEST, name="newest_first")),
)


def calendar_to_document(calendar: BusinessCalendar, at: datetime) -> dict[str, Any]:
    return {
        "_id": calendar.calendar_id,
        "time_zone": calendar.time_zone,
        "weekly": {
            str(day): [[start.isoformat("minutes"), end.isoformat("minutes")] for start, end in intervals]
            for day, intervals in sorted(calendar.weekly.items())
        },
        "country": calendar.country,
        "subdivision": calendar.subdivision,
        "extra_holidays": sorted(d.isoformat() for d in calendar.extra_holidays),
        "updated_at": at,
    }


def calendar_from_document(doc: Mapping[str, Any]) -> BusinessCalendar:
    return BusinessCalendar(
        calendar_id=doc["_id"],
        time_zone=doc["time_zone"],
        weekly={
            int(day): tuple((time.fromisoformat(start), time.fromisoformat(end)) for start, end in intervals)
            for day, intervals in doc["weekly"].items()
        },
        country=doc.get("country"),
        subdivision=doc.get("subdivision"),
        extra_holidays=frozenset(date.fromisoformat(d) for d in doc.get("extra_holidays", [])),
    )


def policy_to_document(policy: SlaPolicy, at: datetime) -> dict[str, Any]:
    conditions = policy.conditions
    return {
        "_id": policy.policy_id,
        "name": policy.name,
        "order": policy.order,
        "conditions": {
            "value_tiers": sorted(conditions.value_tiers),
            "priorities": sorted(conditions.priorities),
            "categories": sorted(conditions.categories),
            "channels": sorted(conditions.channels),
            "contract": conditions.contract,
        },
        "targets": {
            kind: {"seconds": target.duration.total_seconds(), "business_hours": target.business_hours}
            for kind, target in policy.targets.items()
        },
        "calendar_id": policy.calendar_id,
        "warn_before_seconds": int(policy.warn_before.total_seconds()),
        "escalate_to_group": policy.escalate_to_group,
        "escalate_to": policy.escalate_to,
        "updated_at": at,
    }


def policy_from_document(doc: Mapping[str, Any]) -> SlaPolicy:
    conditions = doc.get("conditions", {})
    targets: dict[TimerKind, Target] = {
        kind: Target(timedelta(seconds=t["seconds"]), t["business_hours"]) for kind, t in doc["targets"].items()
    }
    return SlaPolicy(
        policy_id=doc["_id"],
        name=doc["name"],
        order=doc["order"],
        targets=targets,
        conditions=Conditions(
            value_tiers=frozenset(conditions.get("value_tiers", [])),
            priorities=frozenset(conditions.get("priorities", [])),
            categories=frozenset(conditions.get("categories", [])),
            channels=frozenset(conditions.get("channels", [])),
            contract=conditions.get("contract"),
        ),
        calendar_id=doc.get("calendar_id"),
        warn_before=timedelta(seconds=doc.get("warn_before_seconds", 3600)),
        escalate_to_group=doc.get("escalate_to_group"),
        escalate_to=doc.get("escalate_to"),
    )


@dataclass(frozen=True)
class SlaRules:
    """The policies and calendars in force, read once for a batch or a request."""

    policies: tuple[SlaPolicy, ...] = ()
    calendars: Mapping[str, BusinessCalendar] = field(default_factory=dict)

    def calendar_of(self, calendar_id: str | None) -> BusinessCalendar:
        """A policy's calendar; the default calendar (or calendar hours) for one without, or one since deleted."""
        return self.calendars.get(calendar_id or DEFAULT_CALENDAR_ID) or self.calendars.get(
            DEFAULT_CALENDAR_ID, CALENDAR_HOURS
        )


async def load_rules(db: AsyncDatabase[dict[str, Any]], uow: UnitOfWork | None = None) -> SlaRules:
    session = uow.session if uow is not None else None
    policies = [policy_from_document(d) async for d in db[SLA_POLICIES].find({}, session=session)]
    calendars = {d["_id"]: calendar_from_document(d) async for d in db[SLA_CALENDARS].find({}, session=session)}
    return SlaRules(tuple(policies), calendars)


async def tiers_of(uow: UnitOfWork, customer_ids: Iterable[str]) -> dict[str, str]:
    """Each customer's value tier as scoring last published it, for those it has published one for."""
    return {d["_id"]: d["value_tier"] for d in await uow.find_ids(CUSTOMER_TIERS, customer_ids, {"value_tier": 1})}


async def save_newest_tiers(uow: UnitOfWork, newest: Mapping[str, tuple[str, datetime]]) -> None:
    """Keep each customer's tier unless a newer change is stored already: one bulk write."""
    await upsert_newest(
        uow,
        CUSTOMER_TIERS,
        {customer: ({"value_tier": tier}, at) for customer, (tier, at) in newest.items()},
        time_field="changed_at",
    )
