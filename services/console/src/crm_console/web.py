"""What every page shares: the signed-in user, their API client, the CSRF check and the templates.

A page module is a router of its own (`crm_console/pages/<area>.py`) whose handlers take `CurrentUser` and
`UserApi`, call the services, and `render` a template from `templates/<area>/`. A service's refusal is an
`ApiError`; the app turns it into a page (or, for an htmx request, a fragment) that says what went wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.templating import Jinja2Templates

from crm_console.client import Api, ApiError
from crm_console.identity import COOKIE, Sessions, User

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")


class SignInRequired(Exception):
    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


class Forbidden(Exception):
    def __init__(self, scope: str) -> None:
        self.scope = scope


class BadForm(Exception):
    """A form the console refuses before calling anything: a missing CSRF token, say."""


@dataclass(frozen=True)
class Section:
    label: str
    href: str
    scopes: tuple[str, ...]


SECTIONS = (
    Section("Customers", "/customers", ("customers:read",)),
    Section("Sales", "/sales", ("opportunities:read", "activities:read", "forecasts:read", "quotes:read")),
    Section("Service", "/service", ("tickets:read",)),
    Section("Marketing", "/marketing", ("campaigns:read", "segments:read")),
    Section("Operator", "/operator", ("admin",)),
)


def sessions(request: Request) -> Sessions:
    return request.app.state.sessions  # type: ignore[no-any-return]


def current_user(request: Request) -> User:
    user = sessions(request).load(request.cookies.get(COOKIE))
    if user is None:
        raise SignInRequired(safe_next(request.url.path + (f"?{request.url.query}" if request.url.query else "")))
    request.state.user = user
    return user


CurrentUser = Annotated[User, Depends(current_user)]


def user_api(request: Request, user: CurrentUser) -> Api:
    return Api(request.app.state.http, request.app.state.urls, user.credential)


UserApi = Annotated[Api, Depends(user_api)]


def requires(*scopes: str) -> Any:
    """A dependency: the page needs one of `scopes`. The services check again; this spares a useless page."""

    def check(user: CurrentUser) -> User:
        if not user.may_any(*scopes):
            raise Forbidden(" or ".join(scopes))
        return user

    return Depends(check)


async def check_csrf(request: Request, user: CurrentUser) -> None:
    """Every change is posted with the session's token, as a header (htmx) or a form field."""
    sent = request.headers.get("x-csrf-token")
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        sent = str((await request.form()).get("csrf_token") or "")
    if sent != user.csrf:
        raise BadForm("the form is stale or came from another site: reload the page and try again")


Csrf = Depends(check_csrf)


def safe_next(path: str | None) -> str:
    """Only a path of this site: never `//evil.example` or `https://...`."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    user: User | None = getattr(request.state, "user", None)
    sections = [s for s in SECTIONS if user is not None and user.may_any(*s.scopes)]
    return TEMPLATES.TemplateResponse(
        request,
        template,
        {"user": user, "sections": sections, "path": request.url.path, **context},
        status_code=status_code,
    )


def problem_json(exc: ApiError) -> JSONResponse:
    """A service's refusal, for a page's script that fetched JSON (a chart's data): its status and words."""
    return JSONResponse(
        {"status": exc.status, "title": exc.title, "detail": exc.detail, "service": exc.service},
        status_code=exc.status,
    )


def in_path(value: str) -> str:
    """An id as one segment of a service's path: a `/`, `?` or `..` in it cannot reach another route."""
    return quote(value, safe="")


def sign_in_url(next_path: str) -> str:
    return f"/sign-in?next={quote(safe_next(next_path), safe='/')}"


# Template filters: how the pages show money, times and durations.

NOTHING = "\u2013"
"""An en dash: no value."""


def money(value: Any, currency: str | None = None) -> str:
    if value is None or value == "":
        return NOTHING
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    text = f"{amount:,.2f}"
    return f"{text} {currency}" if currency else text


def parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def when(value: Any) -> str:
    parsed = parse_time(value)
    return parsed.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if parsed else NOTHING


def day(value: Any) -> str:
    parsed = parse_time(value)
    return parsed.astimezone(UTC).strftime("%Y-%m-%d") if parsed else NOTHING


def percent(value: Any, digits: int = 1) -> str:
    if value is None or value == "":
        return NOTHING
    try:
        return f"{float(value) * 100:.{digits}f} %"
    except (TypeError, ValueError):
        return str(value)


TEMPLATES.env.filters.update(money=money, when=when, day=day, percent=percent)
