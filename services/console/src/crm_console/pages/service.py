"""The service desk: the ticket queue by SLA due time with its running timers, and a ticket's page with its facts,
SLA panel, conversation, suggested knowledge-base articles and a reply box (the support service's
`/v1/tickets` and `/v1/tickets/{id}/...`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from crm_console.client import Api, ApiError
from crm_console.identity import User
from crm_console.web import Csrf, CurrentUser, UserApi, in_path, is_htmx, render, requires

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
"""Tickets the queue shows: the first of the support service's list by SLA due time."""
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
    customer_name: str | None = None

    @property
    def next_timer(self) -> dict[str, Any] | None:
        """The SLA target the ticket must meet next (`sla_next`: running, or breached), as the service keeps it."""
        timer: dict[str, Any] | None = self.ticket.get("sla_next")
        return timer


@dataclass
class Queue:
    rows: list[QueueRow] = field(default_factory=list)
    truncated: bool = False


async def _bounded(tasks: Iterable[Awaitable[T]]) -> list[T]:
    gate = asyncio.Semaphore(CONCURRENT_READS)

    async def one(task: Awaitable[T]) -> T:
        async with gate:
            return await task

    return list(await asyncio.gather(*(one(t) for t in tasks)))


async def _customer_name(api: Api, customer_id: str) -> str | None:
    try:
        customer = await api.get_or_none("customer", f"/v1/customers/{in_path(customer_id)}")
    except ApiError:
        return None  # the name is a courtesy: the queue works without it
    return (customer or {}).get("name")


async def read_queue(api: Api, user: User, wanted: QueueFilter) -> Queue:
    """One read of the support service's queue order: by SLA due time, breached first, nothing due last."""
    page = await api.get(
        "support",
        "/v1/tickets",
        status=list(wanted.statuses),
        priority=wanted.priority or None,
        assignee_id=user.subject if wanted.mine else None,
        sort="sla_due",
        limit=QUEUE_PAGE,
    )
    tickets = list(page.get("items", []))
    customers = sorted({t["customer_id"] for t in tickets})
    names = dict(zip(customers, await _bounded(_customer_name(api, c) for c in customers), strict=True))
    rows = [QueueRow(t, names.get(t["customer_id"])) for t in tickets]
    return Queue(rows=rows, truncated=bool(page.get("next_cursor")))


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
    return f"/v1/tickets/{in_path(ticket_id)}"


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
    customer = await api.get_or_none("customer", f"/v1/customers/{in_path(ticket['customer_id'])}")
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
    return RedirectResponse(f"/service/tickets/{in_path(ticket_id)}", status_code=303)


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
        return RedirectResponse(f"/service/tickets/{in_path(ticket_id)}", status_code=303)
    return render(request, "service/_article_linked.html", article=article, resolved=resolved, ticket_id=ticket_id)
