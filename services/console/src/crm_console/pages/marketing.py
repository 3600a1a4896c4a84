"""The marketing pages."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from crm_console.web import CurrentUser, render, requires

router = APIRouter(prefix="/marketing", dependencies=[requires("campaigns:read", "segments:read")])


@router.get("", response_class=HTMLResponse)
async def index(request: Request, user: CurrentUser) -> HTMLResponse:
    return render(request, "marketing/index.html")
