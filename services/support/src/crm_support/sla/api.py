"""REST API of SLA data: business-hours calendars and SLA policies, defined as data (`sla:write`) and read by
anyone who reads tickets."""

from __future__ import annotations

from datetime import date, time, timedelta
from typing import Annotated, Literal, Self

from fastapi import APIRouter, Body, Response, status
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from crm_shared.api import Cursor, IdInPath, Limit, Page, keyset_page
from crm_shared.events import Channel, Dimension, EntityId, Line, utc_now
from crm_shared.problems import Problem
from crm_shared.security import UserId, requires
from crm_shared.service import StoreDep
from crm_shared.store import as_stored
from crm_support.field.repository import TECHNICIANS
from crm_support.sla import repository
from crm_support.sla.calendar import BusinessCalendar, CalendarInvalid
from crm_support.sla.policies import Conditions, SlaPolicy, Target, TimerKind
from crm_support.tickets.domain import Priority

router = APIRouter(prefix="/v1/sla", tags=["sla"])

READ = [requires("tickets:read")]
WRITE = [requires("sla:write")]
Tier = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]*$")]
"""A value tier as scoring names it."""
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
MAX_TARGET_HOURS = 24 * 366


class Hours(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: time = Field(description="Local time, e.g. 09:00.", examples=["09:00"])
    end: time = Field(description="Local time, exclusive; 00:00 is midnight at the day's end.", examples=["17:00"])


class CalendarBody(BaseModel):
    """A team's working time: weekly hours in its time zone, without public holidays and dates of its own."""

    model_config = ConfigDict(extra="forbid")

    time_zone: str = Field(max_length=64, description="IANA time zone, e.g. Europe/Berlin.", examples=["Europe/Berlin"])
    weekly: dict[Weekday, list[Hours]] = Field(description="Opening hours per weekday; a day absent is closed.")
    country: str | None = Field(
        default=None, pattern=r"^[A-Z]{2}$", description="ISO 3166 country whose public holidays are closed."
    )
    subdivision: str | None = Field(
        default=None, pattern=r"^[A-Z0-9]{1,3}$", description="The state or region, for its own holidays (e.g. BY)."
    )
    holidays: list[date] = Field(default=[], max_length=1000, description="Dates of its own that are closed.")

    @field_validator("weekly")
    @classmethod
    def _bounded(cls, value: dict[str, list[Hours]]) -> dict[str, list[Hours]]:
        if any(len(hours) > 12 for hours in value.values()):
            raise ValueError("at most 12 opening intervals a day")
        return value

    def calendar(self, calendar_id: str) -> BusinessCalendar:
        return BusinessCalendar(
            calendar_id=calendar_id,
            time_zone=self.time_zone,
            weekly={WEEKDAYS.index(day): tuple((h.start, h.end) for h in hours) for day, hours in self.weekly.items()},
            country=self.country,
            subdivision=self.subdivision,
            extra_holidays=frozenset(self.holidays),
        )


class CalendarView(CalendarBody):
    calendar_id: str

    @classmethod
    def of(cls, calendar: BusinessCalendar) -> CalendarView:
        return cls(
            calendar_id=calendar.calendar_id,
            time_zone=calendar.time_zone,
            weekly={
                WEEKDAYS[day]: [Hours(start=s, end=e) for s, e in intervals]
                for day, intervals in sorted(calendar.weekly.items())
            },
            country=calendar.country,
            subdivision=calendar.subdivision,
            holidays=sorted(calendar.extra_holidays),
        )


class TargetBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hours: float = Field(
        gt=0, le=MAX_TARGET_HOURS, allow_inf_nan=False, description="How long, in hours (at least a minute)."
    )
    business_hours: bool = Field(default=True, description="Counted on the policy's calendar; false: every hour.")

    @field_validator("hours")
    @classmethod
    def _at_least_a_minute(cls, value: float) -> float:
        if timedelta(hours=value) < timedelta(minutes=1):
            raise ValueError("a target is at least one minute (1/60 of an hour)")
        return value


class ConditionsBody(BaseModel):
    """Which tickets the policy takes; a list left empty holds for any value."""

    model_config = ConfigDict(extra="forbid")

    value_tiers: list[Tier] = Field(default=[], max_length=50, description="Scoring's value tiers, e.g. high_value.")
    priorities: list[Priority] = Field(default=[], max_length=4)
    categories: list[Dimension] = Field(default=[], max_length=3)
    channels: list[Channel] = Field(default=[], max_length=20)
    contract: bool | None = Field(default=None, description="Only tickets under a service contract (true), without.")


class PolicyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Line = Field(min_length=1, max_length=200)
    order: int = Field(ge=0, le=1_000_000, description="Lower is tried first; the first matching policy applies.")
    conditions: ConditionsBody = Field(default_factory=ConditionsBody)
    targets: dict[TimerKind, TargetBody] = Field(min_length=1)
    calendar_id: str | None = Field(
        default=None,
        max_length=128,
        description=f"Its calendar; none: the calendar '{repository.DEFAULT_CALENDAR_ID}', else calendar hours.",
    )
    warn_before_minutes: int = Field(default=60, ge=0, le=60 * 24 * 30, description="Warn this long before a breach.")
    escalate_to_group: EntityId | None = Field(
        default=None, description="On a breach the ticket moves to this group (its assignee keeps it)."
    )
    escalate_to: UserId | None = Field(default=None, description="On a breach this manager is named.")

    @model_validator(mode="after")
    def _unique(self) -> Self:
        for name in ("value_tiers", "priorities", "categories", "channels"):
            values = getattr(self.conditions, name)
            if len(set(values)) != len(values):
                raise ValueError(f"conditions.{name} lists a value twice")
        return self

    def policy(self, policy_id: str) -> SlaPolicy:
        c = self.conditions
        return SlaPolicy(
            policy_id=policy_id,
            name=self.name,
            order=self.order,
            targets={kind: Target(timedelta(hours=t.hours), t.business_hours) for kind, t in self.targets.items()},
            conditions=Conditions(
                value_tiers=frozenset(c.value_tiers),
                priorities=frozenset(c.priorities),
                categories=frozenset(c.categories),
                channels=frozenset(c.channels),
                contract=c.contract,
            ),
            calendar_id=self.calendar_id,
            warn_before=timedelta(minutes=self.warn_before_minutes),
            escalate_to_group=self.escalate_to_group,
            escalate_to=self.escalate_to,
        )


class PolicyView(PolicyBody):
    policy_id: str

    @classmethod
    def of(cls, policy: SlaPolicy) -> PolicyView:
        c = policy.conditions
        return cls(
            policy_id=policy.policy_id,
            name=policy.name,
            order=policy.order,
            conditions=ConditionsBody(
                value_tiers=sorted(c.value_tiers),
                priorities=sorted(c.priorities),
                categories=sorted(c.categories),
                channels=sorted(c.channels),
                contract=c.contract,
            ),
            targets={
                kind: TargetBody(hours=t.duration.total_seconds() / 3600, business_hours=t.business_hours)
                for kind, t in policy.targets.items()
            },
            calendar_id=policy.calendar_id,
            warn_before_minutes=int(policy.warn_before.total_seconds() // 60),
            escalate_to_group=policy.escalate_to_group,
            escalate_to=policy.escalate_to,
        )


CALENDAR_EXAMPLE = {
    "time_zone": "Europe/Berlin",
    "weekly": {day: [{"start": "09:00", "end": "17:00"}] for day in WEEKDAYS[:5]},
    "country": "DE",
    "subdivision": "BY",
    "holidays": ["2026-12-24", "2026-12-31"],
}
POLICY_EXAMPLE = {
    "name": "High-value customers",
    "order": 10,
    "conditions": {"value_tiers": ["high_value"]},
    "targets": {"first_response": {"hours": 1}, "next_response": {"hours": 4}, "resolution": {"hours": 16}},
    "calendar_id": "berlin",
    "warn_before_minutes": 30,
}


def _not_found(what: str, key: str) -> Problem:
    return Problem(404, f"{what.capitalize()} not found", f"no {what} {key}")


@router.put(
    "/calendars/{calendar_id}",
    response_model=CalendarView,
    summary="Define or replace a business-hours calendar",
    description=f"The calendar '{repository.DEFAULT_CALENDAR_ID}' is the one policies without a calendar count on.",
    dependencies=WRITE,
    responses={
        200: {"description": "Replaced"},
        201: {"description": "Defined"},
        422: {"description": "Unknown time zone, country or subdivision; hours that end before they start or overlap"},
    },
)
async def put_calendar(
    store: StoreDep,
    response: Response,
    calendar_id: IdInPath,
    body: Annotated[CalendarBody, Body(examples=[CALENDAR_EXAMPLE])],
) -> CalendarView:
    try:
        calendar = body.calendar(calendar_id)
    except CalendarInvalid as exc:
        raise Problem(422, "Invalid calendar", str(exc)) from exc
    document = repository.calendar_to_document(calendar, as_stored(utc_now()))
    result = await store.db[repository.SLA_CALENDARS].replace_one({"_id": calendar_id}, document, upsert=True)
    response.status_code = status.HTTP_201_CREATED if result.upserted_id is not None else status.HTTP_200_OK
    return CalendarView.of(calendar)


@router.get("/calendars", response_model=Page[CalendarView], summary="The calendars, newest first", dependencies=READ)
async def list_calendars(store: StoreDep, limit: Limit = 50, cursor: Cursor = None) -> Page[CalendarView]:
    docs, next_cursor = await keyset_page(
        store.db[repository.SLA_CALENDARS], {}, time_field="updated_at", limit=limit, cursor=cursor, newest_first=True
    )
    items = [CalendarView.of(repository.calendar_from_document(d)) for d in docs]
    return Page[CalendarView](items=items, next_cursor=next_cursor)


@router.get(
    "/calendars/{calendar_id}",
    response_model=CalendarView,
    summary="One calendar",
    dependencies=READ,
    responses={404: {"description": "No such calendar"}},
)
async def get_calendar(store: StoreDep, calendar_id: IdInPath) -> CalendarView:
    doc = await store.db[repository.SLA_CALENDARS].find_one({"_id": calendar_id})
    if doc is None:
        raise _not_found("calendar", calendar_id)
    return CalendarView.of(repository.calendar_from_document(doc))


@router.delete(
    "/calendars/{calendar_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a calendar no policy counts on",
    dependencies=WRITE,
    responses={404: {"description": "No such calendar"}, 409: {"description": "A policy counts on it"}},
)
async def delete_calendar(store: StoreDep, calendar_id: IdInPath) -> Response:
    users = [d["_id"] async for d in store.db[repository.SLA_POLICIES].find({"calendar_id": calendar_id}, {"_id": 1})]
    if users:
        raise Problem(409, "Calendar in use", f"policies {', '.join(sorted(users))} count on calendar {calendar_id}")
    workers = [d["_id"] async for d in store.db[TECHNICIANS].find({"calendar_id": calendar_id}, {"_id": 1})]
    if workers:
        names = ", ".join(sorted(workers))
        raise Problem(409, "Calendar in use", f"technicians {names} work the hours of calendar {calendar_id}")
    if (await store.db[repository.SLA_CALENDARS].delete_one({"_id": calendar_id})).deleted_count == 0:
        raise _not_found("calendar", calendar_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put(
    "/policies/{policy_id}",
    response_model=PolicyView,
    summary="Define or replace an SLA policy",
    description="Policies are tried by `order` (then id); the first whose every condition holds applies to a new "
    "ticket or complaint: its first-response target sets a complaint's due time.",
    dependencies=WRITE,
    responses={200: {"description": "Replaced"}, 201: {"description": "Defined"}, 422: {"description": "Invalid"}},
)
async def put_policy(
    store: StoreDep,
    response: Response,
    policy_id: IdInPath,
    body: Annotated[PolicyBody, Body(examples=[POLICY_EXAMPLE])],
) -> PolicyView:
    calendars = store.db[repository.SLA_CALENDARS]
    if body.calendar_id is not None and await calendars.find_one({"_id": body.calendar_id}, {"_id": 1}) is None:
        raise Problem(422, "Unknown calendar", f"no calendar {body.calendar_id}: PUT /v1/sla/calendars/{{id}} first")
    policy = body.policy(policy_id)
    document = repository.policy_to_document(policy, as_stored(utc_now()))
    result = await store.db[repository.SLA_POLICIES].replace_one({"_id": policy_id}, document, upsert=True)
    response.status_code = status.HTTP_201_CREATED if result.upserted_id is not None else status.HTTP_200_OK
    return PolicyView.of(policy)


@router.get("/policies", response_model=Page[PolicyView], summary="The SLA policies, newest first", dependencies=READ)
async def list_policies(store: StoreDep, limit: Limit = 50, cursor: Cursor = None) -> Page[PolicyView]:
    docs, next_cursor = await keyset_page(
        store.db[repository.SLA_POLICIES], {}, time_field="updated_at", limit=limit, cursor=cursor, newest_first=True
    )
    return Page[PolicyView](
        items=[PolicyView.of(repository.policy_from_document(d)) for d in docs], next_cursor=next_cursor
    )


@router.get(
    "/policies/{policy_id}",
    response_model=PolicyView,
    summary="One SLA policy",
    dependencies=READ,
    responses={404: {"description": "No such policy"}},
)
async def get_policy(store: StoreDep, policy_id: IdInPath) -> PolicyView:
    doc = await store.db[repository.SLA_POLICIES].find_one({"_id": policy_id})
    if doc is None:
        raise _not_found("policy", policy_id)
    return PolicyView.of(repository.policy_from_document(doc))


@router.delete(
    "/policies/{policy_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete an SLA policy (what it set on complaints already filed stays)",
    dependencies=WRITE,
    responses={404: {"description": "No such policy"}},
)
async def delete_policy(store: StoreDep, policy_id: IdInPath) -> Response:
    if (await store.db[repository.SLA_POLICIES].delete_one({"_id": policy_id})).deleted_count == 0:
        raise _not_found("policy", policy_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
