"""REST API of leads: entered, imported from CSV and handed over by marketing; seen, progressed and assigned
row by row."""

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Self

from fastapi import APIRouter, Body, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from crm_sales.leads import conversion, domain, handlers, importing, repository
from crm_sales.leads.drafts import LeadDraft
from crm_sales.opportunities import domain as opportunities
from crm_sales.opportunities import handlers as opportunity_handlers
from crm_sales.orders.handlers import CurrencyNotAccepted
from crm_sales.web import currency_not_accepted, match_secret_of, rates_of
from crm_shared.api import Cursor, IdempotencyKey, IdInPath, Limit, Page, command_event_id, keyset_page
from crm_shared.events import (
    Channel,
    Currency,
    CustomerId,
    EntityId,
    LeadSource,
    Line,
    Money,
    OrderLine,
    Text,
    utc_now,
)
from crm_shared.problems import Problem
from crm_shared.security import Principal, TerritoryId, UserId, requires
from crm_shared.service import StoreDep

LeadReader = Annotated[Principal, requires("leads:read")]
LeadWriter = Annotated[Principal, requires("leads:write")]


class LeadView(BaseModel):
    lead_id: str
    status: domain.LeadStatus
    source: LeadSource
    customer_id: str | None = Field(description="None until converted, unless marketing qualified a customer.")
    name: str | None
    email: str | None
    phone: str | None
    company: str | None
    industry: str | None
    company_size: int | None
    region: str | None
    owner_id: str | None = Field(description="The sales person who owns the lead (their token subject); null for none.")
    territory: str | None = Field(description="The lead's territory; null for none.")
    unassigned_reason: str | None = Field(description="Why the rules gave the lead no owner; null when it has one.")
    created_at: datetime
    disqualified_reason: str | None
    converted_at: datetime | None
    account_id: str | None
    opportunity_id: str | None
    segment_id: str | None = Field(description="Marketing's hand-over: the segment that qualified the lead.")
    reason: str | None = Field(description="Marketing's hand-over: why the lead was qualified.")
    value_tier: str | None
    lifecycle_stage: str | None
    qualified_at: datetime | None = Field(description="When marketing qualified the lead; null for other sources.")

    @classmethod
    def of(cls, lead: domain.Lead) -> "LeadView":
        return cls(**lead.__dict__)


Reason = Annotated[Text, Field(min_length=1, max_length=500)]


def _at_least_one_field(schema: dict[str, Any]) -> None:
    # An absent field stays as it is: no property has a default to show.
    for field in schema.get("properties", {}).values():
        field.pop("default", None)
    schema["minProperties"] = 1


class LeadUpdate(BaseModel):
    """What to change on a lead: the fields sent are set (null unassigns the owner or the territory), the others
    stay as they are. At least one field."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_at_least_one_field)

    owner_id: UserId | None = Field(
        default=None, description="The owning sales person (their token subject); null for none."
    )
    territory: TerritoryId | None = Field(default=None, description="The territory; null for none.")
    status: domain.LeadStatus | SkipJsonSchema[None] = Field(
        default=None,
        description="new → contacted → qualified, or disqualified (with `disqualified_reason`) from any of them; "
        "`converted` only by converting the lead.",
    )
    disqualified_reason: Reason | SkipJsonSchema[None] = Field(
        default=None, description="Why the lead is disqualified: required with that status, refused with another."
    )

    @model_validator(mode="after")
    def _changes_something(self) -> Self:
        if not self.model_fields_set - {"disqualified_reason"}:
            raise ValueError("send at least one of owner_id, territory, status")
        for name in ("status", "disqualified_reason"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        if (self.status == "disqualified") != (self.disqualified_reason is not None):
            raise ValueError("disqualified_reason goes with status disqualified, and only with it")
        return self

    def changes(self) -> dict[str, str | None]:
        return {name: getattr(self, name) for name in sorted(self.model_fields_set)}


LEAD_UPDATE_EXAMPLE = {"owner_id": "rep-17", "territory": "north"}
LEAD_EXAMPLE = {
    "source": "field_visit",
    "name": "Ada Lovelace",
    "email": "ada@example.com",
    "phone": "+44 20 7946 0018",
    "company": "Analytical Engines Ltd",
    "industry": "manufacturing",
    "company_size": 120,
    "region": "north",
}
NO_SUCH_LEAD: dict[int | str, dict[str, Any]] = {404: {"description": "No such lead, or not one the caller sees"}}
STATUS_REFUSED: dict[int | str, dict[str, Any]] = {
    409: {"description": "The lifecycle does not allow this status next: the problem lists `allowed_statuses`"}
}


def lead_not_found(lead_id: str) -> Problem:
    """The same answer for a lead that is missing and one the caller may not see."""
    return Problem(404, "Lead not found", f"no lead {lead_id}")


def duplicate_lead(exc: handlers.DuplicateLead) -> Problem:
    # The existing lead's id only: the email or phone it shares is personal data.
    return Problem(409, "Duplicate lead", str(exc), existing_lead_id=exc.existing_id)


def duplicate_customer(exc: handlers.DuplicateCustomer) -> Problem:
    return Problem(409, "Lead is a customer", str(exc), existing_customer_id=exc.customer_id)


router = APIRouter(prefix="/v1", tags=["leads"])


async def _lead_page(
    store: StoreDep, principal: Principal, query: dict[str, Any], limit: int, cursor: str | None
) -> Page[LeadView]:
    docs, next_cursor = await keyset_page(
        store.db[repository.LEADS],
        handlers.leads_seen_by(principal, query),
        time_field="created_at",
        limit=limit,
        cursor=cursor,
        newest_first=True,
    )
    return Page[LeadView](items=[LeadView.of(repository.lead_from_document(d)) for d in docs], next_cursor=next_cursor)


@router.get(
    "/leads",
    response_model=Page[LeadView],
    summary="Leads the caller sees, newest first",
    description="A person sees the leads they or their team own and those of their territories; an API key, "
    "`admin` or `records:all` sees every lead.",
)
async def leads(principal: LeadReader, store: StoreDep, limit: Limit = 50, cursor: Cursor = None) -> Page[LeadView]:
    return await _lead_page(store, principal, {}, limit, cursor)


@router.post(
    "/leads",
    response_model=LeadView,
    status_code=status.HTTP_201_CREATED,
    summary="Enter a lead from any source; the territories' rules assign it",
    description="A lead needs a name or a company and an email or a phone. One with the email or phone of an "
    "existing lead (compared trimmed and lower-case; phone by its digits) is refused with 409, naming the "
    "existing lead in `existing_lead_id`; one with a customer's (by the customer service's match keys, when "
    "CRM_MATCH_KEY_SECRET is set) likewise, naming the customer in `existing_customer_id`. Without `owner_id` "
    "the first matching territory's rep gets it.",
    responses={
        200: {"description": "Entered before with this Idempotency-Key and this content"},
        409: {
            "description": "A duplicate of an existing lead or a customer, or the Idempotency-Key was used for "
            "another lead"
        },
    },
)
async def create_lead(
    request: Request,
    principal: LeadWriter,
    store: StoreDep,
    response: Response,
    draft: Annotated[LeadDraft, Body(examples=[LEAD_EXAMPLE])],
    idempotency_key: IdempotencyKey = None,
) -> LeadView:
    lead_id = "L-" + command_event_id(f"sales/leads/{principal.kind}:{principal.id}", idempotency_key)
    try:
        lead, created = await handlers.create_lead(
            store, draft, lead_id, utc_now(), match_secret=match_secret_of(request)
        )
    except handlers.DuplicateLead as exc:
        raise duplicate_lead(exc) from exc
    except handlers.DuplicateCustomer as exc:
        raise duplicate_customer(exc) from exc
    if not created:
        if not handlers.same_request(lead, draft):
            raise Problem(409, "Idempotency-Key reused", "this Idempotency-Key was used for a different lead")
        response.status_code = status.HTTP_200_OK
    return LeadView.of(lead)


IMPORT_MAX_BYTES = 5 * 1024 * 1024
CSV_MEDIA = "text/csv"
CSV_EXAMPLE = "name,email,phone,company,region\nAda Lovelace,ada@example.com,+44 20 7946 0018,Engines Ltd,north\n"


class RowRejected(BaseModel):
    row: int = Field(description="The row as a spreadsheet numbers it: the header is row 1.")
    reason: str


class ImportView(BaseModel):
    imported: int
    duplicates: int = Field(
        description="Rows refused as duplicates (of an earlier row, an existing lead, or a customer)."
    )
    rejected: list[RowRejected] = Field(description="Every row not imported, duplicates included, with the reason.")


@router.post(
    "/leads/import",
    response_model=ImportView,
    summary="Import leads from a CSV file (the request body, text/csv)",
    description="The header names any of the columns name, email, phone, company, industry, company_size, "
    "region, source, owner_id. Each row is checked on its own: a bad row is reported with its number and the "
    "reason, and never stops the good ones, which are imported (assigned by the territories' rules) "
    f"{handlers.IMPORT_CHUNK} rows per transaction. A file that is re-sent imports nothing twice: its rows are "
    "duplicates then.",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {CSV_MEDIA: {"schema": {"type": "string"}, "example": CSV_EXAMPLE}},
        }
    },
    responses={
        413: {"description": f"The file is over {IMPORT_MAX_BYTES} bytes (or the service's request limit)"},
        415: {"description": "The body is not text/csv"},
        422: {"description": "The file is not a leads CSV (no header, unknown columns, not UTF-8)"},
    },
)
async def import_leads(
    principal: LeadWriter,
    store: StoreDep,
    request: Request,
    source: Annotated[LeadSource, Query(description="The source of rows without one.")] = "directory_import",
) -> ImportView:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != CSV_MEDIA:
        raise Problem(
            415, "Unsupported Media Type", f"the file must be sent as {CSV_MEDIA}, not {media[:100] or 'none'}"
        )
    body = await request.body()
    if len(body) > IMPORT_MAX_BYTES:
        raise Problem(413, "Content Too Large", f"the file is over {IMPORT_MAX_BYTES} bytes")
    try:
        parsed = importing.parse_leads(importing.decode(body), source)
    except importing.UnreadableFile as exc:
        raise Problem(422, "Not a leads CSV", str(exc)) from exc
    summary = await handlers.import_leads(store, parsed, utc_now(), match_secret=match_secret_of(request))
    return ImportView(
        imported=summary.imported,
        duplicates=summary.duplicates,
        rejected=[RowRejected(row=e.row, reason=e.reason) for e in summary.rejected],
    )


class ReassignView(BaseModel):
    examined: int = Field(description="Open leads without an owner looked at.")
    assigned: int = Field(description="Of them, those the rules gave an owner.")
    still_unassigned: int = Field(description="Of them, those still without one (see their unassigned_reason).")
    next_cursor: str | None = Field(description="Pass as `cursor` to go on with the next batch; null at the end.")


@router.post(
    "/leads/assign",
    response_model=ReassignView,
    summary="Apply the assignment rules again to open leads without an owner, a batch at a time",
    description="The oldest first, at most `limit` per call, each batch in one transaction; `next_cursor` goes "
    "on after the batch. Only the leads the caller sees.",
)
async def assign_unassigned(
    principal: LeadWriter,
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=500, description="Leads per batch.")] = 200,
    cursor: Cursor = None,
) -> ReassignView:
    done = await handlers.assign_unassigned(store, seen_by=principal, limit=limit, cursor=cursor)
    return ReassignView(**done.__dict__)


@router.post(
    "/leads/{lead_id}/assign",
    response_model=LeadView,
    summary="Apply the assignment rules again to one open lead (territory and owner)",
    responses={**NO_SUCH_LEAD, 409: {"description": "The lead is converted or disqualified"}},
)
async def assign_lead(principal: LeadWriter, store: StoreDep, lead_id: IdInPath) -> LeadView:
    try:
        lead = await handlers.assign_lead(store, lead_id, seen_by=principal)
    except handlers.LeadClosed as exc:
        raise Problem(409, "Lead closed", str(exc)) from exc
    if lead is None:
        raise lead_not_found(lead_id)
    return LeadView.of(lead)


@router.get(
    "/customers/{customer_id}/leads",
    response_model=Page[LeadView],
    summary="A customer's leads the caller sees, newest first",
)
async def customer_leads(
    principal: LeadReader, store: StoreDep, customer_id: IdInPath, limit: Limit = 50, cursor: Cursor = None
) -> Page[LeadView]:
    return await _lead_page(store, principal, {"customer_id": customer_id}, limit, cursor)


@router.get("/leads/{lead_id}", response_model=LeadView, summary="One lead", responses=NO_SUCH_LEAD)
async def get_lead(principal: LeadReader, store: StoreDep, lead_id: IdInPath) -> LeadView:
    lead = await handlers.find_lead(store, lead_id, seen_by=principal)
    if lead is None:
        raise lead_not_found(lead_id)
    return LeadView.of(lead)


@router.patch(
    "/leads/{lead_id}",
    response_model=LeadView,
    summary="Assign a lead (owner, territory) or move it on in its lifecycle",
    description="Only a lead the caller sees can be changed; the answer is the lead after the change. A status "
    "the lifecycle does not allow next is refused with 409 listing `allowed_statuses`.",
    responses={**NO_SUCH_LEAD, **STATUS_REFUSED},
)
async def change_lead(
    principal: LeadWriter,
    store: StoreDep,
    lead_id: IdInPath,
    update: Annotated[LeadUpdate, Body(examples=[LEAD_UPDATE_EXAMPLE, {"status": "contacted"}])],
) -> LeadView:
    try:
        lead = await handlers.change_lead(store, lead_id, update.changes(), seen_by=principal)
    except domain.TransitionRefused as exc:
        raise Problem(409, "Status change refused", str(exc), allowed_statuses=list(exc.allowed)) from exc
    if lead is None:
        raise lead_not_found(lead_id)
    return LeadView.of(lead)


class ConversionBody(BaseModel):
    """What converting a lead needs beyond the lead: the opportunity's currency, and what is known of it."""

    model_config = ConfigDict(extra="forbid")

    currency: Currency
    opportunity_name: Line | None = Field(
        default=None, min_length=1, max_length=200, description="The lead's company or name when absent."
    )
    amount: Money = Field(
        default=Decimal(0), description="Equal to the lines' sum net of discounts when lines are given."
    )
    lines: list[OrderLine] = Field(default_factory=list, max_length=200)
    pipeline_id: EntityId = "new-business"
    stage: EntityId | None = Field(default=None, description="The pipeline's first stage when absent.")
    expected_close: date | None = None
    account_id: EntityId | None = Field(
        default=None,
        description="Link this account; by default the account of the lead's company (found by name, or new).",
    )
    customer_id: CustomerId | None = Field(
        default=None, description="Convert to this existing customer instead of registering one."
    )
    channel: Channel | None = Field(
        default=None, description="The channel the new customer registers in; from the lead's source when absent."
    )

    def request(self) -> conversion.ConversionRequest:
        return conversion.ConversionRequest(**{**self.__dict__, "lines": tuple(self.lines)})


class ConversionView(BaseModel):
    lead: LeadView
    customer_id: str
    new_customer: bool = Field(description="Whether the conversion registered the customer (or linked a known one).")
    account_id: str | None
    opportunity_id: str
    converted_now: bool = Field(description="False when the lead was converted before: the same answer again.")


@router.post(
    "/leads/{lead_id}/convert",
    response_model=ConversionView,
    summary="Convert a lead: register the customer, link the account and open the opportunity, exactly once",
    description="One transaction registers the customer (crm.customer.registered.v1 on crm.ingest.customers, "
    "unless the lead is a known customer or `customer_id` names one), links the account of the lead's company "
    "with the customer as its contact, opens the opportunity (crm.opportunity.opened.v1) and publishes "
    "crm.lead.converted.v1. Converting a converted lead again answers the same conversion (200, "
    "`converted_now` false); the first conversion answers 201.",
    status_code=status.HTTP_201_CREATED,
    responses={
        **NO_SUCH_LEAD,
        200: {"description": "Converted before: the same conversion"},
        409: {"description": "The lead is disqualified, or has no name for a new customer, or the stage refuses"},
        422: {
            "description": "Invalid: an unknown account or pipeline, a currency scoring cannot value, amount "
            "not the lines' sum"
        },
    },
)
async def convert_lead(
    request: Request,
    principal: LeadWriter,
    store: StoreDep,
    response: Response,
    lead_id: IdInPath,
    body: Annotated[ConversionBody, Body(examples=[{"currency": "EUR", "amount": "2400.00"}])],
) -> ConversionView:
    rates = rates_of(request)
    try:
        made = await conversion.convert_lead(
            store,
            lead_id,
            body.request(),
            utc_now(),
            principal=principal,
            rates=rates,
            match_secret=match_secret_of(request),
        )
    except conversion.LeadNotConvertible as exc:
        raise Problem(409, "Lead not convertible", str(exc)) from exc
    except opportunities.OpportunityRefused as exc:
        raise Problem(409, "Opportunity refused", str(exc)) from exc
    except conversion.UnknownAccount as exc:
        raise Problem(422, "Unknown account", str(exc)) from exc
    except opportunity_handlers.UnknownPipeline as exc:
        raise Problem(422, "Unknown pipeline", f"no pipeline {exc}") from exc
    except CurrencyNotAccepted as exc:
        raise currency_not_accepted(exc) from exc
    if made is None:
        raise lead_not_found(lead_id)
    if not made.converted_now:
        response.status_code = status.HTTP_200_OK
    return ConversionView(
        lead=LeadView.of(made.lead),
        customer_id=made.opportunity.customer_id,
        new_customer=made.new_customer,
        account_id=made.lead.account_id,
        opportunity_id=made.opportunity.opportunity_id,
        converted_now=made.converted_now,
    )
