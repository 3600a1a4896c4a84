"""Complaints with their SLA, and survey answers, as support has seen them. Pure: no I/O, no framework.

A complaint is open from the time the channel filed it until it is resolved; resolution and
escalation come with tickets, so today every complaint stays "open". Its response is due by the first
SLA policy that matches it (crm_support.sla: value tier, priority, category, channel), else by the target
of its severity. A complaint or survey answer is filed once: the same fact again changes
nothing, a different fact under the same id is refused.

A complaint is worked by a group (the queue the channel routed it to) and, once assigned, by an agent; both
can change after filing, while the filed fact stays as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from crm_shared.events import ComplaintFiled, SurveyAnswered

Severity = Literal["low", "medium", "high"]
ComplaintStatus = Literal["open"]
SlaState = Literal["within", "breached"]


class ComplaintRejected(Exception):
    """The fact contradicts what support already knows about the complaint or survey answer."""


@dataclass(frozen=True)
class SlaTargets:
    """How long support has to respond, by severity."""

    high: timedelta = timedelta(hours=4)
    medium: timedelta = timedelta(hours=24)
    low: timedelta = timedelta(hours=72)

    def for_severity(self, severity: Severity) -> timedelta:
        return {"high": self.high, "medium": self.medium, "low": self.low}[severity]


DEFAULT_SLA = SlaTargets()

ERASED_TEXT = "(erased)"
"""What a text removed on its customer's erasure reads as: a complaint's summary, a ticket's subject or post."""


@dataclass(frozen=True)
class Complaint:
    filed: ComplaintFiled
    filed_at: datetime
    sla_due_at: datetime
    status: ComplaintStatus = "open"
    group: str | None = None
    assignee_id: str | None = None
    sla_policy_id: str | None = None
    """The SLA policy that set `sla_due_at`; None when none matched and the severity's target did."""

    @property
    def complaint_id(self) -> str:
        return self.filed.complaint_id

    @property
    def customer_id(self) -> str:
        return self.filed.customer_id


@dataclass(frozen=True)
class SurveyAnswer:
    answered: SurveyAnswered
    answered_at: datetime
    agent_id: str | None = None
    """The agent it is about: the answer's, else the assignee of its ticket when it was answered."""
    category: str | None = None
    """Its ticket's category; the answer's dimension without a ticket."""
    value_tier: str | None = None
    """The customer's value tier when it was answered."""

    @property
    def survey_id(self) -> str:
        return self.answered.survey_id

    @property
    def customer_id(self) -> str:
        return self.answered.customer_id


def _check_same_fact(
    subject: str, verb: str, known: ComplaintFiled | SurveyAnswered, fact: ComplaintFiled | SurveyAnswered
) -> None:
    if known.customer_id != fact.customer_id:
        raise ComplaintRejected(f"{subject} belongs to customer {known.customer_id}, not {fact.customer_id}")
    if known != fact:
        raise ComplaintRejected(f"{subject} was already {verb} with different content")


def file_complaint(
    complaint: Complaint | None,
    fact: ComplaintFiled,
    at: datetime,
    targets: SlaTargets = DEFAULT_SLA,
    *,
    policy: tuple[str, datetime] | None = None,
) -> Complaint:
    """Open the complaint, due by the first-response due time of the SLA `policy` that matched it (its id and
    that time), else by `at` plus the target of its severity. Filing it again as it was is a no-op."""
    if complaint is None:
        if policy is not None:
            policy_id, due = policy
            return Complaint(filed=fact, filed_at=at, sla_due_at=due, group=fact.group, sla_policy_id=policy_id)
        return Complaint(filed=fact, filed_at=at, sla_due_at=at + targets.for_severity(fact.severity), group=fact.group)
    _check_same_fact(f"complaint {complaint.complaint_id}", "filed", complaint.filed, fact)
    return complaint


def sla_state(complaint: Complaint, now: datetime) -> SlaState:
    """Breached once `now` is past the due time; answering exactly at the due time is still within."""
    return "breached" if now > complaint.sla_due_at else "within"


def record_survey_answer(
    answer: SurveyAnswer | None,
    fact: SurveyAnswered,
    at: datetime,
    *,
    ticket_assignee: str | None = None,
    ticket_category: str | None = None,
    value_tier: str | None = None,
) -> SurveyAnswer:
    """Keep the answer, linked to its agent, category and the customer's value tier for the reports. Recording
    the same answer again is a no-op."""
    if answer is None:
        return SurveyAnswer(
            answered=fact,
            answered_at=at,
            agent_id=fact.agent_id or ticket_assignee,
            category=ticket_category or fact.dimension,
            value_tier=value_tier,
        )
    _check_same_fact(f"survey {answer.survey_id}", "answered", answer.answered, fact)
    return answer
