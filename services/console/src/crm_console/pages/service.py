"""The service desk: the ticket queue by SLA due time with its running timers, and a ticket's page with its facts,
SLA panel, conversation, suggested knowledge-base articles and a reply box (the support service's
`/v1/tickets` and `/v1/tickets/{id}/...`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from crm_console.client import Api, ApiError
from crm_console.identity import User
from crm_console.web import Csrf, CurrentUser, UserApi, is_htmx, parse_time, render, requires

router = APIRouter(prefix="/service", dependencies=[requires("tickets:read")])

T = TypeVar("T")

STATUSES = ("new", "open", "pending", "resolved", "closed")
OPEN_STATUSES = ("new", "open", "pending")
PRIORITIES = ("low", "normal", "high", "urgent")
NEXT_STATUSES: dict[str, tuple[str, ...]] = {
    "new": ("open", "pending", "resolved", "closed"),
    "open": ("pending", "resolved", "closed"),
    "pending": ("open", "resolved", "closed"),
    "resolved": ("open", "closed"),
    "closed": ("open",),
}
"""The moves the page offers (the support service's lifecycle); the service decides, and says why it refuses."""
TIMER_LABELS = {"first_response": "first response", "next_response": "next response", "resolution": "resolution"}
QUEUE_PAGE = 100
"""Tickets read per status: the support service lists newest first, so the queue sorts what it read."""
CONCURRENT_READS = 10
REFUSALS = (400, 409, 422)
PostKind = Literal["reply", "note", "customer"]


@dataclass(frozen=True)
class QueueFilter:
    status: str = ""
    priority: str = ""
    mine: bool = False

    @property
    def statuses(self) -> tuple[str, ...]:
        return (self.status,) if self.status in STATUSES else OPEN_STATUSES

    @property
    def query(self) -> str:
        sent = {"status": self.status, "priority": self.priority, "mine": "1" if self.mine else ""}
        return urlencode({k: v for k, v in sent.items() if v})


@dataclass
class QueueRow:
    ticket: dict[str, Any]
    next_timer: dict[str, Any] | None
    """The SLA target the ticket must meet next: the earliest due of those running or breached, else a paused one."""
    customer_name: str | None = None

    @property
    def sort_key(self) -> tuple[int, datetime | str]:
        due = parse_time(self.next_timer.get("due_at")) if self.next_timer else None
        if due is not None and self.next_timer and self.next_timer["status"] in ("running", "breached"):
            return (0, due)
        return (1 if self.next_timer else 2, str(self.ticket.get("created_at") or ""))


@dataclass
class Queue:
    rows: list[QueueRow] = field(default_factory=list)
    truncated: bool = False


def next_timer(timers: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The timer to watch: running or breached with the earliest due time; else paused; else None (all met or none)."""
    counting = [t for t in timers if t.get("status") in ("running", "breached") and parse_time(t.get("due_at"))]
    if counting:
        return min(counting, key=lambda t: parse_time(t["due_at"]) or datetime.max)
    return next((t for t in timers if t.get("status") == "paused"), None)


async def _bounded(tasks: Iterable[Awaitable[T]]) -> list[T]:
    gate = asyncio.Semaphore(CONCURRENT_READS)

    async def one(task: Awaitable[T]) -> T:
        async with gate:
            return await task

    return list(await asyncio.gather(*(one(t) for t in tasks)))


async def _timers_of(api: Api, ticket_id: str) -> list[dict[str, Any]]:
    """Each SLA timer of the ticket now: only the read of one ticket computes them."""
    whole = await api.get_or_none("support", f"/v1/tickets/{quote(ticket_id, safe='')}")
    return list((whole or {}).get("timers") or [])


async def _customer_name(api: Api, customer_id: str) -> str | None:
    try:
        customer = await api.get_or_none("customer", f"/v1/customers/{quote(customer_id, safe='')}")
    except ApiError:
        return None  # the name is a courtesy: the queue works without it
    return (customer or {}).get("name")


async def read_queue(api: Api, user: User, wanted: QueueFilter) -> Queue:
    pages = await asyncio.gather(
        *(
            api.get(
                "support",
                "/v1/tickets",
                status=status,
                assignee_id=user.subject if wanted.mine else None,
                limit=QUEUE_PAGE,
            )
            for status in wanted.statuses
        )
    )
    queue = Queue(truncated=any(page.get("next_cursor") for page in pages))
    tickets = [t for page in pages for t in page.get("items", [])]
    if wanted.priority:
        tickets = [t for t in tickets if t.get("priority") == wanted.priority]
    timers = await _bounded(_timers_of(api, t["ticket_id"]) for t in tickets)
    customers = sorted({t["customer_id"] for t in tickets})
    names = dict(zip(customers, await _bounded(_customer_name(api, c) for c in customers), strict=True))
    queue.rows = sorted(
        (QueueRow(t, next_timer(ts), names.get(t["customer_id"])) for t, ts in zip(tickets, timers, strict=True)),
        key=lambda row: row.sort_key,
    )
    return queue


@router.get("", response_class=HTMLResponse)
async def index(
    request: Request,
    user: CurrentUser,
    api: UserApi,
    status: Annotated[str, Query(max_length=20)] = "",
    priority: Annotated[str, Query(max_length=20)] = "",
    mine: Annotated[str, Query(max_length=5)] = "",
) -> HTMLResponse:
    wanted = QueueFilter(
        status=status if status in STATUSES else "",
        priority=priority if priority in PRIORITIES else "",
        mine=bool(mine),
    )
    queue = await read_queue(api, user, wanted)
    template = "service/_queue.html" if is_htmx(request) else "service/index.html"
    return render(
        request,
        template,
        queue=queue,
        wanted=wanted,
        statuses=STATUSES,
        priorities=PRIORITIES,
        labels=TIMER_LABELS,
    )


@dataclass
class Refusal:
    form: Literal["reply", "change"]
    """Which form it answers, so the page shows it there."""
    error: ApiError


def _ticket_path(ticket_id: str) -> str:
    return f"/v1/tickets/{quote(ticket_id, safe='')}"


async def _ticket_page(
    request: Request,
    api: Api,
    ticket_id: str,
    *,
    status_code: int = 200,
    refusal: Refusal | None = None,
    draft: str = "",
    draft_kind: PostKind = "reply",
) -> HTMLResponse:
    """The ticket as it stands: the whole page, or for an htmx change only its live part (facts, SLA, conversation,
    reply box)."""
    ticket = await api.get("support", _ticket_path(ticket_id))
    whole = not is_htmx(request)
    customer = await api.get_or_none("customer", f"/v1/customers/{quote(ticket['customer_id'], safe='')}")
    suggestions: list[dict[str, Any]] = []
    suggestions_problem: ApiError | None = None
    if whole:
        try:
            suggestions = await api.get("support", f"{_ticket_path(ticket_id)}/suggested-articles", limit=5)
        except ApiError as exc:
            if not exc.answered or exc.status >= 500 or exc.status == 401:
                raise
            suggestions_problem = exc
    posts = sorted(ticket.get("posts") or [], key=lambda p: str(p.get("at") or ""))
    return render(
        request,
        "service/ticket.html" if whole else "service/_ticket.html",
        status_code,
        ticket=ticket,
        customer=customer,
        posts=posts,
        timers=ticket.get("timers") or [],
        labels=TIMER_LABELS,
        next_statuses=NEXT_STATUSES.get(ticket["status"], ()),
        suggestions=suggestions,
        suggestions_problem=suggestions_problem,
        refusal=refusal,
        draft=draft,
        draft_kind=draft_kind,
    )


@router.get("/tickets/{ticket_id}", response_class=HTMLResponse)
async def ticket_page(request: Request, user: CurrentUser, api: UserApi, ticket_id: str) -> HTMLResponse:
    return await _ticket_page(request, api, ticket_id)


def _after_change(request: Request, ticket_id: str) -> Response | None:
    """A plain form post goes back to the ticket's page (post/redirect/get); an htmx one gets the live part."""
    if is_htmx(request):
        return None
    return RedirectResponse(f"/service/tickets/{quote(ticket_id, safe='')}", status_code=303)


@router.post("/tickets/{ticket_id}/posts", response_class=HTMLResponse, dependencies=[Csrf])
async def reply(
    request: Request,
    user: CurrentUser,
    api: UserApi,
    ticket_id: str,
    body: Annotated[str, Form(max_length=100_000)] = "",
    kind: Annotated[PostKind, Form()] = "reply",
) -> Response:
    sent = {"body": body, "public": kind != "note", "from_customer": kind == "customer"}
    try:
        await api.post("support", f"{_ticket_path(ticket_id)}/posts", sent)
    except ApiError as exc:
        if exc.status not in REFUSALS:
            raise
        return await _ticket_page(
            request,
            api,
            ticket_id,
            status_code=exc.status,
            refusal=Refusal("reply", exc),
            draft=body,
            draft_kind=kind,
        )
    return _after_change(request, ticket_id) or await _ticket_page(request, api, ticket_id)


@router.post("/tickets/{ticket_id}/change", response_class=HTMLResponse, dependencies=[Csrf])
async def change(
    request: Request,
    user: CurrentUser,
    api: UserApi,
    ticket_id: str,
    status: Annotated[str, Form(max_length=20)] = "",
    assign: Annotated[Literal["", "me", "nobody"], Form()] = "",
) -> Response:
    """Change the status, or take the ticket (or give it back): the support service checks the lifecycle."""
    sent: dict[str, Any] = {}
    if status:
        sent["status"] = status
    if assign:
        sent["assignee_id"] = user.subject if assign == "me" else None
    try:
        await api.patch("support", _ticket_path(ticket_id), sent)
    except ApiError as exc:
        if exc.status not in REFUSALS:
            raise
        return await _ticket_page(request, api, ticket_id, status_code=exc.status, refusal=Refusal("change", exc))
    return _after_change(request, ticket_id) or await _ticket_page(request, api, ticket_id)


@router.post("/tickets/{ticket_id}/articles", response_class=HTMLResponse, dependencies=[Csrf])
async def link_article(
    request: Request,
    user: CurrentUser,
    api: UserApi,
    ticket_id: str,
    article_id: Annotated[str, Form(min_length=1, max_length=128)],
    resolved: Annotated[bool, Form()] = False,
) -> Response:
    """Record that a suggested article was used on the ticket (and whether it solved it): once per ticket."""
    try:
        article = await api.post(
            "support", f"{_ticket_path(ticket_id)}/articles", {"article_id": article_id, "resolved": resolved}
        )
    except ApiError as exc:
        if exc.status not in (*REFUSALS, 404) or not is_htmx(request):
            raise
        return render(
            request, "service/_article_linked.html", exc.status, refusal=exc, article=None, ticket_id=ticket_id
        )
    if not is_htmx(request):
        return RedirectResponse(f"/service/tickets/{quote(ticket_id, safe='')}", status_code=303)
    return render(request, "service/_article_linked.html", article=article, resolved=resolved, ticket_id=ticket_id)
