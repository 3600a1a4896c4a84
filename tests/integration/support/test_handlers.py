"""Support's handlers on the real database: stored once, emitted once through the outbox, conflicts refused."""

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crm_shared.consumer import Rejected
from crm_shared.events import (
    ComplaintFiled,
    ComplaintFiledEvent,
    SurveyAnswered,
    SurveyAnsweredEvent,
    parse_event,
)
from crm_shared.store import PROCESSED, AlreadyApplied, Store, outbox_records
from crm_shared.topics import Topic
from crm_support import domain, handlers, repository

NewStore = Callable[..., Awaitable[Store]]
T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)


def customer_id() -> str:
    return f"C-{uuid.uuid4().hex[:8]}"


def complaint_filed(customer: str, **changes: Any) -> ComplaintFiledEvent:
    data = ComplaintFiled(
        complaint_id=f"T-{customer}",
        customer_id=customer,
        dimension="service",
        severity="medium",
        summary="The engineer did not come.",
    )
    return ComplaintFiledEvent.create(data.model_copy(update=changes), source="/channels/call-centre", time=T0)


def survey_answered(customer: str, **changes: Any) -> SurveyAnsweredEvent:
    data = SurveyAnswered(survey_id=f"S-{customer}", customer_id=customer, kind="nps", score=3)
    return SurveyAnsweredEvent.create(data.model_copy(update=changes), source="/channels/survey", time=T0)


# The facts support republishes; the events of the tickets they open are the tickets tests' concern.
FACTS = {"$in": ["crm.complaint.filed.v1", "crm.survey.answered.v1"]}


async def outbox(store: Store) -> list[dict[str, Any]]:
    return await outbox_records(store.db, {"type": FACTS})


async def test_a_complaint_is_stored_and_emitted_once(new_store: NewStore) -> None:
    store = await new_store("support", repository.INDEXES)
    customer = customer_id()
    event = complaint_filed(customer)

    complaint = await handlers.file_complaint(store, event, domain.SlaTargets(medium=timedelta(hours=10)))

    assert complaint.sla_due_at == T0 + timedelta(hours=10)
    doc = await store.db[repository.COMPLAINTS].find_one({"_id": f"T-{customer}"})
    assert doc is not None
    assert repository.complaint_from_document(doc) == complaint
    assert (doc["customer_id"], doc["filed_at"], doc["status"]) == (customer, T0, "open")
    [record] = await outbox(store)
    assert (record["topic"], record["key"], record["type"]) == (
        Topic.SUPPORT_EVENTS,
        customer,
        "crm.complaint.filed.v1",
    )
    emitted = parse_event(record["value"])
    assert emitted.type == "crm.complaint.filed.v1" and emitted.source == "/crm/support"
    assert emitted.causationid == event.id and emitted.correlationid == event.id
    assert emitted.time == event.time and emitted.subject == customer
    assert emitted.data == event.data

    with pytest.raises(AlreadyApplied):
        await handlers.file_complaint(store, event)
    assert len(await outbox(store)) == 1
    # The complaint opened its ticket, once.
    [opened] = await outbox_records(store.db, {"type": "crm.ticket.opened.v1"})
    assert parse_event(opened["value"]).data.ticket_id == f"T-{customer}"


async def test_the_same_complaint_under_a_new_event_id_changes_nothing(new_store: NewStore) -> None:
    store = await new_store("support", repository.INDEXES)
    customer = customer_id()
    first = await handlers.file_complaint(store, complaint_filed(customer))

    again = complaint_filed(customer)
    assert await handlers.file_complaint(store, again) == first
    assert len(await outbox(store)) == 1
    assert await store.db[PROCESSED].find_one({"_id": f"support:{again.id}"}) is not None


@pytest.mark.parametrize(
    ("changes", "reason"),
    [({"severity": "high"}, "was already filed with different content"), ({"customer_id": "C-other"}, "belongs to")],
)
async def test_a_conflicting_complaint_is_rejected_and_writes_nothing(
    new_store: NewStore, changes: dict[str, Any], reason: str
) -> None:
    store = await new_store("support", repository.INDEXES)
    customer = customer_id()
    await handlers.file_complaint(store, complaint_filed(customer))
    conflicting = complaint_filed(customer, **changes)
    conflicting = conflicting.model_copy(update={"subject": conflicting.data.customer_id})

    with pytest.raises(Rejected, match=reason):
        await handlers.apply_ticket_event(store, conflicting)

    assert len(await outbox(store)) == 1
    assert await store.db[PROCESSED].find_one({"_id": f"support:{conflicting.id}"}) is None
    doc = await store.db[repository.COMPLAINTS].find_one({"_id": f"T-{customer}"})
    assert doc is not None and (doc["customer_id"], doc["filed"]["severity"]) == (customer, "medium")


async def test_a_survey_answer_is_stored_once_and_a_different_one_rejected(new_store: NewStore) -> None:
    store = await new_store("support", repository.INDEXES)
    customer = customer_id()
    event = survey_answered(customer)

    answer = await handlers.apply_ticket_event(store, event)

    assert isinstance(answer, domain.SurveyAnswer) and answer.answered_at == T0
    doc = await store.db[repository.SURVEYS].find_one({"_id": f"S-{customer}"})
    assert doc is not None and repository.survey_from_document(doc) == answer
    [record] = await outbox(store)
    emitted = parse_event(record["value"])
    assert (record["topic"], record["key"]) == (Topic.SUPPORT_EVENTS, customer)
    assert (emitted.type, emitted.causationid, emitted.time) == ("crm.survey.answered.v1", event.id, T0)
    assert emitted.data.score == 3

    with pytest.raises(AlreadyApplied):
        await handlers.apply_ticket_event(store, event)
    with pytest.raises(Rejected, match=f"survey S-{customer} was already answered with different content"):
        await handlers.apply_ticket_event(store, survey_answered(customer, score=9))
    assert len(await outbox(store)) == 1
    assert (await store.db[repository.SURVEYS].find_one({"_id": f"S-{customer}"}) or {})["answered"]["score"] == 3
