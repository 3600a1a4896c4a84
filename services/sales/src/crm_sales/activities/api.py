"""REST API of activities: plan, complete and cancel calls, meetings, visits, emails, tasks and reminders; list
them (overdue ones too); an owner's calendar for a date range, as JSON or as an iCalendar (.ics) feed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response, Security, status
from fastapi.security import APIKeyQuery, HTTPAuthorizationCredentials, SecurityScopes
from pydantic import BaseModel, ConfigDict, Field

from crm_sales.activities import calendar as ical
from crm_sales.activities import domain, feeds, handlers, repository
from crm_sales.web import owner_for
from crm_shared.api import Cursor, IdempotencyKey, IdInPath, Limit, Page, command_event_id, keyset_page
from crm_shared.events import ActivityKind, CustomerId, EntityId, Line, PlannedTime, Text, utc_now
from crm_shared.problems import Problem
from crm_shared.security import ADMIN, Principal, UserId, audit, audited, requires
from crm_shared.security.guard import api_key_scheme, authenticate, bearer_scheme, route_name
from crm_shared.service import StoreDep

router = APIRouter(prefix="/v1", tags=["activities"])

ActivityReader = Annotated[Principal, requires("activities:read")]
ActivityWriter = Annotated[Principal, requires("activities:write")]

NO_SUCH_ACTIVITY: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such activity, or not one the caller sees"}
}
CALENDAR_DAYS = 366
"""The widest calendar range one request reads."""


def activity_not_found(activity_id: str) -> Problem:
    return Problem(404, "Activity not found", f"no activity {activity_id}")


class ActivityBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: ActivityKind
    title: Line = Field(min_length=1, max_length=200)
    due_at: PlannedTime = Field(description="When it is due (a call, meeting or visit: when it starts).")
    duration_minutes: int | None = Field(
        default=None, ge=0, le=domain.MAX_MINUTES, description="30 for a call, 60 for a meeting or visit, else 0."
    )
    owner_id: UserId | None = Field(
        default=None,
        description="Whose it is; when absent the calling person, or for an API key the owner of the "
        "opportunity, lead or account it is tied to.",
    )
    customer_id: CustomerId | None = None
    lead_id: EntityId | None = None
    opportunity_id: EntityId | None = Field(
        default=None, description="Its customer is the activity's when none is named."
    )
    account_id: EntityId | None = None
    notes: Text | None = Field(default=None, max_length=2000)

    def new(self, owner_id: str | None) -> handlers.NewActivity:
        return handlers.NewActivity(**{**self.__dict__, "owner_id": owner_id})


class ActivityView(BaseModel):
    activity_id: str
    kind: ActivityKind
    title: str
    due_at: datetime
    ends_at: datetime
    duration_minutes: int
    status: domain.ActivityStatus
    overdue: bool = Field(description="Planned, and its due time has passed.")
    owner_id: str | None
    territory: str | None
    customer_id: str | None
    lead_id: str | None
    opportunity_id: str | None
    account_id: str | None
    notes: str | None
    outcome: str | None
    created_at: datetime
    completed_at: datetime | None
    cancelled_at: datetime | None

    @classmethod
    def of(cls, a: domain.Activity, now: datetime) -> ActivityView:
        return cls(**a.__dict__, ends_at=a.ends_at, overdue=a.is_overdue(now))


ACTIVITY_EXAMPLE = {
    "kind": "visit",
    "title": "Demo of the new espresso line",
    "due_at": "2027-01-12T09:30:00Z",
    "opportunity_id": "O-5001",
}


@router.post(
    "/activities",
    response_model=ActivityView,
    status_code=status.HTTP_201_CREATED,
    summary="Plan a call, meeting, visit, email, task or reminder (crm.activity.scheduled.v1 with a customer)",
    description="Tied to at least one of a lead, an opportunity, an account or a customer; its customer is the "
    "one named, else the opportunity's or the lead's. Only an activity with a customer is published.",
    responses={
        200: {"description": "Already planned with this Idempotency-Key"},
        409: {"description": "The Idempotency-Key planned another activity"},
        422: {"description": "Invalid: tied to nothing, an unknown lead, opportunity or account"},
    },
)
async def plan_activity(
    principal: ActivityWriter,
    store: StoreDep,
    response: Response,
    body: Annotated[ActivityBody, Body(examples=[ACTIVITY_EXAMPLE])],
    idempotency_key: IdempotencyKey = None,
) -> ActivityView:
    activity_id = f"ACT-{command_event_id('sales/activities', idempotency_key)}"
    now = utc_now()
    try:
        activity, created = await handlers.schedule(
            store,
            body.new(owner_for(principal, body.owner_id, doing="plan activities")),
            activity_id,
            now,
            principal=principal,
        )
    except domain.ActivityRefused as exc:
        raise Problem(422, "Activity invalid", str(exc)) from exc
    except handlers.UnknownLink as exc:
        raise Problem(422, "Unknown link", str(exc)) from exc
    except handlers.ActivityIdTaken as exc:
        raise Problem(409, "Idempotency-Key reused", str(exc)) from exc
    if not created:
        response.status_code = status.HTTP_200_OK
    return ActivityView.of(activity, now)


@router.get(
    "/activities",
    response_model=Page[ActivityView],
    summary="Activities the caller sees, the earliest due first; `overdue=true` for the planned ones past due",
)
async def list_activities(
    principal: ActivityReader,
    store: StoreDep,
    owner_id: Annotated[UserId | None, Query()] = None,
    customer_id: Annotated[CustomerId | None, Query()] = None,
    lead_id: Annotated[EntityId | None, Query()] = None,
    opportunity_id: Annotated[EntityId | None, Query()] = None,
    account_id: Annotated[EntityId | None, Query()] = None,
    kind: Annotated[ActivityKind | None, Query()] = None,
    state: Annotated[domain.ActivityStatus | None, Query(alias="status")] = None,
    overdue: Annotated[bool, Query(description="Only planned activities whose due time has passed.")] = False,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[ActivityView]:
    now = utc_now()
    try:
        query = handlers.listing_query(
            now=now,
            owner_id=owner_id,
            customer_id=customer_id,
            lead_id=lead_id,
            opportunity_id=opportunity_id,
            account_id=account_id,
            kind=kind,
            status=state,
            overdue=overdue,
        )
    except ValueError as exc:
        raise Problem(422, "Invalid filter", str(exc)) from exc
    docs, next_cursor = await keyset_page(
        store.db[repository.ACTIVITIES],
        handlers.seen_by(principal, query),
        time_field="due_at",
        limit=limit,
        cursor=cursor,
        newest_first=False,
    )
    return Page[ActivityView](
        items=[ActivityView.of(repository.from_document(d), now) for d in docs], next_cursor=next_cursor
    )


@router.get(
    "/activities/{activity_id}", response_model=ActivityView, summary="One activity", responses=NO_SUCH_ACTIVITY
)
async def get_activity(principal: ActivityReader, store: StoreDep, activity_id: IdInPath) -> ActivityView:
    activity = await handlers.find_activity(store, activity_id, principal=principal)
    if activity is None:
        raise activity_not_found(activity_id)
    return ActivityView.of(activity, utc_now())


class CompleteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: Text | None = Field(default=None, max_length=2000, description="What came of it.")


@router.post(
    "/activities/{activity_id}/complete",
    response_model=ActivityView,
    summary="Mark an activity done with its outcome (crm.activity.completed.v1 with a customer)",
    description="A call, meeting, visit or email done with a customer counts as an interaction in scoring. "
    "Completing it again with the same outcome answers it as it is.",
    responses={**NO_SUCH_ACTIVITY, 409: {"description": "Cancelled, or done with another outcome"}},
)
async def complete_activity(
    principal: ActivityWriter,
    store: StoreDep,
    activity_id: IdInPath,
    body: Annotated[CompleteBody, Body(examples=[{"outcome": "Wants a quote for two machines"}])],
) -> ActivityView:
    now = utc_now()
    try:
        done = await handlers.complete(store, activity_id, now, body.outcome, principal=principal)
    except domain.ActivityRefused as exc:
        raise Problem(409, "Activity refused", str(exc)) from exc
    if done is None:
        raise activity_not_found(activity_id)
    return ActivityView.of(done, now)


@router.post(
    "/activities/{activity_id}/cancel",
    response_model=ActivityView,
    summary="Cancel a planned activity",
    responses={**NO_SUCH_ACTIVITY, 409: {"description": "Done already"}},
)
async def cancel_activity(principal: ActivityWriter, store: StoreDep, activity_id: IdInPath) -> ActivityView:
    now = utc_now()
    try:
        cancelled = await handlers.cancel(store, activity_id, now, principal=principal)
    except domain.ActivityRefused as exc:
        raise Problem(409, "Activity refused", str(exc)) from exc
    if cancelled is None:
        raise activity_not_found(activity_id)
    return ActivityView.of(cancelled, now)


From = Annotated[datetime | None, Query(alias="from", description="Start (inclusive); 7 days ago when absent.")]
To = Annotated[datetime | None, Query(alias="to", description="End (exclusive); 60 days after the start when absent.")]


async def _calendar(
    principal: Principal | None, store: StoreDep, owner_id: str, start: datetime | None, end: datetime | None
) -> list[domain.Activity]:
    """The owner's activities in the range; `principal` None when a feed token for this calendar was verified."""
    if principal is not None and not handlers.may_see_calendar(principal, owner_id):
        raise Problem(404, "Calendar not found", f"no calendar of {owner_id} the caller sees")
    for given in (start, end):
        if given is not None and given.tzinfo is None:
            raise Problem(422, "Invalid range", "from and to are RFC 3339 times with an offset (e.g. Z)")
    begin = start or (utc_now() - timedelta(days=7)).replace(hour=0, minute=0, second=0, microsecond=0)
    finish = end or begin + timedelta(days=60)
    if finish <= begin:
        raise Problem(422, "Invalid range", "to must be after from")
    if finish - begin > timedelta(days=CALENDAR_DAYS):
        raise Problem(422, "Invalid range", f"a calendar range is at most {CALENDAR_DAYS} days")
    try:
        return await handlers.calendar(store, owner_id, begin.astimezone(UTC), finish.astimezone(UTC))
    except handlers.CalendarTooLarge as exc:
        raise Problem(422, "Invalid range", str(exc)) from exc


feed_token_scheme = APIKeyQuery(
    name="token",
    scheme_name="CalendarFeedToken",
    auto_error=False,
    description="The secret address of one owner's calendar feed (`calfeed_<feed id>_<secret>`, from POST "
    "/v1/calendars/{owner_id}/feed-address), for a calendar app that cannot send a credential. It reads that "
    "feed and nothing else.",
)
READ_ACTIVITIES = ["activities:read"]


async def feed_reader(
    request: Request,
    store: StoreDep,
    owner_id: IdInPath,
    token: Annotated[str | None, Security(feed_token_scheme)],
    api_key: Annotated[str | None, Security(api_key_scheme, scopes=READ_ACTIVITIES)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme, scopes=READ_ACTIVITIES)],
) -> Principal | None:
    """The caller of the feed: a credential in a header as for every route, else the calendar's secret token
    (None: the token opened this owner's calendar)."""
    if token is None or api_key or bearer:
        return await authenticate(request, SecurityScopes(READ_ACTIVITIES), api_key, bearer)
    try:
        await feeds.verify(store, owner_id, token)
    except feeds.FeedRefused as exc:
        audit.note(request.scope, route_name(request), principal="calendar-feed:unverified", reason=str(exc))
        raise Problem(
            401, "Unauthorized", str(exc), headers={"WWW-Authenticate": 'Bearer realm="crm", ApiKey realm="crm"'}
        ) from exc
    return None


CALENDAR_ACCESS: dict[int | str, dict[str, Any]] = {
    404: {"description": "Not a calendar the caller sees (their own, or their team's)"},
    422: {"description": "An invalid range: to before from, longer than 366 days, no offset"},
}


@router.get(
    "/calendars/{owner_id}",
    response_model=list[ActivityView],
    summary="An owner's calendar: their activities due in a range, by due time",
    responses=CALENDAR_ACCESS,
)
async def get_calendar(
    principal: ActivityReader, store: StoreDep, owner_id: IdInPath, start: From = None, end: To = None
) -> list[ActivityView]:
    now = utc_now()
    return [ActivityView.of(a, now) for a in await _calendar(principal, store, owner_id, start, end)]


@router.get(
    "/calendars/{owner_id}/feed.ics",
    summary="An owner's calendar as iCalendar (RFC 5545), for a calendar app to import or subscribe to",
    description="One VEVENT per activity (UID the activity id, so a subscribed calendar updates in place); "
    "cancelled ones are marked CANCELLED; a reminder carries an alarm. The same credential as the API, or "
    "for a calendar app that cannot send one the calendar's secret address (`?token=`, from POST "
    "/v1/calendars/{owner_id}/feed-address).",
    response_class=Response,
    responses={200: {"content": {"text/calendar": {}}, "description": "The calendar"}, **CALENDAR_ACCESS},
)
async def get_calendar_feed(
    principal: Annotated[Principal | None, Depends(feed_reader)],
    store: StoreDep,
    owner_id: IdInPath,
    start: From = None,
    end: To = None,
) -> Response:
    activities = await _calendar(principal, store, owner_id, start, end)
    body = ical.ics(activities, name=f"CRM activities of {owner_id}", now=utc_now())
    return Response(
        body,
        media_type="text/calendar; charset=utf-8",
        headers={"Content-Disposition": f'inline; filename="{owner_id}.ics"'},
    )


class FeedAddressView(BaseModel):
    owner_id: str
    feed_id: str = Field(description="Names the address (not secret): the audit log and a revocation show it.")
    created_at: datetime
    created_by: str = Field(description="Who made it (the audit log's name for them).")

    @classmethod
    def of(cls, address: feeds.FeedAddress) -> FeedAddressView:
        return cls(**address.__dict__)


class NewFeedAddressView(FeedAddressView):
    token: str = Field(description="The secret: shown this once, kept only as a hash.")
    url: str = Field(
        description="The address to subscribe to: the feed with the token. Anyone who has it reads "
        "this calendar, so treat it as a password."
    )


FEED_ADDRESS_ACCESS: dict[int | str, dict[str, Any]] = {
    403: {"description": "Only the owner of a calendar (or an admin) makes, sees or revokes its secret address"},
    404: {"description": "Not a calendar the caller sees, or it has no secret address"},
}


def _may_manage_feed(principal: Principal, owner_id: str) -> None:
    if not handlers.may_see_calendar(principal, owner_id):
        raise Problem(404, "Calendar not found", f"no calendar of {owner_id} the caller sees")
    if ADMIN not in principal.scopes and not (principal.kind == "token" and principal.id == owner_id):
        raise Problem(
            403, "Forbidden", f"only {owner_id} or an admin manages the secret address of {owner_id}'s calendar"
        )


@router.post(
    "/calendars/{owner_id}/feed-address",
    response_model=NewFeedAddressView,
    status_code=status.HTTP_201_CREATED,
    summary="Make the secret address of an owner's calendar feed, replacing the one it had",
    description="For a calendar app that cannot send a credential: subscribe to `url`. The token is shown once; "
    "making a new one stops the old one at once, and DELETE revokes it. Only the owner (or an admin) makes it.",
    responses=FEED_ADDRESS_ACCESS,
    dependencies=[Depends(audited)],
)
async def make_feed_address(
    request: Request, principal: ActivityWriter, store: StoreDep, owner_id: IdInPath
) -> NewFeedAddressView:
    _may_manage_feed(principal, owner_id)
    made = await feeds.make(store, owner_id, at=utc_now(), by=principal.audit_name)
    url = request.url_for("get_calendar_feed", owner_id=owner_id).include_query_params(token=made.token)
    return NewFeedAddressView(**FeedAddressView.of(made.address).model_dump(), token=made.token, url=str(url))


@router.get(
    "/calendars/{owner_id}/feed-address",
    response_model=FeedAddressView,
    summary="Whether an owner's calendar has a secret address, and since when (never the token)",
    responses=FEED_ADDRESS_ACCESS,
)
async def get_feed_address(principal: ActivityReader, store: StoreDep, owner_id: IdInPath) -> FeedAddressView:
    _may_manage_feed(principal, owner_id)
    address = await feeds.find(store, owner_id)
    if address is None:
        raise Problem(404, "No feed address", f"the calendar of {owner_id} has no secret address")
    return FeedAddressView.of(address)


@router.delete(
    "/calendars/{owner_id}/feed-address",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke the secret address of an owner's calendar feed: the link stops working at once",
    responses=FEED_ADDRESS_ACCESS,
    dependencies=[Depends(audited)],
)
async def revoke_feed_address(principal: ActivityWriter, store: StoreDep, owner_id: IdInPath) -> Response:
    _may_manage_feed(principal, owner_id)
    if not await feeds.revoke(store, owner_id):
        raise Problem(404, "No feed address", f"the calendar of {owner_id} has no secret address")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
