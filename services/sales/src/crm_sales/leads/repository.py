"""The sales database's `leads` collection.

A lead document carries the agreed fields (`status`, `source`, `customer_id`, the contact fields, `owner_id`,
`territory`, `created_at`, `converted_at`, `account_id`, `opportunity_id`, `disqualified_reason`) plus
`email_key` and `phone_key`, the normalised email and phone duplicates are found by (each unique where set),
and `unassigned_reason`. Documents marketing's hand-over wrote before leads had a source read as
`source: marketing`, with `created_at` their `qualified_at`.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel

from crm_sales.leads.domain import DuplicateKeys, Lead
from crm_shared.store import IndexSpec, UnitOfWork, find_any

LEADS = "leads"

_NEWEST = [("created_at", DESCENDING), ("_id", DESCENDING)]
_KEYED = {"unique": True}

INDEXES = (
    IndexSpec(LEADS, IndexModel(_NEWEST, name="newest_created_first")),
    IndexSpec(LEADS, IndexModel([("customer_id", ASCENDING), *_NEWEST], name="by_customer_created")),
    # A person's lead list is an $or of their owners and their territories: one index per branch, in list order.
    # The owner index also counts a rep's open leads for assignment.
    IndexSpec(LEADS, IndexModel([("owner_id", ASCENDING), *_NEWEST], name="by_owner_created")),
    IndexSpec(LEADS, IndexModel([("territory", ASCENDING), *_NEWEST], name="by_territory_created")),
    # One lead per person: a second lead with the same email or phone is a duplicate, even under a race.
    IndexSpec(
        LEADS,
        IndexModel(
            [("email_key", ASCENDING)],
            name="one_per_email",
            partialFilterExpression={"email_key": {"$type": "string"}},
            **_KEYED,
        ),
    ),
    IndexSpec(
        LEADS,
        IndexModel(
            [("phone_key", ASCENDING)],
            name="one_per_phone",
            partialFilterExpression={"phone_key": {"$type": "string"}},
            **_KEYED,
        ),
    ),
)

ASSIGNMENT_FIELDS = ("owner_id", "territory", "unassigned_reason")


def lead_to_document(lead: Lead) -> dict[str, Any]:
    return {
        "_id": lead.lead_id,
        "status": lead.status,
        "source": lead.source,
        "customer_id": lead.customer_id,
        "name": lead.name,
        "email": lead.email,
        "phone": lead.phone,
        "company": lead.company,
        "industry": lead.industry,
        "company_size": lead.company_size,
        "region": lead.region,
        "email_key": lead.email_key,
        "phone_key": lead.phone_key,
        "owner_id": lead.owner_id,
        "territory": lead.territory,
        "unassigned_reason": lead.unassigned_reason,
        "created_at": lead.created_at,
        "converted_at": lead.converted_at,
        "account_id": lead.account_id,
        "opportunity_id": lead.opportunity_id,
        "disqualified_reason": lead.disqualified_reason,
        "segment_id": lead.segment_id,
        "reason": lead.reason,
        "value_tier": lead.value_tier,
        "lifecycle_stage": lead.lifecycle_stage,
        "qualified_at": lead.qualified_at,
    }


def lead_from_document(doc: Mapping[str, Any]) -> Lead:
    return Lead(
        lead_id=doc["_id"],
        created_at=doc.get("created_at") or doc["qualified_at"],
        source=doc.get("source", "marketing"),
        status=doc.get("status", "new"),
        customer_id=doc.get("customer_id"),
        name=doc.get("name"),
        email=doc.get("email"),
        phone=doc.get("phone"),
        company=doc.get("company"),
        industry=doc.get("industry"),
        company_size=doc.get("company_size"),
        region=doc.get("region"),
        owner_id=doc.get("owner_id"),
        territory=doc.get("territory"),
        unassigned_reason=doc.get("unassigned_reason"),
        disqualified_reason=doc.get("disqualified_reason"),
        converted_at=doc.get("converted_at"),
        account_id=doc.get("account_id"),
        opportunity_id=doc.get("opportunity_id"),
        segment_id=doc.get("segment_id"),
        reason=doc.get("reason"),
        value_tier=doc.get("value_tier"),
        lifecycle_stage=doc.get("lifecycle_stage"),
        qualified_at=doc.get("qualified_at"),
    )


async def insert_leads(
    uow: UnitOfWork, leads: Iterable[Lead], origins: Mapping[str, Mapping[str, str]] | None = None
) -> None:
    """Insert new leads in one bulk write (a duplicate email or phone raises, rolling the transaction back).
    `origins` by lead id: what a lead taken for an event keeps of the customer id it named
    (crm_shared.identity.origin_fields)."""
    documents = [{**lead_to_document(lead), **(origins or {}).get(lead.lead_id, {})} for lead in leads]
    if documents:
        await uow.db[LEADS].insert_many(documents, ordered=False, session=uow.session)


@dataclass
class KnownLeads:
    """The existing leads a set of new ones could duplicate, by what they would duplicate them by."""

    by_email: dict[str, str] = field(default_factory=dict)
    by_phone: dict[str, str] = field(default_factory=dict)
    by_customer: dict[str, str] = field(default_factory=dict)

    def duplicate_of(self, keys: DuplicateKeys) -> str | None:
        """The id of the lead `keys` duplicates, or None."""
        for key, known in (
            (keys.email, self.by_email),
            (keys.phone, self.by_phone),
            (keys.customer_id, self.by_customer),
        ):
            if key is not None and key in known:
                return known[key]
        return None

    def add(self, lead_id: str, keys: DuplicateKeys) -> None:
        for key, known in (
            (keys.email, self.by_email),
            (keys.phone, self.by_phone),
            (keys.customer_id, self.by_customer),
        ):
            if key is not None:
                known.setdefault(key, lead_id)


async def known_leads(uow: UnitOfWork, keys: Iterable[DuplicateKeys]) -> KnownLeads:
    """The existing leads sharing an email, a phone or a customer id with `keys`: one query per key kind (and per
    short `$in`), on their indexes."""
    wanted = list(keys)
    known = KnownLeads()
    projection = {"_id": 1, "email_key": 1, "phone_key": 1, "customer_id": 1}
    for name, values, into in (
        ("email_key", {k.email for k in wanted if k.email}, known.by_email),
        ("phone_key", {k.phone for k in wanted if k.phone}, known.by_phone),
        ("customer_id", {k.customer_id for k in wanted if k.customer_id}, known.by_customer),
    ):
        if not values:
            continue
        found = await find_any(uow.db[LEADS], [{name: {"$in": sorted(values)}}], projection, session=uow.session)
        for doc in sorted(found, key=lambda d: str(d["_id"])):
            if doc.get(name) in values:
                into.setdefault(doc[name], doc["_id"])
    return known
