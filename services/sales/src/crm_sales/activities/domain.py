"""Activities: calls, meetings, visits, emails, tasks and reminders, each tied to a lead, an opportunity, an
account or a customer, with a due time, an owner and, once done, an outcome. Pure: no I/O, no framework.

An activity is planned until it is done (with its outcome) or cancelled; a planned activity whose due time has
passed is overdue. A call, meeting, visit or email done with a customer is an interaction (scoring counts it).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal, get_args

from crm_shared.events import ActivityKind

ActivityStatus = Literal["planned", "done", "cancelled"]
STATUSES: tuple[ActivityStatus, ...] = get_args(ActivityStatus)
KINDS: tuple[ActivityKind, ...] = get_args(ActivityKind)
INTERACTION_KINDS: frozenset[ActivityKind] = frozenset({"call", "meeting", "visit", "email"})
"""The kinds that are a touch with the customer when done; tasks and reminders are the seller's own."""
DEFAULT_MINUTES: dict[ActivityKind, int] = {
    "call": 30,
    "meeting": 60,
    "visit": 60,
    "email": 0,
    "task": 0,
    "reminder": 0,
}
MAX_MINUTES = 24 * 60


class ActivityRefused(Exception):
    """The change contradicts the activity (done already, cancelled, tied to nothing)."""


@dataclass(frozen=True)
class Activity:
    activity_id: str
    kind: ActivityKind
    title: str
    due_at: datetime
    created_at: datetime
    duration_minutes: int = 0
    owner_id: str | None = None
    territory: str | None = None
    customer_id: str | None = None
    lead_id: str | None = None
    opportunity_id: str | None = None
    account_id: str | None = None
    notes: str | None = None
    status: ActivityStatus = "planned"
    outcome: str | None = None
    completed_at: datetime | None = None
    cancelled_at: datetime | None = None

    @property
    def ends_at(self) -> datetime:
        return self.due_at + timedelta(minutes=self.duration_minutes)

    @property
    def is_interaction(self) -> bool:
        return self.kind in INTERACTION_KINDS

    def is_overdue(self, now: datetime) -> bool:
        return self.status == "planned" and self.due_at < now


def plan(
    *,
    activity_id: str,
    kind: ActivityKind,
    title: str,
    due_at: datetime,
    at: datetime,
    duration_minutes: int | None = None,
    owner_id: str | None = None,
    territory: str | None = None,
    customer_id: str | None = None,
    lead_id: str | None = None,
    opportunity_id: str | None = None,
    account_id: str | None = None,
    notes: str | None = None,
) -> Activity:
    """A planned activity; its duration is the kind's default when None. Raises ActivityRefused for one tied to
    no lead, opportunity, account or customer, or a duration outside 0 to 24 hours."""
    if not any((customer_id, lead_id, opportunity_id, account_id)):
        raise ActivityRefused("an activity is tied to a lead, an opportunity, an account or a customer: name one")
    minutes = DEFAULT_MINUTES[kind] if duration_minutes is None else duration_minutes
    if not 0 <= minutes <= MAX_MINUTES:
        raise ActivityRefused(f"duration_minutes is from 0 to {MAX_MINUTES}, got {minutes}")
    return Activity(
        activity_id=activity_id,
        kind=kind,
        title=title,
        due_at=due_at,
        created_at=at,
        duration_minutes=minutes,
        owner_id=owner_id,
        territory=territory,
        customer_id=customer_id,
        lead_id=lead_id,
        opportunity_id=opportunity_id,
        account_id=account_id,
        notes=notes,
    )


def complete(activity: Activity, at: datetime, outcome: str | None) -> Activity:
    """The activity done at `at` with its outcome; completing it again with the same outcome is no change.
    Raises ActivityRefused for a cancelled one, or one done with another outcome."""
    if activity.status == "cancelled":
        raise ActivityRefused(f"activity {activity.activity_id} is cancelled: a cancelled activity is not done")
    if activity.status == "done":
        if activity.outcome == outcome:
            return activity
        raise ActivityRefused(f"activity {activity.activity_id} is done already, with another outcome")
    return replace(activity, status="done", outcome=outcome, completed_at=at)


def cancel(activity: Activity, at: datetime) -> Activity:
    """The planned activity cancelled; cancelling again is no change. Raises ActivityRefused for a done one."""
    if activity.status == "done":
        raise ActivityRefused(f"activity {activity.activity_id} is done: a done activity is not cancelled")
    if activity.status == "cancelled":
        return activity
    return replace(activity, status="cancelled", cancelled_at=at)
