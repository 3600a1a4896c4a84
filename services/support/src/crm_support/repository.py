"""The support database: `complaints` and `surveys`, one document per business id.

A complaint document carries `group` and `assignee_id` at its top level, the fields row-level access filters on;
documents written before complaints had them read as unrouted and unassigned.
"""

from collections.abc import Iterable, Mapping
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel

from crm_shared.events import ComplaintFiled, SurveyAnswered
from crm_shared.store import IndexSpec, UnitOfWork
from crm_support.domain import ERASED_TEXT, Complaint, SurveyAnswer

COMPLAINTS = "complaints"
SURVEYS = "surveys"

INDEXES = (
    IndexSpec(
        COMPLAINTS,
        IndexModel([("customer_id", ASCENDING), ("filed_at", DESCENDING), ("_id", DESCENDING)], name="by_customer"),
    ),
    IndexSpec(
        SURVEYS,
        IndexModel([("customer_id", ASCENDING), ("answered_at", DESCENDING), ("_id", DESCENDING)], name="by_customer"),
    ),
    IndexSpec(SURVEYS, IndexModel([("answered_at", ASCENDING)], name="by_time")),
)


def complaint_to_document(complaint: Complaint) -> dict[str, Any]:
    return {
        "_id": complaint.complaint_id,
        "customer_id": complaint.customer_id,
        "filed": complaint.filed.model_dump(mode="python"),
        "filed_at": complaint.filed_at,
        "sla_due_at": complaint.sla_due_at,
        "status": complaint.status,
        "group": complaint.group,
        "assignee_id": complaint.assignee_id,
        "sla_policy_id": complaint.sla_policy_id,
    }


def complaint_from_document(doc: dict[str, Any]) -> Complaint:
    return Complaint(
        # A complaint kept after its customer's erasure has no summary left (crm_support.identity).
        filed=ComplaintFiled.model_validate({"summary": ERASED_TEXT, **doc["filed"]}),
        filed_at=doc["filed_at"],
        sla_due_at=doc["sla_due_at"],
        status=doc["status"],
        group=doc.get("group"),
        assignee_id=doc.get("assignee_id"),
        sla_policy_id=doc.get("sla_policy_id"),
    )


def survey_to_document(answer: SurveyAnswer) -> dict[str, Any]:
    return {
        "_id": answer.survey_id,
        "customer_id": answer.customer_id,
        "answered": answer.answered.model_dump(mode="python"),
        "answered_at": answer.answered_at,
        # Flat, for the satisfaction reports.
        "kind": answer.answered.kind,
        "score": answer.answered.score,
        "ticket_id": answer.answered.ticket_id,
        "agent_id": answer.agent_id,
        "category": answer.category,
        "value_tier": answer.value_tier,
    }


def survey_from_document(doc: dict[str, Any]) -> SurveyAnswer:
    return SurveyAnswer(
        answered=SurveyAnswered.model_validate(doc["answered"]),
        answered_at=doc["answered_at"],
        agent_id=doc.get("agent_id"),
        category=doc.get("category"),
        value_tier=doc.get("value_tier"),
    )


async def get_complaints(uow: UnitOfWork, complaint_ids: Iterable[str]) -> dict[str, Complaint]:
    """The stored complaints among `complaint_ids`, by id."""
    docs = await uow.find_ids(COMPLAINTS, complaint_ids)
    return {doc["_id"]: complaint_from_document(doc) for doc in docs}


async def insert_complaints(
    uow: UnitOfWork, complaints: Iterable[Complaint], origins: Mapping[str, Mapping[str, str]] | None = None
) -> None:
    """Insert the new complaints in one write (a complaint is filed once: never replaced); `origins` holds, by
    complaint id, the id a complaint filed under a merge's survivor named (`crm_shared.identity.origin_fields`)."""
    origins = origins or {}
    documents = [{**complaint_to_document(c), **origins.get(c.complaint_id, {})} for c in complaints]
    if documents:
        await uow.db[COMPLAINTS].insert_many(documents, session=uow.session)


async def get_surveys(uow: UnitOfWork, survey_ids: Iterable[str]) -> dict[str, SurveyAnswer]:
    """The stored survey answers among `survey_ids`, by id."""
    docs = await uow.find_ids(SURVEYS, survey_ids)
    return {doc["_id"]: survey_from_document(doc) for doc in docs}


async def insert_surveys(
    uow: UnitOfWork, answers: Iterable[SurveyAnswer], origins: Mapping[str, Mapping[str, str]] | None = None
) -> None:
    """Insert the new survey answers in one write (an answer is recorded once: never replaced); `origins` as for
    complaints, by survey id."""
    origins = origins or {}
    documents = [{**survey_to_document(a), **origins.get(a.survey_id, {})} for a in answers]
    if documents:
        await uow.db[SURVEYS].insert_many(documents, session=uow.session)
