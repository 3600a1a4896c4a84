"""New leads against the customer service's customers, on the real database: sales keeps each customer's newest
match keys from crm.customer.events, refuses a lead (entered or imported) who is a customer with the customer's
id and nothing of the address, lets them in again once the customer is erased, and converts a lead who became a
customer meanwhile to that customer instead of registering them twice."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from crm_sales.app import INDEXES, create_service
from crm_sales.customers import handlers, repository
from crm_shared.events import CustomerMatchKeysChanged, CustomerMatchKeysChangedEvent
from crm_shared.matching import match_keys
from crm_shared.store import Store, outbox_records
from crm_shared.topics import Topic

from helpers import ADMIN_HEADERS, MATCH_KEY_SECRET

NewStore = Callable[..., Awaitable[Store]]
T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)
SECRET = MATCH_KEY_SECRET.encode()


def keys_changed(
    customer: str, at: datetime, *, email: str | None = None, phone: str | None = None
) -> CustomerMatchKeysChangedEvent:
    keys = match_keys(SECRET, email=email, phone=phone)
    reason = "registered" if email or phone else "erased"
    data = CustomerMatchKeysChanged(customer_id=customer, match_keys=keys, reason=reason)
    return CustomerMatchKeysChangedEvent.create(data, source="/crm/customer", time=at)


@pytest.fixture
async def sales(new_store: NewStore) -> AsyncIterator[tuple[Store, httpx.AsyncClient]]:
    store = await new_store("sales_matching", INDEXES)
    app = create_service()
    app.state.runtime.store = store
    async with httpx.AsyncClient(
        headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://sales"
    ) as http:
        yield store, http


async def test_a_lead_who_is_a_customer_is_refused_until_the_customer_is_erased(
    sales: tuple[Store, httpx.AsyncClient],
) -> None:
    store, http = sales
    run = uuid.uuid4().hex[:8]
    customer, email, phone = (
        f"C-m-{run}",
        f"ada-{run}@example.com",
        f"+44 20 7946 {run[:4].translate(str.maketrans('abcdef', '123456'))}",
    )
    signed_up = keys_changed(customer, T0, email=email, phone=phone)
    outcome = await handlers.apply_customer_events(store, [signed_up, signed_up])
    assert (outcome.applied, outcome.duplicates) == ([signed_up.id], [signed_up.id])

    by_email = {"source": "field_visit", "name": "A. Lovelace", "email": f" {email.upper()} "}
    refused = await http.post("/v1/leads", json=by_email)
    assert refused.status_code == 409, refused.text
    problem = refused.json()
    assert (problem["title"], problem["existing_customer_id"]) == ("Lead is a customer", customer)
    assert email not in json.dumps(problem).lower()
    by_phone = {"source": "inbound", "company": "Engines Ltd", "phone": "00" + phone.replace(" ", "")[1:]}
    assert (await http.post("/v1/leads", json=by_phone)).json()["existing_customer_id"] == customer

    rows = f"name,email,phone\nAda,{email},\nGrace,grace-{run}@example.com,\n"
    imported = await http.post("/v1/leads/import", content=rows, headers={"Content-Type": "text/csv"})
    assert imported.status_code == 200, imported.text
    assert (imported.json()["imported"], imported.json()["duplicates"]) == (1, 1)
    assert imported.json()["rejected"] == [{"row": 2, "reason": f"customer {customer} already (same email or phone)"}]

    # An erasure empties the keys; the sign-up's set redelivered late (older) does not bring them back.
    erased = keys_changed(customer, T0 + timedelta(hours=1))
    await handlers.apply_customer_events(store, [erased])
    late = keys_changed(customer, T0 - timedelta(minutes=1), email=email)
    await handlers.apply_customer_events(store, [late])
    stored = await store.db[repository.CUSTOMER_MATCH_KEYS].find_one({"_id": customer})
    assert stored is not None and stored["match_keys"] == []
    assert (await http.post("/v1/leads", json=by_email)).status_code == 201

    # Other customer events are not sales' concern.
    other = await handlers.apply_customer_events(store, [keys_changed(f"C-x-{run}", T0, email=f"x-{run}@example.com")])
    assert len(other.applied) == 1


async def test_a_lead_who_became_a_customer_converts_to_that_customer(sales: tuple[Store, httpx.AsyncClient]) -> None:
    store, http = sales
    run = uuid.uuid4().hex[:8]
    email = f"grace-{run}@example.com"
    lead = await http.post("/v1/leads", json={"source": "referral", "name": "Grace Hopper", "email": email})
    assert lead.status_code == 201, lead.text
    lead_id = lead.json()["lead_id"]
    # She signs up in the web shop before sales converts her lead.
    customer = f"C-web-{run}"
    await handlers.apply_customer_events(store, [keys_changed(customer, T0, email=email.title())])

    converted = await http.post(f"/v1/leads/{lead_id}/convert", json={"currency": "EUR", "amount": "300.00"})
    assert converted.status_code == 201, converted.text
    assert (converted.json()["customer_id"], converted.json()["new_customer"]) == (customer, False)
    registrations = await outbox_records(store.db, {"topic": Topic.INGEST_CUSTOMERS})
    assert all(json.loads(r["value"])["data"].get("email") != email for r in registrations)
    # Without the match, the same conversion registers the lead as a customer of its own: the check above can fail.
    other = await http.post("/v1/leads", json={"source": "referral", "name": "Ken", "email": f"ken-{run}@example.com"})
    made = await http.post(f"/v1/leads/{other.json()['lead_id']}/convert", json={"currency": "EUR", "amount": "1.00"})
    assert made.json()["new_customer"] is True
    registrations = await outbox_records(store.db, {"topic": Topic.INGEST_CUSTOMERS})
    assert [json.loads(r["value"])["data"]["email"] for r in registrations].count(f"ken-{run}@example.com") == 1
