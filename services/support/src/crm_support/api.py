"""REST API of support: the same payloads as the ingest topic, plus reads; complaints seen and assigned by group."""

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from crm_shared.api import (
    Accepted,
    Cursor,
    IdempotencyKey,
    IdInPath,
    Limit,
    Page,
    accept_event,
    command_event_id,
    keyset_page,
    record_once,
)
from crm_shared.events import (
    Channel,
    ComplaintFiled,
    ComplaintFiledEvent,
    Dimension,
    EntityId,
    SurveyAnswered,
    SurveyAnsweredEvent,
    TicketIngest,
    utc_now,
)
from crm_shared.problems import Problem
from crm_shared.security import Principal, UserId, check_event_type, requires
from crm_shared.service import StoreDep
from crm_shared.store import as_stored
from crm_support import domain, handlers, reports, repository

router = APIRouter(prefix="/v1", tags=["support"])


def _sla_targets(request: Request) -> domain.SlaTargets:
    return request.app.state.sla_targets  # type: ignore[no-any-return]


SlaTargetsDep = Annotated[domain.SlaTargets, Depends(_sla_targets)]
EventWriter = Annotated[Principal, requires("events:write")]
TicketReader = Annotated[Principal, requires("tickets:read")]
TicketWriter = Annotated[Principal, requires("tickets:write")]


def _command_time() -> datetime:
    # MongoDB keeps milliseconds: so what a POST answers is what a later GET reads.
    return as_stored(utc_now())


class ComplaintView(BaseModel):
    complaint_id: str
    customer_id: str
    dimension: Dimension
    severity: domain.Severity
    summary: str
    channel: Channel
    order_id: str | None
    status: domain.ComplaintStatus
    group: str | None = Field(description="The support group (queue) working the complaint; null for none.")
    assignee_id: str | None = Field(description="The agent assigned (their token subject); null for none.")
    filed_at: datetime
    sla_due_at: datetime = Field(description="When the first response is due: by the SLA policy, else by severity.")
    sla_policy_id: str | None = Field(
        description="The SLA policy that set the due time (GET /v1/sla/policies/{id}); null: the severity's target."
    )
    sla_state: domain.SlaState = Field(description="'breached' once the response target has passed.")

    @classmethod
    def of(cls, complaint: domain.Complaint) -> "ComplaintView":
        filed = complaint.filed
        return cls(
            complaint_id=filed.complaint_id,
            customer_id=filed.customer_id,
            dimension=filed.dimension,
            severity=filed.severity,
            summary=filed.summary,
            channel=filed.channel,
            order_id=filed.order_id,
            status=complaint.status,
            group=complaint.group,
            assignee_id=complaint.assignee_id,
            filed_at=complaint.filed_at,
            sla_due_at=complaint.sla_due_at,
            sla_policy_id=complaint.sla_policy_id,
            sla_state=domain.sla_state(complaint, utc_now()),
        )


class SurveyView(BaseModel):
    survey_id: str
    customer_id: str
    kind: str
    score: int
    dimension: Dimension
    comment: str | None
    answered_at: datetime

    @classmethod
    def of(cls, answer: domain.SurveyAnswer) -> "SurveyView":
        data = answer.answered
        return cls(
            survey_id=data.survey_id,
            customer_id=data.customer_id,
            kind=data.kind,
            score=data.score,
            dimension=data.dimension,
            comment=data.comment,
            answered_at=answer.answered_at,
        )


COMPLAINT_EXAMPLE = {
    "complaint_id": "T-77",
    "customer_id": "C-2001",
    "dimension": "service",
    "severity": "high",
    "summary": "The engineer did not come.",
}
SURVEY_EXAMPLE = {"survey_id": "S-12", "customer_id": "C-2001", "kind": "csat", "score": 2, "dimension": "service"}
CREATED_OR_SAME: dict[int | str, dict[str, Any]] = {
    200: {"description": "Already recorded with this content"},
    409: {"description": "Conflict"},
}
NO_SUCH_COMPLAINT: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such complaint, or not one the caller sees"}
}


def complaint_not_found(complaint_id: str) -> Problem:
    """The same answer for a complaint that is missing and one the caller may not see."""
    return Problem(404, "Complaint not found", f"no complaint {complaint_id}")


@router.post(
    "/complaints",
    response_model=ComplaintView,
    status_code=status.HTTP_201_CREATED,
    summary="File a complaint (same payload as crm.complaint.filed.v1 data)",
    dependencies=[requires("tickets:write")],
    responses=CREATED_OR_SAME,
)
async def file_complaint(
    store: StoreDep,
    targets: SlaTargetsDep,
    response: Response,
    complaint: Annotated[ComplaintFiled, Body(examples=[COMPLAINT_EXAMPLE])],
    idempotency_key: IdempotencyKey = None,
) -> ComplaintView:
    event = ComplaintFiledEvent.create(
        complaint,
        source="/crm/support/api",
        id=command_event_id("support/complaints", idempotency_key),
        time=_command_time(),
    )

    async def filing() -> tuple[domain.Complaint, bool]:
        filed = await handlers.file_complaint(store, event, targets)
        return filed, filed.filed_at == event.time

    async def same_complaint() -> domain.Complaint | None:
        existing = await handlers.find_complaint(store, complaint.complaint_id, seen_by=None)
        return existing if existing is not None and existing.filed == complaint else None

    return ComplaintView.of(
        await record_once(
            response,
            what="complaint",
            conflict="Complaint conflict",
            recording=filing(),
            existing_if_same=same_complaint,
        )
    )


@router.post(
    "/surveys",
    response_model=SurveyView,
    status_code=status.HTTP_201_CREATED,
    summary="Record a survey answer (same payload as crm.survey.answered.v1 data)",
    dependencies=[requires("surveys:write")],
    responses=CREATED_OR_SAME,
)
async def record_survey_answer(
    store: StoreDep,
    response: Response,
    answer: Annotated[SurveyAnswered, Body(examples=[SURVEY_EXAMPLE])],
    idempotency_key: IdempotencyKey = None,
) -> SurveyView:
    event = SurveyAnsweredEvent.create(
        answer,
        source="/crm/support/api",
        id=command_event_id("support/surveys", idempotency_key),
        time=_command_time(),
    )

    async def recording() -> tuple[domain.SurveyAnswer, bool]:
        recorded = await handlers.record_survey_answer(store, event)
        return recorded, recorded.answered_at == event.time

    async def same_answer() -> domain.SurveyAnswer | None:
        existing = await handlers.find_survey(store, answer.survey_id)
        return existing if existing is not None and existing.answered == answer else None

    return SurveyView.of(
        await record_once(
            response,
            what="survey answer",
            conflict="Survey conflict",
            recording=recording(),
            existing_if_same=same_answer,
        )
    )


@router.post(
    "/events",
    response_model=Accepted,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Submit a ticket CloudEvent, exactly as on crm.ingest.tickets",
    description="An API key limited to some event types is refused (403) the others.",
    responses={409: {"description": "The event contradicts a known complaint or survey answer"}},
)
async def submit_event(
    request: Request,
    principal: EventWriter,
    store: StoreDep,
    targets: SlaTargetsDep,
    event: Annotated[TicketIngest, Body()],
) -> Accepted:
    check_event_type(request, principal, event.type)
    return await accept_event(event.id, handlers.apply_ticket_event(store, event, targets))


@router.get(
    "/complaints/{complaint_id}",
    response_model=ComplaintView,
    summary="One complaint, its SLA due time and whether it is breached",
    responses=NO_SUCH_COMPLAINT,
)
async def get_complaint(principal: TicketReader, store: StoreDep, complaint_id: IdInPath) -> ComplaintView:
    complaint = await handlers.find_complaint(store, complaint_id, seen_by=principal)
    if complaint is None:
        raise complaint_not_found(complaint_id)
    return ComplaintView.of(complaint)


class Assignment(BaseModel):
    """Who works the complaint. Both fields are stated: null routes it to no group, or leaves it unassigned."""

    model_config = ConfigDict(extra="forbid", strict=True)

    group: EntityId | None = Field(description="The support group (queue); null for none.")
    assignee_id: UserId | None = Field(description="The agent (their token subject); null for none.")


ASSIGNMENT_EXAMPLE = {"group": "billing", "assignee_id": "agent-7"}


@router.put(
    "/complaints/{complaint_id}/assignment",
    response_model=ComplaintView,
    summary="Route a complaint to a group and assign it to an agent",
    description="Only a complaint the caller sees can be assigned; the answer is the complaint after it.",
    responses=NO_SUCH_COMPLAINT,
)
async def assign_complaint(
    principal: TicketWriter,
    store: StoreDep,
    complaint_id: IdInPath,
    assignment: Annotated[Assignment, Body(examples=[ASSIGNMENT_EXAMPLE])],
) -> ComplaintView:
    complaint = await handlers.assign_complaint(
        store, complaint_id, group=assignment.group, assignee_id=assignment.assignee_id, seen_by=principal
    )
    if complaint is None:
        raise complaint_not_found(complaint_id)
    return ComplaintView.of(complaint)


@router.get(
    "/customers/{customer_id}/complaints",
    response_model=Page[ComplaintView],
    summary="A customer's complaints the caller sees, newest first",
    description="An agent sees the complaints of their groups and those assigned to them or their team; an API "
    "key, `admin` or `records:all` sees every complaint.",
)
async def customer_complaints(
    principal: TicketReader, store: StoreDep, customer_id: IdInPath, limit: Limit = 50, cursor: Cursor = None
) -> Page[ComplaintView]:
    docs, next_cursor = await keyset_page(
        store.db[repository.COMPLAINTS],
        handlers.complaints_seen_by(principal, {"customer_id": customer_id}),
        time_field="filed_at",
        limit=limit,
        cursor=cursor,
        newest_first=True,
    )
    items = [ComplaintView.of(repository.complaint_from_document(d)) for d in docs]
    return Page[ComplaintView](items=items, next_cursor=next_cursor)


@router.get(
    "/customers/{customer_id}/surveys",
    response_model=Page[SurveyView],
    summary="A customer's survey answers, newest first",
    dependencies=[requires("surveys:read")],
)
async def customer_surveys(
    store: StoreDep, customer_id: IdInPath, limit: Limit = 50, cursor: Cursor = None
) -> Page[SurveyView]:
    docs, next_cursor = await keyset_page(
        store.db[repository.SURVEYS],
        {"customer_id": customer_id},
        time_field="answered_at",
        limit=limit,
        cursor=cursor,
        newest_first=True,
    )
    items = [SurveyView.of(repository.survey_from_document(d)) for d in docs]
    return Page[SurveyView](items=items, next_cursor=next_cursor)


class SatisfactionRow(BaseModel):
    key: str | None = Field(description="The month (YYYY-MM), category, agent or value tier; null: answers without it.")
    csat_answers: int
    csat_percent: float | None = Field(description="Share of CSAT answers of 4 or 5, in percent; null without any.")
    nps_answers: int
    nps: float | None = Field(description="Promoters (9-10) minus detractors (0-6), in percent; null without any.")


REPORT_DAYS = 366


@router.get(
    "/reports/satisfaction",
    response_model=list[SatisfactionRow],
    summary="CSAT and NPS of the answers in a range, by month, category, agent or value tier",
    dependencies=[requires("surveys:read")],
    responses={422: {"description": "An invalid range: to before from, longer than 366 days, no offset"}},
)
async def satisfaction_report(
    store: StoreDep,
    by: Annotated[reports.Grouping, Query(description="How to group the answers.")] = "period",
    start: Annotated[datetime | None, Query(alias="from", description="Inclusive; 90 days ago by default.")] = None,
    end: Annotated[datetime | None, Query(alias="to", description="Exclusive; now by default.")] = None,
) -> list[SatisfactionRow]:
    for given in (start, end):
        if given is not None and given.tzinfo is None:
            raise Problem(422, "Invalid range", "from and to are RFC 3339 times with an offset (e.g. Z)")
    try:
        finish = end or utc_now()
        begin = start or finish - timedelta(days=90)
    except OverflowError as exc:
        raise Problem(422, "Invalid range", "from and to are times between the years 1 and 9999") from exc
    if finish <= begin or finish - begin > timedelta(days=REPORT_DAYS):
        raise Problem(422, "Invalid range", f"to must be after from, at most {REPORT_DAYS} days")
    projection = {f: 1 for f in ("kind", "score", "answered_at", "agent_id", "category", "value_tier")}
    cursor = store.db[repository.SURVEYS].find({"answered_at": {"$gte": begin, "$lt": finish}}, projection)
    rows = reports.satisfaction([doc async for doc in cursor if "kind" in doc], by)
    return [SatisfactionRow(**row.__dict__) for row in rows]
