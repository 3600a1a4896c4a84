"""REST API of the customer service: the same payloads as the ingest topics, plus reads, and the personal data:
unsealing the fields sealed in events, and erasing them."""

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from crm_customer import domain, handlers, repository
from crm_customer.identity import service as identity_service
from crm_customer.insights.timeline import kind_of
from crm_customer.insights.timeline_query import KIND_LIST, TimelineQuery
from crm_customer.problems import no_customer
from crm_customer.profiles import api as profiles_api
from crm_customer.settings import CustomerSettings, match_secret_of
from crm_shared.api import (
    Accepted,
    Cursor,
    IdempotencyKey,
    IdInPath,
    Limit,
    Page,
    accept_event,
    command_event_id,
    keyset_page,
    record_once,
)
from crm_shared.consumer import Rejected
from crm_shared.events import (
    EVENT_TYPES,
    Channel,
    ConsentChanged,
    ConsentPurpose,
    CustomerId,
    CustomerIngest,
    CustomerReferred,
    CustomerReferredEvent,
    CustomerRegistered,
    CustomerRegisteredEvent,
    InteractionLogged,
    InteractionLoggedEvent,
)
from crm_shared.personal import SealedValue, UnsealError
from crm_shared.problems import Problem
from crm_shared.security import Principal, TerritoryId, UserId, audited, check_event_type, requires
from crm_shared.service import StoreDep, get_runtime
from crm_shared.store import AlreadyApplied

router = APIRouter(prefix="/v1", tags=["customers"])


def _match_secret(request: Request) -> bytes | None:
    return match_secret_of(get_runtime(request).settings)


def _auto_merge(request: Request) -> handlers.AutoMerge:
    """The strong identifiers that merge a new sign-up into an existing customer (CRM_CUSTOMER_AUTO_MERGE)."""
    settings = get_runtime(request).settings
    if isinstance(settings, CustomerSettings):
        return handlers.AutoMerge(settings.auto_merge_rules, settings.survivorship_rules)
    return handlers.AutoMerge()


MatchSecret = Annotated[bytes | None, Depends(_match_secret)]
"""The platform's match-key secret: with it a sign-up publishes the customer's match keys."""

API_SOURCE = "/crm/customer/api"

CustomerReader = Annotated[Principal, requires("customers:read")]
CustomerWriter = Annotated[Principal, requires("customers:write")]
ConsentWriter = Annotated[Principal, requires("consents:write")]
InteractionReader = Annotated[Principal, requires("interactions:read")]
InteractionWriter = Annotated[Principal, requires("interactions:write")]
EventWriter = Annotated[Principal, requires("events:write")]
Unsealer = Annotated[Principal, requires("customers:unseal")]
Eraser = Annotated[Principal, requires("customers:erase")]

NOT_SEEN = (
    "No such customer, or one the caller may not see: a person sees the customers they own, their team owns or "
    "of their territories (the same answer either way)"
)


class ConsentsView(BaseModel):
    customer_id: str
    granted: list[Channel] = Field(description="Channels granted for marketing.")
    refused: list[Channel] = Field(description="Channels refused for marketing.")
    preferred_channel: Channel | None
    service_granted: list[Channel] = Field(description="Channels granted for service messages.")
    service_refused: list[Channel] = Field(
        description="Channels refused for service messages (a channel not stated is allowed for them)."
    )

    @classmethod
    def of(cls, profile: domain.Profile) -> "ConsentsView":
        service = profile.details.service_consents
        return cls(
            customer_id=profile.customer_id,
            granted=profile.granted,
            refused=profile.refused,
            preferred_channel=profile.details.preferred_channel,
            service_granted=sorted(c for c, granted in service.items() if granted),
            service_refused=sorted(c for c, granted in service.items() if not granted),
        )


class ConsentFactView(BaseModel):
    channel: Channel
    purpose: ConsentPurpose
    granted: bool
    at: datetime = Field(description="When the customer gave the answer (the fact's own time).")
    source: str = Field(description="Where it came from: the channel system, the API, a sign-up.")
    event_id: str
    event_type: str
    effective: bool = Field(description="False: it arrived after a newer answer for the channel and changed nothing.")
    recorded_at: datetime


class InteractionView(BaseModel):
    interaction_id: str
    customer_id: str
    kind: str
    channel: Channel
    summary: str | None
    logged_at: datetime

    @classmethod
    def of(cls, interaction: domain.Interaction) -> "InteractionView":
        logged = interaction.logged
        return cls(
            interaction_id=logged.interaction_id,
            customer_id=logged.customer_id,
            kind=logged.kind,
            channel=logged.channel,
            summary=logged.summary,
            logged_at=interaction.logged_at,
        )


class ReferralView(BaseModel):
    referral_id: str
    customer_id: str = Field(description="The referrer.")
    referred_customer_id: str
    channel: Channel | None
    referred_at: datetime

    @classmethod
    def of(cls, referral: domain.Referral) -> "ReferralView":
        referred = referral.referred
        return cls(
            referral_id=referred.referral_id,
            customer_id=referred.customer_id,
            referred_customer_id=referred.referred_customer_id,
            channel=referred.channel,
            referred_at=referral.referred_at,
        )


class TimelineEntryView(BaseModel):
    event_id: str
    type: str = Field(examples=["crm.order.placed.v1"])
    time: datetime = Field(description="The event's business time.")
    source: str
    summary: str = Field(examples=["Order O-77 placed: 1500.00 EUR"])
    data: dict[str, Any] = Field(description="The event's payload; a sign-up's without name, email and phone.")
    kind: str = Field(examples=["order"], description="The event type's family, as the `kind` filter takes it.")
    cause: str | None = Field(description="The id of the event that caused this one (its causationid), if any.")

    @classmethod
    def of(cls, entry: domain.TimelineEntry) -> "TimelineEntryView":
        return cls(
            event_id=entry.event_id,
            kind=kind_of(entry.type),
            cause=entry.cause,
            type=entry.type,
            time=entry.time,
            source=entry.source,
            summary=entry.summary,
            data=dict(entry.data),
        )


class ConsentUpdate(BaseModel):
    """The customer's answer for one channel."""

    model_config = ConfigDict(extra="forbid")

    granted: bool
    preferred: bool = Field(default=False, description="Also make this the preferred channel (only when granted).")
    purpose: ConsentPurpose = Field(
        default="marketing", description="marketing (campaigns, journeys) or service (messages about orders, tickets)."
    )


class AssignmentUpdate(BaseModel):
    """Who answers for the customer. Both fields are stated: null unassigns."""

    model_config = ConfigDict(extra="forbid", strict=True)

    owner_id: UserId | None = Field(description="The owning user (their token subject); null for none.")
    territory: TerritoryId | None = Field(description="The territory; null for none.")


class AssignmentView(BaseModel):
    customer_id: str
    owner_id: str | None
    territory: str | None


PersonalField = Literal["name", "email", "phone"]


class UnsealRequest(BaseModel):
    """Sealed fields of one customer, as read from an event, by field name."""

    model_config = ConfigDict(extra="forbid", strict=True)

    customer_id: CustomerId
    values: dict[PersonalField, SealedValue] = Field(
        min_length=1, max_length=3, description="The sealed value of each field wanted, as the event carries it."
    )


class UnsealedView(BaseModel):
    customer_id: str
    values: dict[PersonalField, str] = Field(examples=[{"email": "ada@example.com"}])


class ErasureView(BaseModel):
    """What an erasure removed (never the values)."""

    customer_id: str
    erased_at: datetime
    profile_fields: list[PersonalField] = Field(
        description="The personal fields removed from the profile now; empty when none was left."
    )
    key_destroyed: bool = Field(
        description="The customer's key was destroyed now: every sealed copy of their fields is unreadable."
    )
    key_id: str | None = Field(description="The id of the key destroyed.")
    dead_letter_originals: int = Field(
        description="Kept originals of the customer's dead letters removed (the letters, without personal data, stay)."
    )
    erasure_id: str = Field(
        description="The erasure every service applies (crm.customer.erased.v1) and confirms: GET "
        "/v1/erasures/{erasure_id} says when it is complete everywhere and which services are pending."
    )
    pseudonym: str = Field(description="The id the services keep aggregates (revenue, counts) under from now on.")
    merged_profiles: int = Field(description="Profiles merged into this customer before, erased with it.")


SEALED_REFUSED = "name, email and phone are sent in clear: only the customer service seals them"


CUSTOMER_EXAMPLE = {
    "customer_id": "C-1001",
    "name": "Ada Example",
    "email": "ada@example.com",
    "channel": "web",
    "consents": [{"channel": "email", "granted": True}, {"channel": "sms", "granted": False}],
    "preferred_channel": "email",
}
INTERACTION_EXAMPLE = {
    "interaction_id": "I-3001",
    "customer_id": "C-1001",
    "kind": "call",
    "channel": "phone",
    "summary": "Asked about delivery times.",
}
REFERRAL_EXAMPLE = {
    "referral_id": "R-4001",
    "customer_id": "C-1001",
    "referred_customer_id": "C-1002",
    "channel": "face_to_face",
}
EventType = Annotated[
    str | None,
    Query(
        alias="type", max_length=100, description="Only entries of this event type.", examples=["crm.order.placed.v1"]
    ),
]


@router.post(
    "/customers",
    response_model=profiles_api.FullProfileView,
    status_code=status.HTTP_201_CREATED,
    summary="Register a customer (same payload as crm.customer.registered.v1 data); unassigned until assigned",
    description="A new customer with the normalised email or phone of an existing one (CRM_CUSTOMER_AUTO_MERGE) "
    "is merged into it at once: the answer shows `merged_into`.",
    dependencies=[requires("customers:write")],
    responses={
        200: {"description": "Already registered with these details"},
        409: {"description": "Already registered with other details, or the Idempotency-Key was reused"},
        422: {"description": f"Invalid body, or sealed personal fields ({SEALED_REFUSED})"},
    },
)
async def register_customer(
    store: StoreDep,
    secret: MatchSecret,
    request: Request,
    response: Response,
    customer: Annotated[CustomerRegistered, Body(examples=[CUSTOMER_EXAMPLE])],
    idempotency_key: IdempotencyKey = None,
) -> profiles_api.FullProfileView:
    _refuse_sealed(customer)
    event = CustomerRegisteredEvent.create(
        customer, source=API_SOURCE, id=command_event_id("customer/customers", idempotency_key)
    )

    async def same_profile() -> domain.Profile | None:
        existing = await handlers.find_profile(store, customer.customer_id)
        return existing if existing is not None and _same_details(existing, customer) else None

    registered = await record_once(
        response,
        what="registration",
        conflict="Registration refused",
        recording=handlers.register_customer(store, event, match_secret=secret, auto_merge=_auto_merge(request)),
        existing_if_same=same_profile,
    )
    # The whole profile, as GET answers it (a sign-up again shows what was added since).
    return await profiles_api.read_full_profile(store, registered.customer_id, None)


@router.post(
    "/interactions",
    response_model=InteractionView,
    status_code=status.HTTP_201_CREATED,
    summary="Log an interaction (same payload as crm.interaction.logged.v1 data)",
    responses={
        200: {"description": "Already logged with this content"},
        404: {"description": NOT_SEEN},
        409: {"description": "Already logged with other content, or the Idempotency-Key was reused"},
    },
)
async def log_interaction(
    store: StoreDep,
    principal: InteractionWriter,
    response: Response,
    interaction: Annotated[InteractionLogged, Body(examples=[INTERACTION_EXAMPLE])],
    idempotency_key: IdempotencyKey = None,
) -> InteractionView:
    await _must_see(store, principal, interaction.customer_id)
    event = InteractionLoggedEvent.create(
        interaction, source=API_SOURCE, id=command_event_id("customer/interactions", idempotency_key)
    )

    async def same_interaction() -> domain.Interaction | None:
        existing = await handlers.find_interaction(store, interaction.interaction_id)
        return existing if existing is not None and existing.logged == interaction else None

    return InteractionView.of(
        await record_once(
            response,
            what="interaction",
            conflict="Interaction conflict",
            recording=handlers.log_interaction(store, event),
            existing_if_same=same_interaction,
        )
    )


@router.post(
    "/referrals",
    response_model=ReferralView,
    status_code=status.HTTP_201_CREATED,
    summary="Record a referral (same payload as crm.customer.referred.v1 data; customer_id is the referrer)",
    responses={
        200: {"description": "Already recorded with this content"},
        404: {"description": f"The referrer: {NOT_SEEN}"},
        409: {"description": "Already recorded with other content, or the Idempotency-Key was reused"},
    },
)
async def record_referral(
    store: StoreDep,
    principal: CustomerWriter,
    response: Response,
    referral: Annotated[CustomerReferred, Body(examples=[REFERRAL_EXAMPLE])],
    idempotency_key: IdempotencyKey = None,
) -> ReferralView:
    await _must_see(store, principal, referral.customer_id)
    event = CustomerReferredEvent.create(
        referral, source=API_SOURCE, id=command_event_id("customer/referrals", idempotency_key)
    )

    async def same_referral() -> domain.Referral | None:
        existing = await handlers.find_referral(store, referral.referral_id)
        return existing if existing is not None and existing.referred == referral else None

    return ReferralView.of(
        await record_once(
            response,
            what="referral",
            conflict="Referral conflict",
            recording=handlers.record_referral(store, event),
            existing_if_same=same_referral,
        )
    )


@router.post(
    "/events",
    response_model=Accepted,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Submit a sign-up, consent change, referral or interaction CloudEvent, exactly as on "
    "crm.ingest.customers|interactions",
    responses={
        403: {"description": "The credential lacks events:write, or the API key may not submit this event type"},
        404: {"description": f"Not for a sign-up: {NOT_SEEN}"},
        409: {"description": "The event contradicts a known customer, interaction or referral"},
        422: {"description": f"Invalid event, or a sign-up with sealed personal fields ({SEALED_REFUSED})"},
    },
)
async def submit_event(
    store: StoreDep,
    secret: MatchSecret,
    request: Request,
    principal: EventWriter,
    event: Annotated[CustomerIngest, Body()],
) -> Accepted:
    check_event_type(request, principal, event.type)
    if isinstance(event, CustomerRegisteredEvent):
        _refuse_sealed(event.data)
    else:
        # The same rule as the routes: a person changes only a customer they see; a sign-up has no owner yet.
        await _must_see(store, principal, event.customer_id)
    applying = handlers.apply_ingest(store, event, match_secret=secret, auto_merge=_auto_merge(request))
    return await accept_event(event.id, applying)


@router.get(
    "/customers/{customer_id}",
    response_model=profiles_api.FullProfileView,
    summary="A customer's profile: sign-up details, consents, owner, tags, company facts, addresses, attributes",
    responses={404: {"description": NOT_SEEN}},
)
async def get_customer(
    store: StoreDep, principal: CustomerReader, customer_id: IdInPath
) -> profiles_api.FullProfileView:
    return await profiles_api.read_full_profile(store, customer_id, principal)


@router.get(
    "/customers/{customer_id}/consents",
    response_model=ConsentsView,
    summary="The channels the customer granted or refused, and the preferred one",
    responses={404: {"description": NOT_SEEN}},
)
async def get_consents(store: StoreDep, principal: CustomerReader, customer_id: IdInPath) -> ConsentsView:
    return ConsentsView.of(await _profile(store, customer_id, principal))


@router.get(
    "/customers/{customer_id}/consents/history",
    response_model=Page[ConsentFactView],
    summary="Every consent answer received for the customer, oldest first, with its source and time",
    responses={404: {"description": NOT_SEEN}},
)
async def consent_history(
    store: StoreDep,
    principal: CustomerReader,
    customer_id: IdInPath,
    channel: Channel | None = None,
    purpose: ConsentPurpose | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[ConsentFactView]:
    await _must_see(store, principal, customer_id)
    query: dict[str, Any] = {"customer_id": customer_id}
    for name, value in (("channel", channel), ("purpose", purpose)):
        if value is not None:
            query[name] = value
    docs, next_cursor = await keyset_page(
        store.db[repository.CONSENT_HISTORY], query, time_field="at", limit=limit, cursor=cursor, newest_first=False
    )
    items = [ConsentFactView(**{k: v for k, v in d.items() if k not in ("_id", "customer_id")}) for d in docs]
    return Page[ConsentFactView](items=items, next_cursor=next_cursor)


@router.put(
    "/customers/{customer_id}/consents/{channel}",
    response_model=ConsentsView,
    summary="Grant or refuse one channel; publishes crm.customer.consent_changed.v1 when it changes",
    responses={404: {"description": NOT_SEEN}, 422: {"description": "Unknown channel or invalid body"}},
)
async def change_consent(
    store: StoreDep,
    principal: ConsentWriter,
    customer_id: IdInPath,
    channel: Channel,
    update: Annotated[ConsentUpdate, Body(examples=[{"granted": False}])],
    idempotency_key: IdempotencyKey = None,
) -> ConsentsView:
    if update.preferred and not update.granted:
        raise Problem(422, "Invalid consent", f"{channel} cannot be the preferred channel while refused")
    if update.preferred and update.purpose != "marketing":
        raise Problem(422, "Invalid consent", "the preferred channel is a marketing choice")
    try:
        changed = ConsentChanged(
            customer_id=customer_id,
            channel=channel,
            granted=update.granted,
            preferred_channel=channel if update.preferred else None,
            purpose=update.purpose,
        )
    except ValidationError as exc:
        raise no_customer(customer_id) from exc
    await _must_see(store, principal, customer_id)
    event_id = command_event_id(f"customer/consents/{customer_id}/{update.purpose}/{channel}", idempotency_key)
    try:
        await handlers.answer_consent(store, changed, source=API_SOURCE, event_id=event_id)
    except AlreadyApplied:
        pass
    except handlers.UnknownCustomer as exc:
        raise no_customer(customer_id) from exc
    except Rejected as exc:
        raise Problem(409, "Consent refused", str(exc)) from exc
    return ConsentsView.of(await _profile(store, customer_id))


@router.put(
    "/customers/{customer_id}/assignment",
    response_model=AssignmentView,
    summary="Assign the customer an owner and a territory: who besides API keys and managers of all sees it",
    dependencies=[requires("customers:write"), Depends(audited)],
    responses={404: {"description": NOT_SEEN}, 422: {"description": "Invalid owner or territory"}},
)
async def assign_customer(
    store: StoreDep,
    principal: CustomerWriter,
    customer_id: IdInPath,
    update: Annotated[AssignmentUpdate, Body(examples=[{"owner_id": "rep-17", "territory": "DE-North"}])],
) -> AssignmentView:
    assignment = domain.Assignment(owner_id=update.owner_id, territory=update.territory)
    if not await handlers.assign_customer(store, customer_id, assignment, seen_by=principal):
        raise no_customer(customer_id)
    return AssignmentView(customer_id=customer_id, owner_id=update.owner_id, territory=update.territory)


@router.get(
    "/interactions/{interaction_id}",
    response_model=InteractionView,
    summary="One logged interaction",
    responses={404: {"description": "No such interaction, or one of a customer the caller may not see"}},
)
async def get_interaction(store: StoreDep, principal: InteractionReader, interaction_id: IdInPath) -> InteractionView:
    interaction = await handlers.find_interaction(store, interaction_id)
    if interaction is None or not await handlers.sees_customer(store, principal, interaction.logged.customer_id):
        raise Problem(404, "Interaction not found", f"no interaction {interaction_id}")
    return InteractionView.of(interaction)


@router.get(
    "/customers/{customer_id}/timeline",
    response_model=Page[TimelineEntryView],
    summary="The customer 360 timeline: every service's events about the customer, newest first (or oldest), "
    "by kind, channel and period; at one time a cause before what it caused",
    responses={
        400: {"description": "Invalid cursor"},
        404: {"description": f"Only for a person: {NOT_SEEN}"},
        422: {"description": f"Unknown event type or kind (kinds: {KIND_LIST}), or an invalid period"},
    },
)
async def timeline(
    store: StoreDep,
    principal: CustomerReader,
    customer_id: IdInPath,
    selection: TimelineQuery,
    limit: Limit = 50,
    cursor: Cursor = None,
    event_type: EventType = None,
) -> Page[TimelineEntryView]:
    if event_type is not None and event_type not in EVENT_TYPES:
        raise Problem(422, "Unknown event type", f"type {event_type!r} is not one of: {', '.join(sorted(EVENT_TYPES))}")
    await _must_see(store, principal, customer_id)
    entries, next_cursor = await repository.timeline_page(
        store.db,
        customer_id,
        limit=limit,
        cursor=cursor,
        types=selection.types(event_type),
        channel=selection.channel,
        start=selection.start,
        end=selection.end,
        order=selection.order,
    )
    items = [TimelineEntryView.of(e) for e in entries]
    return Page[TimelineEntryView](items=items, next_cursor=next_cursor)


@router.post(
    "/personal-data/unseal",
    response_model=UnsealedView,
    summary="Open personal fields sealed in events (a sign-up's name, email, phone on crm.customer.events)",
    dependencies=[requires("customers:unseal"), Depends(audited)],
    responses={
        404: {"description": NOT_SEEN},
        410: {"description": "The key that sealed a value is gone: the customer's personal data was erased"},
        422: {"description": "Invalid body, or a value that does not decrypt as that field of that customer"},
    },
)
async def unseal_personal_data(
    store: StoreDep,
    principal: Unsealer,
    sealed: Annotated[
        UnsealRequest,
        Body(examples=[{"customer_id": "C-1001", "values": {"email": "sealed:v1:Jq3mX0cVv2bV4Kx7mO1cNw:9h2kz0Xl3m"}}]),
    ],
) -> UnsealedView:
    await _must_see(store, principal, sealed.customer_id)
    try:
        values = await handlers.unseal_personal_data(store, sealed.customer_id, sealed.values)
    except handlers.KeyGone as exc:
        raise Problem(410, "Personal data erased", str(exc)) from exc
    except UnsealError as exc:
        raise Problem(422, "Sealed value refused", str(exc)) from exc
    return UnsealedView.model_validate({"customer_id": sealed.customer_id, "values": values})


@router.delete(
    "/customers/{customer_id}/personal-data",
    response_model=ErasureView,
    summary="Erase the customer's personal data: destroy their key (every sealed copy in events becomes "
    "unreadable), remove name, email and phone from the profile and their dead letters' kept originals, and tell "
    "every service to erase what it holds (crm.customer.erased.v1)",
    dependencies=[requires("customers:erase"), Depends(audited)],
    responses={404: {"description": NOT_SEEN}, 409: {"description": "The customer was merged into another"}},
)
async def erase_personal_data(
    store: StoreDep, principal: Eraser, request: Request, customer_id: IdInPath
) -> ErasureView:
    settings = get_runtime(request).settings
    services = getattr(settings, "privacy_service_names", identity_service.PRIVACY_SERVICES)
    try:
        erasure = await handlers.erase_personal_data(store, customer_id, seen_by=principal, services=services)
    except identity_service.MergeRefused as exc:
        raise Problem(409, "Merged customer", str(exc)) from exc
    if erasure is None:
        raise no_customer(customer_id)
    return ErasureView.model_validate(
        {
            "customer_id": erasure.customer_id,
            "erased_at": erasure.erased_at,
            "profile_fields": erasure.profile_fields,
            "key_destroyed": erasure.key_id is not None,
            "key_id": erasure.key_id,
            "dead_letter_originals": erasure.dead_letter_originals,
            "erasure_id": erasure.erasure_id,
            "pseudonym": erasure.pseudonym,
            "merged_profiles": erasure.merged_profiles,
        }
    )


def _refuse_sealed(registered: CustomerRegistered) -> None:
    sealed = domain.sealed_fields(registered)
    if sealed:
        raise Problem(422, "Sealed personal data", f"{', '.join(sealed)} arrived sealed; {SEALED_REFUSED}")


def _same_details(profile: domain.Profile, registered: CustomerRegistered) -> bool:
    try:
        return profile.details == domain.Details.of(registered)
    except domain.RegistrationRejected:
        return False


async def _must_see(store: StoreDep, principal: Principal, customer_id: str) -> None:
    if not await handlers.sees_customer(store, principal, customer_id):
        raise no_customer(customer_id)


async def _profile(store: StoreDep, customer_id: str, principal: Principal | None = None) -> domain.Profile:
    profile = await handlers.find_profile(store, customer_id, seen_by=principal)
    if profile is None:
        raise no_customer(customer_id)
    return profile
