"""Merges, unmerges, erasure status and exports in the customer service, on the real broker and database.

The service runs in-process with its consumers and outbox relay on a broker of this module's own, answering
for itself only (CRM_CUSTOMER_PRIVACY_SERVICES=customer): it follows its own requests like every service does,
so a merge shows as applied, an erasure completes and an export is gathered once its own answer came back.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from crm_customer import repository
from crm_customer.app import create_service
from crm_customer.settings import CustomerSettings
from crm_shared import identity
from crm_shared.embedded import free_port
from crm_shared.events import ConsentChangedEvent, CustomerMergedEvent, CustomerUnmergedEvent, parse_event
from crm_shared.store import Store, outbox_records
from crm_shared.topics import Topic

from helpers import ADMIN_HEADERS, broker_of_its_own, eventually


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with broker_of_its_own(tmp_path_factory.mktemp("identity-broker")) as broker:
        yield broker.kafka_bootstrap


@pytest.fixture(scope="module")
async def service(backend: Any, kafka: str) -> AsyncIterator[tuple[httpx.AsyncClient, Store]]:
    settings = CustomerSettings(
        CRM_KAFKA_BOOTSTRAP=kafka,
        CRM_MONGO_URI=backend.mongo_uri,
        db=f"customer_identity_{free_port()}",
        privacy_services="customer",
        survivorship="name=most_recent",
    )
    app: FastAPI = create_service(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://customer", headers=ADMIN_HEADERS) as http,
    ):
        yield http, app.state.runtime.require_store()


@pytest.fixture(scope="module")
async def producer(kafka: str) -> AsyncIterator[AIOKafkaProducer]:
    kafka_producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all")
    await kafka_producer.start()
    yield kafka_producer
    await kafka_producer.stop()


def _person(prefix: str, **fields: Any) -> dict[str, Any]:
    marker = uuid.uuid4().hex[:8]
    return {
        "customer_id": f"{prefix}-{marker}",
        "name": f"Ida Merge{marker}",
        "email": f"ida.{marker}@example.com",
        "consents": [{"channel": "email", "granted": True}],
        **fields,
    }


def _event(event_type: str, customer_id: str, data: dict[str, Any], *, at: datetime | None = None) -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "/channels/callcentre",
            "type": event_type,
            "time": (at or datetime.now(UTC)).isoformat(),
            "subject": customer_id,
            "data": {"customer_id": customer_id, **data},
        }
    ).encode()


async def _published(store: Store, event_type: str) -> list[Any]:
    return [parse_event(r["value"]) for r in await outbox_records(store.db, {"type": event_type})]


async def test_a_confirmed_merge_resolves_fields_moves_records_and_an_undo_restores_both(
    service: tuple[httpx.AsyncClient, Store], producer: AIOKafkaProducer
) -> None:
    http, store = service
    survivor = _person("S", phone="+49 30 1111111")
    merged = _person("M", consents=[{"channel": "email", "granted": False}, {"channel": "sms", "granted": True}])
    for body in (survivor, merged):
        assert (await http.post("/v1/customers", json=body)).status_code == 201
    s_id, m_id = survivor["customer_id"], merged["customer_id"]
    await http.patch(f"/v1/customers/{m_id}", json={"tags": ["vip"], "external_ids": {"pos": f"P-{m_id}"}})
    # An interaction of the merged customer before the merge.
    await producer.send_and_wait(
        Topic.INGEST_INTERACTIONS.value,
        _event("crm.interaction.logged.v1", m_id, {"interaction_id": f"I-{m_id}", "kind": "call", "channel": "phone"}),
        key=m_id.encode(),
    )
    await eventually(lambda: store.db[repository.INTERACTIONS].find_one({"_id": f"I-{m_id}"}), what="interaction")

    answer = await http.post(f"/v1/customers/{s_id}/merges", json={"merged_id": m_id, "evidence": ["names 92% alike"]})
    assert answer.status_code == 201, answer.text
    merge = answer.json()
    assert merge["status"] == "merged" and merge["decided_by"] == "confirmed"
    profile = (await http.get(f"/v1/customers/{s_id}")).json()
    # name: most recent (the merged one signed up last); email: the survivor's; tags and ids joined; the
    # merged customer's refusal of email is the newer fact, so it wins; sms comes from the merged one.
    assert profile["name"] == merged["name"] and profile["email"] == survivor["email"]
    assert profile["phone"] == survivor["phone"] and profile["tags"] == ["vip"]
    assert profile["external_ids"] == {"pos": f"P-{m_id}"}
    assert profile["consents"] == {"email": False, "sms": True}
    assert (await http.get(f"/v1/customers/{m_id}")).json()["merged_into"] == s_id
    [merged_event] = [e for e in await _published(store, CustomerMergedEvent.TYPE) if e.data.merged_id == m_id]
    consents = [e.data for e in await _published(store, ConsentChangedEvent.TYPE) if e.causationid == merged_event.id]
    assert sorted((c.channel, c.granted) for c in consents) == [("email", False), ("sms", True)]

    # The service follows its own merge: the interaction moves under the survivor and the merge shows applied.
    moved = await eventually(
        lambda: store.db[repository.INTERACTIONS].find_one({"_id": f"I-{m_id}", "customer_id": s_id}), what="move"
    )
    assert moved[identity.ORIGIN] == m_id
    view = await eventually(
        lambda: _applied(http, merge["merge_id"], "merge"), what="the merge applied by the customer service"
    )
    assert view["pending"] == [] and view["applied"]["merge"]["customer"]["records"] >= 1

    # Since the merge: an interaction and a consent change that name the merged id go to the survivor.
    await producer.send_and_wait(
        Topic.INGEST_INTERACTIONS.value,
        _event("crm.interaction.logged.v1", m_id, {"interaction_id": f"J-{m_id}", "kind": "call", "channel": "phone"}),
        key=m_id.encode(),
    )
    await producer.send_and_wait(
        Topic.INGEST_CUSTOMERS.value,
        _event("crm.customer.consent_changed.v1", m_id, {"channel": "phone", "granted": True}),
        key=m_id.encode(),
    )
    after = await eventually(
        lambda: store.db[repository.INTERACTIONS].find_one({"_id": f"J-{m_id}"}), what="the interaction since"
    )
    assert after["customer_id"] == s_id and after[identity.ORIGIN] == m_id
    await eventually(lambda: _consent_is(http, s_id, "phone"), what="the consent since on the survivor")
    timeline = (await http.get(f"/v1/customers/{s_id}/timeline")).json()["items"]
    assert any(e["type"] == CustomerMergedEvent.TYPE for e in timeline)

    undone = await http.post(f"/v1/merges/{merge['merge_id']}/undo")
    assert undone.status_code == 200, undone.text
    assert undone.json()["status"] == "unmerged"
    back_s = (await http.get(f"/v1/customers/{s_id}")).json()
    back_m = (await http.get(f"/v1/customers/{m_id}")).json()
    assert back_m["merged_into"] is None and back_m["name"] == merged["name"] and back_m["tags"] == ["vip"]
    assert back_s["name"] == survivor["name"] and back_s["tags"] == [] and back_s["external_ids"] == {}
    # The survivor's email is its own grant again; sms, which it never answered, is refused, not left granted.
    assert back_s["consents"]["email"] is True and back_s["consents"]["sms"] is False
    # The phone grant given since the merge, naming the merged customer, is the merged customer's too.
    assert back_m["consents"] == {"email": False, "sms": True, "phone": True}
    unmerged_events = [e for e in await _published(store, CustomerUnmergedEvent.TYPE) if e.data.merged_id == m_id]
    assert len(unmerged_events) == 1
    pinned = [e for e in await _published(store, ConsentChangedEvent.TYPE) if e.causationid == unmerged_events[0].id]
    assert {e.customer_id for e in pinned} == {s_id, m_id} and all(e.originalsubject == e.customer_id for e in pinned)

    # Both interactions, the one from before and the one since, go back to the merged customer.
    async def given_back() -> bool:
        docs = [d async for d in store.db[repository.INTERACTIONS].find({"_id": {"$in": [f"I-{m_id}", f"J-{m_id}"]}})]
        return len(docs) == 2 and all(d["customer_id"] == m_id for d in docs)

    await eventually(given_back, what="the interactions given back")
    assert (await http.post(f"/v1/merges/{merge['merge_id']}/undo")).status_code == 409


async def _applied(http: httpx.AsyncClient, merge_id: str, step: str) -> dict[str, Any] | None:
    view = (await http.get(f"/v1/merges/{merge_id}")).json()
    return view if "customer" in view["applied"].get(step, {}) else None


async def _consent_is(http: httpx.AsyncClient, customer_id: str, channel: str) -> bool:
    return bool((await http.get(f"/v1/customers/{customer_id}")).json()["consents"].get(channel))


async def test_merges_that_cannot_be_are_refused_with_the_reason(service: tuple[httpx.AsyncClient, Store]) -> None:
    http, _ = service
    person, organisation = _person("P"), _person("O", kind="organisation")
    for body in (person, organisation):
        assert (await http.post("/v1/customers", json=body)).status_code == 201
    p_id, o_id = person["customer_id"], organisation["customer_id"]
    itself = await http.post(f"/v1/customers/{p_id}/merges", json={"merged_id": p_id})
    assert itself.status_code == 422 and "itself" in itself.json()["detail"]
    kinds = await http.post(f"/v1/customers/{p_id}/merges", json={"merged_id": o_id})
    assert kinds.status_code == 409 and "one kind" in kinds.json()["detail"]
    missing = await http.post(f"/v1/customers/{p_id}/merges", json={"merged_id": "C-none"})
    assert missing.status_code == 404
    assert (await http.post("/v1/merges/merge-none/undo")).status_code == 404
    bad = await http.post(f"/v1/customers/{p_id}/merges", json={"merged_id": "not an id"})
    assert bad.status_code == 422


async def test_a_sign_up_with_the_email_of_a_customer_merges_into_it_automatically(
    service: tuple[httpx.AsyncClient, Store], producer: AIOKafkaProducer
) -> None:
    http, store = service
    first = _person("W", email=f"Eve.{uuid.uuid4().hex[:6]}@Example.com")
    assert (await http.post("/v1/customers", json=first)).status_code == 201
    # The POS knows the same person under its own id, with the email in another case.
    second_id = f"P-{uuid.uuid4().hex[:8]}"
    data = {"name": "Eve Other", "email": first["email"].lower(), "consents": []}
    later = datetime.now(UTC) + timedelta(seconds=1)
    await producer.send_and_wait(
        Topic.INGEST_CUSTOMERS.value,
        _event("crm.customer.registered.v1", second_id, data, at=later),
        key=second_id.encode(),
    )
    second = await eventually(
        lambda: store.db[repository.CUSTOMERS].find_one({"_id": second_id, "merged_into": first["customer_id"]}),
        what="the automatic merge",
    )
    merges = (await http.get(f"/v1/customers/{first['customer_id']}/merges")).json()
    assert [(m["merged_id"], m["decided_by"], m["evidence"]) for m in merges] == [
        (second_id, "automatic", ["the same email"])
    ]
    assert second["merge_id"] == merges[0]["merge_id"]
    found = (await http.get("/v1/customers", params={"email": first["email"]})).json()["items"]
    assert [c["customer_id"] for c in found] == [first["customer_id"]]


async def test_an_erasure_reports_when_every_service_confirmed(service: tuple[httpx.AsyncClient, Store]) -> None:
    http, store = service
    survivor, merged = _person("E"), _person("F")
    for body in (survivor, merged):
        assert (await http.post("/v1/customers", json=body)).status_code == 201
    s_id, m_id = survivor["customer_id"], merged["customer_id"]
    merge = (await http.post(f"/v1/customers/{s_id}/merges", json={"merged_id": m_id})).json()
    refused = await http.delete(f"/v1/customers/{m_id}/personal-data")
    assert refused.status_code == 409 and s_id in refused.json()["detail"]

    erased = await http.delete(f"/v1/customers/{s_id}/personal-data")
    assert erased.status_code == 200, erased.text
    body = erased.json()
    assert body["merged_profiles"] == 1 and body["pseudonym"].startswith("anon-")
    status = await eventually(lambda: _erasure_complete(http, body["erasure_id"]), what="the erasure complete")
    assert status["pending"] == [] and "customer" in status["confirmed"]
    assert [e["erasure_id"] for e in (await http.get(f"/v1/customers/{s_id}/erasures")).json()] == [body["erasure_id"]]
    # The profile merged into the erased one lost its personal data too, and the merge can no longer be undone.
    merged_doc = await store.db[repository.CUSTOMERS].find_one({"_id": m_id})
    assert merged_doc is not None and merged_doc["email"] is None and merged_doc["name"] is None
    record = await store.db["merges"].find_one({"_id": merge["merge_id"]})
    assert record is not None and record["status"] == "permanent" and "merged_before" not in record
    assert (await http.post(f"/v1/merges/{merge['merge_id']}/undo")).status_code == 409
    assert (await http.get("/v1/erasures/erasure-none")).status_code == 404


async def _erasure_complete(http: httpx.AsyncClient, erasure_id: str) -> dict[str, Any] | None:
    status = (await http.get(f"/v1/erasures/{erasure_id}")).json()
    return status if status["complete"] else None


async def test_an_export_gathers_the_answers_into_one_document(service: tuple[httpx.AsyncClient, Store]) -> None:
    http, _ = service
    person, twin = _person("X"), _person("Y")
    for body in (person, twin):
        assert (await http.post("/v1/customers", json=body)).status_code == 201
    merged = await http.post(f"/v1/customers/{person['customer_id']}/merges", json={"merged_id": twin["customer_id"]})
    assert merged.status_code == 201
    asked = await http.post(f"/v1/customers/{person['customer_id']}/exports")
    assert asked.status_code == 202, asked.text
    assert asked.json()["status"] == "gathering" and asked.json()["pending"] == ["customer"]
    request_id = asked.json()["request_id"]

    async def complete() -> dict[str, Any] | None:
        view = (await http.get(f"/v1/exports/{request_id}")).json()
        return view if view["status"] == "complete" else None

    view = await eventually(complete, what="the export complete")
    [profile] = view["document"]["customer"]["profile"]
    assert profile["email"] == person["email"] and profile["_id"] == person["customer_id"]
    [kept] = view["document"]["customer"]["merged_profiles"]  # the profile merged into it is the person's too
    assert kept["_id"] == twin["customer_id"] and kept["email"] == twin["email"]
    assert view["answered"] == {"customer": "1/1"}
    assert (await http.post("/v1/customers/C-none/exports")).status_code == 404


async def test_a_rejected_proposal_is_not_proposed_again_until_withdrawn(
    service: tuple[httpx.AsyncClient, Store],
) -> None:
    http, _ = service
    marker = uuid.uuid4().hex[:6]
    one, other = f"R-{marker}-1", f"R-{marker}-2"
    leeds = [{"kind": "home", "postcode": "LS1 4AB"}]
    for customer_id in (one, other):
        body = {"customer_id": customer_id, "name": f"Rob Twin{marker}", "email": f"{customer_id}@example.com"}
        assert (await http.post("/v1/customers", json=body)).status_code == 201
        await http.patch(f"/v1/customers/{customer_id}", json={"addresses": leeds})

    async def proposed() -> list[str]:
        return [c["customer_id"] for c in (await http.get(f"/v1/customers/{one}/duplicates")).json()]

    assert await proposed() == [other]
    rejected = await http.post(f"/v1/customers/{one}/duplicates/{other}/rejection", json={"reason": "twins"})
    assert rejected.status_code == 201, rejected.text
    assert rejected.json()["customers"] == sorted([one, other]) and rejected.json()["reason"] == "twins"
    assert await proposed() == []
    # Either way round it is the same pair.
    assert [c["customer_id"] for c in (await http.get(f"/v1/customers/{other}/duplicates")).json()] == []
    assert (await http.delete(f"/v1/customers/{other}/duplicates/{one}/rejection")).status_code == 204
    assert await proposed() == [other]
    assert (await http.delete(f"/v1/customers/{other}/duplicates/{one}/rejection")).status_code == 404
    assert (await http.post(f"/v1/customers/{one}/duplicates/{one}/rejection")).status_code == 422
    assert (await http.post(f"/v1/customers/{one}/duplicates/C-none/rejection")).status_code == 404
