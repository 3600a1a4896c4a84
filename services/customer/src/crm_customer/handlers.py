"""Use cases of the customer service: register, log interactions and referrals, record the timeline, exactly once."""

from typing import Any, Generic, NamedTuple, TypeVar

from crm_customer import domain, repository
from crm_shared.consumer import Rejected
from crm_shared.events import (
    CloudEvent,
    ConsentChanged,
    ConsentChangedEvent,
    CustomerReferredEvent,
    CustomerRegisteredEvent,
    InteractionLoggedEvent,
    derived_event_id,
    utc_now,
)
from crm_shared.logging import get_logger
from crm_shared.store import Store, UnitOfWork
from crm_shared.topics import Topic

SOURCE = "/crm/customer"

T = TypeVar("T")
log = get_logger(__name__)


class Outcome(NamedTuple, Generic[T]):
    """What a handler stored, and whether it was new (a tuple, as crm_shared.api.record_once takes it)."""

    value: T
    new: bool = True


def _applies(event: CloudEvent[Any]) -> str:
    return f"customer:{event.id}"


def _republished(event: CloudEvent[Any]) -> CloudEvent[Any]:
    """The fact as the customer service publishes it: same business time, id derived so a retry emits it again."""
    return type(event).create(
        event.data, source=SOURCE, id=derived_event_id(SOURCE, event.id), time=event.time, cause=event
    )


async def register_customer(store: Store, event: CustomerRegisteredEvent) -> Outcome[domain.Profile]:
    """Store the profile and publish the sign-up; the same details again change nothing and emit nothing."""

    async def work(uow: UnitOfWork) -> Outcome[domain.Profile]:
        before = await repository.get_profile(uow, event.customer_id)
        try:
            after = domain.register(before, event.data, event.time, event.id)
        except domain.RegistrationRejected as exc:
            raise Rejected(str(exc)) from exc
        if before is not None:
            return Outcome(after, new=False)
        stored = await repository.insert_profile(uow, after)
        uow.emit(_republished(event), Topic.CUSTOMER_EVENTS)
        return Outcome(stored)

    outcome = await store.transaction(work, applies=_applies(event))
    if outcome.new:
        log.info("customer_registered", customer_id=event.customer_id, event_id=event.id)
    return outcome


async def log_interaction(store: Store, event: InteractionLoggedEvent) -> Outcome[domain.Interaction]:
    """Store the interaction and publish it; the same interaction again changes nothing and emits nothing."""

    async def work(uow: UnitOfWork) -> Outcome[domain.Interaction]:
        before = await repository.get_interaction(uow, event.data.interaction_id)
        try:
            after = domain.log_interaction(before, event.data, event.time, event.id)
        except domain.InteractionRejected as exc:
            raise Rejected(str(exc)) from exc
        if before is not None:
            return Outcome(after, new=False)
        stored = await repository.insert_interaction(uow, after)
        uow.emit(_republished(event), Topic.CUSTOMER_EVENTS)
        return Outcome(stored)

    return await store.transaction(work, applies=_applies(event))


async def record_referral(store: Store, event: CustomerReferredEvent) -> Outcome[domain.Referral]:
    """Store the referral and publish it; the same referral again changes nothing and emits nothing."""

    async def work(uow: UnitOfWork) -> Outcome[domain.Referral]:
        before = await repository.get_referral(uow, event.data.referral_id)
        try:
            after = domain.record_referral(before, event.data, event.time, event.id)
        except domain.ReferralRejected as exc:
            raise Rejected(str(exc)) from exc
        if before is not None:
            return Outcome(after, new=False)
        stored = await repository.insert_referral(uow, after)
        uow.emit(_republished(event), Topic.CUSTOMER_EVENTS)
        return Outcome(stored)

    return await store.transaction(work, applies=_applies(event))


class UnknownCustomer(Rejected):
    """The event is about a customer the customer service has no profile for."""


async def _change_consent(
    uow: UnitOfWork, before: domain.Profile, event: ConsentChangedEvent
) -> Outcome[domain.Profile]:
    try:
        after = domain.change_consent(before, event.data, event.time)
    except domain.ConsentRejected as exc:
        raise Rejected(str(exc)) from exc
    if after == before:
        return Outcome(after, new=False)
    await repository.save_profile(uow, after)
    uow.emit(_republished(event), Topic.CUSTOMER_EVENTS)
    return Outcome(after)


def _log_consent(outcome: Outcome[domain.Profile], event_id: str, changed: ConsentChanged) -> None:
    if outcome.new:
        log.info("consent_changed", customer_id=changed.customer_id, channel=changed.channel, event_id=event_id)


async def change_consent(store: Store, event: ConsentChangedEvent) -> Outcome[domain.Profile]:
    """Update the profile's consent and publish the change, in one transaction; no change emits nothing."""

    async def work(uow: UnitOfWork) -> Outcome[domain.Profile]:
        before = await repository.get_profile(uow, event.customer_id)
        if before is None:
            raise UnknownCustomer(f"no customer {event.customer_id}")
        return await _change_consent(uow, before, event)

    outcome = await store.transaction(work, applies=_applies(event))
    _log_consent(outcome, event.id, event.data)
    return outcome


async def answer_consent(
    store: Store, changed: ConsentChanged, *, source: str, event_id: str
) -> Outcome[domain.Profile]:
    """The customer's answer given now (the API): dated so that it follows every change on record for the
    channel, so a refusal made now takes effect even after a grant stamped a little ahead of this clock."""

    async def work(uow: UnitOfWork) -> Outcome[domain.Profile]:
        before = await repository.get_profile(uow, changed.customer_id)
        if before is None:
            raise UnknownCustomer(f"no customer {changed.customer_id}")
        if domain.answers_nothing_new(before, changed):
            return Outcome(before, new=False)  # PUT is idempotent: the same answer again is no new fact
        at = domain.answer_time(before, changed.channel, utc_now())
        return await _change_consent(
            uow, before, ConsentChangedEvent.create(changed, source=source, id=event_id, time=at)
        )

    outcome = await store.transaction(work, applies=f"customer:{event_id}")
    _log_consent(outcome, event_id, changed)
    return outcome


async def apply_ingest(store: Store, event: CloudEvent[Any]) -> None:
    if isinstance(event, CustomerRegisteredEvent):
        await register_customer(store, event)
    elif isinstance(event, InteractionLoggedEvent):
        await log_interaction(store, event)
    elif isinstance(event, ConsentChangedEvent):
        await change_consent(store, event)
    elif isinstance(event, CustomerReferredEvent):
        await record_referral(store, event)
    else:
        raise Rejected(f"the customer service does not ingest events of type {event.type}")


async def record_timeline(store: Store, event: CloudEvent[Any]) -> bool:
    """Put the event on its customer's timeline; True when it was not there yet."""
    return await repository.record_entry(store.db, domain.timeline_entry(event))


async def find_profile(store: Store, customer_id: str) -> domain.Profile | None:
    doc = await store.db[repository.CUSTOMERS].find_one({"_id": customer_id})
    return repository.profile_from_document(doc) if doc else None


async def find_interaction(store: Store, interaction_id: str) -> domain.Interaction | None:
    doc = await store.db[repository.INTERACTIONS].find_one({"_id": interaction_id})
    return repository.interaction_from_document(doc) if doc else None


async def find_referral(store: Store, referral_id: str) -> domain.Referral | None:
    doc = await store.db[repository.REFERRALS].find_one({"_id": referral_id})
    return repository.referral_from_document(doc) if doc else None
