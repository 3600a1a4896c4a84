"""Use cases of profiles beyond sign-up: change a profile's extras, link a contact to an account, each in one
transaction with its event on crm.customer.events; search profiles."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from crm_customer import repository as customers
from crm_customer.domain import Profile
from crm_customer.profiles import domain
from crm_customer.profiles import repository as extras_store
from crm_customer.profiles.attributes import AttributeDefinition, public_value
from crm_shared.events import (
    AccountContactChanged,
    AccountContactChangedEvent,
    CustomerMatchKeysChanged,
    CustomerMatchKeysChangedEvent,
    CustomerProfileUpdated,
    CustomerProfileUpdatedEvent,
    derived_event_id,
)
from crm_shared.matching import match_keys
from crm_shared.security import OWNED, Principal
from crm_shared.store import Store, UnitOfWork, as_stored
from crm_shared.topics import Topic

SOURCE = "/crm/customer"


class CustomerNotFound(Exception):
    """No such customer, or not one the caller sees."""


def seen_by(principal: Principal | None, query: dict[str, Any]) -> dict[str, Any]:
    return query if principal is None else OWNED.restrict(principal, query)


@dataclass(frozen=True)
class FullProfile:
    profile: Profile
    extras: domain.Extras
    owner_id: str | None
    territory: str | None
    updated_at: datetime | None
    merged_into: str | None = None


def full_profile(doc: Mapping[str, Any]) -> FullProfile:
    return FullProfile(
        profile=customers.profile_from_document(dict(doc)),
        extras=extras_store.extras_from_document(doc),
        owner_id=doc.get("owner_id"),
        territory=doc.get("territory"),
        updated_at=doc.get("profile_updated_at"),
        merged_into=doc.get("merged_into"),
    )


def published_attributes(extras: domain.Extras, definitions: Mapping[str, AttributeDefinition]) -> dict[str, Any]:
    return {
        name: public_value(value)
        for name, value in sorted(extras.attributes.items())
        if name in definitions and not definitions[name].personal
    }


async def update_profile(
    store: Store,
    customer_id: str,
    change: domain.ProfileChange,
    at: datetime,
    *,
    by: Principal,
    match_secret: bytes | None = None,
) -> tuple[FullProfile, list[str]]:
    """Apply the change to the profile the principal sees and publish what changed (the names of the fields, and
    the values that are not personal data); ([], unchanged) for no change. A new email or phone publishes the
    customer's match keys again (with the secret). Raises CustomerNotFound, or ProfileRefused (a customer merged
    into another changes through its survivor)."""
    at = as_stored(at)

    async def work(uow: UnitOfWork) -> tuple[FullProfile, list[str]]:
        doc = await uow.db[customers.CUSTOMERS].find_one(seen_by(by, {"_id": customer_id}), session=uow.session)
        if doc is None:
            raise CustomerNotFound(customer_id)
        if doc.get("merged_into"):
            raise domain.ProfileRefused(
                f"customer {customer_id} was merged into {doc['merged_into']}: change {doc['merged_into']}"
            )
        before = full_profile(doc)
        definitions = await extras_store.definitions(uow.db, uow)
        after, changed = domain.change_profile(before.extras, before.profile.details.kind, change, definitions)
        details = before.profile.details
        contact = {n: v for n, v in change.contact.items() if n in change.sent and getattr(details, n) != v}
        if contact:
            new_details = replace(
                details,
                name=contact.get("name", details.name),
                email=contact.get("email", details.email),
                phone=contact.get("phone", details.phone),
            )
            profile = replace(before.profile, details=new_details)
        else:
            profile = before.profile
        changed = sorted([*changed, *contact])
        if not changed:
            return before, []
        if contact:
            await customers.save_profile(uow, profile)
            if match_secret is not None and {"email", "phone"} & set(contact):
                keys = match_keys(match_secret, email=profile.details.email, phone=profile.details.phone)
                data_keys = CustomerMatchKeysChanged(customer_id=customer_id, match_keys=keys, reason="registered")
                key_id = derived_event_id(SOURCE, f"match-keys:{customer_id}:{at.isoformat()}")
                uow.emit(
                    CustomerMatchKeysChangedEvent.create(data_keys, source=SOURCE, id=key_id, time=at),
                    Topic.CUSTOMER_EVENTS,
                )
        await extras_store.save_extras(uow, customer_id, after, at)
        data = CustomerProfileUpdated(
            customer_id=customer_id,
            changed=changed,
            tags=list(after.tags),
            industry=after.industry,
            company_type=after.company_type,
            company_size=after.company_size,
            attributes=published_attributes(after, definitions),
        )
        event_id = derived_event_id(SOURCE, f"profile:{customer_id}:{at.isoformat()}:{','.join(changed)}")
        uow.emit(CustomerProfileUpdatedEvent.create(data, source=SOURCE, id=event_id, time=at), Topic.CUSTOMER_EVENTS)
        return FullProfile(profile, after, before.owner_id, before.territory, at), changed

    return await store.transaction(work)


async def erase_extras(uow: UnitOfWork, customer_id: str) -> None:
    """In an erasure's unit of work: the profile's extras without their personal data."""
    doc = await uow.db[customers.CUSTOMERS].find_one({"_id": customer_id}, session=uow.session)
    if doc is None:
        return
    extras = extras_store.extras_from_document(doc)
    kept = domain.erased(extras, await extras_store.definitions(uow.db, uow))
    if kept != extras:
        await uow.db[customers.CUSTOMERS].update_one(
            {"_id": customer_id}, {"$set": extras_store.extras_to_fields(kept)}, session=uow.session
        )


# ---------------------------------------------------------------- accounts and contacts


@dataclass(frozen=True)
class Contact:
    account_id: str
    contact_id: str
    roles: tuple[domain.ContactRole, ...]
    since: datetime
    updated_at: datetime


def contact_of(doc: Mapping[str, Any]) -> Contact:
    return Contact(doc["account_id"], doc["contact_id"], tuple(doc["roles"]), doc["since"], doc["updated_at"])


async def set_contact(
    store: Store,
    account_id: str,
    contact_id: str,
    roles: tuple[domain.ContactRole, ...],
    at: datetime,
    *,
    by: Principal,
) -> Contact | None:
    """Make the person a contact of the organisation with these roles (none: no longer a contact) and publish
    it; the same roles again is no change. None when removing a contact that is not one. Raises CustomerNotFound
    (either is missing or not seen), or ProfileRefused (not an organisation and a person)."""
    at = as_stored(at)

    async def work(uow: UnitOfWork) -> Contact | None:
        found = {
            d["_id"]: d.get("kind", "person")
            async for d in uow.db[customers.CUSTOMERS].find(
                seen_by(by, {"_id": {"$in": [account_id, contact_id]}}), {"kind": 1}, session=uow.session
            )
        }
        for customer in (account_id, contact_id):
            if customer not in found:
                raise CustomerNotFound(customer)
        if found[account_id] != "organisation":
            raise domain.ProfileRefused(f"{account_id} is a person: contacts belong to an organisation")
        if found[contact_id] != "person":
            raise domain.ProfileRefused(f"{contact_id} is an organisation: a contact is a person")
        key = f"{account_id}:{contact_id}"
        contacts = uow.db[extras_store.ACCOUNT_CONTACTS]
        known = await contacts.find_one({"_id": key}, session=uow.session)
        if known is not None and tuple(known["roles"]) == roles:
            return contact_of(known)
        if not roles:
            if known is None:
                return None
            await contacts.delete_one({"_id": key}, session=uow.session)
            result = Contact(account_id, contact_id, (), known["since"], at)
        else:
            since = known["since"] if known else at
            document = {
                "_id": key,
                "account_id": account_id,
                "contact_id": contact_id,
                "roles": list(roles),
                "since": since,
                "updated_at": at,
            }
            await contacts.replace_one({"_id": key}, document, upsert=True, session=uow.session)
            result = contact_of(document)
        data = AccountContactChanged(customer_id=account_id, contact_id=contact_id, roles=list(roles))
        event_id = derived_event_id(SOURCE, f"contact:{key}:{at.isoformat()}:{','.join(roles)}")
        uow.emit(AccountContactChangedEvent.create(data, source=SOURCE, id=event_id, time=at), Topic.CUSTOMER_EVENTS)
        return result

    return await store.transaction(work)
