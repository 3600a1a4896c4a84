"""Composition of the sales service: the one place that wires its aggregates together."""

from fastapi import FastAPI

from crm_sales import consumers
from crm_sales.accounts import api as accounts_api
from crm_sales.accounts import repository as accounts_repository
from crm_sales.activities import api as activities_api
from crm_sales.activities import repository as activities_repository
from crm_sales.analytics import api as analytics_api
from crm_sales.commissions import api as commissions_api
from crm_sales.commissions import repository as commissions_repository
from crm_sales.customers import repository as customers_repository
from crm_sales.expenses import api as expenses_api
from crm_sales.expenses import repository as expenses_repository
from crm_sales.forecasts import api as forecasts_api
from crm_sales.forecasts import repository as forecasts_repository
from crm_sales.leads import api as leads_api
from crm_sales.leads import repository as leads_repository
from crm_sales.opportunities import api as opportunities_api
from crm_sales.opportunities import repository as opportunities_repository
from crm_sales.orders import api as orders_api
from crm_sales.orders import repository as orders_repository
from crm_sales.quotes import api as quotes_api
from crm_sales.quotes import repository as quotes_repository
from crm_sales.settings import SalesSettings
from crm_sales.territories import api as territories_api
from crm_sales.territories import repository as territories_repository
from crm_shared.service import Runtime, create_app

INDEXES = (
    *orders_repository.INDEXES,
    *leads_repository.INDEXES,
    *territories_repository.INDEXES,
    *accounts_repository.INDEXES,
    *opportunities_repository.INDEXES,
    *quotes_repository.INDEXES,
    *activities_repository.INDEXES,
    *forecasts_repository.INDEXES,
    *expenses_repository.INDEXES,
    *commissions_repository.INDEXES,
    *customers_repository.INDEXES,
)

ROUTERS = (
    orders_api.router,
    leads_api.router,
    territories_api.router,
    opportunities_api.router,
    accounts_api.router,
    quotes_api.router,
    activities_api.router,
    forecasts_api.router,
    expenses_api.router,
    commissions_api.router,
    analytics_api.router,
)


def create_service(settings: SalesSettings | None = None) -> FastAPI:
    settings = settings or SalesSettings()
    runtime = Runtime.for_service(settings, indexes=INDEXES)
    consumers.register(runtime)
    return create_app(
        runtime,
        title="CRM sales",
        description="Sales force automation: leads from every source and their assignment by territory rules, "
        "lead conversion, accounts, opportunities in pipelines with learned win probabilities, price books and "
        "quotes, activities and calendars (with iCalendar feeds), forecasts with quotas and accuracy, expenses "
        "and cost of sale, commissions, conversion analytics, and orders from every channel with their "
        "fulfilment; publishes crm.sales.events.",
        routers=list(ROUTERS),
    )
