"""How engaged a prospect is, from the interactions the customer service logs. Pure: no I/O, no framework.

Each interaction kind weighs a number of points; the engagement score counts the interactions in the
window that ends at an interaction (by the events' own times) and reaches back `window`, both ends
included. The *current* score is the window ending at the customer's latest interaction. A customer
*qualifies* when some window reached the threshold: the earliest such window gives the qualification
time. Interactions are facts keyed by their id, so a duplicate counts once, and the same interactions
in any order give the same score and the same qualification.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from crm_shared.events import derived_event_id

InteractionKind = Literal["call", "visit", "email", "web", "chat", "meeting"]

# A meeting or a visit takes the customer's time and intent; a web session or an email, little.
DEFAULT_WEIGHTS: Mapping[InteractionKind, int] = {"meeting": 3, "visit": 3, "call": 2, "chat": 1, "email": 1, "web": 1}

ENGAGEMENT_SEGMENT = "engagement"
"""The `segment_id` of the leads qualified by engagement rather than by a segment's rules."""

_REASON_LIMIT = 500


@dataclass(frozen=True)
class Interaction:
    interaction_id: str
    kind: InteractionKind
    at: datetime


@dataclass(frozen=True)
class EngagementRule:
    """From the settings: what each kind weighs, the score that qualifies, and how far back a window reaches."""

    weights: Mapping[InteractionKind, int] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    threshold: int = 5
    window: timedelta = timedelta(days=30)

    def weight(self, kind: InteractionKind) -> int:
        return self.weights.get(kind, 0)


@dataclass(frozen=True)
class Engagement:
    """The score of one window and the interactions it counted, oldest first."""

    score: int
    counted: tuple[Interaction, ...]
    ends_at: datetime | None

    def reached(self, rule: EngagementRule) -> bool:
        return self.score >= rule.threshold


NO_ENGAGEMENT = Engagement(0, (), None)


def _facts(interactions: Iterable[Interaction]) -> list[Interaction]:
    """One fact per interaction id, oldest first; of two facts with one id, the same one is kept in any order."""
    by_id: dict[str, Interaction] = {}
    for i in interactions:
        kept = by_id.get(i.interaction_id)
        if kept is None or (i.at, i.kind) < (kept.at, kept.kind):
            by_id[i.interaction_id] = i
    return sorted(by_id.values(), key=lambda i: (i.at, i.interaction_id))


def _window(facts: list[Interaction], ends_at: datetime, rule: EngagementRule) -> Engagement:
    counted = tuple(i for i in facts if ends_at - rule.window <= i.at <= ends_at)
    return Engagement(sum(rule.weight(i.kind) for i in counted), counted, ends_at)


def current_engagement(interactions: Iterable[Interaction], rule: EngagementRule) -> Engagement:
    """The window that ends at the latest interaction."""
    facts = _facts(interactions)
    return _window(facts, facts[-1].at, rule) if facts else NO_ENGAGEMENT


def first_qualifying(interactions: Iterable[Interaction], rule: EngagementRule) -> Engagement | None:
    """The earliest window that reached the threshold, or None."""
    facts = _facts(interactions)
    for ends_at in sorted({i.at for i in facts}):
        window = _window(facts, ends_at, rule)
        if window.reached(rule):
            return window
    return None


def lead_reason(engagement: Engagement, rule: EngagementRule) -> str:
    """For the sales person: the score and the interactions behind it, within the event's 500 characters."""
    days = rule.window.days
    head = (
        f"Engagement score {engagement.score} reached {rule.threshold} within {days} days, "
        f"from {len(engagement.counted)} interactions:"
    )
    parts = [f"{i.kind} {i.interaction_id} on {i.at:%Y-%m-%d} (+{rule.weight(i.kind)})" for i in engagement.counted]
    for shown in range(len(parts), -1, -1):
        rest = len(parts) - shown
        listed = [", ".join(parts[:shown])] if shown else []
        reason = " ".join([head, *listed, *([f"and {rest} more"] if rest else [])])
        if len(reason) <= _REASON_LIMIT:
            return reason
    return head[:_REASON_LIMIT]


def lead_id(customer_id: str) -> str:
    """One engagement lead per customer, ever; apart from the ids of segment hand-overs."""
    return derived_event_id("/crm/marketing/engagement-leads", customer_id)


def is_prospect(lifecycle_stage: str | None, has_ordered: bool) -> bool:
    """Still a prospect: no order known to marketing and scoring says prospect, or says nothing yet."""
    return not has_ordered and lifecycle_stage in (None, "prospect")
