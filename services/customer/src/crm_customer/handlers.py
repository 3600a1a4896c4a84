"""Use cases of the customer service: register, log interactions and referrals, record the timeline, exactly once.

The consumers apply batches: `apply_ingest_events` takes sign-ups, consent changes, interactions and referrals,
loads what they touch with one query per collection, decides per event in order on that state (a consent
change sees a sign-up earlier in the batch) and writes in bulk, in one transaction with its outbox and
processed records. `record_timeline_events` writes a batch's timeline entries in one bulk write. The
single-event use cases (the API) are batches of one.

A sign-up is published with its name, email and phone sealed with the customer's key (made with the first
sign-up published, in the same transaction); the profile keeps them in clear. `unseal_personal_data` opens
sealed fields for a consumer that needs them; `erase_personal_data` destroys the key, so every sealed copy
(old Kafka records, outboxes, dead letters) becomes unreadable, and removes the personal fields from the
profile and the originals of the customer's kept dead letters.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Generic, NamedTuple, TypeVar

from crm_customer import domain, repository
from crm_customer.identity import service as identity_service
from crm_customer.identity.survivorship import Rules as SurvivorshipRules
from crm_customer.profiles import service as profiles
from crm_shared.consumer import Rejected
from crm_shared.events import (
    CloudEvent,
    ConsentChanged,
    ConsentChangedEvent,
    CustomerMatchKeysChanged,
    CustomerMatchKeysChangedEvent,
    CustomerReferredEvent,
    CustomerRegistered,
    CustomerRegisteredEvent,
    InteractionLoggedEvent,
    derived_event_id,
    utc_now,
)
from crm_shared.logging import get_logger
from crm_shared.matching import match_keys
from crm_shared.personal import key_id_of, new_personal_key, seal, unseal
from crm_shared.security import OWNED, Principal
from crm_shared.store import Batch, BatchOutcome, Store, UnitOfWork, as_stored
from crm_shared.topics import Topic

SOURCE = "/crm/customer"
# Whose processed records these are: "customer:<event id>", as before batching.
CONSUMER = "customer"

CUSTOMER_ACCESS = OWNED
"""Who sees a customer, its interactions and its timeline: its owner, their manager, its territory."""

T = TypeVar("T")
log = get_logger(__name__)


class Outcome(NamedTuple, Generic[T]):
    """What a handler stored, and whether it was new (a tuple, as crm_shared.api.record_once takes it)."""

    value: T
    new: bool = True


def _republished(event: CloudEvent[Any], data: Any = None) -> CloudEvent[Any]:
    """The fact as the customer service publishes it (with `data` instead of the event's when given): same
    business time, id derived so a retry emits it again."""
    return type(event).create(
        event.data if data is None else data,
        source=SOURCE,
        id=derived_event_id(SOURCE, event.id),
        time=event.time,
        cause=event,
    )


def match_keys_of(event: CustomerRegisteredEvent, secret: bytes) -> CustomerMatchKeysChangedEvent:
    """The match keys of a sign-up's email and phone, published with it so sales finds a lead who is this
    customer. Its time is now, not the sign-up's: the newest set is the one kept, and an erasure (also now)
    must stay newer than the sign-up before it."""
    data = event.data
    keys = match_keys(
        secret,
        email=data.email if isinstance(data.email, str) else None,
        phone=data.phone if isinstance(data.phone, str) else None,
    )
    return CustomerMatchKeysChangedEvent.create(
        CustomerMatchKeysChanged(customer_id=data.customer_id, match_keys=keys, reason="registered"),
        source=SOURCE,
        id=derived_event_id(SOURCE, f"match-keys:{event.id}"),
        time=as_stored(utc_now()),
        cause=event,
    )


def sealed(registered: CustomerRegistered, key: domain.PersonalKey) -> CustomerRegistered:
    """The registration with its name, email and phone (those given) sealed with the customer's key."""
    return registered.model_copy(
        update={
            name: seal(value, key_id=key.key_id, key=key.key, customer_id=registered.customer_id, field=name)
            for name in domain.PERSONAL_DATA
            if (value := getattr(registered, name)) is not None
        }
    )


class UnknownCustomer(Rejected):
    """The event is about a customer the customer service has no profile for."""


@dataclass
class _Ingest:
    """What a batch of ingest events touches, as it stands after each event decided so far, and what to write.

    Every state is kept as a later read will see it (times in milliseconds), so the next event of the batch
    decides exactly as it would in a transaction of its own.
    """

    profiles: dict[str, domain.Profile]
    keys: dict[str, domain.PersonalKey]
    interactions: dict[str, domain.Interaction]
    referrals: dict[str, domain.Referral]
    new_profiles: set[str] = field(default_factory=set)
    changed_profiles: set[str] = field(default_factory=set)
    new_keys: list[domain.PersonalKey] = field(default_factory=list)
    new_interactions: list[domain.Interaction] = field(default_factory=list)
    new_referrals: list[domain.Referral] = field(default_factory=list)
    consent_history: list[dict[str, Any]] = field(default_factory=list)

    def register(self, event: CustomerRegisteredEvent) -> Outcome[domain.Profile]:
        before = self.profiles.get(event.customer_id)
        try:
            after = domain.register(before, event.data, event.time, event.id)
        except domain.RegistrationRejected as exc:
            raise Rejected(str(exc)) from exc
        if after == before:
            return Outcome(after, new=False)
        stored = self.profiles[event.customer_id] = repository.profile_as_stored(after)
        for stated in event.data.consents:
            self.consent_history.append(
                repository.consent_history_entry(event, stated.channel, stated.purpose, stated.granted, effective=True)
            )
        if before is None:
            self.new_profiles.add(event.customer_id)
        elif event.customer_id not in self.new_profiles:
            self.changed_profiles.add(event.customer_id)  # signed up again after an erasure
        return Outcome(stored)

    def key_of(self, customer_id: str) -> domain.PersonalKey:
        """The customer's key; a new one when they have none yet (a new customer, or one erased)."""
        key = self.keys.get(customer_id)
        if key is None:
            key_id, secret = new_personal_key()
            key = domain.PersonalKey(customer_id, key_id, secret, as_stored(utc_now()))
            self.keys[customer_id] = key
            self.new_keys.append(key)
        return key

    def republished(self, event: CloudEvent[Any]) -> CloudEvent[Any]:
        """The event as published: a sign-up's personal fields sealed with the customer's key."""
        if isinstance(event, CustomerRegisteredEvent):
            return _republished(event, sealed(event.data, self.key_of(event.customer_id)))
        return _republished(event)

    def change_consent(self, event: ConsentChangedEvent) -> Outcome[domain.Profile]:
        before = self.profiles.get(event.customer_id)
        if before is None:
            raise UnknownCustomer(f"no customer {event.customer_id}")
        try:
            after = domain.change_consent(before, event.data, event.time)
        except domain.ConsentRejected as exc:
            raise Rejected(str(exc)) from exc
        changed = event.data
        # Every fact received is in the history, the one that came too late too (not effective).
        self.consent_history.append(
            repository.consent_history_entry(
                event, changed.channel, changed.purpose, changed.granted, effective=after != before
            )
        )
        if after == before:
            return Outcome(after, new=False)
        stored = self.profiles[event.customer_id] = repository.profile_as_stored(after)
        if event.customer_id not in self.new_profiles:
            self.changed_profiles.add(event.customer_id)
        return Outcome(stored)

    def log_interaction(self, event: InteractionLoggedEvent) -> Outcome[domain.Interaction]:
        interaction_id = event.data.interaction_id
        before = self.interactions.get(interaction_id)
        try:
            after = domain.log_interaction(before, event.data, event.time, event.id)
        except domain.InteractionRejected as exc:
            raise Rejected(str(exc)) from exc
        if before is not None:
            return Outcome(after, new=False)
        stored = self.interactions[interaction_id] = repository.interaction_as_stored(after)
        self.new_interactions.append(replace(stored, origin=event.originalsubject))
        return Outcome(stored)

    def record_referral(self, event: CustomerReferredEvent) -> Outcome[domain.Referral]:
        referral_id = event.data.referral_id
        before = self.referrals.get(referral_id)
        try:
            after = domain.record_referral(before, event.data, event.time, event.id)
        except domain.ReferralRejected as exc:
            raise Rejected(str(exc)) from exc
        if before is not None:
            return Outcome(after, new=False)
        stored = self.referrals[referral_id] = repository.referral_as_stored(after)
        self.new_referrals.append(replace(stored, origin=event.originalsubject))
        return Outcome(stored)

    def apply(self, event: CloudEvent[Any]) -> Outcome[Any]:
        if isinstance(event, CustomerRegisteredEvent):
            return self.register(event)
        if isinstance(event, ConsentChangedEvent):
            return self.change_consent(event)
        if isinstance(event, InteractionLoggedEvent):
            return self.log_interaction(event)
        if isinstance(event, CustomerReferredEvent):
            return self.record_referral(event)
        raise Rejected(f"the customer service does not ingest events of type {event.type}")

    async def save(self, uow: UnitOfWork) -> None:
        await repository.insert_personal_keys(uow, self.new_keys)
        await repository.save_profiles(
            uow,
            [self.profiles[c] for c in sorted(self.new_profiles)],
            [self.profiles[c] for c in sorted(self.changed_profiles)],
        )
        await repository.insert_interactions(uow, self.new_interactions)
        await repository.insert_referrals(uow, self.new_referrals)
        await repository.insert_consent_history(uow, self.consent_history)


@dataclass(frozen=True)
class AutoMerge:
    """Which strong identifiers merge a new customer into an existing one at sign-up, and how fields survive."""

    rules: tuple[str, ...] = identity_service.AUTO_MERGE_RULES
    survivorship: SurvivorshipRules = field(default_factory=SurvivorshipRules)


async def apply_ingest_events(
    store: Store,
    events: Sequence[CloudEvent[Any]],
    *,
    match_secret: bytes | None = None,
    auto_merge: AutoMerge | None = None,
) -> BatchOutcome:
    """Apply sign-ups, consent changes, interactions and referrals, the batch in one transaction, and publish
    each one that changed something on crm.customer.events (a sign-up with its personal fields sealed); a
    redelivered event changes nothing. The result of each is an Outcome (what is stored, and whether it was
    new); a registration with other details or with sealed personal fields, a consent change for an unknown
    customer (UnknownCustomer) or one the consents refuse, an interaction or referral id reused with other
    content, or an event type not ingested here, is rejected and the others applied. With the platform's
    match-key secret, a sign-up also publishes the customer's match keys (crm.customer.match_keys_changed.v1).
    With `auto_merge`, a new customer with the same normalised email or phone as an existing one is merged into
    it in the same transaction (crm_customer.identity.service.merge_strong_matches)."""

    async def work(uow: UnitOfWork, batch: Batch[CloudEvent[Any]]) -> None:
        todo = batch.events
        profiled = (e for e in todo if isinstance(e, CustomerRegisteredEvent | ConsentChangedEvent))
        state = _Ingest(
            profiles=await repository.get_profiles(uow, (e.customer_id for e in profiled)),
            keys=await repository.get_personal_keys(
                uow, (e.customer_id for e in todo if isinstance(e, CustomerRegisteredEvent))
            ),
            interactions=await repository.get_interactions(
                uow, (e.data.interaction_id for e in todo if isinstance(e, InteractionLoggedEvent))
            ),
            referrals=await repository.get_referrals(
                uow, (e.data.referral_id for e in todo if isinstance(e, CustomerReferredEvent))
            ),
        )
        for event in todo:
            try:
                outcome = state.apply(event)
            except Rejected as exc:
                batch.reject(event, exc)
                continue
            batch.done(event, outcome)
            if outcome.new:
                uow.emit(state.republished(event), Topic.CUSTOMER_EVENTS)
                if match_secret is not None and isinstance(event, CustomerRegisteredEvent):
                    uow.emit(match_keys_of(event, match_secret), Topic.CUSTOMER_EVENTS)
        await state.save(uow)
        if auto_merge is not None and auto_merge.rules and state.new_profiles:
            await identity_service.merge_strong_matches(
                uow,
                sorted(state.new_profiles),
                rules=auto_merge.rules,
                survivorship_rules=auto_merge.survivorship,
                match_secret=match_secret,
            )

    outcome = await store.apply_batch(CONSUMER, events, work)
    _log_applied(events, outcome)
    return outcome


def _log_applied(events: Sequence[CloudEvent[Any]], outcome: BatchOutcome) -> None:
    """Once per event, after the commit: the sign-ups and consent changes that changed a profile."""
    applied = set(outcome.applied)
    for event in events:
        if event.id not in applied:
            continue
        applied.discard(event.id)  # the same id twice in the batch was applied once
        result = outcome.results.get(event.id)
        if not (isinstance(result, Outcome) and result.new):
            continue
        if isinstance(event, CustomerRegisteredEvent):
            log.info("customer_registered", customer_id=event.customer_id, event_id=event.id)
        elif isinstance(event, ConsentChangedEvent):
            _log_consent(result, event.id, event.data)


async def apply_ingest(
    store: Store, event: CloudEvent[Any], *, match_secret: bytes | None = None, auto_merge: AutoMerge | None = None
) -> Outcome[Any]:
    """One ingest event (the API): its Outcome; raises AlreadyApplied, UnknownCustomer or Rejected."""
    outcome = await apply_ingest_events(store, [event], match_secret=match_secret, auto_merge=auto_merge)
    result: Outcome[Any] = outcome.result_of(event)
    return result


async def register_customer(
    store: Store,
    event: CustomerRegisteredEvent,
    *,
    match_secret: bytes | None = None,
    auto_merge: AutoMerge | None = None,
) -> Outcome[domain.Profile]:
    """Store the profile and publish the sign-up, its personal fields sealed (and its match keys, with the
    secret); the same details again change nothing and emit nothing. With `auto_merge`, a new customer sharing
    a strong identifier with an existing one is merged into it."""
    return await apply_ingest(store, event, match_secret=match_secret, auto_merge=auto_merge)


async def log_interaction(store: Store, event: InteractionLoggedEvent) -> Outcome[domain.Interaction]:
    """Store the interaction and publish it; the same interaction again changes nothing and emits nothing."""
    return await apply_ingest(store, event)


async def record_referral(store: Store, event: CustomerReferredEvent) -> Outcome[domain.Referral]:
    """Store the referral and publish it; the same referral again changes nothing and emits nothing."""
    return await apply_ingest(store, event)


async def change_consent(store: Store, event: ConsentChangedEvent) -> Outcome[domain.Profile]:
    """Update the profile's consent and publish the change, in one transaction; no change emits nothing."""
    return await apply_ingest(store, event)


def _log_consent(outcome: Outcome[domain.Profile], event_id: str, changed: ConsentChanged) -> None:
    if outcome.new:
        log.info("consent_changed", customer_id=changed.customer_id, channel=changed.channel, event_id=event_id)


async def answer_consent(
    store: Store, changed: ConsentChanged, *, source: str, event_id: str
) -> Outcome[domain.Profile]:
    """The customer's answer given now (the API): dated so that it follows every change on record for the
    channel, so a refusal made now takes effect even after a grant stamped a little ahead of this clock.

    One transaction of its own: the answer's time depends on the profile read in it."""

    async def work(uow: UnitOfWork) -> Outcome[domain.Profile]:
        before = await repository.get_profile(uow, changed.customer_id)
        if before is None:
            raise UnknownCustomer(f"no customer {changed.customer_id}")
        if domain.answers_nothing_new(before, changed):
            return Outcome(before, new=False)  # PUT is idempotent: the same answer again is no new fact
        at = domain.answer_time(before, changed.channel, utc_now(), changed.purpose)
        event = ConsentChangedEvent.create(changed, source=source, id=event_id, time=at)
        try:
            after = domain.change_consent(before, event.data, event.time)
        except domain.ConsentRejected as exc:
            raise Rejected(str(exc)) from exc
        if after == before:
            return Outcome(after, new=False)
        await repository.save_profile(uow, after)
        entry = repository.consent_history_entry(event, changed.channel, changed.purpose, changed.granted)
        await repository.insert_consent_history(uow, [entry])
        uow.emit(_republished(event), Topic.CUSTOMER_EVENTS)
        return Outcome(after)

    outcome = await store.transaction(work, applies=f"{CONSUMER}:{event_id}")
    _log_consent(outcome, event_id, changed)
    return outcome


async def record_timeline_events(store: Store, events: Sequence[CloudEvent[Any]]) -> BatchOutcome:
    """Put each event on its customer's timeline, the batch in one bulk write: `applied` are the events that
    were not there yet, `duplicates` those already there (or earlier in the batch). No transaction and no
    processed record: an entry is a function of its event alone, keyed by the event id. A sign-up's match keys
    are plumbing, not a fact about the customer: they are `ignored` (the erasure that empties them is kept)."""
    outcome = BatchOutcome()
    entries: dict[str, domain.TimelineEntry] = {}
    for event in events:
        if not domain.on_timeline(event):
            outcome.ignored.append(event.id)
        elif event.id in entries:
            outcome.duplicates.append(event.id)
        else:
            entries[event.id] = domain.timeline_entry(event)
    listed = list(entries.values())
    written = await store.retrying(lambda: repository.record_entries(store.db, listed), what="timeline_write")
    for event_id in entries:
        (outcome.applied if event_id in written else outcome.duplicates).append(event_id)
    return outcome


async def record_timeline(store: Store, event: CloudEvent[Any]) -> bool:
    """Put the event on its customer's timeline; True when it was not there yet."""
    return event.id in (await record_timeline_events(store, [event])).applied


def _seen_by(principal: Principal | None, customer_id: str) -> dict[str, Any]:
    query: dict[str, Any] = {"_id": customer_id}
    return query if principal is None else CUSTOMER_ACCESS.restrict(principal, query)


async def find_profile(store: Store, customer_id: str, *, seen_by: Principal | None = None) -> domain.Profile | None:
    """The profile; None too when `seen_by` is given and may not see the customer."""
    doc = await store.db[repository.CUSTOMERS].find_one(_seen_by(seen_by, customer_id))
    return repository.profile_from_document(doc) if doc else None


async def sees_customer(store: Store, principal: Principal, customer_id: str) -> bool:
    """Whether the principal sees the customer. Those who see every record see every customer id, registered
    or not (a timeline can start before the sign-up); a person sees only a registered customer assigned to
    them, their team or their territories."""
    if principal.sees_all_records:
        return True
    projection = {"_id": 1}
    return await store.db[repository.CUSTOMERS].find_one(_seen_by(principal, customer_id), projection) is not None


async def assign_customer(store: Store, customer_id: str, assignment: domain.Assignment, *, seen_by: Principal) -> bool:
    """Give the customer this owner and territory; False when there is no such customer `seen_by` sees."""
    return await repository.assign(store.db, _seen_by(seen_by, customer_id), assignment)


async def find_interaction(store: Store, interaction_id: str) -> domain.Interaction | None:
    doc = await store.db[repository.INTERACTIONS].find_one({"_id": interaction_id})
    return repository.interaction_from_document(doc) if doc else None


async def find_referral(store: Store, referral_id: str) -> domain.Referral | None:
    doc = await store.db[repository.REFERRALS].find_one({"_id": referral_id})
    return repository.referral_from_document(doc) if doc else None


# ---------------------------------------------------------------- personal data


class KeyGone(Exception):
    """The key a value was sealed with is not held (any more): the customer's personal data was erased."""


FieldT = TypeVar("FieldT", bound=str)


async def unseal_personal_data(store: Store, customer_id: str, values: Mapping[FieldT, str]) -> dict[FieldT, str]:
    """The clear value of each sealed field (by field name) of the customer. Raises KeyGone when the key that
    sealed a value is gone (destroyed by an erasure, or never held), crm_shared.personal.UnsealError when a
    value does not decrypt as that field of that customer."""
    key = await repository.find_personal_key(store.db, customer_id)
    clear: dict[FieldT, str] = {}
    for name, token in values.items():
        key_id = key_id_of(token)
        if key is None or key.key_id != key_id:
            raise KeyGone(
                f"key {key_id} of customer {customer_id} is not held: it was destroyed when the customer's "
                "personal data was erased (or never was this customer's), so the value cannot be read any more"
            )
        clear[name] = unseal(token, key=key.key, customer_id=customer_id, field=name, key_id=key.key_id)
    return clear


@dataclass(frozen=True)
class Erasure:
    """What an erasure removed: no value, only which fields, key and dead-letter originals."""

    customer_id: str
    erased_at: datetime
    profile_fields: list[str]
    key_id: str | None
    dead_letter_originals: int
    erasure_id: str = ""
    """The erasure every service applies and confirms (crm.customer.erased.v1): GET /v1/erasures/{erasure_id}."""
    pseudonym: str = ""
    merged_profiles: int = 0
    """Profiles merged into this customer before, erased with it."""


async def erase_personal_data(
    store: Store,
    customer_id: str,
    *,
    seen_by: Principal,
    services: Sequence[str] = identity_service.PRIVACY_SERVICES,
) -> Erasure | None:
    """Destroy the customer's key (every sealed copy of their personal fields becomes unreadable), remove name,
    email and phone from the profile and the originals of the customer's kept dead letters, and publish that no
    match key of theirs is left, in one transaction.
    None when `seen_by` may not see the customer; erasing again removes what is left, usually nothing. Those
    who see every record may erase a customer id without a profile (a refused sign-up's dead letter)."""

    async def work(uow: UnitOfWork) -> Erasure | None:
        profile = await repository.get_profile(uow, customer_id, where=_seen_by(seen_by, customer_id))
        if profile is None and not seen_by.sees_all_records:
            return None
        doc = await uow.db[repository.CUSTOMERS].find_one({"_id": customer_id}, {"merged_into": 1}, session=uow.session)
        if doc is not None and doc.get("merged_into"):
            raise identity_service.MergeRefused(
                f"customer {customer_id} was merged into {doc['merged_into']}: erase {doc['merged_into']}, which "
                "erases the profiles merged into it too, or undo the merge first"
            )
        at = as_stored(utc_now())
        key_id = await repository.destroy_personal_key(uow, customer_id)
        erased_fields: list[str] = []
        if profile is not None:
            after = domain.erase_personal_data(profile, at)
            if after != profile:
                erased_fields = profile.details.personal_fields
                await repository.save_profile(uow, after)
            await profiles.erase_extras(uow, customer_id)
        # The profiles merged into this customer are kept for an unmerge: they are the person's too.
        merged = [
            d["_id"] async for d in uow.db[repository.CUSTOMERS].find({"merged_into": customer_id}, session=uow.session)
        ]
        for merged_id in merged:
            await repository.destroy_personal_key(uow, merged_id)
            old = await repository.get_profile(uow, merged_id)
            if old is not None:
                await repository.save_profile(uow, domain.erase_personal_data(old, at))
            await profiles.erase_extras(uow, merged_id)
        request = await identity_service.request_erasure(uow, customer_id, at, services)
        originals = await repository.erase_dead_letter_originals(uow, customer_id, at)
        # No match key is left: a service that matched new records against this customer stops.
        gone = CustomerMatchKeysChanged(customer_id=customer_id, match_keys=[], reason="erased")
        uow.emit(
            CustomerMatchKeysChangedEvent.create(
                gone, source=SOURCE, id=derived_event_id(SOURCE, f"erased:{customer_id}:{at.isoformat()}"), time=at
            ),
            Topic.CUSTOMER_EVENTS,
        )
        return Erasure(
            customer_id, at, erased_fields, key_id, originals, request["_id"], request["pseudonym"], len(merged)
        )

    erasure = await store.transaction(work)
    if erasure is not None:
        log.info(
            "personal_data_erased",
            customer_id=customer_id,
            fields=erasure.profile_fields,
            key_destroyed=erasure.key_id is not None,
            dead_letter_originals=erasure.dead_letter_originals,
        )
    return erasure


MATCH_KEYS_PAGE = 500
"""Customers per transaction when their match keys are published again."""


async def publish_match_keys(
    store: Store, secret: bytes, *, page: int = MATCH_KEYS_PAGE, progress: Callable[[int], None] | None = None
) -> int:
    """Publish every customer's match keys from the profile (those with an email or a phone, not erased), a page
    of customers per transaction: for customers who signed up before the secret was set, or after it changed.
    Running it again publishes the same keys again, which changes nothing downstream. The number published."""
    published, after = 0, ""
    while True:
        cursor = store.db[repository.CUSTOMERS].find({"_id": {"$gt": after}}, {"email": 1, "phone": 1})
        docs = await cursor.sort("_id", 1).limit(page).to_list(None)
        if not docs:
            return published
        after = docs[-1]["_id"]
        keyed = [(doc["_id"], match_keys(secret, email=doc.get("email"), phone=doc.get("phone"))) for doc in docs]
        keyed = [(customer_id, keys) for customer_id, keys in keyed if keys]  # an erased one has none to publish
        at = as_stored(utc_now())

        async def work(uow: UnitOfWork, keyed: list[tuple[str, list[str]]] = keyed, at: datetime = at) -> None:
            for customer_id, keys in keyed:
                data = CustomerMatchKeysChanged(customer_id=customer_id, match_keys=keys, reason="registered")
                event_id = derived_event_id(SOURCE, f"match-keys:{customer_id}:{at.isoformat()}")
                event = CustomerMatchKeysChangedEvent.create(data, source=SOURCE, id=event_id, time=at)
                uow.emit(event, Topic.CUSTOMER_EVENTS)

        if keyed:
            await store.transaction(work)
        published += len(keyed)
        if progress is not None:
            progress(len(docs))
