"""Territories and the assignment rules they hold, as data: which leads a territory takes (regions, industries,
company size), in which priority order territories are tried, and how a lead is shared among its reps
(round-robin or least-busy, each rep with a capacity of open leads and a `skip` flag, e.g. on holiday).

Pure: no I/O. `assign_all` assigns leads one after the other, carrying the round-robin cursors and the open-lead
counts from one to the next, so a batch assigns as fairly as leads arriving one by one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

Strategy = Literal["round_robin", "least_busy"]


@dataclass(frozen=True)
class Rep:
    user_id: str
    capacity: int
    """At most this many open leads (new, contacted, qualified) at a time."""
    skip: bool = False


@dataclass(frozen=True)
class Territory:
    """A territory takes a lead whose region, industry and company size all match: an empty list or an absent
    bound matches anything, and a lead without the field matches only a territory without that criterion.
    Lower `priority` is tried first (ties by id). `cursor` is the round-robin position: the index of the next
    rep to try."""

    territory_id: str
    name: str
    priority: int
    strategy: Strategy
    reps: tuple[Rep, ...] = ()
    regions: frozenset[str] = frozenset()
    industries: frozenset[str] = frozenset()
    size_min: int | None = None
    size_max: int | None = None
    cursor: int = 0


@dataclass(frozen=True)
class LeadProfile:
    """What the rules look at."""

    region: str | None
    industry: str | None
    company_size: int | None


@dataclass(frozen=True)
class Assignment:
    territory: str | None
    owner_id: str | None
    reason: str | None
    """Why there is no owner; None when there is one."""


def _folded(value: str | None) -> str | None:
    return value.strip().casefold() if value is not None else None


def matches(territory: Territory, lead: LeadProfile) -> bool:
    if territory.regions and _folded(lead.region) not in {_folded(r) for r in territory.regions}:
        return False
    if territory.industries and _folded(lead.industry) not in {_folded(i) for i in territory.industries}:
        return False
    if territory.size_min is not None or territory.size_max is not None:
        size = lead.company_size
        if size is None:
            return False
        if territory.size_min is not None and size < territory.size_min:
            return False
        if territory.size_max is not None and size > territory.size_max:
            return False
    return True


def by_priority(territories: Iterable[Territory]) -> list[Territory]:
    return sorted(territories, key=lambda t: (t.priority, t.territory_id))


def matching_territory(territories: Iterable[Territory], lead: LeadProfile) -> Territory | None:
    """The first territory by priority that takes the lead."""
    return next((t for t in by_priority(territories) if matches(t, lead)), None)


def available(rep: Rep, open_leads: Mapping[str, int]) -> bool:
    return not rep.skip and open_leads.get(rep.user_id, 0) < rep.capacity


@dataclass(frozen=True)
class Pick:
    owner_id: str | None
    cursor: int
    reason: str | None


def pick_rep(territory: Territory, open_leads: Mapping[str, int]) -> Pick:
    """The rep of `territory` who gets the next lead, and the territory's cursor after it.

    Round-robin: the first available rep from the cursor on, in list order; the cursor moves past them.
    Least-busy: the available rep with the fewest open leads, ties by user id. Skipped reps and those at
    capacity are passed over; with none left, no owner and the reason.
    """
    reps = territory.reps
    if not reps:
        return Pick(None, territory.cursor, f"territory {territory.territory_id} has no reps")
    if territory.strategy == "round_robin":
        start = territory.cursor % len(reps)
        for step in range(len(reps)):
            index = (start + step) % len(reps)
            if available(reps[index], open_leads):
                return Pick(reps[index].user_id, (index + 1) % len(reps), None)
    else:
        free = [r for r in reps if available(r, open_leads)]
        if free:
            chosen = min(free, key=lambda r: (open_leads.get(r.user_id, 0), r.user_id))
            return Pick(chosen.user_id, territory.cursor, None)
    skipped = sum(1 for r in reps if r.skip)
    full = len(reps) - skipped
    return Pick(
        None,
        territory.cursor,
        f"no rep of territory {territory.territory_id} is available ({skipped} skipped, {full} at capacity)",
    )


NO_TERRITORY = "no territory matches the lead"


def assign(
    territories: Iterable[Territory], lead: LeadProfile, open_leads: Mapping[str, int]
) -> tuple[Assignment, Territory | None]:
    """The lead's territory and owner, and the matched territory with its cursor moved (None if none)."""
    territory = matching_territory(territories, lead)
    if territory is None:
        return Assignment(None, None, NO_TERRITORY), None
    pick = pick_rep(territory, open_leads)
    return Assignment(territory.territory_id, pick.owner_id, pick.reason), replace(territory, cursor=pick.cursor)


@dataclass(frozen=True)
class Assigned:
    """The outcome of assigning a batch: one assignment per lead, in order, the territories whose cursor moved
    (by id, with their new cursor) and the open-lead counts after."""

    assignments: tuple[Assignment, ...]
    cursors: Mapping[str, int]
    open_leads: Mapping[str, int]


def assign_all(
    territories: Sequence[Territory], leads: Iterable[LeadProfile], open_leads: Mapping[str, int]
) -> Assigned:
    """Assign `leads` in order: each lead given an owner counts against them for the next ones, and each
    round-robin turn moves the territory's cursor for the next ones."""
    current = {t.territory_id: t for t in territories}
    before = {t.territory_id: t.cursor for t in territories}
    counts = dict(open_leads)
    done: list[Assignment] = []
    for lead in leads:
        assignment, moved = assign(current.values(), lead, counts)
        if moved is not None:
            current[moved.territory_id] = moved
        if assignment.owner_id is not None:
            counts[assignment.owner_id] = counts.get(assignment.owner_id, 0) + 1
        done.append(assignment)
    cursors = {tid: t.cursor for tid, t in current.items() if t.cursor != before[tid]}
    return Assigned(tuple(done), cursors, counts)


def reps_of(territories: Iterable[Territory]) -> set[str]:
    return {rep.user_id for t in territories for rep in t.reps}
