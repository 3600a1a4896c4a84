"""Profiles beyond sign-up on the real database: typed attributes declared and enforced, organisations with
their contacts, searches that find by name, email, phone, external id, tag and attribute values (and treat what a
user typed as a value, never an operator), and an erasure that removes the personal extras and search keys."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from crm_customer.app import INDEXES, create_service
from crm_customer.profiles import repository as profiles_repository
from crm_shared.store import Store, outbox_records

from helpers import ADMIN_HEADERS, bearer

NewStore = Callable[..., Awaitable[Store]]


@pytest.fixture
async def api(new_store: NewStore) -> AsyncIterator[tuple[httpx.AsyncClient, Store]]:
    store = await new_store("customer_profiles", INDEXES)
    app = create_service()
    app.state.runtime.store = store
    async with httpx.AsyncClient(
        headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://customer"
    ) as http:
        yield http, store


async def ok(answer: Awaitable[httpx.Response], status: int = 200) -> Any:
    response = await answer
    assert response.status_code == status, response.text
    return response.json() if response.content else None


async def register(http: httpx.AsyncClient, customer: str, name: str, **more: Any) -> None:
    body = {"customer_id": customer, "name": name, "email": f"{customer.lower()}@example.com", **more}
    await ok(http.post("/v1/customers", json=body), 201)


async def test_typed_attributes_are_declared_enforced_and_published_without_personal_ones(
    api: tuple[httpx.AsyncClient, Store],
) -> None:
    http, store = api
    await ok(
        http.put(
            "/v1/attributes/loyalty_card", json={"type": "enum", "label": "Card", "enum_values": ["silver", "gold"]}
        ),
        201,
    )
    await ok(http.put("/v1/attributes/credit_limit", json={"type": "money", "label": "Credit limit"}), 201)
    await ok(http.put("/v1/attributes/shoe_size", json={"type": "string", "label": "Shoe", "personal": True}), 201)
    customer = f"C-{uuid.uuid4().hex[:8]}"
    await register(http, customer, "Ada Lovelace")

    bad = await http.patch(f"/v1/customers/{customer}", json={"attributes": {"loyalty_card": "platinum"}})
    assert bad.status_code == 422 and "'platinum' is not one of silver, gold" in bad.json()["detail"]
    undeclared = await http.patch(f"/v1/customers/{customer}", json={"attributes": {"colour": "red"}})
    assert undeclared.status_code == 422 and "no attribute 'colour' is declared" in undeclared.json()["detail"]
    wrong_kind = await http.patch(f"/v1/customers/{customer}", json={"industry": "retail"})
    assert wrong_kind.status_code == 422 and "a person has no industry" in wrong_kind.json()["detail"]

    change = {
        "tags": ["vip"],
        "attributes": {
            "loyalty_card": "gold",
            "credit_limit": {"amount": "1500.50", "currency": "EUR"},
            "shoe_size": "42",
        },
        "addresses": [{"kind": "home", "city": "London", "country": "GB"}],
        "external_ids": {"webshop": "W-77"},
    }
    changed = await ok(http.patch(f"/v1/customers/{customer}", json=change))
    assert changed["attributes"] == {
        "credit_limit": {"amount": "1500.50", "currency": "EUR"},
        "loyalty_card": "gold",
        "shoe_size": "42",
    }
    assert (await ok(http.get(f"/v1/customers/{customer}")))["addresses"][0]["city"] == "London"
    await ok(http.patch(f"/v1/customers/{customer}", json=change))  # the same again: no change, nothing published
    published = [
        json.loads(r["value"])["data"]
        for r in await outbox_records(store.db, {"type": "crm.customer.profile_updated.v1", "key": customer})
    ]
    assert published == [
        {
            "customer_id": customer,
            "changed": ["addresses", "attributes", "external_ids", "tags"],
            "tags": ["vip"],
            "industry": None,
            "company_type": None,
            "company_size": None,
            "attributes": {"credit_limit": {"amount": "1500.50", "currency": "EUR"}, "loyalty_card": "gold"},
        }
    ]
    # A declaration in use keeps its type and values.
    retyped = await http.put("/v1/attributes/loyalty_card", json={"type": "string", "label": "Card"})
    assert retyped.status_code == 409 and "1 customers hold a value of loyalty_card" in retyped.json()["detail"]
    assert (await http.delete("/v1/attributes/loyalty_card")).status_code == 409

    # An erasure removes the personal extras and the search keys with name and email.
    await ok(http.delete(f"/v1/customers/{customer}/personal-data"))
    after = await ok(http.get(f"/v1/customers/{customer}"))
    assert (after["addresses"], after["external_ids"], after["attributes"], after["tags"]) == (
        [],
        {},
        {"credit_limit": {"amount": "1500.50", "currency": "EUR"}, "loyalty_card": "gold"},
        ["vip"],
    )
    doc = await store.db["customers"].find_one({"_id": customer})
    assert doc is not None and (doc["search_name"], doc["search_email"], doc["search_external"]) == ([], None, [])


async def test_searches_find_by_name_email_phone_external_id_tag_and_attribute(
    api: tuple[httpx.AsyncClient, Store],
) -> None:
    http, _ = api
    await ok(http.put("/v1/attributes/employees", json={"type": "number", "label": "Staff"}), 201)
    await ok(http.put("/v1/attributes/member_since", json={"type": "date", "label": "Member since"}), 201)
    run = uuid.uuid4().hex[:6]
    ada, zoe, org = f"C-ada-{run}", f"C-zoe-{run}", f"ORG-{run}"
    await register(http, ada, "Ada Lovelace", phone="+44 20 7946 0001")
    await register(http, zoe, "Zoë O'Brien")
    await register(http, org, f"Analytical Engines {run}", kind="organisation")
    await ok(http.patch(f"/v1/customers/{ada}", json={"tags": ["vip"], "attributes": {"member_since": "2019-04-01"}}))
    await ok(http.patch(f"/v1/customers/{zoe}", json={"tags": ["vip", "espresso"], "external_ids": {"pos": "P-9"}}))
    await ok(
        http.patch(
            f"/v1/customers/{org}",
            json={"industry": "engineering", "company_size": "10-49", "attributes": {"employees": 42}},
        )
    )

    async def found(**params: Any) -> list[str]:
        page = await ok(http.get("/v1/customers", params=params))
        return sorted(c["customer_id"] for c in page["items"])

    assert await found(q="ada lov") == [ada]
    assert await found(q="ZOE obri") == [zoe]
    assert await found(email=f"  {ada.upper()}@Example.COM") == [ada]
    assert await found(phone="0044 20 7946 0001") == [ada]
    assert await found(external_id="pos:P-9") == [zoe]
    assert await found(tag=["vip", "espresso"]) == [zoe]
    assert await found(tag="vip") == [ada, zoe]
    assert await found(kind="organisation", company_size="10-49") == [org]
    assert await found(**{"attr.employees.gte": "40", "attr.employees.lte": "50"}) == [org]
    assert await found(**{"attr.employees": "41"}) == []
    assert await found(**{"attr.member_since.lte": "2020-01-01"}) == [ada]
    # What a user types is a value: an operator or a pattern finds nothing, and nothing breaks.
    assert await found(external_id='pos:{"$gt": ""}') == []
    refusals = {
        "unknown filter": {"colour": "red"},
        "undeclared attribute": {"attr.height": "3"},
        "an unknown operator": {"attr.member_since.between": "x"},
        "not a number": {"attr.employees": "many"},
        "bad phone": {"phone": "call me"},
        "no letters": {"q": "..."},
        "an operator as an email": {"email": '{"$ne": null}@x.y'},
    }
    for label, params in refusals.items():
        answer = await http.get("/v1/customers", params=params)
        assert answer.status_code == 422, (label, answer.text)

    # A person sees only the customers they own.
    rep = {"X-API-Key": "", **bearer(f"rep-{run}", "customers:read")}
    assert (await http.get("/v1/customers", params={"tag": "vip"}, headers=rep)).json()["items"] == []


async def test_an_organisation_has_contacts_with_roles_and_a_person_has_accounts(
    api: tuple[httpx.AsyncClient, Store],
) -> None:
    http, store = api
    run = uuid.uuid4().hex[:6]
    org, ada, other = f"ORG-{run}", f"C-ada-{run}", f"ORG-2-{run}"
    await register(http, org, "Northwind", kind="organisation")
    await register(http, other, "Contoso", kind="organisation")
    await register(http, ada, "Ada Lovelace")
    link = await ok(http.put(f"/v1/customers/{org}/contacts/{ada}", json={"roles": ["technical_contact", "buyer"]}))
    assert link["roles"] == ["buyer", "technical_contact"]
    await ok(http.put(f"/v1/customers/{other}/contacts/{ada}", json={"roles": ["decision_maker"]}))
    await ok(http.put(f"/v1/customers/{org}/contacts/{ada}", json={"roles": ["technical_contact", "buyer"]}))
    contacts = await ok(http.get(f"/v1/customers/{org}/contacts"))
    assert [(c["contact_id"], c["roles"]) for c in contacts["items"]] == [(ada, ["buyer", "technical_contact"])]
    accounts = await ok(http.get(f"/v1/customers/{ada}/accounts"))
    assert sorted(a["account_id"] for a in accounts["items"]) == sorted([org, other])

    person_as_account = await http.put(f"/v1/customers/{ada}/contacts/{org}", json={"roles": ["buyer"]})
    assert person_as_account.status_code == 422 and "is a person" in person_as_account.json()["detail"]
    missing = await http.put(f"/v1/customers/{org}/contacts/C-nobody-{run}", json={"roles": ["buyer"]})
    assert missing.status_code == 404
    await ok(http.delete(f"/v1/customers/{other}/contacts/{ada}"), 204)
    assert (await http.delete(f"/v1/customers/{other}/contacts/{ada}")).status_code == 404
    changes = [
        (json.loads(r["value"])["data"]["customer_id"], json.loads(r["value"])["data"]["roles"])
        for r in await outbox_records(store.db, {"type": "crm.account.contact_changed.v1"})
        if json.loads(r["value"])["data"]["contact_id"] == ada
    ]
    assert changes == [(org, ["buyer", "technical_contact"]), (other, ["decision_maker"]), (other, [])]


async def test_profiles_stored_before_search_keys_get_them(api: tuple[httpx.AsyncClient, Store]) -> None:
    http, store = api
    customer = f"C-old-{uuid.uuid4().hex[:6]}"
    await register(http, customer, "Grace Hopper")
    await store.db["customers"].update_one(
        {"_id": customer}, {"$unset": {"search_name": "", "search_email": "", "search_phone": "", "kind": ""}}
    )
    assert (await ok(http.get("/v1/customers", params={"q": "grace"})))["items"] == []
    assert await profiles_repository.backfill_search_keys(store.db) >= 1
    assert [c["customer_id"] for c in (await ok(http.get("/v1/customers", params={"q": "grace hop"})))["items"]] == [
        customer
    ]
    assert await profiles_repository.backfill_search_keys(store.db) == 0


async def test_duplicate_candidates_come_with_their_evidence(api: tuple[httpx.AsyncClient, Store]) -> None:
    http, _ = api
    run = uuid.uuid4().hex[:6]
    ada, same_email, alike, far = (f"C-{n}-{run}" for n in ("ada", "mail", "alike", "far"))
    await register(http, ada, "Ada Lovelace")
    # The same email as Ada's, written differently, given later (at sign-up it would have merged them at once):
    # a strong candidate.
    body = {"customer_id": same_email, "name": "A. King", "email": f"king-{run}@example.com"}
    await ok(http.post("/v1/customers", json=body), 201)
    await ok(http.patch(f"/v1/customers/{same_email}", json={"email": f"{ada.upper()}@EXAMPLE.com"}))
    await register(http, alike, "Lovelace Ada")
    await register(http, far, "Ada Lovelace")
    leeds = [{"kind": "home", "postcode": "LS1 4AB", "city": "Leeds"}]
    await ok(http.patch(f"/v1/customers/{ada}", json={"addresses": leeds}))
    await ok(http.patch(f"/v1/customers/{alike}", json={"addresses": leeds}))
    await ok(http.patch(f"/v1/customers/{far}", json={"addresses": [{"kind": "home", "city": "York"}]}))

    found = await ok(http.get(f"/v1/customers/{ada}/duplicates"))
    assert [(c["customer_id"], c["strength"], c["evidence"]) for c in found] == [
        (same_email, "strong", ["the same email"]),
        (alike, "proposed", ["names 100% alike", "the same postcode LS14AB", "the same city leeds"]),
    ]
    assert (await http.get(f"/v1/customers/C-none-{run}/duplicates")).status_code == 404
    assert (await http.get(f"/v1/customers/{ada}/duplicates", params={"name_threshold": 10})).status_code == 422


async def test_name_email_and_phone_change_with_their_search_keys_and_never_travel_in_the_event(
    api: tuple[httpx.AsyncClient, Store],
) -> None:
    http, store = api
    customer = f"C-{uuid.uuid4().hex[:8]}"
    await register(http, customer, "Ada Byron", phone="+44 20 7946 0000")
    changed = await ok(
        http.patch(
            f"/v1/customers/{customer}", json={"name": "Ada Lovelace", "email": "ada@lovelace.example", "phone": None}
        )
    )
    assert (changed["name"], changed["email"], changed["phone"]) == ("Ada Lovelace", "ada@lovelace.example", None)
    found = await ok(http.get("/v1/customers", params={"email": "ADA@lovelace.example"}))
    assert [c["customer_id"] for c in found["items"]] == [customer]
    assert (await ok(http.get("/v1/customers", params={"email": f"{customer.lower()}@example.com"})))["items"] == []
    assert [c["customer_id"] for c in (await ok(http.get("/v1/customers", params={"q": "lovel"})))["items"]] == [
        customer
    ]
    assert (await ok(http.get("/v1/customers", params={"phone": "+44 20 7946 0000"})))["items"] == []
    [record] = await outbox_records(store.db, {"type": "crm.customer.profile_updated.v1", "key": customer})
    assert json.loads(record["value"])["data"]["changed"] == ["email", "name", "phone"]
    assert b"lovelace" not in record["value"].lower() and b"Ada" not in record["value"]
    # The same values again change nothing and publish nothing.
    await ok(http.patch(f"/v1/customers/{customer}", json={"name": "Ada Lovelace"}))
    assert len(await outbox_records(store.db, {"type": "crm.customer.profile_updated.v1", "key": customer})) == 1
    bad = await http.patch(f"/v1/customers/{customer}", json={"email": "not an address"})
    assert bad.status_code == 422
