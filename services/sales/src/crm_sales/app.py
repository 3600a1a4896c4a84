"""Composition of the sales service."""

from fastapi import FastAPI

from crm_sales import api, consumers, repository
from crm_sales.settings import SalesSettings
from crm_shared.service import Runtime, create_app


def create_service(settings: SalesSettings | None = None) -> FastAPI:
    settings = settings or SalesSettings()
    runtime = Runtime.for_service(settings, indexes=repository.INDEXES)
    consumers.register(runtime)
    return create_app(
        runtime,
        title="CRM sales",
        description="Orders from every channel and qualified leads from marketing; publishes crm.sales.events.",
        routers=[api.router, api.leads_router],
    )
