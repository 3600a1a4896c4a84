"""Composition: settings, the HTTP client, the session signer, the page routers and the error pages."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from crm_console.client import ApiError
from crm_console.identity import COOKIE, PasswordSignIn, Sessions
from crm_console.pages import ROUTERS
from crm_console.settings import ConsoleSettings
from crm_console.web import BadForm, Forbidden, SignInRequired, is_htmx, render, sign_in_url
from crm_shared.logging import get_logger

log = get_logger("crm_console")

# Scripts and styles only from the console itself: no inline script, so an injected one does not run.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)


def create_console(settings: ConsoleSettings | None = None) -> FastAPI:
    settings = settings or ConsoleSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(timeout=settings.request_timeout_seconds) as http:
            app.state.http = http
            yield

    app = FastAPI(
        title="CRM console",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.urls = settings.service_urls()
    app.state.sessions = Sessions(settings.session_secret.get_secret_value(), settings.session_minutes * 60)
    app.state.password_sign_in = (
        PasswordSignIn(
            settings.identity_key_file,
            settings.users_file,
            settings.token_issuer,
            settings.token_audience,
            settings.session_minutes * 60,
        )
        if settings.identity_key_file is not None and settings.users_file is not None
        else None
    )
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    for router in ROUTERS:
        app.include_router(router)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "alive", "service": "console"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> dict[str, str]:
        return {"status": "ready", "service": "console"}

    @app.middleware("http")
    async def headers_and_log(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if not request.url.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        if request.url.path not in ("/healthz", "/readyz") and not request.url.path.startswith("/static/"):
            log.info(
                "request",
                method=request.method,
                path=request.url.path,
                status=response.status_code,
                ms=round((time.perf_counter() - started) * 1000, 1),
            )
        return response

    @app.exception_handler(SignInRequired)
    async def sign_in_required(request: Request, exc: SignInRequired) -> Response:
        return _to_sign_in(request, exc.next_path)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        if exc.status == 401:
            # The token expired or was revoked: sign in again, and come back here.
            response = _to_sign_in(request, _page_of(request))
            response.delete_cookie(COOKIE)
            return response
        log.info("service refused", service=exc.service, status=exc.status, title=exc.title, path=request.url.path)
        return _error_page(request, exc.status, exc.title, exc.detail, service=exc.service, errors=exc.errors)

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> Response:
        return _error_page(request, 403, "Not permitted", f"This page needs the scope {exc.scope}.")

    @app.exception_handler(BadForm)
    async def bad_form(request: Request, exc: BadForm) -> Response:
        return _error_page(request, 400, "Form refused", str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'input'}: {e.get('msg')}" for e in exc.errors()
        )
        return _error_page(request, 422, "Invalid input", problems)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if request.url.path.startswith("/static/"):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
        return _error_page(request, exc.status_code, str(exc.detail), "")

    return app


def _page_of(request: Request) -> str:
    """The page to come back to: for an htmx request, the page it was made from."""
    if is_htmx(request):
        current = request.headers.get("hx-current-url", "/")
        return "/" + current.split("://", 1)[-1].split("/", 1)[-1] if "://" in current else current
    return request.url.path


def _to_sign_in(request: Request, next_path: str) -> Response:
    target = sign_in_url(next_path)
    if is_htmx(request):
        return Response(status_code=200, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def _error_page(
    request: Request, status_code: int, title: str, detail: str, *, service: str | None = None, errors: object = None
) -> HTMLResponse:
    template = "partials/error.html" if is_htmx(request) else "error.html"
    return render(
        request, template, status_code, title=title, detail=detail, service=service, errors=errors, status=status_code
    )
