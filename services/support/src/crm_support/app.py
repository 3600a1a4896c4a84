"""Composition of the support service."""

from fastapi import FastAPI

from crm_shared.leases import leased
from crm_shared.logging import get_logger
from crm_shared.service import Runtime, create_app
from crm_shared.store import Store
from crm_support import analysis_api, api, consumers, nps, repository
from crm_support.field import api as field_api
from crm_support.field import repository as field_repository
from crm_support.kb import api as kb_api
from crm_support.kb import repository as kb_repository
from crm_support.settings import SupportSettings
from crm_support.sla import api as sla_api
from crm_support.sla import escalation
from crm_support.sla import repository as sla_repository
from crm_support.tickets import api as tickets_api
from crm_support.tickets import handlers as tickets_handlers
from crm_support.tickets import repository as tickets_repository

log = get_logger(__name__)

INDEXES = (
    *repository.INDEXES,
    *sla_repository.INDEXES,
    *tickets_repository.INDEXES,
    *escalation.INDEXES,
    *kb_repository.INDEXES,
    *field_repository.INDEXES,
    *nps.INDEXES,
)


def create_service(settings: SupportSettings | None = None) -> FastAPI:
    settings = settings or SupportSettings()
    runtime = Runtime.for_service(settings, indexes=INDEXES)
    consumers.register(runtime, settings.sla_targets, settings.nps_interval)
    # Each in one instance at a time, under a lease of its name: both are safe to run twice (conditional
    # updates), but two instances would only race each other.
    poll, lease_seconds = settings.sla_poll_seconds, settings.lease_seconds
    runtime.run_in_background(
        "sla-escalation",
        leased("sla-escalation", lambda store: escalation.run(store, poll), ttl_seconds=lease_seconds),
    )
    # Tickets stored before what is due next was kept get it, once, in the background. Every instance runs it, with
    # no lease: each write is conditional, and the value a function of the ticket and its policy.
    runtime.run_in_background("sla-due", _backfill_sla_due)
    nps_interval = settings.nps_interval
    if nps_interval is not None:
        nps_poll = settings.nps_poll_seconds
        runtime.run_in_background(
            "nps-requests",
            leased("nps-requests", lambda store: nps.run(store, nps_interval, nps_poll), ttl_seconds=lease_seconds),
        )
    app = create_app(
        runtime,
        title="CRM support",
        description="Complaints and their SLA (policies by value tier, priority, category and channel, on "
        "business-hours calendars), satisfaction surveys; publishes crm.support.events.",
        routers=[api.router, tickets_api.router, sla_api.router, kb_api.router, field_api.router, analysis_api.router],
    )
    app.state.sla_targets = settings.sla_targets
    return app


async def _backfill_sla_due(store: Store) -> None:
    try:
        await tickets_handlers.backfill_sla_due(store)
    except Exception as exc:  # the next start tries again; meanwhile those tickets list as having nothing due
        log.error("sla_due_backfill_failed", error=repr(exc))
