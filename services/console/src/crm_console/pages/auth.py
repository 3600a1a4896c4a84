"""Sign-in and sign-out.

Two ways in: a name and password at the development identity (`crm run` makes it; it signs tokens with a key the
services trust), or a credential the services already accept: a bearer token from the organisation's identity
provider, or an API key. Either way the services are asked who that is (`/v1/auth/whoami`) before a session
starts, so the console never holds a credential they would refuse.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from crm_console.client import Api, ApiError
from crm_console.identity import COOKIE, PasswordSignIn, User, new_csrf
from crm_console.web import CurrentUser, check_csrf, render, safe_next, sessions
from crm_shared.settings import SERVICES

router = APIRouter()

MAX_CREDENTIAL = 8192


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_page(request: Request, next: str = "/") -> HTMLResponse:
    return _page(request, safe_next(next))


@router.post("/sign-in", response_class=HTMLResponse)
async def sign_in(
    request: Request,
    username: Annotated[str, Form(max_length=255)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    next: Annotated[str, Form(max_length=2048)] = "/",
) -> Response:
    identity: PasswordSignIn | None = request.app.state.password_sign_in
    if identity is None:
        return _page(request, next, "Sign-in by password is not set up here: use a token or an API key.", 400)
    minted = identity.sign_in(username.strip(), password)
    if minted is None:
        return _page(request, next, "That name and password do not match.", 401, username=username)
    token, name = minted
    return await _start(request, token, name, next, "token")


@router.post("/sign-in/token", response_class=HTMLResponse)
async def sign_in_with_token(
    request: Request,
    credential: Annotated[str, Form(max_length=MAX_CREDENTIAL)] = "",
    next: Annotated[str, Form(max_length=2048)] = "/",
) -> Response:
    credential = credential.strip()
    if credential.lower().startswith("bearer "):
        credential = credential[7:].strip()
    if not credential:
        return _page(request, next, "Paste a bearer token or an API key.", 400)
    return await _start(request, credential, "", next, "key" if credential.startswith("crm_") else "token")


@router.post("/sign-out")
async def sign_out(request: Request, user: CurrentUser) -> Response:
    await check_csrf(request, user)
    response = RedirectResponse("/sign-in", status_code=303)
    response.delete_cookie(COOKIE)
    return response


async def _start(request: Request, credential: str, name: str, next_path: str, kind: str) -> Response:
    api = Api(request.app.state.http, request.app.state.urls, credential)
    who: dict[str, Any] | None = None
    silent: list[str] = []
    # Every service trusts the same identities: the first that answers says who this is.
    for service in SERVICES:
        try:
            who = await api.get(service, "/v1/auth/whoami")
            break
        except ApiError as exc:
            if exc.status in (401, 403):
                return _page(request, next_path, f"The services did not accept it: {exc.detail or exc.title}", 401)
            silent.append(f"{service} ({exc.status} {exc.title})")
    if who is None:
        return _page(request, next_path, f"No service answered: {', '.join(silent)}.", 503)
    user = User(
        subject=str(who["id"]),
        display_name=name or str(who["id"]),
        scopes=frozenset(who.get("scopes", [])),
        credential=credential,
        csrf=new_csrf(),
        kind=kind,
    )
    response = RedirectResponse(safe_next(next_path), status_code=303)
    settings = request.app.state.settings
    response.set_cookie(
        COOKIE,
        sessions(request).dump(user),
        max_age=settings.session_minutes * 60,
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
    )
    return response


def _page(
    request: Request, next_path: str, error: str | None = None, status_code: int = 200, *, username: str = ""
) -> HTMLResponse:
    identity: PasswordSignIn | None = request.app.state.password_sign_in
    return render(
        request,
        "sign_in.html",
        status_code,
        next=safe_next(next_path),
        error=error,
        roles=identity.roles() if identity else [],
        username=username,
    )
