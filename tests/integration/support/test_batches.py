"""Support's batch handler on the real database: one transaction per batch, the events applied in order as if
one after another, duplicates and rejections set aside per event; and the subscription on a real broker."""

import json
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from crm_shared.consumer import Rejected
from crm_shared.events import (
    CloudEvent,
    ComplaintFiled,
    ComplaintFiledEvent,
    OrderCancelled,
    OrderCancelledEvent,
    SurveyAnswered,
    SurveyAnsweredEvent,
    parse_event,
)
from crm_shared.store import DEADLETTERS, PROCESSED, AlreadyApplied, BatchOutcome, Store, outbox_records
from crm_shared.topics import Topic
from crm_support import domain, handlers, repository
from crm_support.app import create_service
from crm_support.settings import SupportSettings

from helpers import broker_of_its_own, eventually

NewStore = Callable[..., Awaitable[Store]]
T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)


def customer_id() -> str:
    return f"C-{uuid.uuid4().hex[:8]}"


def complaint_filed(customer: str, number: int = 1, at: datetime = T0, **changes: Any) -> ComplaintFiledEvent:
    data = ComplaintFiled(
        complaint_id=f"T-{customer}-{number}",
        customer_id=customer,
        dimension="service",
        severity="medium",
        summary="The engineer did not come.",
    )
    return ComplaintFiledEvent.create(data.model_copy(update=changes), source="/channels/call-centre", time=at)


def survey_answered(customer: str, number: int = 1, at: datetime = T0, **changes: Any) -> SurveyAnsweredEvent:
    data = SurveyAnswered(survey_id=f"S-{customer}-{number}", customer_id=customer, kind="nps", score=3)
    return SurveyAnsweredEvent.create(data.model_copy(update=changes), source="/channels/survey", time=at)


# The facts support republishes; the events of the tickets they open are the tickets tests' concern.
FACTS = {"$in": ["crm.complaint.filed.v1", "crm.survey.answered.v1"]}


async def outbox(store: Store, customer: str) -> list[dict[str, Any]]:
    return await outbox_records(store.db, {"key": customer, "type": FACTS})


async def markers(store: Store) -> set[str]:
    return {d["_id"] for d in await store.db[PROCESSED].find({}, {"_id": 1}).to_list(None)}


async def test_duplicates_in_the_batch_and_from_an_earlier_batch_change_nothing(new_store: NewStore) -> None:
    store = await new_store("support_batch", repository.INDEXES)
    customer = customer_id()
    earlier, first, second = complaint_filed(customer, 1), complaint_filed(customer, 2), survey_answered(customer)
    await handlers.apply_ticket_events(store, [earlier])

    outcome = await handlers.apply_ticket_events(store, [first, earlier, second, first])

    assert outcome.applied == [first.id, second.id]
    assert sorted(outcome.duplicates) == sorted([first.id, earlier.id])
    assert outcome.rejected == {}
    with pytest.raises(AlreadyApplied):
        outcome.result_of(earlier)
    assert isinstance(outcome.result_of(second), domain.SurveyAnswer)
    records = await outbox(store, customer)
    assert [parse_event(r["value"]).causationid for r in records] == [earlier.id, first.id, second.id]
    assert await markers(store) == {f"support:{e.id}" for e in (earlier, first, second)}
    assert await store.db[repository.COMPLAINTS].count_documents({"customer_id": customer}) == 2


async def test_a_rejection_among_good_events_applies_exactly_the_good_ones(new_store: NewStore) -> None:
    store = await new_store("support_batch", repository.INDEXES)
    customer = customer_id()
    await handlers.apply_ticket_events(store, [complaint_filed(customer, 1), survey_answered(customer, 1)])
    good: list[CloudEvent[Any]] = [
        complaint_filed(customer, 2),
        survey_answered(customer, 2),
        complaint_filed(customer, 3),
    ]
    contradicting = complaint_filed(customer, 1, severity="high")
    other_customer = complaint_filed(customer, 1, customer_id="C-other")
    other_answer = survey_answered(customer, 1, score=9)
    not_a_ticket = OrderCancelledEvent.create(
        OrderCancelled(order_id="O-1", customer_id=customer), source="/channels/shop", time=T0
    )
    batch: list[CloudEvent[Any]] = [
        good[0],
        contradicting,
        good[1],
        other_customer,
        other_answer,
        not_a_ticket,
        good[2],
    ]

    outcome = await handlers.apply_ticket_events(store, batch)

    assert outcome.applied == [e.id for e in good]
    assert {k: str(v) for k, v in outcome.rejected.items()} == {
        contradicting.id: f"complaint T-{customer}-1 was already filed with different content",
        other_customer.id: f"complaint T-{customer}-1 belongs to customer {customer}, not C-other",
        other_answer.id: f"survey S-{customer}-1 was already answered with different content",
        not_a_ticket.id: "support does not handle events of type crm.order.cancelled.v1",
    }
    # Nothing written for the rejected: no marker, no outbox record, the stored facts as they were.
    stored_markers = await markers(store)
    assert not {f"support:{e.id}" for e in batch if e not in good} & stored_markers
    assert [parse_event(r["value"]).causationid for r in (await outbox(store, customer))[2:]] == [e.id for e in good]
    doc = await store.db[repository.COMPLAINTS].find_one({"_id": f"T-{customer}-1"})
    assert doc is not None and (doc["customer_id"], doc["filed"]["severity"]) == (customer, "medium")
    survey = await store.db[repository.SURVEYS].find_one({"_id": f"S-{customer}-1"})
    assert survey is not None and survey["answered"]["score"] == 3


async def test_the_same_complaint_twice_in_a_batch_the_second_sees_the_first(new_store: NewStore) -> None:
    store = await new_store("support_batch", repository.INDEXES)
    customer = customer_id()
    first = complaint_filed(customer, 1, at=T0)
    same = complaint_filed(customer, 1, at=T0 + timedelta(hours=1))  # the same fact, another event id and time
    different = complaint_filed(customer, 1, severity="low")
    answer, same_answer, other_answer = (
        survey_answered(customer, 1, at=T0),
        survey_answered(customer, 1, at=T0 + timedelta(minutes=5)),
        survey_answered(customer, 1, score=10),
    )

    outcome = await handlers.apply_ticket_events(
        store, [first, answer, same, different, same_answer, other_answer], domain.SlaTargets(medium=timedelta(hours=2))
    )

    assert outcome.applied == [first.id, answer.id, same.id, same_answer.id]
    complaint = outcome.result_of(first)
    assert (complaint.filed_at, complaint.sla_due_at) == (T0, T0 + timedelta(hours=2))
    assert outcome.result_of(same) == complaint  # no change: the first filing stands
    assert outcome.result_of(same_answer) == outcome.result_of(answer)
    assert outcome.result_of(answer).answered_at == T0
    assert str(outcome.rejected[different.id]) == f"complaint T-{customer}-1 was already filed with different content"
    assert (
        str(outcome.rejected[other_answer.id]) == f"survey S-{customer}-1 was already answered with different content"
    )
    records = await outbox(store, customer)
    assert [(r["type"], parse_event(r["value"]).causationid) for r in records] == [
        ("crm.complaint.filed.v1", first.id),
        ("crm.survey.answered.v1", answer.id),
    ]
    doc = await store.db[repository.COMPLAINTS].find_one({"_id": f"T-{customer}-1"})
    assert doc is not None and repository.complaint_from_document(doc) == complaint
    assert await markers(store) == {f"support:{e.id}" for e in (first, answer, same, same_answer)}


def _comparable(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Outbox records without what depends on when they were written."""
    return [{k: v for k, v in r.items() if k not in ("created_at", "seq")} for r in records]


async def _state(store: Store) -> dict[str, Any]:
    return {
        "complaints": await store.db[repository.COMPLAINTS].find({}).sort("_id", 1).to_list(None),
        "surveys": await store.db[repository.SURVEYS].find({}).sort("_id", 1).to_list(None),
        "outbox": _comparable(await outbox_records(store.db)),
        "processed": sorted(await markers(store)),
    }


async def test_one_batch_gives_what_batches_of_one_give(new_store: NewStore) -> None:
    batched = await new_store("support_batch", repository.INDEXES)
    one_by_one = await new_store("support_batch", repository.INDEXES)
    a, b = customer_id(), customer_id()
    stored_before: list[CloudEvent[Any]] = [complaint_filed(a, 1), survey_answered(b, 1)]
    events: list[CloudEvent[Any]] = [
        complaint_filed(a, 2, at=T0 + timedelta(minutes=1)),
        survey_answered(a, 1, at=T0 + timedelta(minutes=2)),
        complaint_filed(a, 1, severity="high"),  # contradicts the stored one
        complaint_filed(b, 1, severity="high"),
        complaint_filed(a, 2, at=T0 + timedelta(minutes=3)),  # the same as earlier in the batch
        survey_answered(b, 1, score=8),  # contradicts the stored one
        complaint_filed(b, 1, severity="low"),  # contradicts the one earlier in the batch
        survey_answered(b, 2),
    ]
    events.insert(3, events[0])  # a redelivery inside the batch
    for store in (batched, one_by_one):
        await handlers.apply_ticket_events(store, stored_before)

    together = await handlers.apply_ticket_events(batched, events)
    alone = BatchOutcome()
    for event in events:
        alone.merge(await handlers.apply_ticket_events(one_by_one, [event]))

    assert together.applied == alone.applied and together.duplicates == alone.duplicates
    assert {k: str(v) for k, v in together.rejected.items()} == {k: str(v) for k, v in alone.rejected.items()}
    assert len(together.applied) == 5 and len(together.rejected) == 3
    assert together.results == alone.results
    assert await _state(batched) == await _state(one_by_one)


async def test_the_single_event_wrappers_answer_as_before(new_store: NewStore) -> None:
    store = await new_store("support_batch", repository.INDEXES)
    customer = customer_id()
    event = complaint_filed(customer)

    complaint = await handlers.file_complaint(store, event)
    assert await handlers.apply_ticket_event(store, complaint_filed(customer)) == complaint
    answer = await handlers.record_survey_answer(store, survey_answered(customer))
    assert answer.answered_at == T0

    with pytest.raises(AlreadyApplied):
        await handlers.file_complaint(store, event)
    with pytest.raises(Rejected, match="was already filed with different content"):
        await handlers.file_complaint(store, complaint_filed(customer, summary="Another summary."))


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A broker of this module's own, so no other consumer in the support group takes its partitions."""
    with broker_of_its_own(tmp_path_factory.mktemp("support-batch-broker")) as broker:
        yield broker.kafka_bootstrap


async def test_the_subscription_applies_a_batch_and_dead_letters_its_rejection(backend: Any, kafka: str) -> None:
    customer = customer_id()
    first = complaint_filed(customer, 1)
    values = [
        first.to_bytes(),
        first.to_bytes(),  # the same record again, inside the batch
        complaint_filed(customer, 1, severity="high").to_bytes(),  # the same id with other content
        survey_answered(customer, 1).to_bytes(),
        complaint_filed(customer, 2).to_bytes(),
    ]
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(Topic.INGEST_TICKETS, value, key=customer.encode())
    finally:
        await producer.stop()
    settings = SupportSettings(
        CRM_KAFKA_BOOTSTRAP=kafka, CRM_MONGO_URI=backend.mongo_uri, db=f"support_batch_{uuid.uuid4().hex[:8]}"
    )
    app = create_service(settings)
    async with app.router.lifespan_context(app):
        store: Store = app.state.runtime.require_store()

        async def letter() -> dict[str, Any] | None:
            # The records may come in more than one batch: wait for all of them.
            if await store.db[PROCESSED].count_documents({}) < 3:
                return None
            return await store.db[DEADLETTERS].find_one({"key": customer})

        parked = await eventually(letter, timeout=60, what="the three events applied and the dead letter")
        records = await outbox_records(store.db, {"key": customer, "topic": Topic.SUPPORT_EVENTS, "type": FACTS})
        applied = await store.db[PROCESSED].count_documents({})

    assert parked["reason"] == f"rejected: complaint T-{customer}-1 was already filed with different content"
    assert json.loads(parked["original_text"])["id"] == json.loads(values[2])["id"]
    assert sorted(r["type"] for r in records) == [
        "crm.complaint.filed.v1",
        "crm.complaint.filed.v1",
        "crm.survey.answered.v1",
    ]
    assert applied == 3
