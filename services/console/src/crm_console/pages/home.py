"""The start page: what the signed-in user may open."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from crm_console.web import CurrentUser, render

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
async def home(request: Request, user: CurrentUser) -> HTMLResponse:
    return render(request, "home.html")
