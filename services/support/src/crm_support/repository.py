"""The support database: `complaints` and `surveys`, one document per business id."""

from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel

from crm_shared.events import ComplaintFiled, SurveyAnswered
from crm_shared.store import IndexSpec, UnitOfWork
from crm_support.domain import Complaint, SurveyAnswer

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
)


def complaint_to_document(complaint: Complaint) -> dict[str, Any]:
    return {
        "_id": complaint.complaint_id,
        "customer_id": complaint.customer_id,
        "filed": complaint.filed.model_dump(mode="python"),
        "filed_at": complaint.filed_at,
        "sla_due_at": complaint.sla_due_at,
        "status": complaint.status,
    }


def complaint_from_document(doc: dict[str, Any]) -> Complaint:
    return Complaint(
        filed=ComplaintFiled.model_validate(doc["filed"]),
        filed_at=doc["filed_at"],
        sla_due_at=doc["sla_due_at"],
        status=doc["status"],
    )


def survey_to_document(answer: SurveyAnswer) -> dict[str, Any]:
    return {
        "_id": answer.survey_id,
        "customer_id": answer.customer_id,
        "answered": answer.answered.model_dump(mode="python"),
        "answered_at": answer.answered_at,
    }


def survey_from_document(doc: dict[str, Any]) -> SurveyAnswer:
    return SurveyAnswer(answered=SurveyAnswered.model_validate(doc["answered"]), answered_at=doc["answered_at"])


async def get_complaint(uow: UnitOfWork, complaint_id: str) -> Complaint | None:
    doc = await uow.db[COMPLAINTS].find_one({"_id": complaint_id}, session=uow.session)
    return complaint_from_document(doc) if doc else None


async def insert_complaint(uow: UnitOfWork, complaint: Complaint) -> None:
    await uow.db[COMPLAINTS].insert_one(complaint_to_document(complaint), session=uow.session)


async def get_survey(uow: UnitOfWork, survey_id: str) -> SurveyAnswer | None:
    doc = await uow.db[SURVEYS].find_one({"_id": survey_id}, session=uow.session)
    return survey_from_document(doc) if doc else None


async def insert_survey(uow: UnitOfWork, answer: SurveyAnswer) -> None:
    await uow.db[SURVEYS].insert_one(survey_to_document(answer), session=uow.session)
