"""Personal data in events, crypto-shredded, on the real broker and database.

The customer service runs in-process with its lifespan (consumers and outbox relay) on a broker of this
module's own. A sign-up leaves it on crm.customer.events with name, email and phone sealed with the
customer's key; the unseal route opens them; erasing the customer destroys the key, so the old records
cannot be decrypted any more, by the route or with any key left in the database.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from crm_customer import domain, repository
from crm_customer.app import create_service
from crm_customer.settings import CustomerSettings
from crm_shared.embedded import free_port
from crm_shared.events import CustomerMatchKeysChangedEvent, CustomerRegistered, CustomerRegisteredEvent, parse_event
from crm_shared.matching import match_keys
from crm_shared.personal import UnsealError, is_sealed, key_id_of, seal, unseal
from crm_shared.security.audit import AUDIT_LOG
from crm_shared.store import DEADLETTERS, Store, outbox_records
from crm_shared.topics import Topic

from helpers import ADMIN_HEADERS, MATCH_KEY_SECRET, TopicReader, bearer, broker_of_its_own, eventually

PERSONAL = ("name", "email", "phone")
ERASE_ROUTE = "DELETE /v1/customers/{customer_id}/personal-data"


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with broker_of_its_own(tmp_path_factory.mktemp("personal-data-broker")) as broker:
        yield broker.kafka_bootstrap


@pytest.fixture(scope="module")
async def service(backend: Any, kafka: str) -> AsyncIterator[tuple[httpx.AsyncClient, Store]]:
    settings = CustomerSettings(
        CRM_KAFKA_BOOTSTRAP=kafka, CRM_MONGO_URI=backend.mongo_uri, db=f"customer_personal_{free_port()}"
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
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all")
    await producer.start()
    yield producer
    await producer.stop()


def person(subject: str, *scopes: str, **claims: Any) -> dict[str, str]:
    """A person's headers; the empty X-API-Key drops the client's default admin key."""
    return {"X-API-Key": "", **bearer(subject, *scopes, **claims)}


def new_customer() -> tuple[str, dict[str, Any]]:
    marker = uuid.uuid4().hex[:10]
    customer = f"C-PD-{marker}"
    return customer, {
        "customer_id": customer,
        "name": f"Zelda Pii{marker}",
        "email": f"zelda.{marker}@example.com",
        "phone": f"+49 30 {int(marker, 16) % 10**8:08d}",
        "consents": [{"channel": "email", "granted": True}, {"channel": "sms", "granted": False}],
        "preferred_channel": "email",
    }


async def published_registration(kafka: str, customer: str, *, not_key: str | None = None) -> Any:
    """The sign-up the customer service published for `customer` (with a key other than `not_key`)."""

    def wanted(record: Any) -> bool:
        if record.key != customer.encode() or b"crm.customer.registered.v1" not in record.value:
            return False
        return not_key is None or key_id_of(json.loads(record.value)["data"]["email"]) != not_key

    async with TopicReader(kafka, Topic.CUSTOMER_EVENTS) as reader:
        return await reader.find(wanted)


async def unseal_via_api(http: httpx.AsyncClient, customer: str, values: dict[str, str], **kw: Any) -> httpx.Response:
    return await http.post("/v1/personal-data/unseal", json={"customer_id": customer, "values": values}, **kw)


def registration_event(body: dict[str, Any], *, event_id: str, time: datetime | None = None) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "/channels/webshop",
        "type": "crm.customer.registered.v1",
        "time": (time or datetime.now(UTC)).isoformat(),
        "subject": body["customer_id"],
        "data": body,
    }


async def test_an_erased_customers_old_events_cannot_be_decrypted(
    service: tuple[httpx.AsyncClient, Store], kafka: str
) -> None:
    http, store = service
    customer, body = new_customer()
    created = await http.post("/v1/customers", json=body)
    assert created.status_code == 201, created.text
    assert {f: created.json()[f] for f in PERSONAL} == {f: body[f] for f in PERSONAL}  # the holder keeps them

    record = await published_registration(kafka, customer)
    for field in PERSONAL:
        assert body[field].encode() not in record.value, f"{field} travels in clear"
    assert b"Pii" not in record.value and b"zelda." not in record.value
    event = parse_event(record.value)
    assert isinstance(event, CustomerRegisteredEvent)
    sealed = {f: getattr(event.data, f) for f in PERSONAL}
    assert all(is_sealed(v) for v in sealed.values())
    (key_id,) = {key_id_of(v) for v in sealed.values()}
    assert [c.channel for c in event.data.consents] == ["email", "sms"]  # what consumers use stays readable

    opened = await unseal_via_api(http, customer, sealed)
    assert opened.status_code == 200, opened.text
    assert opened.json() == {"customer_id": customer, "values": {f: body[f] for f in PERSONAL}}
    moved = await unseal_via_api(http, customer, {"phone": sealed["email"]})
    assert moved.status_code == 422 and "does not decrypt as phone" in moved.json()["detail"]

    erased = await http.delete(f"/v1/customers/{customer}/personal-data")
    assert erased.status_code == 200, erased.text
    answer = erased.json()
    assert answer["erasure_id"].startswith("erasure-") and answer["pseudonym"].startswith("anon-")
    assert answer | {"erased_at": None, "erasure_id": None, "pseudonym": None} == {
        "customer_id": customer,
        "erased_at": None,
        "profile_fields": ["name", "email", "phone"],
        "key_destroyed": True,
        "key_id": key_id,
        "dead_letter_originals": 0,
        "erasure_id": None,
        "pseudonym": None,
        "merged_profiles": 0,
    }

    # The same old record, after the erasure: the route answers 410, and no key left in the database opens it.
    gone = await unseal_via_api(http, customer, sealed)
    assert gone.status_code == 410 and gone.headers["content-type"] == "application/problem+json"
    assert f"key {key_id} of customer {customer} is not held" in gone.json()["detail"]
    assert await store.db[repository.PERSONAL_KEYS].find_one({"_id": customer}) is None
    keys = await store.db[repository.PERSONAL_KEYS].find().to_list(None)
    for doc in keys:
        for field, token in sealed.items():
            with pytest.raises(UnsealError):
                unseal(token, key=bytes(doc["key"]), customer_id=customer, field=field)
    raw_outbox = await outbox_records(store.db, {"key": customer})
    assert raw_outbox and not any(body["email"].encode() in bytes(r["value"]) for r in raw_outbox)

    profile = (await http.get(f"/v1/customers/{customer}")).json()
    assert (profile["name"], profile["email"], profile["phone"]) == (None, None, None)
    assert profile["personal_data_erased_at"] is not None
    assert (profile["consents"], profile["preferred_channel"]) == ({"email": True, "sms": False}, "email")
    refused_again = await http.put(f"/v1/customers/{customer}/consents/email", json={"granted": False})
    assert refused_again.status_code == 200 and refused_again.json()["refused"] == ["email", "sms"]

    async def audited() -> dict[str, Any] | None:
        return await store.db[AUDIT_LOG].find_one({"action": ERASE_ROUTE, "target.customer_id": customer})

    entry = await eventually(audited, timeout=10, what="the erasure in the audit log")
    assert (entry["principal"], entry["status"], entry["outcome"]) == ("key:bootstrap", 200, "allowed")

    again = await http.delete(f"/v1/customers/{customer}/personal-data")
    assert again.status_code == 200
    assert (again.json()["profile_fields"], again.json()["key_destroyed"]) == ([], False)


async def test_a_sign_up_publishes_its_match_keys_and_an_erasure_empties_them(
    service: tuple[httpx.AsyncClient, Store], kafka: str
) -> None:
    http, _ = service
    customer, body = new_customer()
    assert (await http.post("/v1/customers", json=body)).status_code == 201
    registration = await published_registration(kafka, customer)

    async with TopicReader(kafka, Topic.CUSTOMER_EVENTS) as reader:

        def keys_of_customer(reason: str) -> Callable[[Any], bool]:
            def wanted(record: Any) -> bool:
                return record.key == customer.encode() and f'"reason":"{reason}"'.encode() in record.value

            return wanted

        record = await reader.find(keys_of_customer("registered"))
        event = parse_event(record.value)
        assert isinstance(event, CustomerMatchKeysChangedEvent)
        # The keys of her email and phone as sales computes them from a lead: written another way, same keys.
        secret = MATCH_KEY_SECRET.encode()
        assert event.data.match_keys == match_keys(secret, email=body["email"].upper(), phone=body["phone"])
        assert event.causationid == parse_event(registration.value).causationid  # the same sign-up
        for field in PERSONAL:
            assert body[field].encode() not in record.value

        assert (await http.delete(f"/v1/customers/{customer}/personal-data")).status_code == 200
        gone = parse_event((await reader.find(keys_of_customer("erased"))).value)
        assert isinstance(gone, CustomerMatchKeysChangedEvent) and gone.data.match_keys == []
        assert gone.time > event.time  # the newest set is the one a consumer keeps


async def test_a_customer_registered_again_after_erasure_gets_a_fresh_key(
    service: tuple[httpx.AsyncClient, Store], kafka: str
) -> None:
    http, _ = service
    customer, body = new_customer()
    assert (await http.post("/v1/customers", json=body)).status_code == 201
    old = parse_event((await published_registration(kafka, customer)).value).data
    assert (await http.delete(f"/v1/customers/{customer}/personal-data")).status_code == 200

    signed_up_again = body | {"consents": [{"channel": "sms", "granted": True}], "preferred_channel": None}
    again = await http.post("/v1/customers", json=signed_up_again)
    assert again.status_code == 201, again.text
    assert again.json()["email"] == body["email"] and again.json()["personal_data_erased_at"] is None
    # The erased profile's email grant and preferred channel stay; the new answer for sms is the newer fact.
    assert (again.json()["consents"], again.json()["preferred_channel"]) == ({"email": True, "sms": True}, "email")

    new = parse_event((await published_registration(kafka, customer, not_key=key_id_of(old.email))).value).data
    assert key_id_of(new.email) != key_id_of(old.email)
    fresh = await unseal_via_api(http, customer, {"email": new.email})
    assert fresh.status_code == 200 and fresh.json()["values"] == {"email": body["email"]}
    assert (await unseal_via_api(http, customer, {"email": old.email})).status_code == 410


async def test_channels_send_personal_data_in_clear_and_a_sealed_sign_up_is_refused(
    service: tuple[httpx.AsyncClient, Store], producer: AIOKafkaProducer
) -> None:
    http, store = service
    customer, body = new_customer()
    forged = body | {"email": seal(body["email"], key_id="k1", key=b"k" * 32, customer_id=customer, field="email")}

    refused = await http.post("/v1/customers", json=forged)
    assert refused.status_code == 422 and "email arrived sealed" in refused.json()["detail"]
    submitted = await http.post("/v1/events", json=registration_event(forged, event_id=f"sealed-{customer}"))
    assert submitted.status_code == 422 and "only the customer service seals them" in submitted.json()["detail"]

    value = json.dumps(registration_event(forged, event_id=f"sealed-kafka-{customer}")).encode()
    await producer.send_and_wait(Topic.INGEST_CUSTOMERS, value, key=customer.encode())

    async def letter() -> dict[str, Any] | None:
        return await store.db[DEADLETTERS].find_one({"key": customer})

    found = await eventually(letter, timeout=30, what="the sealed sign-up's dead letter")
    assert "the email of customer" in found["reason"] and "arrived sealed" in found["reason"]
    assert await store.db[repository.CUSTOMERS].find_one({"_id": customer}) is None


async def test_an_erasure_removes_the_originals_the_dead_letters_kept(
    service: tuple[httpx.AsyncClient, Store], producer: AIOKafkaProducer
) -> None:
    http, store = service
    customer, body = new_customer()
    assert (await http.post("/v1/customers", json=body)).status_code == 201
    # A re-registration with other details is refused and dead-lettered: its kept original holds personal data.
    conflicting = body | {"email": f"other.{customer.lower()}@example.com"}
    value = json.dumps(registration_event(conflicting, event_id=f"clash-{customer}")).encode()
    await producer.send_and_wait(Topic.INGEST_CUSTOMERS, value, key=customer.encode())
    # A record whose Kafka key is not its subject: found by the subject in its text.
    mismatched = json.dumps(registration_event(body, event_id=f"badkey-{customer}")).encode()
    await producer.send_and_wait(Topic.INGEST_CUSTOMERS, mismatched, key=b"not-the-subject")

    async def letters() -> list[dict[str, Any]] | None:
        ids = [f"clash-{customer}", f"badkey-{customer}"]
        found = await store.db[DEADLETTERS].find({"event_id": {"$in": ids}}).to_list(None)
        return found if len(found) == 2 else None

    kept = await eventually(letters, timeout=30, what="the two dead letters")
    assert all(bytes(d["original"]) in (value, mismatched) for d in kept)

    erased = await http.delete(f"/v1/customers/{customer}/personal-data")
    assert erased.status_code == 200 and erased.json()["dead_letter_originals"] == 2

    for doc in await store.db[DEADLETTERS].find({"_id": {"$in": [d["_id"] for d in kept]}}).to_list(None):
        assert (doc["original"], doc["original_text"], doc["original_value_base64"]) == (None, None, None)
        assert doc["original_erased_at"] is not None and doc["reason"]  # the letter stays, without data
        assert conflicting["email"] not in str(doc) and body["email"] not in str(doc)


async def test_a_person_unseals_and_erases_only_a_customer_they_see(service: tuple[httpx.AsyncClient, Store]) -> None:
    http, store = service
    customer, body = new_customer()
    assert (await http.post("/v1/customers", json=body)).status_code == 201
    key = await repository.find_personal_key(store.db, customer)
    assert key is not None
    token = seal(body["email"], key_id=key.key_id, key=key.key, customer_id=customer, field="email")

    stranger = person("rep-stranger", "customers:unseal", "customers:erase")
    assert (await unseal_via_api(http, customer, {"email": token}, headers=stranger)).status_code == 404
    assert (await http.delete(f"/v1/customers/{customer}/personal-data", headers=stranger)).status_code == 404
    no_scope = person("rep-owner", "customers:read", "customers:erase")
    assert (await unseal_via_api(http, customer, {"email": token}, headers=no_scope)).status_code == 403

    assigned = await http.put(f"/v1/customers/{customer}/assignment", json={"owner_id": "rep-owner", "territory": None})
    assert assigned.status_code == 200
    owner = person("rep-owner", "customers:unseal", "customers:erase")
    opened = await unseal_via_api(http, customer, {"email": token}, headers=owner)
    assert opened.status_code == 200 and opened.json()["values"] == {"email": body["email"]}
    erased = await http.delete(f"/v1/customers/{customer}/personal-data", headers=owner)
    assert erased.status_code == 200 and erased.json()["key_destroyed"]


@pytest.mark.parametrize(
    "values",
    [{}, {"email": "ada@example.com"}, {"address": "sealed:v1:k:abcd"}, {f: "sealed:v1:k:abcd" for f in PERSONAL}],
)
async def test_the_unseal_body_is_strict(service: tuple[httpx.AsyncClient, Store], values: dict[str, str]) -> None:
    http, _ = service
    customer, _ = new_customer()
    answer = await unseal_via_api(http, customer, values)
    expected = 422 if len(values) != 3 else 410  # three well-formed values of a customer without a key
    assert answer.status_code == expected, answer.text


# ---------------------------------------------------------------- the domain rules behind it

T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)


def registered(customer: str, **changes: Any) -> CustomerRegistered:
    return CustomerRegistered.model_validate(
        {"customer_id": customer, "name": "Ada", "email": "ada@example.com", "consents": [], **changes}
    )


def test_a_registration_from_before_the_erasure_is_not_applied_again() -> None:
    profile = domain.register(None, registered("C-1"), T0, "e-1")
    erased = domain.erase_personal_data(profile, T0 + timedelta(days=1))
    assert erased.details.personal_fields == [] and erased.erased_at == T0 + timedelta(days=1)
    assert domain.erase_personal_data(erased, T0 + timedelta(days=2)) == erased
    with pytest.raises(domain.RegistrationRejected, match="from before then"):
        domain.register(erased, registered("C-1"), T0, "e-1-replayed")
    back = domain.register(erased, registered("C-1"), T0 + timedelta(days=3), "e-2")
    assert back.details.email == "ada@example.com" and back.erased_at is None
    assert (back.registered_at, back.registered_by) == (T0, "e-1")


def test_a_refusal_newer_than_the_new_sign_up_is_kept() -> None:
    consents = [{"channel": "sms", "granted": True}, {"channel": "email", "granted": True}]
    profile = domain.register(None, registered("C-1", consents=consents, preferred_channel="sms"), T0, "e-1")
    erased = domain.erase_personal_data(profile, T0 + timedelta(days=1))
    # A refusal stamped after the coming sign-up arrived first (out of order).
    later = T0 + timedelta(days=3)
    refused = domain.change_consent(
        erased, domain.ConsentChanged(customer_id="C-1", channel="sms", granted=False), later
    )
    back = domain.register(
        refused, registered("C-1", consents=consents, preferred_channel="sms"), T0 + timedelta(days=2), "e-2"
    )
    assert back.details.consents == {"sms": False, "email": True}
    assert back.details.preferred_channel is None  # the stated one is refused, the recorded one too
