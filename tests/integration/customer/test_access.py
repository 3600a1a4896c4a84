"""Which customers a caller sees, on the real database (tests/integration/shared/test_route_access.py checks
every route's 401 and 403). A person (a bearer token) sees
the customers they own, their team owns or of their territories, and with them those customers'
consents, timeline and interactions; any other customer answers exactly as a missing one does. API
keys and `records:all` see every customer.
"""

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest

from crm_customer import handlers, repository
from crm_customer.app import create_service
from crm_shared.events import OrderPlaced, OrderPlacedEvent, utc_now
from crm_shared.security import ALL_RECORDS
from crm_shared.security.audit import AUDIT_LOG
from crm_shared.store import Store, outbox_records

from helpers import ADMIN_HEADERS, bearer

NewStore = Callable[..., Awaitable[Store]]
PROBLEM = "application/problem+json"
PERSON_SCOPES = (
    "customers:read",
    "customers:write",
    "consents:write",
    "interactions:read",
    "interactions:write",
    "events:write",
)


def person(subject: str, *extra_scopes: str, **claims: Any) -> dict[str, str]:
    """A person's headers; the empty X-API-Key drops the client's default admin key."""
    return {"X-API-Key": "", **bearer(subject, *PERSON_SCOPES, *extra_scopes, **claims)}


# ---------------------------------------------------------------- row-level access


@dataclass
class Service:
    http: httpx.AsyncClient
    store: Store
    api_key: dict[str, str]

    async def register(self, customer: str) -> None:
        body = {"customer_id": customer, "name": "Test Person", "consents": [{"channel": "email", "granted": True}]}
        assert (await self.http.post("/v1/customers", json=body)).status_code == 201

    async def assign(self, customer: str, owner_id: str | None, territory: str | None = None) -> None:
        body = {"owner_id": owner_id, "territory": territory}
        answer = await self.http.put(f"/v1/customers/{customer}/assignment", json=body)
        assert answer.status_code == 200, answer.text

    async def customer_doc(self, customer: str) -> dict[str, Any]:
        doc: dict[str, Any] | None = await self.store.db[repository.CUSTOMERS].find_one({"_id": customer})
        assert doc is not None
        return doc


@pytest.fixture
async def service(new_store: NewStore) -> AsyncIterator[Service]:
    store = await new_store("customer_access", repository.INDEXES)
    app = create_service()
    app.state.runtime.store = store
    async with httpx.AsyncClient(
        headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://customer"
    ) as http:
        issued = await http.post("/v1/admin/keys", json={"name": "webshop", "scopes": list(PERSON_SCOPES)})
        assert issued.status_code == 201, issued.text
        yield Service(http, store, {"X-API-Key": issued.json()["key"]})


@dataclass(frozen=True)
class Customers:
    """A's customer, B's customer in the north, and one nobody was assigned yet; each with an interaction."""

    of_a: str
    of_b: str
    unassigned: str

    def interaction(self, customer: str) -> str:
        return f"I-{customer}"


@pytest.fixture
async def customers(service: Service) -> Customers:
    suffix = uuid.uuid4().hex[:6]
    made = Customers(of_a=f"C-a-{suffix}", of_b=f"C-b-{suffix}", unassigned=f"C-u-{suffix}")
    for customer in (made.of_a, made.of_b, made.unassigned):
        await service.register(customer)
        interaction = {"interaction_id": made.interaction(customer), "customer_id": customer}
        logged = await service.http.post("/v1/interactions", json={**interaction, "kind": "call", "channel": "phone"})
        assert logged.status_code == 201
        order = OrderPlaced(customer_id=customer, order_id=f"O-{customer}", currency="EUR", total=Decimal("10.00"))
        await handlers.record_timeline(service.store, OrderPlacedEvent.create(order, source="/crm/sales"))
    await service.assign(made.of_a, "rep-a")
    await service.assign(made.of_b, "rep-b", "north")
    return made


def reads(customer: str, interaction: str) -> dict[str, str]:
    return {
        "profile": f"/v1/customers/{customer}",
        "consents": f"/v1/customers/{customer}/consents",
        "timeline": f"/v1/customers/{customer}/timeline",
        "interaction": f"/v1/interactions/{interaction}",
    }


async def sees(service: Service, headers: dict[str, str], customers: Customers, customer: str) -> bool:
    """Whether every read of the customer answers 200 (True) or every one answers as for a missing id (False)."""
    answers = {
        what: await service.http.get(url, headers=headers)
        for what, url in reads(customer, customers.interaction(customer)).items()
    }
    if all(a.status_code == 200 for a in answers.values()):
        return True
    missing = {
        what: await service.http.get(url, headers=headers) for what, url in reads("C-nobody", "I-nobody").items()
    }
    for what, answer in answers.items():
        assert_answers_as_missing(answer, missing[what], customer, customers.interaction(customer))
    return False


def assert_answers_as_missing(
    answer: httpx.Response, missing: httpx.Response, customer: str, interaction: str | None = None
) -> None:
    """The same status, type and body as for ids that do not exist (C-nobody, I-nobody), the ids aside."""
    assert answer.status_code == missing.status_code == 404, (answer.text, missing.text)
    assert answer.headers["content-type"] == missing.headers["content-type"] == PROBLEM
    text = json.dumps(answer.json(), sort_keys=True)
    if interaction is not None:
        text = text.replace(interaction, "I-nobody")  # first: an interaction id here holds its customer's id
    text = text.replace(customer, "C-nobody")
    assert text == json.dumps(missing.json(), sort_keys=True)


def consent_event(customer: str, channel: str, granted: bool) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/channels/shop",
        "type": "crm.customer.consent_changed.v1",
        "time": utc_now().isoformat(),
        "subject": customer,
        "data": {"customer_id": customer, "channel": channel, "granted": granted},
    }


async def test_a_rep_sees_their_own_customers_and_not_another_reps(service: Service, customers: Customers) -> None:
    rep_a, rep_b = person("rep-a"), person("rep-b")
    assert await sees(service, rep_a, customers, customers.of_a)
    assert not await sees(service, rep_a, customers, customers.of_b)
    assert not await sees(service, rep_a, customers, customers.unassigned)
    assert await sees(service, rep_b, customers, customers.of_b)
    assert not await sees(service, rep_b, customers, customers.of_a)

    timeline = (await service.http.get(f"/v1/customers/{customers.of_a}/timeline", headers=rep_a)).json()
    assert timeline["items"] and {e["data"]["customer_id"] for e in timeline["items"]} == {customers.of_a}


async def test_a_rep_cannot_change_another_reps_customer(service: Service, customers: Customers) -> None:
    rep_a = person("rep-a")
    theirs = customers.of_b
    before = await service.customer_doc(theirs)
    outbox_before = len(await outbox_records(service.store.db, {"key": theirs}))

    consent = await service.http.put(f"/v1/customers/{theirs}/consents/email", json={"granted": False}, headers=rep_a)
    missing = await service.http.put("/v1/customers/C-nobody/consents/email", json={"granted": False}, headers=rep_a)
    assert_answers_as_missing(consent, missing, theirs)

    taken = {"owner_id": "rep-a", "territory": None}
    assignment = await service.http.put(f"/v1/customers/{theirs}/assignment", json=taken, headers=rep_a)
    missing = await service.http.put("/v1/customers/C-nobody/assignment", json=taken, headers=rep_a)
    assert_answers_as_missing(assignment, missing, theirs)

    logged = {"interaction_id": f"I2-{theirs}", "customer_id": theirs, "kind": "call", "channel": "phone"}
    assert (await service.http.post("/v1/interactions", json=logged, headers=rep_a)).status_code == 404
    referral = {"referral_id": f"R-{theirs}", "customer_id": theirs, "referred_customer_id": "C-friend"}
    assert (await service.http.post("/v1/referrals", json=referral, headers=rep_a)).status_code == 404
    event = consent_event(theirs, "email", granted=False)
    assert (await service.http.post("/v1/events", json=event, headers=rep_a)).status_code == 404

    assert await service.customer_doc(theirs) == before
    assert len(await outbox_records(service.store.db, {"key": theirs})) == outbox_before
    assert await service.store.db[repository.INTERACTIONS].count_documents({"customer_id": theirs}) == 1
    assert await service.store.db[repository.REFERRALS].count_documents({"customer_id": theirs}) == 0


async def test_a_rep_changes_their_own_customer_and_the_assignment_stays(
    service: Service, customers: Customers
) -> None:
    rep_a, mine = person("rep-a"), customers.of_a
    consent = await service.http.put(f"/v1/customers/{mine}/consents/email", json={"granted": False}, headers=rep_a)
    assert consent.status_code == 200 and consent.json()["refused"] == ["email"]
    logged = {"interaction_id": f"I2-{mine}", "customer_id": mine, "kind": "visit", "channel": "face_to_face"}
    assert (await service.http.post("/v1/interactions", json=logged, headers=rep_a)).status_code == 201
    assert (await service.http.get(f"/v1/interactions/I2-{mine}", headers=rep_a)).status_code == 200
    event = consent_event(mine, "sms", granted=True)
    submitted = await service.http.post("/v1/events", json=event, headers=rep_a)
    assert submitted.status_code == 202, submitted.text

    # Both ways a profile is written (one answer, a batch of events) keep the owner and territory beside it.
    doc = await service.customer_doc(mine)
    assert (doc["owner_id"], doc["territory"], doc["consents"]) == ("rep-a", None, {"email": False, "sms": True})


async def test_a_manager_sees_their_teams_customers_and_a_territory_member_the_territorys(
    service: Service, customers: Customers
) -> None:
    manager = person("manager-1", team=["rep-a", "rep-z"])
    assert await sees(service, manager, customers, customers.of_a)
    assert not await sees(service, manager, customers, customers.of_b)
    change = await service.http.put(
        f"/v1/customers/{customers.of_a}/consents/email", json={"granted": False}, headers=manager
    )
    assert change.status_code == 200

    north = person("rep-n", territories=["north"])
    assert await sees(service, north, customers, customers.of_b)
    assert not await sees(service, north, customers, customers.of_a)
    assert not await sees(service, person("rep-s", territories=["south"]), customers, customers.of_b)


async def test_api_keys_and_records_all_see_every_customer(service: Service, customers: Customers) -> None:
    for headers in (service.api_key, person("director", ALL_RECORDS)):
        for customer in (customers.of_a, customers.of_b, customers.unassigned):
            assert await sees(service, headers, customers, customer)
    # A channel system's timeline of a customer not registered yet is as before: empty, not a 404.
    early = await service.http.get("/v1/customers/C-not-yet/timeline", headers=service.api_key)
    assert early.json() == {"items": [], "next_cursor": None}
    assert (await service.http.get("/v1/customers/C-not-yet/timeline", headers=person("rep-a"))).status_code == 404

    assigned = await service.http.put(
        f"/v1/customers/{customers.unassigned}/assignment",
        json={"owner_id": "rep-b", "territory": "south"},
        headers=person("director", ALL_RECORDS),
    )
    assert assigned.json() == {"customer_id": customers.unassigned, "owner_id": "rep-b", "territory": "south"}
    assert await sees(service, person("rep-b"), customers, customers.unassigned)


async def test_a_registration_is_unassigned_and_an_assignment_moves_who_sees_the_customer(
    service: Service, customers: Customers
) -> None:
    fresh = f"C-new-{uuid.uuid4().hex[:6]}"
    await service.register(fresh)
    doc = await service.customer_doc(fresh)
    assert (doc["owner_id"], doc["territory"]) == (None, None)

    rep_a = person("rep-a")
    handed = {"owner_id": "rep-b", "territory": None}
    moved = await service.http.put(f"/v1/customers/{customers.of_a}/assignment", json=handed, headers=rep_a)
    assert moved.status_code == 200
    audited = await service.store.db[AUDIT_LOG].find_one(
        {"principal": "token:rep-a", "target.customer_id": customers.of_a}
    )
    assert audited is not None and audited["action"] == "PUT /v1/customers/{customer_id}/assignment"
    assert not await sees(service, rep_a, customers, customers.of_a)
    assert await sees(service, person("rep-b"), customers, customers.of_a)

    cleared = {"owner_id": None, "territory": None}
    assert (await service.http.put(f"/v1/customers/{customers.of_a}/assignment", json=cleared)).status_code == 200
    assert not await sees(service, person("rep-b"), customers, customers.of_a)


@pytest.mark.parametrize(
    "body",
    [
        {"owner_id": "rep-a"},
        {"owner_id": "rep-a", "territory": None, "group": "g"},
        {"owner_id": 7, "territory": None},
        {"owner_id": "rep a", "territory": None},
        {"owner_id": {"$ne": None}, "territory": None},
        {"owner_id": "rep-a", "territory": "x" * 129},
        {"owner_id": "r" * 256, "territory": None},
        {"owner_id": "", "territory": None},
    ],
)
async def test_an_assignment_is_refused_unless_well_formed(
    service: Service, customers: Customers, body: dict[str, Any]
) -> None:
    answer = await service.http.put(f"/v1/customers/{customers.of_a}/assignment", json=body)
    assert answer.status_code == 422 and answer.headers["content-type"] == PROBLEM
    assert (await service.customer_doc(customers.of_a))["owner_id"] == "rep-a"


async def test_a_token_subject_of_the_identity_provider_can_own_a_customer(
    service: Service, customers: Customers
) -> None:
    for subject in ("ada@example.com", "auth0|5f7c8ec7c33c6c004bbafe82"):
        await service.assign(customers.of_a, subject)
        assert await sees(service, person(subject), customers, customers.of_a)
