"""Composition of the customer service."""

from fastapi import FastAPI

from crm_customer import api, consumers, repository
from crm_customer.settings import CustomerSettings
from crm_shared.service import Runtime, create_app


def create_service(settings: CustomerSettings | None = None) -> FastAPI:
    settings = settings or CustomerSettings()
    runtime = Runtime.for_service(settings, indexes=repository.INDEXES)
    consumers.register(runtime)
    return create_app(
        runtime,
        title="CRM customer",
        description="Customer profiles, channel consents and interactions; publishes crm.customer.events, a "
        "sign-up's personal fields sealed with the customer's key, and unseals them for callers allowed to read "
        "them; erasing a customer destroys the key. Keeps the customer 360 timeline from every service's events.",
        routers=[api.router],
    )
