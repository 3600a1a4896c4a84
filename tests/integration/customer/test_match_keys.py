"""Match keys on the real database: a sign-up publishes them only with the secret; `crm customer
publish-match-keys` publishes them for customers who signed up before, an erased customer excepted."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from crm_customer import cli, handlers
from crm_shared.events import CustomerRegistered, CustomerRegisteredEvent
from crm_shared.matching import match_keys
from crm_shared.security import Principal
from crm_shared.store import Store, outbox_records

from helpers import MATCH_KEY_SECRET

NewStore = Callable[..., Awaitable[Store]]
T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)
SECRET = MATCH_KEY_SECRET.encode()
ADMIN = Principal(kind="api_key", id="test", scopes=frozenset({"admin"}))


def sign_up(customer: str, *, email: str | None = None, phone: str | None = None) -> CustomerRegisteredEvent:
    data = CustomerRegistered(customer_id=customer, name="Test Person", email=email, phone=phone)
    return CustomerRegisteredEvent.create(data, source="/channels/web", time=T0)


async def keys_published(store: Store, customer: str) -> list[list[str]]:
    records = await outbox_records(store.db, {"key": customer, "type": "crm.customer.match_keys_changed.v1"})
    return [json.loads(r["value"])["data"]["match_keys"] for r in records]


async def test_customers_from_before_the_secret_get_their_keys_published(
    new_store: NewStore, backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await new_store("customer_match_keys")
    run = uuid.uuid4().hex[:8]
    ada, grace, erased, nameless = (f"C-{who}-{run}" for who in ("ada", "grace", "erased", "noreach"))
    # Before the secret: sign-ups publish no keys.
    for event in (
        sign_up(ada, email=f"ada-{run}@example.com"),
        sign_up(grace, phone="+44 20 7946 0018", email=f"grace-{run}@example.com"),
        sign_up(erased, email=f"gone-{run}@example.com"),
        sign_up(nameless),
    ):
        await handlers.register_customer(store, event)
    assert await keys_published(store, ada) == []
    assert await handlers.erase_personal_data(store, erased, seen_by=ADMIN) is not None
    assert await keys_published(store, erased) == [[]]  # the erasure says so, secret or not

    published = await handlers.publish_match_keys(store, SECRET, page=2)
    assert published == 2
    assert await keys_published(store, ada) == [match_keys(SECRET, email=f"ada-{run}@example.com", phone=None)]
    [grace_keys] = await keys_published(store, grace)
    assert len(grace_keys) == 2
    assert await keys_published(store, erased) == [[]] and await keys_published(store, nameless) == []

    # With the secret a new sign-up publishes its own; the task, run again, publishes the same keys again.
    newcomer = f"C-new-{run}"
    await handlers.register_customer(store, sign_up(newcomer, email=f"new-{run}@example.com"), match_secret=SECRET)
    assert len(await keys_published(store, newcomer)) == 1

    monkeypatch.setenv("CRM_MONGO_URI", backend.mongo_uri)
    monkeypatch.setenv("CRM_CUSTOMER_DB", store.db.name)
    assert await asyncio.to_thread(cli.main, ["publish-match-keys"]) == 0
    assert await keys_published(store, ada) == [match_keys(SECRET, email=f"ada-{run}@example.com", phone=None)] * 2
    assert len(await keys_published(store, newcomer)) == 2
    monkeypatch.setenv("CRM_MATCH_KEY_SECRET", "")
    assert await asyncio.to_thread(cli.main, ["publish-match-keys"]) == cli.NO_SECRET
