"""REST API of profiles beyond sign-up: declare custom attributes (`attributes:write`), change a profile's
extras, link contacts to accounts (`customers:write`), and search customers (`customers:read`), each person seeing
only the customers they see."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal, Self

from fastapi import APIRouter, Body, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, model_validator

from crm_customer import repository as customers
from crm_customer.identity import service as identity_service
from crm_customer.problems import no_customer
from crm_customer.profiles import domain, duplicates, service
from crm_customer.profiles import repository as extras_store
from crm_customer.profiles.attributes import (
    RANGE_TYPES,
    AppliesTo,
    AttributeDefinition,
    AttributeInvalid,
    AttributeType,
    public_value,
)
from crm_customer.profiles.duplicates import DEFAULT_NAME_THRESHOLD
from crm_customer.settings import match_secret_of
from crm_shared.api import Cursor, IdInPath, Limit, Page, keyset_page
from crm_shared.events import EntityId, Line, utc_now
from crm_shared.matching import normalise_email, normalise_phone
from crm_shared.problems import Problem
from crm_shared.security import Principal, requires
from crm_shared.service import StoreDep, get_runtime
from crm_shared.store import as_stored

router = APIRouter(prefix="/v1", tags=["profiles"])

CustomerReader = Annotated[Principal, requires("customers:read")]
CustomerWriter = Annotated[Principal, requires("customers:write")]
NOT_SEEN = "No such customer, or not one the caller sees"
Tag = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\s,][^,]*$")]
ShortText = Annotated[Line, Field(min_length=1, max_length=200)]


# ---------------------------------------------------------------- attribute declarations


class AttributeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: AttributeType
    label: ShortText
    applies_to: AppliesTo = "any"
    enum_values: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(default_factory=list)
    personal: bool = Field(
        default=False, description="Personal data: never published in events, removed by an erasure."
    )
    description: Annotated[Line, Field(max_length=500)] | None = None


class AttributeView(AttributeBody):
    name: str

    @classmethod
    def of(cls, d: AttributeDefinition) -> AttributeView:
        return cls(
            name=d.name,
            type=d.type,
            label=d.label,
            applies_to=d.applies_to,
            enum_values=list(d.enum_values),
            personal=d.personal,
            description=d.description,
        )


ATTRIBUTE_EXAMPLE = {"type": "enum", "label": "Loyalty card", "enum_values": ["none", "silver", "gold"]}


@router.put(
    "/attributes/{name}",
    response_model=AttributeView,
    summary="Declare or change a custom attribute: its type, the kind of customer it applies to, enum values",
    description="Every value written is checked against its declaration. A declaration in use keeps its type and "
    "its enum values (values may be added); changing them is a 409 that says how many customers hold a value.",
    dependencies=[requires("attributes:write")],
    responses={
        200: {"description": "Changed"},
        201: {"description": "Declared"},
        409: {"description": "A change that stored values would no longer fit"},
        422: {"description": "Invalid"},
    },
)
async def put_attribute(
    store: StoreDep,
    response: Response,
    name: IdInPath,
    body: Annotated[AttributeBody, Body(examples=[ATTRIBUTE_EXAMPLE])],
) -> AttributeView:
    try:
        definition = AttributeDefinition(name=name, **{**body.__dict__, "enum_values": tuple(body.enum_values)})
    except AttributeInvalid as exc:
        raise Problem(422, "Invalid attribute", str(exc)) from exc
    collection = store.db[extras_store.ATTRIBUTE_DEFINITIONS]
    known = await collection.find_one({"_id": name})
    if known is not None:
        before = extras_store.definition_from_document(known)
        dropped = set(before.enum_values) - set(definition.enum_values)
        if before.type != definition.type or dropped:
            holders = await store.db[customers.CUSTOMERS].count_documents({f"attributes.{name}": {"$exists": True}})
            if holders:
                what = (
                    f"type {before.type}" if before.type != definition.type else f"values {', '.join(sorted(dropped))}"
                )
                raise Problem(409, "Attribute in use", f"{holders} customers hold a value of {name}: its {what} stays")
    document = extras_store.definition_to_document(definition, as_stored(utc_now()))
    await collection.replace_one({"_id": name}, document, upsert=True)
    response.status_code = status.HTTP_200_OK if known is not None else status.HTTP_201_CREATED
    return AttributeView.of(definition)


@router.get(
    "/attributes",
    response_model=list[AttributeView],
    summary="The declared custom attributes, by name",
    dependencies=[requires("customers:read")],
)
async def list_attributes(store: StoreDep) -> list[AttributeView]:
    declared = await extras_store.definitions(store.db)
    return [AttributeView.of(d) for _, d in sorted(declared.items())]


@router.delete(
    "/attributes/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove an attribute's declaration (only while no customer holds a value of it)",
    dependencies=[requires("attributes:write")],
    responses={404: {"description": "Not declared"}, 409: {"description": "Customers hold a value of it"}},
)
async def delete_attribute(store: StoreDep, name: IdInPath) -> Response:
    holders = await store.db[customers.CUSTOMERS].count_documents({f"attributes.{name}": {"$exists": True}})
    if holders:
        raise Problem(409, "Attribute in use", f"{holders} customers hold a value of {name}: remove those first")
    if (await store.db[extras_store.ATTRIBUTE_DEFINITIONS].delete_one({"_id": name})).deleted_count == 0:
        raise Problem(404, "Attribute not found", f"no attribute {name} is declared")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# ---------------------------------------------------------------- the full profile


class AddressBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["billing", "shipping", "home", "office", "other"] = "other"
    line1: ShortText | None = None
    line2: ShortText | None = None
    postcode: Annotated[Line, Field(max_length=20)] | None = None
    city: ShortText | None = None
    region: Annotated[Line, Field(max_length=100)] | None = None
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2.")] | None = None


class PersonalEventBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Annotated[str, Field(min_length=1, max_length=50)] = Field(examples=["anniversary"])
    on: date
    label: ShortText | None = None


class ProfileChangeBody(BaseModel):
    """The fields sent are changed; null removes one. `attributes` and `external_ids` change per key."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[Line, Field(min_length=1, max_length=200)] | None = None
    email: Annotated[str, Field(max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")] | None = None
    phone: Annotated[str, Field(max_length=40, pattern=r"^\+?[0-9()][0-9 ()./-]{2,39}$")] | None = None
    tags: list[Tag] | None = Field(default=None, max_length=100)
    industry: ShortText | None = None
    company_type: ShortText | None = None
    company_size: domain.CompanySize | None = None
    addresses: list[AddressBody] | None = Field(default=None, max_length=20)
    birthday: date | None = None
    personal_events: list[PersonalEventBody] | None = Field(default=None, max_length=50)
    external_ids: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")], EntityId | None] | None = Field(
        default=None, max_length=20, description="A channel system's id of the customer, by system: webshop → W-123."
    )
    attributes: dict[Annotated[str, Field(max_length=63)], Any] | None = Field(
        default=None, max_length=200, description="Values of declared attributes (GET /v1/attributes); null removes."
    )

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("send at least one field to change")
        for name in ("tags", "addresses", "personal_events", "external_ids", "attributes"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null: send [] or {{}} to empty it")
        return self

    def change(self) -> domain.ProfileChange:
        return domain.ProfileChange(
            sent=frozenset(self.model_fields_set),
            tags=tuple(self.tags or ()),
            industry=self.industry,
            company_type=self.company_type,
            company_size=self.company_size,
            addresses=tuple(domain.Address(**a.model_dump()) for a in self.addresses or ()),
            birthday=self.birthday,
            personal_events=tuple(domain.PersonalEvent(e.kind, e.on, e.label) for e in self.personal_events or ()),
            external_ids=dict(self.external_ids or {}),
            attributes=dict(self.attributes or {}),
            contact={n: getattr(self, n) for n in domain.CONTACT_DETAILS if n in self.model_fields_set},
        )


class FullProfileView(BaseModel):
    customer_id: str
    kind: domain.Kind
    name: str | None = Field(description="None once the customer's personal data was erased.")
    email: str | None
    phone: str | None
    channel: str = Field(description="The channel the customer signed up in.")
    consents: dict[str, bool]
    preferred_channel: str | None
    registered_at: datetime
    personal_data_erased_at: datetime | None
    owner_id: str | None
    territory: str | None
    tags: list[str]
    industry: str | None
    company_type: str | None
    company_size: str | None
    addresses: list[AddressBody]
    birthday: date | None
    personal_events: list[PersonalEventBody]
    external_ids: dict[str, str]
    attributes: dict[str, Any]
    profile_updated_at: datetime | None = Field(description="When the extras last changed; null: never.")
    merged_into: str | None = Field(
        default=None,
        description="The customer this one was merged into (GET /v1/customers/{customer_id}/merges); null: none.",
    )

    @classmethod
    def of(cls, full: service.FullProfile) -> FullProfileView:
        p, d, x = full.profile, full.profile.details, full.extras
        return cls(
            customer_id=p.customer_id,
            kind=d.kind,
            name=d.name,
            email=d.email,
            phone=d.phone,
            channel=d.channel,
            consents=dict(d.consents),
            preferred_channel=d.preferred_channel,
            registered_at=p.registered_at,
            personal_data_erased_at=p.erased_at,
            owner_id=full.owner_id,
            territory=full.territory,
            tags=list(x.tags),
            industry=x.industry,
            company_type=x.company_type,
            company_size=x.company_size,
            addresses=[AddressBody(**a.__dict__) for a in x.addresses],
            birthday=x.birthday,
            personal_events=[PersonalEventBody(kind=e.kind, on=e.on, label=e.label) for e in x.personal_events],
            external_ids=dict(x.external_ids),
            attributes={name: public_value(v) for name, v in sorted(x.attributes.items())},
            profile_updated_at=full.updated_at,
            merged_into=full.merged_into,
        )


async def read_full_profile(store: StoreDep, customer_id: str, principal: Principal | None) -> FullProfileView:
    doc = await store.db[customers.CUSTOMERS].find_one(service.seen_by(principal, {"_id": customer_id}))
    if doc is None:
        raise no_customer(customer_id)
    return FullProfileView.of(service.full_profile(doc))


CHANGE_EXAMPLE = {
    "tags": ["vip", "espresso"],
    "addresses": [{"kind": "shipping", "line1": "1 Demo Street", "city": "Leeds", "country": "GB"}],
    "external_ids": {"webshop": "W-1001"},
    "attributes": {"loyalty_card": "gold"},
}


@router.patch(
    "/customers/{customer_id}",
    response_model=FullProfileView,
    summary="Change a profile's name, email, phone, tags, company facts, addresses, birthday, events, external ids "
    "or attributes",
    description="Publishes crm.customer.profile_updated.v1 with the names of the fields changed and the values "
    "that are not personal data (never the name, email or phone); a new email or phone publishes the customer's "
    "match keys again. Consents change through their own operation. A customer merged into another is changed "
    "through its survivor (422).",
    responses={404: {"description": NOT_SEEN}, 422: {"description": "Invalid, or an attribute value its type refuses"}},
)
async def change_profile(
    principal: CustomerWriter,
    store: StoreDep,
    request: Request,
    customer_id: IdInPath,
    body: Annotated[ProfileChangeBody, Body(examples=[CHANGE_EXAMPLE])],
) -> FullProfileView:
    try:
        full, _ = await service.update_profile(
            store,
            customer_id,
            body.change(),
            utc_now(),
            by=principal,
            match_secret=match_secret_of(get_runtime(request).settings),
        )
    except service.CustomerNotFound as exc:
        raise no_customer(customer_id) from exc
    except domain.ProfileRefused as exc:
        raise Problem(422, "Profile change refused", str(exc)) from exc
    return FullProfileView.of(full)


# ---------------------------------------------------------------- accounts and contacts


class ContactBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    roles: list[domain.ContactRole] = Field(min_length=1, max_length=5)


class ContactView(BaseModel):
    account_id: str
    contact_id: str
    roles: list[domain.ContactRole]
    since: datetime
    updated_at: datetime

    @classmethod
    def of(cls, c: service.Contact) -> ContactView:
        return cls(
            account_id=c.account_id,
            contact_id=c.contact_id,
            roles=list(c.roles),
            since=c.since,
            updated_at=c.updated_at,
        )


async def _set_contact(
    store: StoreDep, principal: Principal, account_id: str, contact_id: str, roles: tuple[domain.ContactRole, ...]
) -> service.Contact | None:
    try:
        return await service.set_contact(store, account_id, contact_id, roles, utc_now(), by=principal)
    except service.CustomerNotFound as exc:
        raise no_customer(str(exc)) from exc
    except domain.ProfileRefused as exc:
        raise Problem(422, "Contact refused", str(exc)) from exc


@router.put(
    "/customers/{account_id}/contacts/{contact_id}",
    response_model=ContactView,
    summary="Make a person a contact of an organisation, with their roles (buyer, decision maker, ...)",
    description="Publishes crm.account.contact_changed.v1 (keyed by the account).",
    responses={404: {"description": NOT_SEEN}, 422: {"description": "Not an organisation and a person"}},
)
async def put_contact(
    principal: CustomerWriter, store: StoreDep, account_id: IdInPath, contact_id: IdInPath, body: ContactBody
) -> ContactView:
    contact = await _set_contact(store, principal, account_id, contact_id, domain.roles_of(body.roles))
    assert contact is not None
    return ContactView.of(contact)


@router.delete(
    "/customers/{account_id}/contacts/{contact_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="The person is no longer a contact of the organisation",
    responses={404: {"description": f"{NOT_SEEN}, or not its contact"}},
)
async def delete_contact(
    principal: CustomerWriter, store: StoreDep, account_id: IdInPath, contact_id: IdInPath
) -> Response:
    if await _set_contact(store, principal, account_id, contact_id, ()) is None:
        raise Problem(404, "Contact not found", f"{contact_id} is not a contact of {account_id}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _links(
    store: StoreDep, principal: Principal, customer_id: str, field: str, limit: int, cursor: str | None
) -> Page[ContactView]:
    if (
        await store.db[customers.CUSTOMERS].find_one(service.seen_by(principal, {"_id": customer_id}), {"_id": 1})
        is None
    ):
        raise no_customer(customer_id)
    docs, next_cursor = await keyset_page(
        store.db[extras_store.ACCOUNT_CONTACTS],
        {field: customer_id},
        time_field="since",
        limit=limit,
        cursor=cursor,
        newest_first=False,
    )
    return Page[ContactView](items=[ContactView.of(service.contact_of(d)) for d in docs], next_cursor=next_cursor)


@router.get(
    "/customers/{account_id}/contacts",
    response_model=Page[ContactView],
    summary="An organisation's contacts and their roles, longest-standing first",
    responses={404: {"description": NOT_SEEN}},
)
async def list_contacts(
    principal: CustomerReader, store: StoreDep, account_id: IdInPath, limit: Limit = 50, cursor: Cursor = None
) -> Page[ContactView]:
    return await _links(store, principal, account_id, "account_id", limit, cursor)


@router.get(
    "/customers/{contact_id}/accounts",
    response_model=Page[ContactView],
    summary="The organisations a person is a contact of, and their roles there",
    responses={404: {"description": NOT_SEEN}},
)
async def list_accounts(
    principal: CustomerReader, store: StoreDep, contact_id: IdInPath, limit: Limit = 50, cursor: Cursor = None
) -> Page[ContactView]:
    return await _links(store, principal, contact_id, "contact_id", limit, cursor)


# ---------------------------------------------------------------- search

FIXED_FILTERS = (
    "q",
    "email",
    "phone",
    "external_id",
    "tag",
    "kind",
    "industry",
    "company_size",
    "owner_id",
    "limit",
    "cursor",
)


async def _attribute_filters(store: StoreDep, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """`attr.<name>=value` (equality) and `attr.<name>.gte|lte=value` (number, money, date) as query clauses,
    each value parsed by the attribute's declared type: what a user typed is a value, never an operator."""
    declared = await extras_store.definitions(store.db)
    clauses: list[dict[str, Any]] = []
    for key, raw in params:
        _, _, rest = key.partition(".")
        name, _, op = rest.partition(".")
        definition = declared.get(name)
        if definition is None:
            raise Problem(422, "Unknown attribute", f"{key}: no attribute {name!r} is declared (GET /v1/attributes)")
        if op not in ("", "gte", "lte"):
            raise Problem(
                422, "Invalid filter", f"{key}: filter with attr.{name}=, attr.{name}.gte= or attr.{name}.lte="
            )
        if op and definition.type not in RANGE_TYPES:
            raise Problem(422, "Invalid filter", f"{key}: a {definition.type} attribute has no range")
        try:
            value = definition.parse_query(raw)
        except AttributeInvalid as exc:
            raise Problem(422, "Invalid filter", f"{key}: {exc}") from exc
        field = f"attributes.{name}"
        if definition.type == "money":
            currency = {f"{field}.currency": value["currency"]}
            if op:
                clauses.append({f"{field}.value": {f"${op}": value["value"]}, **currency})
            else:
                clauses.append({f"{field}.amount": value["amount"], **currency})
        else:
            clauses.append({field: {f"${op}": value} if op else value})
    return clauses


@router.get(
    "/customers",
    response_model=Page[FullProfileView],
    summary="Search customers: by name, email, phone, external id, tag, kind, company facts and attribute values",
    description='Every filter narrows the result. `q` matches the beginnings of the words of the name ("ada lov" '
    "finds Ada Lovelace, accents and case aside); `email` and `phone` match the normalised value exactly; "
    "`external_id` is `system:id`; `tag` may repeat (all must hold); `attr.<name>=value` matches a declared "
    "attribute's value and `attr.<name>.gte|lte=` bounds a number, date or money (`12.50 EUR`). Newest sign-up "
    "first. An unknown filter is a 422.",
    responses={422: {"description": "An unknown filter, or a value its field or attribute refuses"}},
)
async def search_customers(
    principal: CustomerReader,
    store: StoreDep,
    request: Request,
    q: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    email: Annotated[str | None, Query(max_length=320)] = None,
    phone: Annotated[str | None, Query(max_length=40)] = None,
    external_id: Annotated[str | None, Query(max_length=200, pattern=r"^[a-z][a-z0-9_-]{0,31}:.+$")] = None,
    tag: Annotated[list[str] | None, Query(max_length=20)] = None,
    kind: domain.Kind | None = None,
    industry: Annotated[str | None, Query(max_length=200)] = None,
    company_size: domain.CompanySize | None = None,
    owner_id: Annotated[str | None, Query(max_length=128)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[FullProfileView]:
    params = list(request.query_params.multi_items())
    unknown = sorted({k for k, _ in params if k not in FIXED_FILTERS and not k.startswith("attr.")})
    if unknown:
        raise Problem(
            422, "Unknown filter", f"{', '.join(unknown)}: the filters are {', '.join(FIXED_FILTERS)} and attr.<name>"
        )
    clauses: list[dict[str, Any]] = []
    if q is not None:
        terms = domain.query_prefixes(q)
        if not terms:
            raise Problem(422, "Invalid filter", "q: give at least one letter or digit")
        clauses.append({"search_name": {"$all": terms}})
    try:
        if email is not None:
            clauses.append({"search_email": normalise_email(email)})
        if phone is not None:
            clauses.append({"search_phone": normalise_phone(phone)})
    except ValueError as exc:
        raise Problem(422, "Invalid filter", str(exc)) from exc
    if external_id is not None:
        clauses.append({"search_external": external_id})
    for wanted in tag or ():
        clauses.append({"tags": wanted})
    for field, value in (
        ("kind", kind),
        ("industry", industry),
        ("company_size", company_size),
        ("owner_id", owner_id),
    ):
        if value is not None:
            clauses.append({field: value})
    clauses += await _attribute_filters(store, [(k, v) for k, v in params if k.startswith("attr.")])
    query: dict[str, Any] = {"$and": clauses} if len(clauses) > 1 else (clauses[0] if clauses else {})
    docs, next_cursor = await keyset_page(
        store.db[customers.CUSTOMERS],
        service.seen_by(principal, query),
        time_field="registered_at",
        limit=limit,
        cursor=cursor,
        newest_first=True,
    )
    # A customer merged into another is found as the survivor (a page may hold fewer items for it).
    items = [FullProfileView.of(service.full_profile(d)) for d in docs if not d.get("merged_into")]
    return Page[FullProfileView](items=items, next_cursor=next_cursor)


# ---------------------------------------------------------------- duplicate candidates

CANDIDATES_PER_RULE = 200
"""Documents read per lookup: a name block shared by more customers than this is too common to say much."""


class CandidateView(BaseModel):
    customer_id: str
    strength: Literal["strong", "proposed"] = Field(
        description="strong: the same email, phone or external id; proposed: alike names with a shared place or "
        "organisation, for a person to confirm."
    )
    score: float = Field(description="100 for a strong identifier, else how alike the names are (0-100).")
    evidence: list[str] = Field(examples=[["names 91% alike", "the same postcode LS14AB"]])
    name: str | None
    registered_at: datetime


@router.get(
    "/customers/{customer_id}/duplicates",
    response_model=list[CandidateView],
    summary="Customers who may be the same person or organisation, strongest first, with the evidence; confirm "
    "one with POST /v1/customers/{customer_id}/merges",
    description="Strong: the same normalised email or phone, or the same external id. Proposed: names at least "
    "`name_threshold` alike (CRM_CUSTOMER_DUPLICATE_NAME_THRESHOLD by default) and a shared postcode, city or "
    "organisation. Only customers the caller sees are compared; customers merged already, and pairs a person "
    "rejected (POST .../duplicates/{other_id}/rejection), are left out.",
    responses={404: {"description": NOT_SEEN}},
)
async def duplicate_candidates(
    principal: CustomerReader,
    store: StoreDep,
    request: Request,
    customer_id: IdInPath,
    name_threshold: Annotated[float | None, Query(ge=50, le=100)] = None,
) -> list[CandidateView]:
    default = float(getattr(get_runtime(request).settings, "duplicate_name_threshold", DEFAULT_NAME_THRESHOLD))
    threshold = name_threshold if name_threshold is not None else default
    collection = store.db[customers.CUSTOMERS]
    subject = await collection.find_one(service.seen_by(principal, {"_id": customer_id}))
    if subject is None:
        raise no_customer(customer_id)
    lookups = [*duplicates.strong_queries(subject)]
    blocks = duplicates.blocking_keys(subject.get("name"))
    if blocks:
        lookups.append({"search_name": {"$in": blocks}, "kind": subject.get("kind", "person")})
    others: dict[str, dict[str, Any]] = {}
    for lookup in lookups:
        found = collection.find(service.seen_by(principal, {**lookup, "_id": {"$ne": customer_id}}))
        for doc in await found.limit(CANDIDATES_PER_RULE).to_list(None):
            if not doc.get("merged_into"):  # merged already: its survivor is the candidate
                others[doc["_id"]] = doc
    for rejected in await identity_service.rejected_among(store, customer_id, others):
        del others[rejected]  # a person said they are not one
    ids = [customer_id, *others]
    accounts: dict[str, set[str]] = {}
    async for link in store.db[extras_store.ACCOUNT_CONTACTS].find({"contact_id": {"$in": ids}}):
        accounts.setdefault(link["contact_id"], set()).add(link["account_id"])
    found_candidates = duplicates.candidates(subject, others.values(), accounts, threshold)
    return [
        CandidateView(
            customer_id=c.customer_id,
            strength=c.strength,
            score=c.score,
            evidence=list(c.evidence),
            name=others[c.customer_id].get("name"),
            registered_at=others[c.customer_id]["registered_at"],
        )
        for c in found_candidates
    ]
