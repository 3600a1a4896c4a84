"""SLA policies as data: which tickets a policy takes, and its targets for first response, next response and
resolution. Pure: no I/O.

Policies are tried in `order` (lower first, then by id); the first whose every condition holds applies. A
condition left empty holds for any ticket: a policy with no conditions at all is the catch-all. Each target is
a duration counted in business hours (the policy's calendar) or in calendar hours.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal, get_args

TimerKind = Literal["first_response", "next_response", "resolution"]
TIMER_KINDS: tuple[TimerKind, ...] = get_args(TimerKind)
Priority = Literal["low", "normal", "high", "urgent"]
Category = Literal["product", "service", "people"]
"""The three satisfaction dimensions a ticket is about."""


@dataclass(frozen=True)
class Target:
    """How long a timer may run: `duration` of business time on the policy's calendar, or of calendar time."""

    duration: timedelta
    business_hours: bool = True

    def __post_init__(self) -> None:
        if self.duration <= timedelta(0):
            raise ValueError("a target is a positive duration")


@dataclass(frozen=True)
class Conditions:
    """Which tickets a policy takes; an empty set holds for any value (and for a ticket without one)."""

    value_tiers: frozenset[str] = frozenset()
    priorities: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()
    contract: bool | None = None
    """True: only tickets under a service contract; False: only those without; None: either."""

    def hold_for(self, ticket: TicketFacts) -> bool:
        def holds(wanted: frozenset[str], value: str | None) -> bool:
            return not wanted or value in wanted

        return (
            holds(self.value_tiers, ticket.value_tier)
            and holds(self.priorities, ticket.priority)
            and holds(self.categories, ticket.category)
            and holds(self.channels, ticket.channel)
            and (self.contract is None or self.contract == (ticket.contract_id is not None))
        )


@dataclass(frozen=True)
class TicketFacts:
    """What a policy looks at."""

    priority: str
    category: str | None = None
    channel: str | None = None
    value_tier: str | None = None
    contract_id: str | None = None


@dataclass(frozen=True)
class SlaPolicy:
    policy_id: str
    name: str
    order: int
    targets: Mapping[TimerKind, Target]
    conditions: Conditions = field(default_factory=Conditions)
    calendar_id: str | None = None
    """The business-hours calendar its business-hour targets count on; None: the service's default calendar."""
    warn_before: timedelta = timedelta(hours=1)
    """How long before a breach the warning goes out (a target shorter than this is warned at its start)."""
    escalate_to_group: str | None = None
    """On a breach the ticket moves to this group (its assignee keeps it); None: it stays where it is."""
    escalate_to: str | None = None
    """On a breach this manager is named in the escalation (a user id); None: nobody in particular."""

    def __post_init__(self) -> None:
        unknown = set(self.targets) - set(TIMER_KINDS)
        if unknown:
            raise ValueError(f"unknown targets {sorted(unknown)}; the targets are {', '.join(TIMER_KINDS)}")
        if not self.targets:
            raise ValueError("a policy needs at least one target")
        if self.warn_before < timedelta(0):
            raise ValueError("warn_before is not negative")


def first_matching(policies: Iterable[SlaPolicy], ticket: TicketFacts) -> SlaPolicy | None:
    """The policy in force for the ticket: the first by (order, id) whose conditions hold; None when none does."""
    for policy in sorted(policies, key=lambda p: (p.order, p.policy_id)):
        if policy.conditions.hold_for(ticket):
            return policy
    return None
