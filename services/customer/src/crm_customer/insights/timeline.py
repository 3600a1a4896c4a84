"""The 360 timeline's kinds and its cause order. Pure.

An entry's kind is the family of its event type, the type's second segment (`crm.order.placed.v1` is an
`order`, `crm.sla.breached.v1` an `sla`); a consent change, published as `crm.customer.consent_changed.v1`, is a
kind of its own, `consent`.

Cause order: an entry whose event names another entry's event as its cause (the CloudEvent's `causationid`)
lists after that cause when both happened at one time, as an order and the segment changes and enrolments it
caused do (scoring and marketing date what they derive at the time of what caused it). At one time, entries go by
their depth in the chain of causes among the entries of that time, then by event id; times go as asked, newest
or oldest first. The depth is worked out when the entries are read, not when they are written, since an effect
often reaches the timeline before its cause (they come on different topics).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime

from crm_customer.domain import TimelineEntry
from crm_shared.events import EVENT_TYPES

_OWN_KINDS: Mapping[str, str] = {"crm.customer.consent_changed.v1": "consent"}


def kind_of(event_type: str) -> str:
    """The family of an event type: its second segment, but `consent` for a consent change."""
    if event_type in _OWN_KINDS:
        return _OWN_KINDS[event_type]
    parts = event_type.split(".")
    return parts[1] if len(parts) >= 3 else event_type


KINDS: frozenset[str] = frozenset(kind_of(t) for t in EVENT_TYPES)
"""Every kind of the catalog's event types."""


def types_of(kinds: Iterable[str]) -> frozenset[str]:
    """The catalog's event types of these kinds."""
    wanted = set(kinds)
    return frozenset(t for t in EVENT_TYPES if kind_of(t) in wanted)


def cause_depths(causes: Mapping[str, str | None]) -> dict[str, int]:
    """For the entries of one time, each entry's cause by event id: each one's depth, 0 when its cause is not
    among them, else one more than its cause's. A cycle (ids the catalog never makes) counts from where it is
    entered."""
    depths: dict[str, int] = {}
    for start in causes:
        chain: list[str] = []
        on_chain: set[str] = set()
        current: str | None = start
        while current is not None and current in causes and current not in depths and current not in on_chain:
            chain.append(current)
            on_chain.add(current)
            current = causes[current]
        depth = depths[current] + 1 if current is not None and current in depths else 0
        for event_id in reversed(chain):
            depths[event_id] = depth
            depth += 1
    return depths


def depths_by_time(links: Iterable[tuple[str, datetime, str | None]]) -> dict[str, int]:
    """Each entry's depth among the entries of its time, from (event id, time, cause) of every entry of those
    times."""
    by_time: dict[datetime, dict[str, str | None]] = defaultdict(dict)
    for event_id, at, cause in links:
        by_time[at][event_id] = cause
    depths: dict[str, int] = {}
    for causes in by_time.values():
        depths.update(cause_depths(causes))
    return depths


def in_cause_order(entries: Iterable[TimelineEntry]) -> list[TimelineEntry]:
    """Oldest first; at one time a cause before what it caused, then by event id. What a fold of a customer's
    entries reads them in."""
    listed = list(entries)
    depths = depths_by_time((e.event_id, e.time, e.cause) for e in listed)
    return sorted(listed, key=lambda e: (e.time, depths[e.event_id], e.event_id))
