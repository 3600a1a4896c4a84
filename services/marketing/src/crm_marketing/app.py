"""Composition of the marketing service."""

from fastapi import FastAPI

from crm_marketing import api, consumers, repository
from crm_marketing.settings import MarketingSettings
from crm_shared.service import Runtime, create_app


def create_service(settings: MarketingSettings | None = None) -> FastAPI:
    settings = settings or MarketingSettings()
    runtime = Runtime.for_service(settings, indexes=repository.INDEXES)
    consumers.register(runtime, settings)
    return create_app(
        runtime,
        title="CRM marketing",
        description="Triggered journeys on segment changes and complaints, within each customer's channel "
        "consents, a frequency cap, holdout groups and campaign budgets; campaign results with uplift; "
        "publishes crm.marketing.events.",
        routers=[api.router],
    )
