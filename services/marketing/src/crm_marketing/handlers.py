"""Use cases of marketing: learn consents from customer events, enrol on segment changes, exactly once."""

from collections.abc import Sequence
from typing import Any

from crm_marketing import domain, repository
from crm_shared.events import (
    CampaignEnrolled,
    CampaignEnrolledEvent,
    CloudEvent,
    CustomerRegisteredEvent,
    SegmentChangedEvent,
    derived_event_id,
)
from crm_shared.logging import get_logger
from crm_shared.store import Store, UnitOfWork
from crm_shared.topics import Topic

SOURCE = "/crm/marketing"

log = get_logger(__name__)


def _applies(event: CloudEvent[Any]) -> str:
    return f"marketing:{event.id}"


async def apply_customer_event(store: Store, event: CloudEvent[Any]) -> domain.ContactPreferences | None:
    """Keep marketing's consent projection; other customer events are not marketing's concern (yet)."""
    if not isinstance(event, CustomerRegisteredEvent):
        log.debug("customer_event_not_used", event_type=event.type)
        return None

    async def work(uow: UnitOfWork) -> domain.ContactPreferences:
        before = await repository.get_preferences(uow, event.customer_id)
        after = domain.record_registration(before, event.data, event.id, event.time)
        if after != before:
            await repository.save_preferences(uow, after)
        return after

    return await store.transaction(work, applies=_applies(event))


async def apply_segment_change(
    store: Store, event: SegmentChangedEvent, journeys: Sequence[domain.Journey] = domain.DEFAULT_JOURNEYS
) -> list[domain.Enrolment]:
    """Enrol the customer in every journey the change triggers and publish each enrolment."""
    triggered = domain.journeys_triggered(event.data, journeys)

    async def work(uow: UnitOfWork) -> list[domain.Enrolment]:
        if not triggered:
            return []
        # The latest consent marketing knows, so a refusal that arrived before this change is respected.
        prefs = await repository.get_preferences(uow, event.customer_id)
        enrolments = []
        for journey in triggered:
            enrolment = domain.enrol(journey, event.customer_id, event.id, event.id, prefs, event.time)
            await repository.ensure_campaign(uow, journey)
            await repository.insert_enrolment(uow, enrolment)
            uow.emit(
                CampaignEnrolledEvent.create(
                    CampaignEnrolled(
                        customer_id=enrolment.customer_id,
                        enrolment_id=enrolment.enrolment_id,
                        campaign_id=enrolment.campaign_id,
                        journey=enrolment.journey,
                        episode=enrolment.episode,
                        channel=enrolment.channel,
                        status=enrolment.status,
                        reason=enrolment.reason,
                        trigger_event_id=enrolment.trigger_event_id,
                    ),
                    source=SOURCE,
                    id=derived_event_id(SOURCE, event.id, journey.name),
                    time=event.time,
                    cause=event,
                ),
                Topic.MARKETING_EVENTS,
            )
            enrolments.append(enrolment)
        return enrolments

    enrolments = await store.transaction(work, applies=_applies(event))
    for e in enrolments:
        log.info("customer_enrolled", customer_id=e.customer_id, journey=e.journey, status=e.status, channel=e.channel)
    return enrolments
