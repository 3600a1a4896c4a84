"""Every route of every service: 401 without a credential, 403 without its scope, through with it.

The table is the contract: a route added, or given another scope, without changing it here fails.
"""

from __future__ import annotations

import importlib
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from crm_shared.events import (
    CloudEvent,
    ComplaintFiled,
    ComplaintFiledEvent,
    CustomerRegistered,
    CustomerRegisteredEvent,
    InteractionLogged,
    InteractionLoggedEvent,
    OrderPaid,
    OrderPaidEvent,
    OrderPlaced,
    OrderPlacedEvent,
    SurveyAnswered,
    SurveyAnsweredEvent,
)
from crm_shared.security import ADMIN, SCOPES
from crm_shared.security.keys import issue
from crm_shared.service import OPEN_PATHS
from crm_shared.settings import SERVICES
from crm_shared.store import Store

from helpers import ADMIN_HEADERS, bearer

PROBLEM = "application/problem+json"
JSON = {"Content-Type": "application/json"}
T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)

ADMIN_API = {
    "GET /v1/auth/whoami": "",
    "POST /v1/admin/keys": ADMIN,
    "GET /v1/admin/keys": ADMIN,
    "GET /v1/admin/keys/{key_id}": ADMIN,
    "POST /v1/admin/keys/{key_id}/rotate": ADMIN,
    "DELETE /v1/admin/keys/{key_id}": ADMIN,
    "GET /v1/admin/audit": ADMIN,
    "GET /v1/admin/deadletters": ADMIN,
    "GET /v1/admin/deadletters/{letter_id}": ADMIN,
    "POST /v1/admin/deadletters/{letter_id}/replay": ADMIN,
}
SCOPE_OF: dict[str, dict[str, str]] = {
    "customer": {
        "POST /v1/customers": "customers:write",
        "POST /v1/interactions": "interactions:write",
        "POST /v1/referrals": "customers:write",
        "POST /v1/events": "events:write",
        "GET /v1/customers/{customer_id}": "customers:read",
        "GET /v1/customers/{customer_id}/consents": "customers:read",
        "GET /v1/customers/{customer_id}/consents/history": "customers:read",
        "PUT /v1/customers/{customer_id}/consents/{channel}": "consents:write",
        "PUT /v1/customers/{customer_id}/assignment": "customers:write",
        "GET /v1/interactions/{interaction_id}": "interactions:read",
        "GET /v1/customers/{customer_id}/timeline": "customers:read",
        "GET /v1/customers/{customer_id}/summary": "customers:read",
        "GET /v1/analysis/customers/activity": "customers:read",
        "GET /v1/analysis/customers/distribution": "customers:read",
        "GET /v1/analysis/customers/cohorts": "customers:read",
        "GET /v1/analysis/customers/cohorts.png": "customers:read",
        "POST /v1/personal-data/unseal": "customers:unseal",
        "DELETE /v1/customers/{customer_id}/personal-data": "customers:erase",
        "POST /v1/customers/{customer_id}/merges": "customers:merge",
        "GET /v1/customers/{customer_id}/merges": "customers:read",
        "GET /v1/merges/{merge_id}": "customers:read",
        "POST /v1/merges/{merge_id}/undo": "customers:merge",
        "GET /v1/erasures/{erasure_id}": "customers:erase",
        "GET /v1/customers/{customer_id}/erasures": "customers:erase",
        "POST /v1/customers/{customer_id}/exports": "customers:export",
        "GET /v1/exports/{request_id}": "customers:export",
        "POST /v1/customers/{customer_id}/duplicates/{other_id}/rejection": "customers:merge",
        "DELETE /v1/customers/{customer_id}/duplicates/{other_id}/rejection": "customers:merge",
        "PUT /v1/attributes/{name}": "attributes:write",
        "GET /v1/attributes": "customers:read",
        "DELETE /v1/attributes/{name}": "attributes:write",
        "PATCH /v1/customers/{customer_id}": "customers:write",
        "GET /v1/customers": "customers:read",
        "PUT /v1/customers/{account_id}/contacts/{contact_id}": "customers:write",
        "DELETE /v1/customers/{account_id}/contacts/{contact_id}": "customers:write",
        "GET /v1/customers/{account_id}/contacts": "customers:read",
        "GET /v1/customers/{contact_id}/accounts": "customers:read",
        "GET /v1/customers/{customer_id}/duplicates": "customers:read",
    },
    "sales": {
        "POST /v1/orders": "orders:write",
        "POST /v1/events": "events:write",
        "GET /v1/orders/{order_id}": "orders:read",
        "POST /v1/orders/{order_id}/fulfilments": "orders:write",
        "GET /v1/customers/{customer_id}/orders": "orders:read",
        "GET /v1/leads": "leads:read",
        "POST /v1/leads": "leads:write",
        "POST /v1/leads/import": "leads:write",
        "POST /v1/leads/assign": "leads:write",
        "POST /v1/leads/{lead_id}/assign": "leads:write",
        "GET /v1/customers/{customer_id}/leads": "leads:read",
        "GET /v1/leads/{lead_id}": "leads:read",
        "PATCH /v1/leads/{lead_id}": "leads:write",
        "POST /v1/leads/{lead_id}/convert": "leads:write",
        "POST /v1/territories": "territories:write",
        "GET /v1/territories": "territories:read",
        "GET /v1/territories/{territory_id}": "territories:read",
        "PUT /v1/territories/{territory_id}": "territories:write",
        "DELETE /v1/territories/{territory_id}": "territories:write",
        "GET /v1/pipelines": "opportunities:read",
        "GET /v1/accounts": "opportunities:read",
        "GET /v1/accounts/{account_id}": "opportunities:read",
        "GET /v1/pipelines/{pipeline_id}": "opportunities:read",
        "PUT /v1/pipelines/{pipeline_id}": "opportunities:write",
        "GET /v1/pipelines/{pipeline_id}/probabilities": "opportunities:read",
        "POST /v1/opportunities": "opportunities:write",
        "GET /v1/opportunities": "opportunities:read",
        "GET /v1/opportunities/{opportunity_id}": "opportunities:read",
        "PATCH /v1/opportunities/{opportunity_id}": "opportunities:write",
        "POST /v1/opportunities/{opportunity_id}/stage": "opportunities:write",
        "POST /v1/opportunities/{opportunity_id}/win": "opportunities:write",
        "POST /v1/opportunities/{opportunity_id}/lose": "opportunities:write",
        "PUT /v1/price-books/{book_id}": "quotes:write",
        "GET /v1/price-books/{book_id}": "quotes:read",
        "GET /v1/price-books": "quotes:read",
        "GET /v1/prices": "quotes:read",
        "POST /v1/quotes": "quotes:write",
        "GET /v1/quotes": "quotes:read",
        "GET /v1/quotes/{quote_id}": "quotes:read",
        "POST /v1/quotes/{quote_id}/send": "quotes:write",
        "POST /v1/quotes/{quote_id}/accept": "quotes:write",
        "POST /v1/quotes/{quote_id}/reject": "quotes:write",
        "POST /v1/activities": "activities:write",
        "GET /v1/activities": "activities:read",
        "GET /v1/activities/{activity_id}": "activities:read",
        "POST /v1/activities/{activity_id}/complete": "activities:write",
        "POST /v1/activities/{activity_id}/cancel": "activities:write",
        "GET /v1/calendars/{owner_id}": "activities:read",
        "GET /v1/calendars/{owner_id}/feed.ics": "activities:read",
        "POST /v1/calendars/{owner_id}/feed-address": "activities:write",
        "GET /v1/calendars/{owner_id}/feed-address": "activities:read",
        "DELETE /v1/calendars/{owner_id}/feed-address": "activities:write",
        "GET /v1/forecasts": "forecasts:read",
        "PUT /v1/quotas/{owner_id}/{period}": "forecasts:write",
        "GET /v1/quotas": "forecasts:read",
        "POST /v1/forecasts/snapshots": "forecasts:write",
        "GET /v1/forecasts/accuracy": "forecasts:read",
        "POST /v1/expenses": "expenses:write",
        "GET /v1/expenses": "expenses:read",
        "GET /v1/expenses/report": "expenses:read",
        "GET /v1/expenses/{expense_id}": "expenses:read",
        "GET /v1/opportunities/{opportunity_id}/cost-of-sale": "expenses:read",
        "PUT /v1/commission-plans/{plan_id}": "commissions:write",
        "GET /v1/commission-plans": "commissions:read",
        "GET /v1/commission-statements/{owner_id}/{period}": "commissions:read",
        "POST /v1/commission-statements/{owner_id}/{period}/close": "commissions:write",
        "GET /v1/analytics/lead-conversion": "forecasts:read",
        "GET /v1/analytics/pipelines/{pipeline_id}": "forecasts:read",
        "GET /v1/analytics/account-revenue": "forecasts:read",
    },
    "support": {
        "POST /v1/complaints": "tickets:write",
        "POST /v1/surveys": "surveys:write",
        "POST /v1/events": "events:write",
        "GET /v1/complaints/{complaint_id}": "tickets:read",
        "PUT /v1/complaints/{complaint_id}/assignment": "tickets:write",
        "GET /v1/customers/{customer_id}/complaints": "tickets:read",
        "GET /v1/customers/{customer_id}/surveys": "surveys:read",
        "POST /v1/tickets": "tickets:write",
        "GET /v1/tickets": "tickets:read",
        "GET /v1/tickets/{ticket_id}": "tickets:read",
        "POST /v1/tickets/{ticket_id}/posts": "tickets:write",
        "PATCH /v1/tickets/{ticket_id}": "tickets:write",
        "GET /v1/reports/satisfaction": "surveys:read",
        "GET /v1/reports/tickets": "tickets:read",
        "GET /v1/reports/sla": "tickets:read",
        "GET /v1/reports/repeat-complainers": "tickets:read",
        "GET /v1/reports/backlog": "tickets:read",
        "PUT /v1/kb/articles/{article_id}": "kb:write",
        "GET /v1/kb/articles": "tickets:read",
        "GET /v1/kb/articles/{article_id}": "tickets:read",
        "GET /v1/kb/search": "tickets:read",
        "GET /v1/tickets/{ticket_id}/suggested-articles": "tickets:read",
        "POST /v1/tickets/{ticket_id}/articles": "tickets:write",
        "PUT /v1/sla/calendars/{calendar_id}": "sla:write",
        "GET /v1/sla/calendars": "tickets:read",
        "GET /v1/sla/calendars/{calendar_id}": "tickets:read",
        "DELETE /v1/sla/calendars/{calendar_id}": "sla:write",
        "PUT /v1/sla/policies/{policy_id}": "sla:write",
        "GET /v1/sla/policies": "tickets:read",
        "GET /v1/sla/policies/{policy_id}": "tickets:read",
        "DELETE /v1/sla/policies/{policy_id}": "sla:write",
        "PUT /v1/service-contracts/{contract_id}": "field:write",
        "GET /v1/service-contracts": "tickets:read",
        "GET /v1/service-contracts/{contract_id}": "tickets:read",
        "PUT /v1/technicians/{technician_id}": "field:write",
        "GET /v1/technicians": "tickets:read",
        "GET /v1/technicians/{technician_id}": "tickets:read",
        "POST /v1/tickets/{ticket_id}/visits": "field:write",
        "GET /v1/visits": "tickets:read",
        "GET /v1/visits/{visit_id}": "tickets:read",
        "POST /v1/visits/{visit_id}/dispatch": "field:write",
        "POST /v1/visits/{visit_id}/complete": "field:write",
        "POST /v1/visits/{visit_id}/cancel": "field:write",
        "GET /v1/installed-products/{serial}/repairs": "tickets:read",
    },
    "scoring": {
        "GET /v1/customers/{customer_id}/scores": "scores:read",
        "GET /v1/customers/{customer_id}/segment-changes": "scores:read",
        "GET /v1/population": "scores:read",
        "GET /v1/population/pareto": "scores:read",
        "GET /v1/population/movements": "scores:read",
        "GET /v1/population/tier-movements": "scores:read",
        "POST /v1/population/refresh": "scores:run",
        "POST /v1/models/fit": "scores:run",
        "GET /v1/models": "scores:read",
    },
    "marketing": {
        "GET /v1/journeys": "campaigns:read",
        "GET /v1/campaigns": "campaigns:read",
        "POST /v1/campaigns": "campaigns:write",
        "GET /v1/campaigns/{campaign_id}": "campaigns:read",
        "DELETE /v1/campaigns/{campaign_id}": "campaigns:write",
        "GET /v1/campaigns/{campaign_id}/results": "campaigns:read",
        "POST /v1/campaigns/{campaign_id}/launch": "campaigns:write",
        "GET /v1/campaigns/{campaign_id}/enrolments": "campaigns:read",
        "GET /v1/customers/{customer_id}/enrolments": "campaigns:read",
        "GET /v1/customers/{customer_id}/contact-preferences": "campaigns:read",
        "GET /v1/customers/{customer_id}/engagement": "campaigns:read",
        "POST /v1/segments": "segments:write",
        "GET /v1/segments": "segments:read",
        "GET /v1/segments/{segment_id}": "segments:read",
        "DELETE /v1/segments/{segment_id}": "segments:write",
        "GET /v1/segments/{segment_id}/members": "segments:export",
        "POST /v1/segments/{segment_id}/hand-over": "segments:write",
    },
}
APPS: dict[str, FastAPI] = {name: importlib.import_module(f"crm_{name}.app").create_service() for name in SERVICES}


def declared(app: FastAPI) -> dict[str, frozenset[str]]:
    """Each operation of the app's OpenAPI document and the scopes its security requirements name."""
    return {
        f"{method.upper()} {path}": frozenset(
            s for requirement in op.get("security", []) for names in requirement.values() for s in names
        )
        for path, item in app.openapi()["paths"].items()
        if path not in OPEN_PATHS
        for method, op in item.items()
    }


CASES = [(name, operation) for name, app in APPS.items() for operation in declared(app)]


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_operation_has_the_scope_of_the_table(service: str) -> None:
    wanted = {
        operation: frozenset({scope} if scope else ())
        for operation, scope in {**SCOPE_OF[service], **ADMIN_API}.items()
    }
    assert declared(APPS[service]) == wanted


@pytest.fixture(scope="module")
async def clients(new_store: Callable[..., Awaitable[Store]]) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """A client per service with no credential of its own: each request says who calls."""
    opened: dict[str, httpx.AsyncClient] = {}
    for name, app in APPS.items():
        app.state.runtime.store = await new_store(f"access_{name}", app.state.runtime.indexes)
        opened[name] = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}")
    yield opened
    for client in opened.values():
        await client.aclose()


@pytest.mark.parametrize(("service", "operation"), CASES, ids=[f"{s} {o}" for s, o in CASES])
async def test_no_credential_is_a_401_and_every_other_scope_a_403(
    clients: dict[str, httpx.AsyncClient], service: str, operation: str
) -> None:
    method, path = operation.split(" ", 1)
    url = re.sub(r"\{[^}]+\}", "x-1", path)
    body: dict[str, Any] = {"json": {}} if method in {"POST", "PUT", "PATCH"} else {}
    http = clients[service]

    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"X-API-Key": "crm_unknown_" + "x" * 40}):
        anonymous = await http.request(method, url, headers=headers, **body)
        assert anonymous.status_code == 401, anonymous.text
        assert anonymous.headers["content-type"] == PROBLEM
        assert anonymous.headers["www-authenticate"].startswith('Bearer realm="crm"')

    scopes = declared(APPS[service])[operation]
    if scopes:
        # Every other scope, records:all included: none stands in for the one the route needs (admin does).
        others = sorted(set(SCOPES) - scopes - {ADMIN})
        refused = await http.request(method, url, headers=bearer("rep-1", *others), **body)
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"] == PROBLEM
        assert all(scope in refused.json()["detail"] for scope in scopes)

    allowed = await http.request(method, url, headers=bearer("rep-1", *scopes), **body)
    assert allowed.status_code not in (401, 403, 429), allowed.text


def _events(customer: str) -> dict[str, tuple[CloudEvent[Any], CloudEvent[Any]]]:
    """Per service taking POST /v1/events: an event of the type a key is limited to, and one of another type."""
    return {
        "customer": (
            InteractionLoggedEvent.create(
                InteractionLogged(interaction_id=f"I-{customer}", customer_id=customer, kind="call", channel="phone"),
                source="/channels/call-centre",
                time=T0,
            ),
            CustomerRegisteredEvent.create(
                CustomerRegistered(customer_id=customer, name="Test Person"), source="/channels/call-centre", time=T0
            ),
        ),
        "sales": (
            OrderPaidEvent.create(
                OrderPaid(order_id=f"O-{customer}", customer_id=customer, currency="EUR", amount="10.00"),
                source="/channels/payments",
                time=T0,
            ),
            OrderPlacedEvent.create(
                OrderPlaced(order_id=f"O-{customer}", customer_id=customer, currency="EUR", total="10.00"),
                source="/channels/payments",
                time=T0,
            ),
        ),
        "support": (
            SurveyAnsweredEvent.create(
                SurveyAnswered(survey_id=f"S-{customer}", customer_id=customer, kind="nps", score=9),
                source="/channels/surveys",
                time=T0,
            ),
            ComplaintFiledEvent.create(
                ComplaintFiled(
                    complaint_id=f"T-{customer}",
                    customer_id=customer,
                    dimension="service",
                    severity="low",
                    summary="Late.",
                ),
                source="/channels/surveys",
                time=T0,
            ),
        ),
    }


@pytest.mark.parametrize("service", ["customer", "sales", "support"])
async def test_an_api_key_limited_to_some_event_types_is_refused_the_others_and_applies_nothing(
    clients: dict[str, httpx.AsyncClient], service: str
) -> None:
    allowed, other = _events(f"C-{uuid.uuid4().hex[:8]}")[service]
    key, record = issue(
        name="channel",
        scopes=["events:write"],
        event_types=[allowed.type],
        read_only=False,
        rate_limit=None,
        expires_at=None,
    )
    APPS[service].state.runtime.guard.keys.apply(record)
    http, as_key = clients[service], {"X-API-Key": key, **JSON}

    refused = await http.post("/v1/events", content=other.to_bytes(), headers=as_key)
    assert refused.status_code == 403, refused.text
    assert refused.json()["detail"] == f"this API key may not submit {other.type} events"
    # Nothing of it was applied: the same event from a key allowed it is new, not a duplicate.
    again = await http.post("/v1/events", content=other.to_bytes(), headers={**ADMIN_HEADERS, **JSON})
    assert (again.status_code, again.json()["status"]) == (202, "applied"), again.text
    admitted = await http.post("/v1/events", content=allowed.to_bytes(), headers=as_key)
    assert admitted.status_code == 202, admitted.text
