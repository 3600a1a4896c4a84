"""The marketer's pages: segments with their live counts, the journeys and campaigns, a campaign's results (treated
against holdout, uplift with its confidence interval, ROI) and the population's Pareto curve, lifecycle movements
and value-tier movements.

Every figure comes from the marketing and scoring services, the uplift's confidence interval included.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from crm_console.client import Api, ApiError
from crm_console.identity import User
from crm_console.web import Csrf, CurrentUser, UserApi, in_path, is_htmx, parse_time, problem_json, render, requires

router = APIRouter(prefix="/marketing", dependencies=[requires("campaigns:read", "segments:read")])

Period = Literal["day", "week", "month"]
MAX_DEFINITION = 20_000
SEGMENTS_PER_PAGE = 20

SEGMENT_EXAMPLE = {
    "all": [
        {"field": "value_tier", "op": "eq", "value": "high_value"},
        {"field": "consent", "op": "contains", "value": "email"},
    ]
}


@dataclass
class Card:
    """What one card of a page got from its service: the data, or why it has none."""

    data: Any = None
    forbidden: bool = False
    problem: str = ""

    @property
    def ok(self) -> bool:
        return not self.forbidden and not self.problem


async def _card(call: Awaitable[Any]) -> Card:
    """A refusal or an outage of one service empties its card, not the whole page."""
    try:
        return Card(await call)
    except ApiError as exc:
        if exc.status == 401:
            raise
        if exc.status == 403:
            return Card(forbidden=True)
        return Card(problem=f"{exc.service}: {exc.status} {exc.title}" + (f": {exc.detail}" if exc.detail else ""))


async def _nothing() -> None:
    return None


# ---------------------------------------------------------------- campaigns


def campaign_status(campaign: dict[str, Any], now: datetime) -> str:
    if campaign.get("archived_at"):
        return "archived"
    starts, ends = parse_time(campaign.get("starts_at")), parse_time(campaign.get("ends_at"))
    if starts is not None and now < starts:
        return "planned"
    if ends is not None and now >= ends:
        return "ended"
    return "running"


STATUS_BADGE = {"running": "good", "planned": "warn", "ended": "", "archived": "bad"}


def _with_status(campaigns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    rows = []
    for campaign in campaigns:
        status = campaign_status(campaign, now)
        rows.append({**campaign, "status": status, "badge": STATUS_BADGE[status]})
    return rows


async def _segments(api: Api, cursor: str) -> Card:
    """A page of the segments, each counted by marketing when the page is read."""
    return await _card(api.get("marketing", "/v1/segments", limit=SEGMENTS_PER_PAGE, cursor=cursor or None))


@router.get("", response_class=HTMLResponse)
async def index(
    request: Request, user: CurrentUser, api: UserApi, cursor: str = "", segments_cursor: str = ""
) -> HTMLResponse:
    may_segments = user.may("segments:read")
    pages = {"cursor": cursor, "segments_cursor": segments_cursor}
    if is_htmx(request):
        # The live refresh: the same page of segments, counted again; the campaigns are not asked for.
        segments = await _segments(api, segments_cursor) if may_segments else None
        return render(request, "marketing/_segments.html", segments=segments, pages=pages)
    may_campaigns = user.may("campaigns:read")
    campaigns, journeys, segments = await asyncio.gather(
        _card(api.get("marketing", "/v1/campaigns", limit=100, cursor=cursor or None)) if may_campaigns else _nothing(),
        _card(api.get("marketing", "/v1/journeys")) if may_campaigns else _nothing(),
        _segments(api, segments_cursor) if may_segments else _nothing(),
    )
    listed = _with_status(campaigns.data["items"]) if campaigns is not None and campaigns.ok else []
    return render(
        request,
        "marketing/index.html",
        campaigns=campaigns,
        campaign_rows=listed,
        next_cursor=campaigns.data.get("next_cursor") if campaigns is not None and campaigns.ok else None,
        journeys=journeys,
        segments=segments,
        pages=pages,
    )


def _results_view(campaign: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    """The results as the page shows them, with the campaign's budget and spending."""
    return {**results, "budget": campaign.get("budget"), "spent": campaign.get("spent")}


async def _results(api: Api, campaign_id: str) -> dict[str, Any] | None:
    results: dict[str, Any] | None = await api.get_or_none("marketing", f"/v1/campaigns/{in_path(campaign_id)}/results")
    return results or None


async def _campaign_page(
    request: Request, user: User, api: Api, campaign_id: str, status_code: int = 200, **extra: Any
) -> HTMLResponse:
    campaign, results = await asyncio.gather(
        api.get("marketing", f"/v1/campaigns/{in_path(campaign_id)}"), _results(api, campaign_id)
    )
    return render(
        request,
        "marketing/campaign.html",
        status_code,
        campaign={**campaign, "status": campaign_status(campaign, datetime.now(UTC))},
        results=_results_view(campaign, results) if results else None,
        chart_src=f"/marketing/campaigns/{in_path(campaign_id)}/results.json",
        may_launch=user.may("campaigns:write") and bool(campaign.get("segment_id")),
        **extra,
    )


@router.get("/campaigns/{campaign_id}", response_class=HTMLResponse)
async def campaign(request: Request, user: CurrentUser, api: UserApi, campaign_id: str) -> HTMLResponse:
    return await _campaign_page(request, user, api, campaign_id)


def _number(value: Any) -> float:
    """A figure for the chart: 0 where the service has none (no contacts yet)."""
    if value is None or value == "":
        return 0.0
    try:
        return float(Decimal(str(value)))
    except InvalidOperation:
        return 0.0


@router.get("/campaigns/{campaign_id}/results.json")
async def campaign_results_json(user: CurrentUser, api: UserApi, campaign_id: str) -> Response:
    try:
        results = await api.get("marketing", f"/v1/campaigns/{in_path(campaign_id)}/results")
    except ApiError as exc:
        return problem_json(exc)
    groups = (results["treated_group"], results["holdout_group"])
    return JSONResponse(
        {
            "campaign_id": results["campaign_id"],
            "currency": results["currency"],
            "groups": ["treated", "holdout"],
            "contacts": [g["enrolled"] for g in groups],
            "conversions": [g["converted"] for g in groups],
            "conversion_rate": [_number(g["conversion_rate"]) for g in groups],
            "revenue": [_number(g["revenue"]) for g in groups],
            "revenue_per_customer": [_number(g["revenue_per_customer"]) for g in groups],
        }
    )


@router.post("/campaigns/{campaign_id}/launch", response_class=HTMLResponse, dependencies=[Csrf])
async def launch(request: Request, user: CurrentUser, api: UserApi, campaign_id: str) -> HTMLResponse:
    try:
        launched = await api.post("marketing", f"/v1/campaigns/{in_path(campaign_id)}/launch")
    except ApiError as exc:
        if exc.status not in (400, 409, 422):
            raise
        return await _campaign_page(
            request, user, api, campaign_id, exc.status, refusal=exc.detail or exc.title, errors=exc.errors
        )
    return await _campaign_page(request, user, api, campaign_id, launched=launched)


# ---------------------------------------------------------------- segments


@router.get("/segments", response_class=HTMLResponse)
async def find_segment(request: Request, user: CurrentUser, segment_id: str = "") -> Response:
    if not segment_id.strip():
        return RedirectResponse("/marketing", status_code=303)
    return RedirectResponse(f"/marketing/segments/{in_path(segment_id.strip())}", status_code=303)


def _new_segment_page(
    request: Request, status_code: int = 200, form: dict[str, str] | None = None, **refusal: Any
) -> HTMLResponse:
    defaults = {
        "segment_id": "",
        "name": "",
        "description": "",
        "definition": json.dumps(SEGMENT_EXAMPLE, indent=2),
    }
    return render(request, "marketing/segment_new.html", status_code, form={**defaults, **(form or {})}, **refusal)


@router.get("/segments/new", response_class=HTMLResponse)
async def new_segment(request: Request, user: CurrentUser) -> HTMLResponse:
    return _new_segment_page(request)


@router.post("/segments", response_class=HTMLResponse, dependencies=[Csrf])
async def define_segment(
    request: Request,
    user: CurrentUser,
    api: UserApi,
    segment_id: Annotated[str, Form(max_length=200)] = "",
    name: Annotated[str, Form(max_length=200)] = "",
    description: Annotated[str, Form(max_length=1000)] = "",
    definition: Annotated[str, Form(max_length=MAX_DEFINITION)] = "",
) -> Response:
    form = {"segment_id": segment_id, "name": name, "description": description, "definition": definition}
    try:
        parsed = json.loads(definition)
    except ValueError as exc:
        return _new_segment_page(request, 422, form, refusal=f"The definition is not JSON: {exc}")
    body = {"segment_id": segment_id.strip(), "name": name.strip(), "definition": parsed}
    if description.strip():
        body["description"] = description.strip()
    try:
        defined = await api.post("marketing", "/v1/segments", body)
    except ApiError as exc:
        if exc.status not in (400, 409, 422):
            raise
        return _new_segment_page(request, exc.status, form, refusal=exc.detail or exc.title, errors=exc.errors)
    return RedirectResponse(f"/marketing/segments/{in_path(defined['segment_id'])}", status_code=303)


@router.get("/segments/{segment_id}", response_class=HTMLResponse)
async def segment(request: Request, user: CurrentUser, api: UserApi, segment_id: str) -> HTMLResponse:
    found = await api.get("marketing", f"/v1/segments/{in_path(segment_id)}")
    template = "marketing/_segment_count.html" if is_htmx(request) else "marketing/segment.html"
    definition = json.dumps(_without_nulls(found.get("definition")), indent=2, ensure_ascii=False)
    return render(request, template, segment=found, definition=definition)


def _without_nulls(value: Any) -> Any:
    """A definition as it was written: the service returns the unused one of `all`/`any` as null."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


# ---------------------------------------------------------------- population


async def _pareto(api: Api) -> Any:
    return await api.get("scoring", "/v1/population/pareto")


async def _movements(api: Api, period: Period) -> Any:
    return await api.get("scoring", "/v1/population/movements", period=period)


async def _tier_movements(api: Api, period: Period) -> Any:
    return await api.get("scoring", "/v1/population/tier-movements", period=period)


TIER_MOVES = ("upgrade", "downgrade", "entered")
TIERS = ("potential", "low_value", "high_value")
"""Scoring's value tiers, lowest first: the order the chart stacks each kind of move by."""


def tier_series(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The chart's datasets: per kind of move (upgrade, downgrade, entered) and tier reached, the customers per
    period; the kinds and tiers that no period has are left out."""
    sums: dict[tuple[str, str], list[int]] = {}
    for i, row in enumerate(rows):
        for move in row["moves"]:
            sums.setdefault((move["move"], move["to"]), [0] * len(rows))[i] += move["customers"]

    def position(names: tuple[str, ...], name: str) -> int:
        # A kind or tier scoring adds later goes last rather than failing the chart.
        return names.index(name) if name in names else len(names)

    keys = sorted(sums, key=lambda k: (position(TIER_MOVES, k[0]), position(TIERS, k[1]), k))
    return [{"move": kind, "to": tier, "customers": sums[kind, tier]} for kind, tier in keys]


@router.get("/population", response_class=HTMLResponse)
async def population(
    request: Request, user: CurrentUser, api: UserApi, period: Annotated[Period, Query()] = "month"
) -> HTMLResponse:
    if user.may("scores:read"):
        pareto, movements, tier_movements, tiers = await asyncio.gather(
            _card(_pareto(api)),
            _card(_movements(api, period)),
            _card(_tier_movements(api, period)),
            _card(api.get("scoring", "/v1/population")),
        )
    else:
        pareto, movements, tier_movements, tiers = (Card(forbidden=True) for _ in range(4))
    return render(
        request,
        "marketing/population.html",
        pareto=pareto,
        movements=movements,
        tier_movements=tier_movements,
        tiers=tiers,
        period=period,
        periods=("day", "week", "month"),
    )


@router.get("/population/pareto.json")
async def pareto_json(user: CurrentUser, api: UserApi) -> Response:
    try:
        pareto = await _pareto(api)
    except ApiError as exc:
        return problem_json(exc)
    return JSONResponse(
        {
            "customers": pareto["customers"],
            "reporting_currency": pareto["reporting_currency"],
            "top_20_percent_revenue_share": pareto["top_20_percent_revenue_share"],
            # The curve starts at the origin: no customers, no revenue.
            "customer_share": [0.0, *(p["customer_share"] for p in pareto["curve"])],
            "revenue_share": [0.0, *(p["revenue_share"] for p in pareto["curve"])],
        }
    )


@router.get("/population/movements.json")
async def movements_json(user: CurrentUser, api: UserApi, period: Annotated[Period, Query()] = "month") -> Response:
    try:
        rows = await _movements(api, period)
    except ApiError as exc:
        return problem_json(exc)
    return JSONResponse(
        {
            "period": period,
            "periods": [r["period"] for r in rows],
            "new": [r["new"] for r in rows],
            "reactivated": [r["reactivated"] for r in rows],
            "lost": [r["lost"] for r in rows],
        }
    )


@router.get("/population/tier-movements.json")
async def tier_movements_json(
    user: CurrentUser, api: UserApi, period: Annotated[Period, Query()] = "month"
) -> Response:
    try:
        rows = await _tier_movements(api, period)
    except ApiError as exc:
        return problem_json(exc)
    return JSONResponse(
        {
            "period": period,
            "periods": [r["period"] for r in rows],
            "upgrades": [r["upgrades"] for r in rows],
            "downgrades": [r["downgrades"] for r in rows],
            "entered": [r["entered"] for r in rows],
            "series": tier_series(rows),
        }
    )
