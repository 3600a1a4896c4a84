"""The timeline route's filters and order, as one dependency: kinds, channel, period of event time, newest or
oldest first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Query

from crm_customer.insights.timeline import KINDS, types_of
from crm_customer.repository import TimelineOrder
from crm_shared.events import Channel
from crm_shared.problems import Problem

KIND_LIST = ", ".join(sorted(KINDS))


@dataclass(frozen=True)
class TimelineSelection:
    kinds: frozenset[str] | None
    channel: Channel | None
    start: datetime | None
    end: datetime | None
    order: TimelineOrder

    def types(self, event_type: str | None) -> frozenset[str] | None:
        """The event types asked for: of the kinds, narrowed to `event_type` when given too; None for all."""
        if self.kinds is None:
            return None if event_type is None else frozenset({event_type})
        of_kinds = types_of(self.kinds)
        return of_kinds if event_type is None else of_kinds & {event_type}


def as_utc(at: datetime | None, name: str, title: str = "Invalid period") -> datetime | None:
    """A time query parameter in UTC; a 422 for one without an offset or beyond what UTC holds."""
    if at is None:
        return None
    if at.tzinfo is None:
        raise Problem(422, title, f"`{name}` is an RFC 3339 time with an offset (e.g. Z)")
    try:
        return at.astimezone(UTC)
    except OverflowError as exc:
        raise Problem(422, title, f"`{name}` is a time between the years 1 and 9999, in UTC") from exc


def timeline_selection(
    kind: Annotated[
        list[str] | None,
        Query(
            max_length=20,
            description=f"Only entries of these kinds (repeat for several): {KIND_LIST}. A kind is the event "
            "type's second segment (`crm.order.placed.v1` is an order), but a consent change "
            "(`crm.customer.consent_changed.v1`) is `consent`.",
            examples=[["order", "ticket"]],
        ),
    ] = None,
    channel: Annotated[
        Channel | None,
        Query(description="Only entries whose event names this channel (`data.channel`).", examples=["email"]),
    ] = None,
    start: Annotated[
        datetime | None,
        Query(alias="from", description="Only entries of this event time or later (RFC 3339 with an offset)."),
    ] = None,
    end: Annotated[
        datetime | None,
        Query(alias="to", description="Only entries of event times before this (RFC 3339 with an offset)."),
    ] = None,
    order: Annotated[
        TimelineOrder, Query(description="Newest first (the default) or oldest first, by event time.")
    ] = "newest",
) -> TimelineSelection:
    unknown = sorted(set(kind or ()) - KINDS)
    if unknown:
        raise Problem(422, "Unknown kind", f"kind {', '.join(unknown)} is not one of: {KIND_LIST}")
    begin, finish = as_utc(start, "from"), as_utc(end, "to")
    if begin is not None and finish is not None and finish <= begin:
        raise Problem(422, "Invalid period", "`to` must be after `from`")
    return TimelineSelection(frozenset(kind) if kind else None, channel, begin, finish, order)


TimelineQuery = Annotated[TimelineSelection, Depends(timeline_selection)]
