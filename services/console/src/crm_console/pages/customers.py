"""The customer 360: search, then one customer's summary card, timeline, consents and merge candidates.

Everything comes from the customer service (profile, summary card, timeline, consents, duplicates) and, for a
user who may read scores, from scoring (the churn risk's reasons). The timeline refreshes itself every few
seconds, so an order published a moment ago appears without a reload.
"""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from crm_console.client import Api, ApiError
from crm_console.identity import User
from crm_console.web import Csrf, CurrentUser, UserApi, in_path, is_htmx, render, requires
from crm_shared.events import Channel

router = APIRouter(prefix="/customers", dependencies=[requires("customers:read")])

CHANNELS: tuple[str, ...] = Channel.__args__  # type: ignore[attr-defined]
TIMELINE_KINDS = (
    "order",
    "ticket",
    "sla",
    "complaint",
    "survey",
    "opportunity",
    "quote",
    "lead",
    "activity",
    "interaction",
    "consent",
    "segment",
    "campaign",
)
"""The kinds offered as filters (the customer service knows a few more; these are the ones people ask for)."""
TIMELINE_POLL_SECONDS = 3
LOOKS_LIKE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
PURPOSES = ("marketing", "service")


@router.get("", response_class=HTMLResponse)
async def search(
    request: Request,
    user: CurrentUser,
    api: UserApi,
    q: Annotated[str, Query(max_length=200)] = "",
    cursor: str = "",
) -> HTMLResponse:
    """By name, e-mail, phone or id: an id is looked up directly, beside the name search."""
    text = q.strip()
    found: list[dict[str, Any]] = []
    next_cursor = None
    if text:
        found, next_cursor = await _search(api, text, cursor)
    return render(request, "customers/index.html", q=text, customers=found, next_cursor=next_cursor)


async def _search(api: Api, text: str, cursor: str) -> tuple[list[dict[str, Any]], str | None]:
    page: dict[str, Any] = {}
    if "@" in text:
        page = await api.get("customer", "/v1/customers", email=text, cursor=cursor or None)
        return page.get("items", []), page.get("next_cursor")
    if text.startswith("+") and text[1:].replace(" ", "").isdigit():
        page = await api.get("customer", "/v1/customers", phone=text, cursor=cursor or None)
        return page.get("items", []), page.get("next_cursor")
    exact = None
    if LOOKS_LIKE_ID.match(text) and not cursor:
        try:
            exact = await api.get_or_none("customer", f"/v1/customers/{in_path(text)}")
        except ApiError as exc:
            if exc.status != 422:  # not the shape of an id after all
                raise
    if any(ch.isalnum() for ch in text):
        try:
            page = await api.get("customer", "/v1/customers", q=text, cursor=cursor or None)
        except ApiError as exc:
            if exc.status != 422 or exact is None:
                raise
    items = [c for c in page.get("items", []) if exact is None or c.get("customer_id") != exact.get("customer_id")]
    return ([exact] if exact else []) + items, page.get("next_cursor")


@router.get("/{customer_id}", response_class=HTMLResponse)
async def customer(request: Request, user: CurrentUser, api: UserApi, customer_id: str) -> HTMLResponse:
    path = f"/v1/customers/{in_path(customer_id)}"
    profile = await api.get("customer", path)
    if profile.get("merged_into"):
        survivor = profile["merged_into"]
        return render(request, "customers/merged.html", profile=profile, survivor=survivor)
    card, scores, duplicates, consents = await asyncio.gather(
        api.get_or_none("customer", f"{path}/summary"),
        api.get_or_none("scoring", f"{path}/scores") if user.may("scores:read") else _none(),
        api.get_or_none("customer", f"{path}/duplicates"),
        api.get_or_none("customer", f"{path}/consents"),
    )
    return render(
        request,
        "customers/customer.html",
        profile=profile,
        card=card,
        scores=scores,
        churn_reasons=churn_reasons(scores),
        duplicates=duplicates,
        consents=_consent_rows(consents),
        may_change_consents=user.may("consents:write"),
        may_merge=user.may("customers:merge"),
        timeline=await _timeline(api, customer_id, TimelineFilter()),
    )


async def _none() -> None:
    return None


def churn_reasons(scores: dict[str, Any] | None) -> list[str]:
    """Why the churn risk is what it is, in words, from the facts scoring shows beside the score."""
    if not scores:
        return []
    reasons: list[str] = []
    thresholds = scores.get("thresholds") or {}
    stage = scores.get("lifecycle_stage")
    recency = scores.get("recency_days")
    if stage in ("at_risk", "lost") and recency is not None:
        limit = thresholds.get("lost_days" if stage == "lost" else "at_risk_days")
        reasons.append(
            f"no order for {recency} days" + (f" (from {limit} days a customer is {stage})" if limit else "")
        )
    alive = scores.get("probability_alive")
    if alive is not None and float(alive) < 0.5:
        reasons.append(f"probability still active {float(alive) * 100:.0f} %")
    if scores.get("frequency") == 1 and stage not in ("at_risk", "lost"):
        reasons.append("a single order so far")
    inputs = scores.get("inputs") or {}
    complaints = inputs.get("complaints") or []
    if complaints:
        severe = sum(1 for c in complaints if c.get("severity") in ("high", "critical"))
        reasons.append(
            f"{len(complaints)} complaint{'s' if len(complaints) != 1 else ''}"
            + (f", {severe} severe" if severe else "")
        )
    bad = [s for s in inputs.get("surveys") or [] if s.get("bad")]
    if bad:
        reasons.append(f"{len(bad)} bad survey answer{'s' if len(bad) != 1 else ''}")
    if not reasons and scores.get("churn_risk_band") == "low":
        reasons.append("orders recently, no complaint or bad survey")
    return reasons


def _consent_rows(consents: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One row per channel: its marketing and service answers (None: never stated)."""
    if not consents:
        return []
    rows = []
    for channel in CHANNELS:
        marketing = (
            True
            if channel in consents.get("granted", [])
            else False
            if channel in consents.get("refused", [])
            else None
        )
        service = (
            True
            if channel in consents.get("service_granted", [])
            else False
            if channel in consents.get("service_refused", [])
            else None
        )
        rows.append(
            {
                "channel": channel,
                "marketing": marketing,
                "service": service,
                "preferred": consents.get("preferred_channel") == channel,
            }
        )
    return rows


# ---------------------------------------------------------------- timeline


class TimelineFilter:
    def __init__(self, kind: list[str] | None = None, channel: str = "", since: str = "", order: str = "newest"):
        self.kinds = [k for k in kind or [] if k in TIMELINE_KINDS]
        self.channel = channel if channel in CHANNELS else ""
        self.since = since
        self.order = order if order in ("newest", "oldest") else "newest"

    def query(self) -> str:
        pairs = [("kind", k) for k in self.kinds]
        pairs += [(name, value) for name, value in (("channel", self.channel), ("since", self.since)) if value]
        if self.order != "newest":
            pairs.append(("order", self.order))
        return urlencode(pairs)


async def _timeline(api: Api, customer_id: str, selection: TimelineFilter, cursor: str = "") -> dict[str, Any]:
    since = f"{selection.since}T00:00:00Z" if re.fullmatch(r"\d{4}-\d{2}-\d{2}", selection.since) else None
    page = await api.get(
        "customer",
        f"/v1/customers/{in_path(customer_id)}/timeline",
        kind=selection.kinds or None,
        channel=selection.channel or None,
        **{"from": since},
        order=selection.order,
        cursor=cursor or None,
        limit=50,
    )
    return {
        "customer_id": customer_id,
        "entries": page.get("items", []),
        "next_cursor": page.get("next_cursor"),
        "filter": selection,
        "kinds": TIMELINE_KINDS,
        "channels": CHANNELS,
        "poll": TIMELINE_POLL_SECONDS if not cursor else None,
        "cursor": cursor,
    }


@router.get("/{customer_id}/timeline", response_class=HTMLResponse)
async def timeline(
    request: Request,
    user: CurrentUser,
    api: UserApi,
    customer_id: str,
    kind: Annotated[list[str] | None, Query()] = None,
    channel: str = "",
    since: str = "",
    order: str = "newest",
    cursor: str = "",
) -> HTMLResponse:
    data = await _timeline(api, customer_id, TimelineFilter(kind, channel, since, order), cursor)
    if is_htmx(request):
        return render(request, "customers/_timeline.html", timeline=data)
    return render(request, "customers/timeline.html", timeline=data, customer_id=customer_id)


# ---------------------------------------------------------------- consents


@router.post("/{customer_id}/consents/{channel}", response_class=HTMLResponse, dependencies=[Csrf])
async def change_consent(
    request: Request,
    user: CurrentUser,
    api: UserApi,
    customer_id: str,
    channel: str,
    granted: Annotated[str, Form()],
    purpose: Annotated[str, Form()] = "marketing",
) -> Response:
    refusal = None
    errors = None
    status = 200
    if channel not in CHANNELS or purpose not in PURPOSES or granted not in ("true", "false"):
        refusal, status = "Choose a channel, a purpose and grant or refuse.", 422
    else:
        try:
            await api.put(
                "customer",
                f"/v1/customers/{in_path(customer_id)}/consents/{channel}",
                {"granted": granted == "true", "purpose": purpose},
            )
        except ApiError as exc:
            if exc.status not in (403, 409, 422):
                raise
            refusal, errors, status = exc.detail or exc.title, exc.errors, exc.status
    if not is_htmx(request):
        if refusal:
            return render(request, "error.html", status, title="Consent not changed", detail=refusal, status=status)
        return RedirectResponse(f"/customers/{customer_id}#consents", status_code=303)
    consents = await api.get_or_none("customer", f"/v1/customers/{in_path(customer_id)}/consents")
    return render(
        request,
        "customers/_consents.html",
        status,
        customer_id=customer_id,
        consents=_consent_rows(consents),
        may_change_consents=user.may("consents:write"),
        refusal=refusal,
        errors=errors,
        changed=None if refusal else channel,
    )


# ---------------------------------------------------------------- merge candidates


@router.post("/{customer_id}/merges", response_class=HTMLResponse, dependencies=[Csrf])
async def confirm_merge(
    request: Request,
    user: CurrentUser,
    api: UserApi,
    customer_id: str,
    merged_id: Annotated[str, Form(min_length=1, max_length=128)],
    evidence: Annotated[list[str] | None, Form()] = None,
) -> Response:
    try:
        merge = await api.post(
            "customer",
            f"/v1/customers/{in_path(customer_id)}/merges",
            {"merged_id": merged_id, "evidence": [e[:200] for e in evidence or [] if e][:20]},
        )
    except ApiError as exc:
        if exc.status not in (403, 404, 409, 422):
            raise
        return await _duplicates(request, api, user, customer_id, refusal=exc.detail or exc.title, status=exc.status)
    return await _duplicates(
        request, api, user, customer_id, notice=f"{merged_id} is merged into {customer_id} ({merge.get('merge_id')})."
    )


@router.post("/{customer_id}/duplicates/{other_id}/rejection", response_class=HTMLResponse, dependencies=[Csrf])
async def reject_candidate(
    request: Request,
    user: CurrentUser,
    api: UserApi,
    customer_id: str,
    other_id: str,
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    try:
        await api.post(
            "customer",
            f"/v1/customers/{in_path(customer_id)}/duplicates/{in_path(other_id)}/rejection",
            {"reason": reason.strip() or None},
        )
    except ApiError as exc:
        if exc.status not in (403, 404, 409, 422):
            raise
        return await _duplicates(request, api, user, customer_id, refusal=exc.detail or exc.title, status=exc.status)
    return await _duplicates(request, api, user, customer_id, notice=f"{other_id} will not be proposed again.")


async def _duplicates(
    request: Request,
    api: Api,
    user: User,
    customer_id: str,
    *,
    notice: str | None = None,
    refusal: str | None = None,
    status: int = 200,
) -> Response:
    if not is_htmx(request):
        if refusal:
            return render(request, "error.html", status, title="Refused", detail=refusal, status=status)
        return RedirectResponse(f"/customers/{customer_id}#duplicates", status_code=303)
    duplicates = await api.get_or_none("customer", f"/v1/customers/{in_path(customer_id)}/duplicates")
    return render(
        request,
        "customers/_duplicates.html",
        status if refusal else 200,
        customer_id=customer_id,
        duplicates=duplicates,
        may_merge=user.may("customers:merge"),
        notice=notice,
        refusal=refusal,
    )
