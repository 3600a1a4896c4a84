"""Use cases of support: file a complaint, record a survey answer, from the ingest topic or the API, exactly once."""

from typing import Any

from crm_shared.consumer import Rejected
from crm_shared.events import (
    CloudEvent,
    ComplaintFiled,
    ComplaintFiledEvent,
    SurveyAnswered,
    SurveyAnsweredEvent,
    derived_event_id,
)
from crm_shared.store import Store, UnitOfWork
from crm_shared.topics import Topic
from crm_support import domain, repository

SOURCE = "/crm/support"


def _emit_accepted(uow: UnitOfWork, outgoing: type[CloudEvent[Any]], event: CloudEvent[Any]) -> None:
    # The business time stays the channel's; the id is derived so a retry emits the same event.
    uow.emit(
        outgoing.create(event.data, source=SOURCE, id=derived_event_id(SOURCE, event.id), time=event.time, cause=event),
        Topic.SUPPORT_EVENTS,
    )


async def file_complaint(
    store: Store, event: CloudEvent[ComplaintFiled], targets: domain.SlaTargets = domain.DEFAULT_SLA
) -> domain.Complaint:
    """Store the complaint and publish it on crm.support.events; a redelivered event changes nothing."""

    async def work(uow: UnitOfWork) -> domain.Complaint:
        before = await repository.get_complaint(uow, event.data.complaint_id)
        try:
            after = domain.file_complaint(before, event.data, event.time, targets)
        except domain.ComplaintRejected as exc:
            raise Rejected(str(exc)) from exc
        if after == before:
            return after
        await repository.insert_complaint(uow, after)
        _emit_accepted(uow, ComplaintFiledEvent, event)
        return after

    return await store.transaction(work, applies=f"support:{event.id}")


async def record_survey_answer(store: Store, event: CloudEvent[SurveyAnswered]) -> domain.SurveyAnswer:
    """Store the answer and publish it on crm.support.events; a redelivered event changes nothing."""

    async def work(uow: UnitOfWork) -> domain.SurveyAnswer:
        before = await repository.get_survey(uow, event.data.survey_id)
        try:
            after = domain.record_survey_answer(before, event.data, event.time)
        except domain.ComplaintRejected as exc:
            raise Rejected(str(exc)) from exc
        if after == before:
            return after
        await repository.insert_survey(uow, after)
        _emit_accepted(uow, SurveyAnsweredEvent, event)
        return after

    return await store.transaction(work, applies=f"support:{event.id}")


async def apply_ticket_event(
    store: Store, event: CloudEvent[Any], targets: domain.SlaTargets = domain.DEFAULT_SLA
) -> domain.Complaint | domain.SurveyAnswer:
    """Any event of crm.ingest.tickets."""
    if isinstance(event.data, ComplaintFiled):
        return await file_complaint(store, event, targets)
    if isinstance(event.data, SurveyAnswered):
        return await record_survey_answer(store, event)
    raise Rejected(f"support does not handle events of type {event.type}")


async def find_complaint(store: Store, complaint_id: str) -> domain.Complaint | None:
    doc = await store.db[repository.COMPLAINTS].find_one({"_id": complaint_id})
    return repository.complaint_from_document(doc) if doc else None


async def find_survey(store: Store, survey_id: str) -> domain.SurveyAnswer | None:
    doc = await store.db[repository.SURVEYS].find_one({"_id": survey_id})
    return repository.survey_from_document(doc) if doc else None
