"""The sales pages: the pipeline as a board by stage (moved on by button or by drag and drop, the stage rules the
sales service's), the forecast by period and category against quota, my activities, and quotes with their editor.

Every figure and rule is the sales service's; the console only lays them out and posts the user's changes."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from itertools import zip_longest
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from crm_console.client import Api, ApiError
from crm_console.identity import User
from crm_console.web import Csrf, CurrentUser, UserApi, in_path, is_htmx, problem_json, render, requires

router = APIRouter(
    prefix="/sales", dependencies=[requires("opportunities:read", "activities:read", "forecasts:read", "quotes:read")]
)

REFUSALS = (400, 404, 409, 422)
"""The answers of a service that say what is wrong with the change: shown on the page, the page stays."""


@dataclass(frozen=True)
class Refusal:
    title: str
    detail: str
    errors: Any = None

    @classmethod
    def of(cls, exc: ApiError) -> Refusal:
        return cls(exc.title, exc.detail, exc.errors)


def _refused(exc: ApiError) -> Refusal:
    """The refusal to show, or the error re-raised when it is not the user's to correct (a 5xx, a 401, a 403)."""
    if exc.status not in REFUSALS:
        raise exc
    return Refusal.of(exc)


# ---------------------------------------------------------------- the index


@dataclass(frozen=True)
class Link:
    label: str
    href: str
    scope: str
    about: str
    testid: str


LINKS = (
    Link("Pipeline", "/sales/pipeline", "opportunities:read", "Open opportunities by stage; move them on.", "pipeline"),
    Link("Forecast", "/sales/forecast", "forecasts:read", "By period and category, against quota.", "forecast"),
    Link("My activities", "/sales/activities", "activities:read", "Calls, meetings and tasks; overdue first.", "act"),
    Link("Quotes", "/sales/quotes", "quotes:read", "Build, send, and record the customer's answer.", "quotes"),
)


@router.get("", response_class=HTMLResponse)
async def index(request: Request, user: CurrentUser) -> HTMLResponse:
    return render(request, "sales/index.html", links=[link for link in LINKS if user.may(link.scope)])


# ---------------------------------------------------------------- the pipeline

BOARD_PAGE = 500
BOARD_MAX = 2000
"""The most cards a board shows: beyond, it says so and the filter narrows it."""


@dataclass
class Column:
    stage: dict[str, Any]
    next_stage: dict[str, Any] | None
    cards: list[dict[str, Any]] = field(default_factory=list)

    @property
    def totals(self) -> list[tuple[str, Decimal]]:
        """The amounts of the column's cards, per currency (they are never added across currencies)."""
        sums: dict[str, Decimal] = defaultdict(Decimal)
        for card in self.cards:
            try:
                sums[str(card.get("currency") or "")] += Decimal(str(card.get("amount") or 0))
            except InvalidOperation:
                continue
        return sorted(sums.items())


@dataclass
class Board:
    pipeline: dict[str, Any]
    pipelines: list[dict[str, Any]]
    columns: list[Column]
    mine: bool
    truncated: bool
    elsewhere: list[dict[str, Any]]
    """Open opportunities in a stage the pipeline no longer names: listed, not lost."""

    @property
    def shown(self) -> int:
        return sum(len(c.cards) for c in self.columns) + len(self.elsewhere)

    def has(self, opportunity_id: str) -> bool:
        return any(card["opportunity_id"] == opportunity_id for c in self.columns for card in c.cards)


async def load_board(api: Api, user: User, pipeline_id: str, mine: bool) -> Board:
    pipelines: list[dict[str, Any]] = await api.get("sales", "/v1/pipelines")
    chosen = next((p for p in pipelines if p["pipeline_id"] == pipeline_id), None)
    if chosen is None and pipeline_id:
        raise ApiError("sales", 404, "Pipeline not found", f"no pipeline {pipeline_id}")
    if chosen is None:
        chosen = next((p for p in pipelines if p["pipeline_id"] == "new-business"), None) or (
            pipelines[0] if pipelines else None
        )
    if chosen is None:
        raise ApiError("sales", 404, "No pipeline", "the sales service has no pipeline defined")
    stages = chosen["stages"]
    columns = [Column(s, stages[i + 1] if i + 1 < len(stages) else None) for i, s in enumerate(stages)]
    by_stage = {c.stage["stage_id"]: c for c in columns}
    elsewhere: list[dict[str, Any]] = []
    cursor: str | None = None
    seen = 0
    truncated = False
    while True:
        page = await api.get(
            "sales",
            "/v1/opportunities",
            pipeline_id=chosen["pipeline_id"],
            status="open",
            owner_id=user.subject if mine else None,
            limit=BOARD_PAGE,
            cursor=cursor,
        )
        for card in page.get("items", []):
            column = by_stage.get(card.get("stage"))
            if column is None:
                elsewhere.append(card)
            else:
                column.cards.append(card)
        seen += len(page.get("items", []))
        cursor = page.get("next_cursor")
        if not cursor:
            break
        if seen >= BOARD_MAX:
            truncated = True
            break
    for column in columns:
        column.cards.sort(key=_by_close_date)
    return Board(chosen, pipelines, columns, mine, truncated, elsewhere)


def _by_close_date(card: dict[str, Any]) -> tuple[str, str]:
    """Soonest expected close first; those without one last."""
    return (str(card.get("expected_close") or "9999"), str(card.get("name") or ""))


@router.get("/pipeline", response_class=HTMLResponse, dependencies=[requires("opportunities:read")])
async def pipeline(
    request: Request, user: CurrentUser, api: UserApi, pipeline_id: str = "", mine: str = ""
) -> HTMLResponse:
    board = await load_board(api, user, pipeline_id, bool(mine))
    template = "sales/_board.html" if is_htmx(request) else "sales/pipeline.html"
    return render(request, template, board=board)


@router.post(
    "/pipeline/{opportunity_id}/stage",
    response_class=HTMLResponse,
    dependencies=[Csrf, requires("opportunities:write")],
)
async def move(
    request: Request,
    user: CurrentUser,
    api: UserApi,
    opportunity_id: str,
    stage: Annotated[str, Form(min_length=1, max_length=64)],
    pipeline_id: Annotated[str, Form(max_length=128)] = "",
    mine: Annotated[str, Form(max_length=5)] = "",
) -> Response:
    """Move the opportunity to `stage` (the next one, from the button; any, from a drop), then show the board."""
    refusal: Refusal | None = None
    status = 200
    try:
        await api.post("sales", f"/v1/opportunities/{in_path(opportunity_id)}/stage", {"stage": stage})
    except ApiError as exc:
        refusal, status = _refused(exc), exc.status
    return await _board_after(
        request,
        api,
        user,
        opportunity_id,
        pipeline_id,
        mine,
        refusal,
        status,
        moved_id=None if refusal else opportunity_id,
    )


@router.post(
    "/pipeline/{opportunity_id}/close",
    response_class=HTMLResponse,
    dependencies=[Csrf, requires("opportunities:write")],
)
async def close(
    request: Request,
    user: CurrentUser,
    api: UserApi,
    opportunity_id: str,
    outcome: Annotated[Literal["won", "lost"], Form()],
    reason: Annotated[str, Form(max_length=500)] = "",
    place_order: Annotated[str, Form(max_length=5)] = "",
    pipeline_id: Annotated[str, Form(max_length=128)] = "",
    mine: Annotated[str, Form(max_length=5)] = "",
) -> Response:
    """Win the opportunity (optionally placing its order) or lose it with the reason: it leaves the board."""
    path = f"/v1/opportunities/{in_path(opportunity_id)}"
    refusal: Refusal | None = None
    status = 200
    closed: dict[str, Any] | None = None
    try:
        if outcome == "won":
            body = {"reason": reason.strip() or None, "place_order": bool(place_order)}
            closed = await api.post("sales", f"{path}/win", body)
        else:
            closed = await api.post("sales", f"{path}/lose", {"reason": reason.strip()})
    except ApiError as exc:
        refusal, status = _refused(exc), exc.status
    return await _board_after(
        request, api, user, opportunity_id, pipeline_id, mine, refusal, status, closed=closed, closed_as=outcome
    )


async def _board_after(
    request: Request,
    api: Api,
    user: User,
    opportunity_id: str,
    pipeline_id: str,
    mine: str,
    refusal: Refusal | None,
    status: int,
    **done: Any,
) -> Response:
    """After a change of a card: the board (the fragment for htmx), the refusal on the card; a plain form's
    success goes back to the board."""
    if refusal is None and not is_htmx(request):
        query = urlencode({k: v for k, v in (("pipeline_id", pipeline_id), ("mine", mine)) if v})
        return RedirectResponse(f"/sales/pipeline{'?' + query if query else ''}", status_code=303)
    board = await load_board(api, user, pipeline_id, bool(mine))
    template = "sales/_board.html" if is_htmx(request) else "sales/pipeline.html"
    return render(
        request,
        template,
        status,
        board=board,
        refusal=refusal,
        refused_id=opportunity_id if refusal and board.has(opportunity_id) else None,
        **({} if refusal else done),
    )


# ---------------------------------------------------------------- the forecast

_YEAR = re.compile(r"^[0-9]{4}$")
_QUARTER = re.compile(r"^([0-9]{4})-Q([1-4])$")
_MONTH = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")
CHART_CATEGORIES = (
    ("closed", "Closed won"),
    ("commit", "Commit"),
    ("best_case", "Best case"),
    ("pipeline", "Pipeline"),
)


def parts_of(period: str) -> list[str] | None:
    """The periods a period's table has a row for: a year's quarters, a quarter's months, a month itself; None
    for what is not a period."""
    if _YEAR.match(period):
        return [f"{period}-Q{q}" for q in range(1, 5)]
    quarter = _QUARTER.match(period)
    if quarter:
        year, q = quarter.group(1), int(quarter.group(2))
        return [f"{year}-{m:02d}" for m in range(3 * q - 2, 3 * q + 1)]
    if _MONTH.match(period):
        return [period]
    return None


def _amount(value: Any) -> float:
    """For the chart only: the bars' heights. The table shows the service's decimal strings."""
    try:
        return float(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        return 0.0


def chart_of(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Chart.js data: the categories stacked per period, the quota as a line beside them."""
    datasets: list[dict[str, Any]] = [
        {
            "key": key,
            "label": label,
            "data": [_amount(r["categories"].get(key, {}).get("amount", 0)) for r in rows],
        }
        for key, label in CHART_CATEGORIES
    ]
    if any(r.get("quota") is not None for r in rows):
        datasets.append(
            {"key": "quota", "label": "Quota", "data": [_amount(r["quota"]) if r.get("quota") else None for r in rows]}
        )
    return {
        "labels": [r["period"] for r in rows],
        "currency": rows[0]["currency"] if rows else "",
        "datasets": datasets,
    }


@router.get("/forecast", response_class=HTMLResponse, dependencies=[requires("forecasts:read")])
async def forecast(
    request: Request, user: CurrentUser, api: UserApi, period: str = "", owner_id: str = ""
) -> HTMLResponse:
    period = period.strip() or str(datetime.now(UTC).year)
    owner_id = owner_id.strip()
    parts = parts_of(period)
    if parts is None:
        return render(
            request,
            "sales/forecast.html",
            422,
            period=period,
            owner_id=owner_id,
            refusal=Refusal("Not a period", "A period is a year (2027), a quarter (2027-Q1) or a month (2027-01)."),
            rows=[],
            whole=None,
            quotas=[],
            chart_src=None,
            unpriced=[],
        )
    rows, whole, quotas = await _forecasts(api, period, parts, owner_id)
    forecasts = [*rows, *([whole] if whole else [])]
    return render(
        request,
        "sales/forecast.html",
        period=period,
        owner_id=owner_id,
        rows=rows,
        whole=whole,
        quotas=quotas,
        chart_src="/sales/forecast.json?" + urlencode({"period": period, "owner_id": owner_id}),
        unpriced=sorted({o for f in forecasts for o in f.get("unpriced", [])}),
    )


@router.get("/forecast.json", dependencies=[requires("forecasts:read")])
async def forecast_chart(api: UserApi, period: str = "", owner_id: str = "") -> JSONResponse:
    """The chart's data, which the forecast page fetches: the categories stacked per period, quota beside."""
    period = period.strip() or str(datetime.now(UTC).year)
    parts = parts_of(period)
    if parts is None:
        return JSONResponse({"detail": "A period is a year (2027), a quarter (2027-Q1) or a month (2027-01)."}, 422)
    try:
        rows, _, _ = await _forecasts(api, period, parts, owner_id.strip())
    except ApiError as exc:
        return problem_json(exc)
    return JSONResponse(chart_of(rows))


async def _forecasts(
    api: Api, period: str, parts: list[str], owner_id: str
) -> tuple[list[dict[str, Any]], dict[str, Any] | None, list[dict[str, Any]]]:
    """Per part of the period its forecast, the whole period's (when it has parts), and the quotas shown."""
    asked = parts if parts == [period] else [*parts, period]
    owner = owner_id or None
    answers = await asyncio.gather(
        *(api.get("sales", "/v1/forecasts", period=p, owner_id=owner) for p in asked),
        api.get("sales", "/v1/quotas", owner_id=owner),
    )
    forecasts: list[dict[str, Any]] = list(answers[:-1])
    shown = set(asked)
    quotas = [q for q in answers[-1] if q.get("period") in shown]
    return forecasts[: len(parts)], forecasts[-1] if len(asked) > len(parts) else None, quotas


# ---------------------------------------------------------------- my activities

Show = Literal["planned", "overdue", "done"]


async def my_activities(api: Api, user: User, show: Show, cursor: str) -> dict[str, Any]:
    params: dict[str, Any] = {"owner_id": user.subject, "limit": 100, "cursor": cursor or None}
    if show == "overdue":
        params["overdue"] = "true"
    else:
        params["status"] = show
    page: dict[str, Any] = await api.get("sales", "/v1/activities", **params)
    return page


@router.get("/activities", response_class=HTMLResponse, dependencies=[requires("activities:read")])
async def activities(
    request: Request, user: CurrentUser, api: UserApi, show: Show = "planned", cursor: str = ""
) -> HTMLResponse:
    page = await my_activities(api, user, show, cursor)
    return render(
        request,
        "sales/activities.html",
        show=show,
        items=page.get("items", []),
        next_cursor=page.get("next_cursor"),
    )


@router.post(
    "/activities/{activity_id}/complete",
    response_class=HTMLResponse,
    dependencies=[Csrf, requires("activities:write")],
)
async def complete(
    request: Request,
    user: CurrentUser,
    api: UserApi,
    activity_id: str,
    outcome: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    path = f"/v1/activities/{in_path(activity_id)}"
    try:
        done = await api.post("sales", f"{path}/complete", {"outcome": outcome.strip() or None})
    except ApiError as exc:
        refusal = _refused(exc)
        if is_htmx(request):
            activity = await api.get("sales", path)
            return render(request, "sales/_activity.html", exc.status, a=activity, refusal=refusal, outcome=outcome)
        page = await my_activities(api, user, "planned", "")
        return render(
            request,
            "sales/activities.html",
            exc.status,
            show="planned",
            items=page.get("items", []),
            next_cursor=page.get("next_cursor"),
            refusal=refusal,
        )
    if not is_htmx(request):
        return RedirectResponse("/sales/activities", status_code=303)
    return render(request, "sales/_activity.html", a=done, completed=True)


# ---------------------------------------------------------------- quotes

QuoteStatus = Literal["", "draft", "sent", "accepted", "rejected", "expired"]
QuoteAction = Literal["send", "accept", "reject"]
ACTIONS: dict[str, tuple[QuoteAction, ...]] = {"draft": ("send",), "sent": ("accept", "reject")}
"""What each status of a quote allows (an expired, accepted or rejected one nothing)."""
EDITOR_LINES = 3
"""Blank lines a new quote starts with; the page's script adds more."""


@router.get("/quotes", response_class=HTMLResponse, dependencies=[requires("quotes:read")])
async def quotes(
    request: Request,
    user: CurrentUser,
    api: UserApi,
    status: QuoteStatus = "",
    customer_id: str = "",
    cursor: str = "",
) -> HTMLResponse:
    page = await api.get("sales", "/v1/quotes", status=status, customer_id=customer_id.strip(), cursor=cursor, limit=50)
    return render(
        request,
        "sales/quotes.html",
        quotes=page.get("items", []),
        next_cursor=page.get("next_cursor"),
        status=status,
        customer_id=customer_id.strip(),
        actions=ACTIONS,
    )


@dataclass
class QuoteDraft:
    """The editor's fields, as typed: shown again as they were when the service refuses them."""

    customer_id: str = ""
    opportunity_id: str = ""
    currency: str = "EUR"
    price_book_id: str = ""
    segment: str = ""
    value_tier: str = ""
    valid_until: str = ""
    tax_percent: str = ""
    lines: list[dict[str, str]] = field(default_factory=list)
    idempotency_key: str = field(default_factory=lambda: uuid.uuid4().hex)

    def padded(self) -> list[dict[str, str]]:
        blank = {"sku": "", "quantity": "", "discount_percent": ""}
        return [*self.lines, *([blank] * max(EDITOR_LINES - len(self.lines), 1 if self.lines else 0))]

    def body(self) -> dict[str, Any]:
        """The POST /v1/quotes body; ValueError naming the line whose quantity is not a whole number."""
        lines = []
        for number, line in enumerate(self.lines, start=1):
            try:
                quantity = int(line["quantity"] or "1")
            except ValueError as exc:
                raise ValueError(f"line {number} ({line['sku']}): the quantity is not a whole number") from exc
            lines.append(
                {"sku": line["sku"], "quantity": quantity}
                | ({"discount_percent": line["discount_percent"]} if line["discount_percent"] else {})
            )
        body: dict[str, Any] = {"customer_id": self.customer_id, "currency": self.currency, "lines": lines}
        optional = ("opportunity_id", "price_book_id", "segment", "value_tier", "valid_until", "tax_percent")
        body.update({name: getattr(self, name) for name in optional if getattr(self, name)})
        return body


async def _editor(
    request: Request, api: Api, draft: QuoteDraft, status_code: int = 200, refusal: Refusal | None = None
) -> HTMLResponse:
    books: list[dict[str, Any]] = []
    try:
        books = (await api.get("sales", "/v1/price-books", limit=200)).get("items", [])
    except ApiError as exc:
        if exc.status not in (403, 404):
            raise
    skus = sorted({entry["sku"] for book in books for entry in book.get("entries", [])})
    return render(request, "sales/quote_new.html", status_code, draft=draft, books=books, skus=skus, refusal=refusal)


@router.get("/quotes/new", response_class=HTMLResponse, dependencies=[requires("quotes:write")])
async def new_quote(
    request: Request,
    user: CurrentUser,
    api: UserApi,
    customer_id: str = "",
    opportunity_id: str = "",
    currency: str = "EUR",
) -> HTMLResponse:
    draft = QuoteDraft(customer_id=customer_id, opportunity_id=opportunity_id, currency=currency or "EUR")
    return await _editor(request, api, draft)


@router.post("/quotes", response_class=HTMLResponse, dependencies=[Csrf, requires("quotes:write")])
async def create_quote(request: Request, user: CurrentUser, api: UserApi) -> Response:
    form = await request.form()

    def text(name: str, limit: int = 200) -> str:
        return str(form.get(name) or "").strip()[:limit]

    skus, quantities, discounts = (
        [str(v).strip()[:128] for v in form.getlist(name)] for name in ("sku", "quantity", "discount_percent")
    )
    lines = [
        {"sku": sku, "quantity": quantity, "discount_percent": discount}
        for sku, quantity, discount in zip_longest(skus, quantities, discounts, fillvalue="")
        if sku
    ][:1000]
    draft = QuoteDraft(
        customer_id=text("customer_id"),
        opportunity_id=text("opportunity_id"),
        currency=text("currency", 3).upper(),
        price_book_id=text("price_book_id"),
        segment=text("segment"),
        value_tier=text("value_tier"),
        valid_until=text("valid_until", 10),
        tax_percent=text("tax_percent", 10),
        lines=lines,
        idempotency_key=text("idempotency_key", 64) or uuid.uuid4().hex,
    )
    try:
        body = draft.body()
    except ValueError as exc:
        return await _editor(request, api, draft, 422, Refusal("Quote not built", str(exc)))
    try:
        quote_view = await api.post("sales", "/v1/quotes", body, idempotency_key=draft.idempotency_key)
    except ApiError as exc:
        refusal = _refused(exc)
        return await _editor(request, api, draft, exc.status, refusal)
    return RedirectResponse(f"/sales/quotes/{in_path(quote_view['quote_id'])}", status_code=303)


@router.get("/quotes/{quote_id}", response_class=HTMLResponse, dependencies=[requires("quotes:read")])
async def quote_page(request: Request, user: CurrentUser, api: UserApi, quote_id: str) -> HTMLResponse:
    found = await api.get("sales", f"/v1/quotes/{in_path(quote_id)}")
    return render(request, "sales/quote.html", q=found, actions=ACTIONS)


@router.post("/quotes/{quote_id}/{action}", response_class=HTMLResponse, dependencies=[Csrf, requires("quotes:write")])
async def quote_action(
    request: Request,
    user: CurrentUser,
    api: UserApi,
    quote_id: str,
    action: QuoteAction,
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    path = f"/v1/quotes/{in_path(quote_id)}"
    body = {"reason": reason.strip() or None} if action == "reject" else None
    try:
        changed = await api.post("sales", f"{path}/{action}", body)
    except ApiError as exc:
        refusal = _refused(exc)
        current = await api.get("sales", path)
        template = "sales/_quote_row.html" if is_htmx(request) else "sales/quote.html"
        return render(request, template, exc.status, q=current, actions=ACTIONS, refusal=refusal)
    if not is_htmx(request):
        return RedirectResponse(f"/sales/quotes/{in_path(quote_id)}", status_code=303)
    return render(request, "sales/_quote_row.html", q=changed, actions=ACTIONS, done=action)
