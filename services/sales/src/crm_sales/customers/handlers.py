"""Keep the customer service's match keys (crm.customer.match_keys_changed.v1), and find the customer a new
lead already is.

Each event holds a customer's whole set as it stands: the newest one kept (by its time, the moment the customer
service published it) wins, so a redelivered or late older set changes nothing and an erasure stays erased.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from crm_sales.customers import repository
from crm_shared import identity
from crm_shared.events import CloudEvent, CustomerMatchKeysChangedEvent
from crm_shared.matching import keys_of
from crm_shared.store import Batch, BatchOutcome, Store, UnitOfWork

CONSUMER = "sales-customer-keys"


async def apply_customer_events(store: Store, events: Sequence[CloudEvent[Any]]) -> BatchOutcome:
    """The match keys of a batch of crm.customer.events, in one transaction; other types are ignored."""

    async def work(uow: UnitOfWork, batch: Batch[CloudEvent[Any]]) -> None:
        newest: dict[str, tuple[list[str], datetime]] = {}
        for event in batch.events:
            kept = newest.get(event.customer_id)
            if kept is None or kept[1] <= event.time:
                newest[event.customer_id] = (sorted(set(event.data.match_keys)), event.time)
            batch.done(event, None)
        await repository.save_newest(uow, newest)

    return await store.apply_batch(
        CONSUMER, events, work, relevant=lambda event: isinstance(event, CustomerMatchKeysChangedEvent)
    )


async def customer_matching(
    uow: UnitOfWork, secret: bytes | None, email_key: str | None, phone_key: str | None
) -> str | None:
    """The customer whose email or phone (normalised) is this one's, None when none is (or no secret is set)."""
    found = await customers_matching(uow, secret, [(email_key, phone_key)])
    return found[0]


async def customers_matching(
    uow: UnitOfWork, secret: bytes | None, people: Iterable[tuple[str | None, str | None]]
) -> list[str | None]:
    """For each (normalised email, normalised phone), the customer with that email or phone (email first), in
    one lookup; all None without a secret. A customer merged into another is that one: the merged id's keys are
    kept as they were (an unmerge needs them back) and read as the survivor's."""
    wanted = list(people)
    if secret is None:
        return [None] * len(wanted)
    keyed = [keys_of(secret, [("email", email), ("phone", phone)]) for email, phone in wanted]
    owner = await repository.customers_of(uow, (k for keys in keyed for k in keys))
    if owner:
        survivors = await identity.resolve(uow.db, owner.values(), session=uow.session)
        owner = {k: survivors.get(customer, customer) for k, customer in owner.items()}
    return [next((owner[k] for k in keys if k in owner), None) for keys in keyed]
