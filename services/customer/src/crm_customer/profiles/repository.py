"""The customer database's profile extras, attribute declarations and account contacts.

- `customers` documents hold the extras as top-level fields beside the sign-up's (`tags`, `industry`,
  `company_type`, `company_size`, `addresses`, `birthday`, `personal_events`, `external_ids`, `attributes`), and
  the search keys (`search_name`, `search_email`, `search_phone` from crm_customer.repository, `search_external`
  here), each with an index.
- `attribute_definitions`: one document per declared attribute (`_id` its name).
- `account_contacts`: one document per account and contact (`<account>:<contact>`) with the contact's roles.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from crm_customer import repository as customers
from crm_customer.profiles.attributes import AttributeDefinition
from crm_customer.profiles.domain import Address, Extras, PersonalEvent, external_keys
from crm_shared.logging import get_logger
from crm_shared.store import IndexSpec, UnitOfWork

log = get_logger(__name__)

ATTRIBUTE_DEFINITIONS = "attribute_definitions"
ACCOUNT_CONTACTS = "account_contacts"
_NEWEST = [("registered_at", DESCENDING), ("_id", DESCENDING)]
INDEXES = (
    IndexSpec(customers.CUSTOMERS, IndexModel([("search_name", ASCENDING)], name="search_name")),
    IndexSpec(customers.CUSTOMERS, IndexModel([("search_email", ASCENDING)], name="search_email")),
    IndexSpec(customers.CUSTOMERS, IndexModel([("search_phone", ASCENDING)], name="search_phone")),
    IndexSpec(customers.CUSTOMERS, IndexModel([("search_external", ASCENDING)], name="search_external")),
    IndexSpec(customers.CUSTOMERS, IndexModel([("tags", ASCENDING)], name="by_tag")),
    IndexSpec(customers.CUSTOMERS, IndexModel(_NEWEST, name="newest_first")),
    IndexSpec(ACCOUNT_CONTACTS, IndexModel([("account_id", ASCENDING), ("contact_id", ASCENDING)], name="by_account")),
    IndexSpec(ACCOUNT_CONTACTS, IndexModel([("contact_id", ASCENDING), ("account_id", ASCENDING)], name="by_contact")),
)


# ---------------------------------------------------------------- attribute declarations


def definition_to_document(definition: AttributeDefinition, at: datetime) -> dict[str, Any]:
    return {
        "_id": definition.name,
        "type": definition.type,
        "label": definition.label,
        "applies_to": definition.applies_to,
        "enum_values": list(definition.enum_values),
        "personal": definition.personal,
        "description": definition.description,
        "updated_at": at,
    }


def definition_from_document(doc: Mapping[str, Any]) -> AttributeDefinition:
    return AttributeDefinition(
        name=doc["_id"],
        type=doc["type"],
        label=doc["label"],
        applies_to=doc.get("applies_to", "any"),
        enum_values=tuple(doc.get("enum_values", [])),
        personal=doc.get("personal", False),
        description=doc.get("description"),
    )


async def definitions(
    db: AsyncDatabase[dict[str, Any]], uow: UnitOfWork | None = None
) -> dict[str, AttributeDefinition]:
    session = uow.session if uow is not None else None
    return {d["_id"]: definition_from_document(d) async for d in db[ATTRIBUTE_DEFINITIONS].find({}, session=session)}


# ---------------------------------------------------------------- extras


def _address(doc: Mapping[str, Any]) -> Address:
    parts = {k: doc.get(k) for k in ("line1", "line2", "postcode", "city", "region", "country")}
    return Address(kind=doc.get("kind") or "other", **parts)


def extras_to_fields(extras: Extras) -> dict[str, Any]:
    """The `$set` of the extras, with their search key."""
    return {
        "tags": list(extras.tags),
        "industry": extras.industry,
        "company_type": extras.company_type,
        "company_size": extras.company_size,
        "addresses": [a.__dict__ for a in extras.addresses],
        "birthday": extras.birthday.isoformat() if extras.birthday else None,
        "personal_events": [{"kind": e.kind, "on": e.on.isoformat(), "label": e.label} for e in extras.personal_events],
        "external_ids": dict(extras.external_ids),
        "search_external": external_keys(extras.external_ids),
        "attributes": dict(extras.attributes),
    }


def extras_from_document(doc: Mapping[str, Any]) -> Extras:
    return Extras(
        tags=tuple(doc.get("tags") or ()),
        industry=doc.get("industry"),
        company_type=doc.get("company_type"),
        company_size=doc.get("company_size"),
        addresses=tuple(_address(a) for a in doc.get("addresses") or ()),
        birthday=date.fromisoformat(doc["birthday"]) if doc.get("birthday") else None,
        personal_events=tuple(
            PersonalEvent(e["kind"], date.fromisoformat(e["on"]), e.get("label"))
            for e in doc.get("personal_events") or ()
        ),
        external_ids=dict(doc.get("external_ids") or {}),
        attributes=dict(doc.get("attributes") or {}),
    )


async def save_extras(uow: UnitOfWork, customer_id: str, extras: Extras, at: datetime) -> None:
    await uow.db[customers.CUSTOMERS].update_one(
        {"_id": customer_id}, {"$set": {**extras_to_fields(extras), "profile_updated_at": at}}, session=uow.session
    )


# ---------------------------------------------------------------- search keys of documents from before them

BACKFILL_PAGE = 500


async def backfill_search_keys(db: AsyncDatabase[dict[str, Any]]) -> int:
    """Give the profiles stored before search keys existed their keys: one pass, a page at a time, idempotent
    (the keys are a function of the profile). The number of profiles updated."""
    done = 0
    while True:
        page = (
            await db[customers.CUSTOMERS].find({"search_name": {"$exists": False}}).limit(BACKFILL_PAGE).to_list(None)
        )
        if not page:
            break
        writes = []
        for doc in page:
            fields = customers.profile_to_document(customers.profile_from_document(doc))
            keys = {k: fields[k] for k in ("kind", "search_name", "search_email", "search_phone")}
            writes.append(UpdateOne({"_id": doc["_id"], "search_name": {"$exists": False}}, {"$set": keys}))
        await db[customers.CUSTOMERS].bulk_write(writes, ordered=False)
        done += len(writes)
    if done:
        log.info("search_keys_backfilled", profiles=done)
    return done
