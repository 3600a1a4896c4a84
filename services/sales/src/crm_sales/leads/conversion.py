"""Converting a lead, exactly once: one command registers the customer (crm.customer.registered.v1 on
crm.ingest.customers, which the customer service consumes) unless the lead is one already (named, or its email
or phone a known customer's by their match keys), links the account of
the lead's company (found by name, or new) with the customer as its contact, opens the opportunity, marks the
lead converted and publishes crm.lead.converted.v1, all in one transaction.

Every id the conversion creates is derived from the lead's, so a retried command (or two at once) finds the
conversion that committed and answers it instead of converting twice.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from crm_sales.accounts import domain as accounts
from crm_sales.accounts import repository as account_store
from crm_sales.customers import handlers as customers
from crm_sales.leads import domain, repository
from crm_sales.leads.handlers import leads_seen_by
from crm_sales.opportunities import domain as opportunities
from crm_sales.opportunities import handlers as opportunity_handlers
from crm_sales.opportunities import repository as opportunity_store
from crm_sales.orders.handlers import SOURCE
from crm_shared.events import (
    Channel,
    CustomerRegistered,
    CustomerRegisteredEvent,
    LeadConverted,
    LeadConvertedEvent,
    LeadSource,
    OrderLine,
    derived_event_id,
)
from crm_shared.money import ExchangeRates
from crm_shared.security import Principal
from crm_shared.store import Store, UnitOfWork, as_stored
from crm_shared.topics import Topic

CHANNEL_OF_SOURCE: dict[LeadSource, Channel] = {
    "field_visit": "face_to_face",
    "inbound": "web",
    "campaign": "email",
    "referral": "partner",
    "directory_import": "phone",
    "marketing": "email",
    "other": "phone",
}
"""The channel a converted lead's customer registers in, when the command names none."""


class LeadNotConvertible(Exception):
    """The lead cannot be converted: disqualified, or without the name a customer needs."""


class UnknownAccount(LookupError):
    """The command names an account there is none of (or one the caller does not see)."""


@dataclass(frozen=True)
class ConversionRequest:
    """What the caller says about the conversion; everything else comes from the lead."""

    currency: str
    opportunity_name: str | None = None
    amount: Decimal = Decimal(0)
    pipeline_id: str = opportunities.DEFAULT_PIPELINE_ID
    stage: str | None = None
    expected_close: date | None = None
    account_id: str | None = None
    customer_id: str | None = None
    channel: Channel | None = None
    lines: tuple[OrderLine, ...] = ()


@dataclass(frozen=True)
class Conversion:
    lead: domain.Lead
    opportunity: opportunities.Opportunity
    new_customer: bool
    converted_now: bool
    """False when the lead was converted before (a retried command): nothing was done again."""


def derived_id(prefix: str, what: str, lead_id: str) -> str:
    return f"{prefix}-{derived_event_id(SOURCE, f'lead.conversion.{what}', lead_id)}"


def _event_id(what: str, lead_id: str) -> str:
    return derived_event_id(SOURCE, f"lead.converted.{what}", lead_id)


async def _account(
    uow: UnitOfWork, lead: domain.Lead, request: ConversionRequest, customer_id: str, at: datetime, principal: Principal
) -> str | None:
    """The account the customer is a contact of: the one named, else the one of the lead's company (found by
    name, or new); None when there is neither."""
    if request.account_id is not None:
        named = await account_store.get_account(uow, leads_seen_by(principal, {"_id": request.account_id}))
        if named is None:
            raise UnknownAccount(f"no account {request.account_id}")
        await account_store.add_contact(uow, named.account_id, customer_id)
        return named.account_id
    if not lead.company:
        return None
    found = await account_store.get_account(uow, {"name_key": accounts.name_key(lead.company)})
    if found is not None:
        await account_store.add_contact(uow, found.account_id, customer_id)
        return found.account_id
    account = accounts.Account(
        account_id=derived_id("A", "account", lead.lead_id),
        name=lead.company,
        created_at=at,
        industry=lead.industry,
        company_size=lead.company_size,
        region=lead.region,
        territory=lead.territory,
        owner_id=lead.owner_id,
        contacts=(customer_id,),
    )
    await account_store.insert_account(uow, account)
    return account.account_id


async def _register(uow: UnitOfWork, lead: domain.Lead, customer_id: str, channel: Channel, at: datetime) -> None:
    name = lead.name or lead.company  # a company without a contact's name registers as the organisation
    if not name:
        raise LeadNotConvertible(
            f"lead {lead.lead_id} has neither a name nor a company, and a new customer needs one: convert it to "
            "an existing customer (customer_id)"
        )
    registered = CustomerRegistered(
        customer_id=customer_id, name=name, email=lead.email, phone=lead.phone, channel=channel
    )
    uow.emit(
        CustomerRegisteredEvent.create(registered, source=SOURCE, id=_event_id("customer", lead.lead_id), time=at),
        Topic.INGEST_CUSTOMERS,
    )


async def convert_lead(
    store: Store,
    lead_id: str,
    request: ConversionRequest,
    at: datetime,
    *,
    principal: Principal,
    rates: ExchangeRates,
    match_secret: bytes | None = None,
) -> Conversion | None:
    """Convert the lead the caller sees (None when there is none for them); converting it again answers the
    conversion that was made. With the match-key secret, a lead that is a customer's email or phone converts to
    that customer. Raises LeadNotConvertible, UnknownAccount, and what opening the opportunity
    raises (UnknownPipeline, OpportunityRefused, CurrencyNotAccepted)."""
    at = as_stored(at)

    async def work(uow: UnitOfWork) -> Conversion | None:
        doc = await uow.db[repository.LEADS].find_one(leads_seen_by(principal, {"_id": lead_id}), session=uow.session)
        if doc is None:
            return None
        lead = repository.lead_from_document(doc)
        if lead.status == "converted" and lead.opportunity_id is not None:
            made = await opportunity_store.get_opportunity(uow, {"_id": lead.opportunity_id})
            if made is not None:
                return Conversion(lead, made, new_customer=_new_customer(doc), converted_now=False)
        why_not = domain.can_convert(lead)
        if why_not is not None:
            raise LeadNotConvertible(why_not)
        # A person who became a customer after the lead was entered is linked, not registered again.
        known = (
            request.customer_id
            or lead.customer_id
            or await customers.customer_matching(uow, match_secret, lead.email_key, lead.phone_key)
        )
        customer_id = known or derived_id("C", "customer", lead_id)
        if known is None:
            await _register(uow, lead, customer_id, request.channel or CHANNEL_OF_SOURCE[lead.source], at)
        account_id = await _account(uow, lead, request, customer_id, at, principal)
        new = opportunity_handlers.NewOpportunity(
            customer_id=customer_id,
            name=request.opportunity_name or lead.company or lead.name or lead_id,
            amount=request.amount,
            currency=request.currency,
            pipeline_id=request.pipeline_id,
            stage=request.stage,
            expected_close=request.expected_close,
            owner_id=lead.owner_id,
            territory=lead.territory,
            account_id=account_id,
            lead_id=lead_id,
            source=lead.source,
            lines=request.lines,
        )
        opportunity, _ = await opportunity_handlers.open_in(
            uow, new, derived_id("O", "opportunity", lead_id), at, rates=rates
        )
        converted = replace(
            lead,
            status="converted",
            customer_id=customer_id,
            account_id=account_id,
            opportunity_id=opportunity.opportunity_id,
            converted_at=at,
        )
        changed: dict[str, Any] = {
            "status": "converted",
            "customer_id": customer_id,
            "account_id": account_id,
            "opportunity_id": opportunity.opportunity_id,
            "converted_at": at,
            "new_customer": known is None,
        }
        await uow.db[repository.LEADS].update_one({"_id": lead_id}, {"$set": changed}, session=uow.session)
        data = LeadConverted(
            customer_id=customer_id,
            lead_id=lead_id,
            source=lead.source,
            new_customer=known is None,
            account_id=account_id,
            opportunity_id=opportunity.opportunity_id,
            owner_id=lead.owner_id,
        )
        uow.emit(
            LeadConvertedEvent.create(data, source=SOURCE, id=_event_id("lead", lead_id), time=at), Topic.SALES_EVENTS
        )
        return Conversion(converted, opportunity, new_customer=known is None, converted_now=True)

    # Another conversion of this lead committed between our read and our writes: answer it.
    return await store.transaction_racing(work)


def _new_customer(doc: dict[str, Any]) -> bool:
    return bool(doc.get("new_customer", False))
