"""What the sales API's routers share: the platform rate table and match-key secret, a period in a query, and
whose a new record is."""

from __future__ import annotations

from fastapi import Request

from crm_sales.forecasts.domain import Period, PeriodInvalid
from crm_sales.orders.handlers import CurrencyNotAccepted
from crm_sales.settings import sales_settings
from crm_shared.money import ExchangeRates
from crm_shared.problems import Problem
from crm_shared.security import Principal
from crm_shared.service import get_runtime


def rates_of(request: Request) -> ExchangeRates:
    """The platform rate table (CRM_REPORTING_CURRENCY, CRM_EXCHANGE_RATES) of the service answering."""
    return sales_settings(get_runtime(request).settings).rate_table


def match_secret_of(request: Request) -> bytes | None:
    """The platform's match-key secret (CRM_MATCH_KEY_SECRET), None when unset: leads are checked against leads only."""
    return sales_settings(get_runtime(request).settings).match_secret


def currency_not_accepted(exc: CurrencyNotAccepted) -> Problem:
    """The 422 for money in a currency the rate table has no rate for, listing those it has."""
    return Problem(422, "Currency not accepted", str(exc), accepted_currencies=list(exc.accepted))


def parse_period(text: str) -> Period:
    """A year, quarter or month from a request; a 422 otherwise."""
    try:
        return Period.parse(text)
    except PeriodInvalid as exc:
        raise Problem(422, "Invalid period", str(exc)) from exc


def owner_for(principal: Principal, asked: str | None, *, doing: str) -> str | None:
    """Whose a new record is: the owner asked for, or the calling person. A person who does not see every record
    may `doing` only for themselves or their team (403); an API key or a manager of all, for anyone."""
    if principal.kind == "api_key" or principal.sees_all_records:
        return asked
    owner = asked or principal.id
    if owner != principal.id and owner not in principal.team:
        raise Problem(403, "Owner not allowed", f"{principal.id} may {doing} for themselves or their team")
    return owner
