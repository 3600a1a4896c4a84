"""Composition of the marketing service."""

from fastapi import FastAPI

from crm_marketing import api, consumers, repository
from crm_marketing.settings import MarketingSettings
from crm_shared.logging import get_logger
from crm_shared.service import Runtime, create_app
from crm_shared.store import Store

log = get_logger(__name__)


def create_service(settings: MarketingSettings | None = None) -> FastAPI:
    settings = settings or MarketingSettings()
    runtime = Runtime.for_service(settings, indexes=repository.INDEXES)
    consumers.register(runtime, settings)
    # Every instance, at start-up, with no lease (crm_shared.leases): dropping is idempotent; of two instances
    # starting together, one may find an index gone under it, log it, and leave the rest to the other.
    runtime.run_in_background("retired-indexes", _drop_retired_indexes)
    return create_app(
        runtime,
        title="CRM marketing",
        description="Triggered journeys on segment changes and complaints, within each customer's channel "
        "consents, a frequency cap, holdout groups and campaign budgets; campaign results with uplift; "
        "publishes crm.marketing.events.",
        routers=[api.router],
    )


async def _drop_retired_indexes(store: Store) -> None:
    try:
        dropped = await repository.drop_retired_indexes(store.db)
    except Exception as exc:  # the next start tries again
        log.error("retired_indexes_not_dropped", error=repr(exc))
    else:
        if dropped:
            log.info("retired_indexes_dropped", indexes=dropped)
