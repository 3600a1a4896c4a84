"""Composition of the customer service."""

from fastapi import FastAPI

from crm_customer import api, consumers, repository
from crm_customer.identity import api as identity_api
from crm_customer.identity import service as identity_service
from crm_customer.insights import api as insights_api
from crm_customer.insights import repository as insights_repository
from crm_customer.profiles import api as profiles_api
from crm_customer.profiles import repository as profiles_repository
from crm_customer.settings import CustomerSettings
from crm_shared.logging import get_logger
from crm_shared.service import Runtime, create_app
from crm_shared.store import Store

log = get_logger(__name__)
INDEXES = (
    *repository.INDEXES,
    *profiles_repository.INDEXES,
    *insights_repository.INDEXES,
    *identity_service.INDEXES,
)


def create_service(settings: CustomerSettings | None = None) -> FastAPI:
    settings = settings or CustomerSettings()
    runtime = Runtime.for_service(settings, indexes=INDEXES)
    consumers.register(runtime)
    # Profiles stored before search keys existed get theirs, once, in the background. Every instance runs it, with
    # no lease (crm_shared.leases): each update is conditional and the keys are a function of the profile.
    runtime.run_in_background("search-keys", _backfill_search_keys)
    return create_app(
        runtime,
        title="CRM customer",
        description="Customer profiles, channel consents and interactions; publishes crm.customer.events, a "
        "sign-up's personal fields sealed with the customer's key, and unseals them for callers allowed to read "
        "them; erasing a customer destroys the key. Keeps the customer 360 timeline from every service's events.",
        routers=[api.router, profiles_api.router, insights_api.router, identity_api.router],
    )


async def _backfill_search_keys(store: Store) -> None:
    try:
        await profiles_repository.backfill_search_keys(store.db)
    except Exception as exc:  # the next start tries again; searches miss only those profiles meanwhile
        log.error("search_keys_backfill_failed", error=repr(exc))
