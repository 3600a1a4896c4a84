"""Field service: service contracts, technicians and on-site visits. Pure: no I/O, no framework.

- A **service contract** covers a customer's products (all of them when it names none) from one date to another,
  optionally with an SLA policy of its own, which a ticket under the contract gets whatever its other facts.
- A **technician** has skills, a territory and working hours (a business-hours calendar: time zone, weekly
  hours, holidays).
- A **visit** is scheduled on the first free slot, from a given instant on, of a technician with the skill and
  territory asked for: within one opening interval of their calendar, not overlapping another visit of theirs
  that is not cancelled; the earliest start wins, ties by technician id. It is then dispatched, completed (time
  spent, parts used, the installed product worked on, notes) or cancelled. The completed visits of an installed
  product (its serial number) are its repair history.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Literal, get_args

from crm_support.sla.calendar import BusinessCalendar

VisitStatus = Literal["scheduled", "dispatched", "completed", "cancelled"]
VISIT_STATUSES: tuple[VisitStatus, ...] = get_args(VisitStatus)
NEXT_VISIT_STATUSES: Mapping[VisitStatus, tuple[VisitStatus, ...]] = {
    "scheduled": ("dispatched", "completed", "cancelled"),
    "dispatched": ("completed", "cancelled"),
    "completed": (),
    "cancelled": (),
}
"""What may follow each status: a visit done or called off is history."""

SEARCH_DAYS = 60
"""How far ahead a free slot is looked for."""


class FieldRefused(Exception):
    """A contract, technician or visit change that the rules do not allow, with the reason."""


@dataclass(frozen=True)
class ServiceContract:
    contract_id: str
    customer_id: str
    name: str
    starts_on: date
    ends_on: date
    """The last day covered (inclusive)."""
    products: frozenset[str] = frozenset()
    """The products it covers; empty: every product of the customer."""
    sla_policy_id: str | None = None
    """The SLA policy of a ticket under this contract; None: the policy its facts pick."""
    on_site: bool = True
    """Whether it covers visits on site."""

    def __post_init__(self) -> None:
        if self.ends_on < self.starts_on:
            raise FieldRefused(f"a contract ends on or after it starts, not {self.ends_on} before {self.starts_on}")

    def covers(self, customer_id: str, product: str | None, on: date) -> str | None:
        """None when the contract covers this customer's product on that day; else why not."""
        if customer_id != self.customer_id:
            return f"contract {self.contract_id} is not {customer_id}'s"
        if not self.starts_on <= on <= self.ends_on:
            return f"contract {self.contract_id} runs from {self.starts_on} to {self.ends_on}, not on {on}"
        if self.products and product not in self.products:
            what = f"product {product}" if product else "a ticket without a product"
            return f"contract {self.contract_id} does not cover {what}; it covers {', '.join(sorted(self.products))}"
        return None


@dataclass(frozen=True)
class Technician:
    technician_id: str
    name: str
    skills: frozenset[str]
    calendar_id: str
    """Their working hours: a business-hours calendar (GET /v1/sla/calendars)."""
    territory: str | None = None
    """Where they work; None: anywhere."""
    active: bool = True

    def can_do(self, skill: str, territory: str | None) -> bool:
        return (
            self.active
            and skill in self.skills
            and (territory is None or self.territory is None or self.territory == territory)
        )


@dataclass(frozen=True)
class PartUsed:
    part: str
    quantity: int

    def __post_init__(self) -> None:
        if self.quantity < 1:
            raise FieldRefused(f"part {self.part}: a quantity is at least 1")


@dataclass(frozen=True)
class VisitChange:
    at: datetime
    by: str
    status: VisitStatus


@dataclass(frozen=True)
class Visit:
    visit_id: str
    ticket_id: str
    customer_id: str
    technician_id: str
    skill: str
    starts_at: datetime
    ends_at: datetime
    territory: str | None = None
    contract_id: str | None = None
    installed_product: str | None = None
    """The serial number of the installed product concerned, when known."""
    product: str | None = None
    minutes_spent: int | None = None
    parts: tuple[PartUsed, ...] = ()
    notes: str | None = None
    history: tuple[VisitChange, ...] = field(default_factory=tuple)

    @property
    def status(self) -> VisitStatus:
        return self.history[-1].status if self.history else "scheduled"

    @property
    def completed_at(self) -> datetime | None:
        return self.history[-1].at if self.status == "completed" else None


def _overlaps(start: datetime, end: datetime, busy: Iterable[tuple[datetime, datetime]]) -> datetime | None:
    """The end of the latest busy span overlapping [start, end), or None when none does."""
    ends = [b_end for b_start, b_end in busy if b_start < end and start < b_end]
    return max(ends) if ends else None


def first_free_slot(
    calendar: BusinessCalendar,
    busy: Sequence[tuple[datetime, datetime]],
    duration: timedelta,
    earliest: datetime,
    days: int = SEARCH_DAYS,
) -> datetime | None:
    """The first start from `earliest` on where `duration` fits inside one opening interval of the calendar and
    overlaps none of the busy spans; None when there is none in `days` days."""
    earliest = earliest.astimezone(UTC)
    first_day = earliest.astimezone(calendar.zone).date() - timedelta(days=1)
    for offset in range(days + 2):
        for begin, end in calendar.open_intervals(first_day + timedelta(days=offset)):
            start = max(begin, earliest)
            while start + duration <= end:
                blocked_until = _overlaps(start, start + duration, busy)
                if blocked_until is None:
                    return start
                start = blocked_until
    return None


@dataclass(frozen=True)
class Slot:
    technician_id: str
    starts_at: datetime
    ends_at: datetime


def first_slot(
    technicians: Iterable[Technician],
    calendars: Mapping[str, BusinessCalendar],
    busy: Mapping[str, Sequence[tuple[datetime, datetime]]],
    *,
    skill: str,
    territory: str | None,
    duration: timedelta,
    earliest: datetime,
) -> Slot | None:
    """The earliest slot of any technician with the skill (and territory) free for `duration` from `earliest`
    on; ties go to the technician id first in order. None when nobody is free in the search span."""
    if duration <= timedelta(0):
        raise FieldRefused("a visit lasts a positive duration")
    best: Slot | None = None
    for tech in sorted(technicians, key=lambda t: t.technician_id):
        calendar = calendars.get(tech.calendar_id)
        if calendar is None or not tech.can_do(skill, territory):
            continue
        start = first_free_slot(calendar, busy.get(tech.technician_id, ()), duration, earliest)
        if start is not None and (best is None or start < best.starts_at):
            best = Slot(tech.technician_id, start, start + duration)
    return best


def change_visit(
    visit: Visit,
    to: VisitStatus,
    at: datetime,
    by: str,
    *,
    minutes_spent: int | None = None,
    parts: Sequence[PartUsed] = (),
    installed_product: str | None = None,
    notes: str | None = None,
) -> Visit:
    """Move the visit on; the same status again is no change. Completing records the time spent (required),
    the parts used, the installed product and notes. Raises FieldRefused for a move that is not allowed."""
    if to == visit.status:
        return visit
    if to not in NEXT_VISIT_STATUSES[visit.status]:
        allowed = ", ".join(NEXT_VISIT_STATUSES[visit.status]) or "nothing: it is final"
        raise FieldRefused(f"a {visit.status} visit cannot become {to}; next may come {allowed}")
    changed = replace(visit, history=(*visit.history, VisitChange(at, by, to)))
    if to != "completed":
        return changed
    if minutes_spent is None or minutes_spent < 0:
        raise FieldRefused("completing a visit records the minutes spent (0 or more)")
    return replace(
        changed,
        minutes_spent=minutes_spent,
        parts=tuple(parts),
        installed_product=installed_product or visit.installed_product,
        notes=notes,
    )
