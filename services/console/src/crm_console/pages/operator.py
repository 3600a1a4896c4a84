"""The operator's view: per service the health of broker and database, consumer lag per topic, the outbox
backlog and the leases it holds (from the services' `/readyz` and `/metrics`), and the dead letters with their
reasons, each replayable once corrected (the services' `/v1/admin/deadletters`)."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse
from prometheus_client.parser import text_string_to_metric_families

from crm_console.client import Api, ApiError
from crm_console.web import Csrf, CurrentUser, UserApi, is_htmx, render, requires
from crm_shared.settings import SERVICES

router = APIRouter(prefix="/operator", dependencies=[requires("admin")])

MAX_RECORD = 1_000_000


@dataclass
class ServiceState:
    name: str
    reachable: bool = True
    checks: dict[str, str] = field(default_factory=dict)
    lag: dict[tuple[str, str], int] = field(default_factory=dict)
    """(consumer group, topic) -> records not yet applied, summed over partitions."""
    outbox_backlog: int | None = None
    dead_lettered: int = 0
    leases: list[str] = field(default_factory=list)
    problem: str = ""

    @property
    def healthy(self) -> bool:
        return self.reachable and bool(self.checks) and all(v == "ok" for v in self.checks.values())

    @property
    def total_lag(self) -> int:
        return sum(self.lag.values())


def read_metrics(state: ServiceState, text: str) -> None:
    """The figures the view needs from a Prometheus text exposition."""
    lag: dict[tuple[str, str], float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "crm_consumer_lag":
                lag[(labels.get("group", ""), labels.get("topic", ""))] += sample.value
            elif sample.name == "crm_outbox_backlog":
                state.outbox_backlog = (state.outbox_backlog or 0) + int(sample.value)
            elif sample.name == "crm_records_dead_lettered_total":
                state.dead_lettered += int(sample.value)
            elif sample.name == "crm_lease_held" and sample.value >= 1:
                state.leases.append(labels.get("lease", ""))
    state.lag = {key: int(value) for key, value in sorted(lag.items())}


async def service_state(api: Api, name: str) -> ServiceState:
    state = ServiceState(name)
    try:
        state.checks = dict((await api.get(name, "/readyz")).get("checks", {}))
    except ApiError as exc:
        if not exc.answered or exc.status != 503:
            state.reachable = False
            state.problem = exc.detail or exc.title
            return state
        # Not ready answers 503 with the checks that failed: the body says which.
        state.checks = {"service": exc.detail or "not ready"}
    try:
        read_metrics(state, await api.text(name, "/metrics"))
    except ApiError as exc:
        state.problem = f"metrics: {exc.detail or exc.title}"
    return state


@router.get("", response_class=HTMLResponse)
async def index(request: Request, user: CurrentUser, api: UserApi) -> HTMLResponse:
    states = await asyncio.gather(*(service_state(api, name) for name in SERVICES))
    template = "operator/_health.html" if is_htmx(request) else "operator/index.html"
    return render(request, template, states=states)


@router.get("/deadletters", response_class=HTMLResponse)
async def deadletters(
    request: Request,
    user: CurrentUser,
    api: UserApi,
    service: str = "sales",
    status: str = "",
    cursor: str = "",
) -> HTMLResponse:
    if service not in SERVICES:
        return render(request, "error.html", 404, title="No such service", detail=service, status=404)
    page = await api.get(service, "/v1/admin/deadletters", status=status or None, cursor=cursor or None, limit=50)
    return render(
        request,
        "operator/deadletters.html",
        service=service,
        services=list(SERVICES),
        status=status,
        letters=page.get("items", []),
        next_cursor=page.get("next_cursor"),
    )


@router.get("/deadletters/{service}/{letter_id}", response_class=HTMLResponse)
async def deadletter(request: Request, user: CurrentUser, api: UserApi, service: str, letter_id: str) -> HTMLResponse:
    letter = await _letter(api, service, letter_id)
    return render(request, "operator/deadletter.html", service=service, letter=letter, record=_draft(letter))


@router.post("/deadletters/{service}/{letter_id}/replay", response_class=HTMLResponse, dependencies=[Csrf])
async def replay(
    request: Request,
    user: CurrentUser,
    api: UserApi,
    service: str,
    letter_id: str,
    record: Annotated[str, Form(max_length=MAX_RECORD)] = "",
) -> HTMLResponse:
    letter = await _letter(api, service, letter_id)
    try:
        corrected = json.loads(record)
    except ValueError as exc:
        return render(
            request,
            "operator/deadletter.html",
            422,
            service=service,
            letter=letter,
            record=record,
            refusal=f"The corrected record is not JSON: {exc}",
        )
    try:
        replayed = await api.post(service, f"/v1/admin/deadletters/{_quoted(letter_id)}/replay", {"record": corrected})
    except ApiError as exc:
        if exc.status not in (400, 409, 422):
            raise
        return render(
            request,
            "operator/deadletter.html",
            exc.status,
            service=service,
            letter=letter,
            record=record,
            refusal=exc.detail or exc.title,
            errors=exc.errors,
        )
    return render(request, "operator/deadletter.html", service=service, letter=replayed, record=record, replayed=True)


async def _letter(api: Api, service: str, letter_id: str) -> dict[str, Any]:
    if service not in SERVICES:
        raise ApiError(service, 404, "No such service", service)
    letter: dict[str, Any] = await api.get(service, f"/v1/admin/deadletters/{_quoted(letter_id)}")
    return letter


def _quoted(letter_id: str) -> str:
    return quote(letter_id, safe=":")


def _draft(letter: dict[str, Any]) -> str:
    """The record to correct: the kept text, pretty-printed when it is JSON (personal fields are masked in it)."""
    text = str(letter.get("original_text") or "")
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text
