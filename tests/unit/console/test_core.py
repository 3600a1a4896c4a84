"""Sign-in, the session, the CSRF check and how the console shows a service's refusal."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import jwt
import pytest

from crm_console.identity import COOKIE, Sessions, User
from crm_console.web import safe_next
from crm_shared.security.development import DEMO_USERS, DevelopmentIdentity, check_password, hash_password

from .conftest import SECRET, Console, console_settings

WHOAMI = "/v1/auth/whoami"


def test_a_page_without_a_session_sends_to_sign_in_and_back(console: Console) -> None:
    response = console.client.get("/customers?q=ada")
    assert response.status_code == 303
    assert response.headers["location"] == "/sign-in?next=/customers%3Fq%3Dada"


def test_an_htmx_request_without_a_session_is_told_to_redirect(console: Console) -> None:
    response = console.htmx("GET", "/customers")
    assert response.headers["HX-Redirect"].startswith("/sign-in")


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example", "/\\evil", "", "x"])
def test_next_is_only_ever_a_path_of_this_site(target: str) -> None:
    assert safe_next(target) == "/"


def test_sign_in_with_a_token_asks_the_services_who_it_is(console: Console) -> None:
    console.services.on("GET", "customer", WHOAMI, (200, {"id": "rep-7", "scopes": ["customers:read"]}))
    response = console.client.post("/sign-in/token", data={"credential": "Bearer abc.def.ghi", "next": "/customers"})
    assert response.status_code == 303
    assert response.headers["location"] == "/customers"
    (asked,) = console.services.sent("GET", "customer", WHOAMI)
    assert asked.headers["authorization"] == "Bearer abc.def.ghi"
    cookie = response.cookies[COOKIE]
    user = Sessions(SECRET, 60).load(cookie)
    assert user is not None and user.subject == "rep-7" and user.scopes == {"customers:read"}
    assert "httponly" in response.headers["set-cookie"].lower()


def test_a_credential_the_services_refuse_starts_no_session(console: Console) -> None:
    console.services.on(
        "GET", "customer", WHOAMI, (401, {"title": "Unauthorized", "status": 401, "detail": "the token has expired"})
    )
    response = console.client.post("/sign-in/token", data={"credential": "old"})
    assert response.status_code == 401
    assert "the token has expired" in response.text
    assert COOKIE not in response.cookies


def test_a_forged_or_altered_cookie_is_no_session(console: Console) -> None:
    forged = Sessions("another secret of enough length!!", 60).dump(
        User("admin", "Admin", frozenset({"admin"}), "x", "c")
    )
    console.client.cookies.set(COOKIE, forged)
    assert console.client.get("/").status_code == 303


def test_the_sections_follow_the_scopes(console: Console) -> None:
    console.sign_in_as("agent", "tickets:read", "customers:read")
    page = console.client.get("/").text
    assert 'href="/service"' in page and 'href="/customers"' in page
    assert 'href="/operator"' not in page and 'href="/marketing"' not in page


def test_a_page_beyond_ones_scopes_is_a_403_page(console: Console) -> None:
    console.sign_in_as("agent", "tickets:read")
    response = console.client.get("/operator")
    assert response.status_code == 403
    assert "admin" in response.text


def test_sign_out_needs_the_csrf_token(console: Console) -> None:
    console.sign_in_as("rep", "customers:read")
    refused = console.client.post("/sign-out", data={"csrf_token": "wrong"})
    assert refused.status_code == 400
    done = console.post("/sign-out")
    assert done.status_code == 303 and done.headers["location"] == "/sign-in"


def test_every_page_is_sent_with_a_strict_content_security_policy(console: Console) -> None:
    policy = console.client.get("/sign-in").headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy


def test_password_sign_in_mints_a_token_the_services_would_verify(
    tmp_path: Path, console_factory: Callable[..., Console]
) -> None:
    console = console_factory(console_settings(tmp_path))
    identity = DevelopmentIdentity.under(tmp_path)
    password = identity.ensure()
    console.services.on("GET", "customer", WHOAMI, (200, {"id": "rep-1", "scopes": ["opportunities:read"]}))
    wrong = console.client.post("/sign-in", data={"username": "rep-1", "password": password + "x"})
    assert wrong.status_code == 401 and not console.services.requests
    right = console.client.post("/sign-in", data={"username": "rep-1", "password": password})
    assert right.status_code == 303
    token = console.services.requests[0].headers["authorization"].removeprefix("Bearer ")
    settings = console.client.app.state.settings  # type: ignore[attr-defined]
    claims = jwt.decode(
        token,
        identity.public_key_file.read_text(),
        algorithms=["ES256"],
        audience=settings.token_audience,
        issuer=settings.token_issuer,
    )
    rep = next(u for u in DEMO_USERS if u["username"] == "rep-1")
    assert claims["sub"] == "rep-1"
    assert set(claims["scope"].split()) == set(rep["scopes"])
    assert claims["crm_territories"] == rep["crm_territories"]


def test_passwords_are_kept_as_scrypt_hashes() -> None:
    stored = hash_password("correct horse")
    assert stored.startswith("scrypt$") and "correct horse" not in stored
    assert check_password(stored, "correct horse")
    assert not check_password(stored, "correct horsf")
    assert not check_password("not a hash", "x")


def test_the_development_identity_is_made_once_and_kept_private(tmp_path: Path) -> None:
    identity = DevelopmentIdentity.under(tmp_path)
    first = identity.ensure()
    assert identity.ensure() == first
    for path in (identity.key_file, identity.users_file, identity.password_file):
        assert path.stat().st_mode & 0o077 == 0, path
    assert first not in identity.users_file.read_text()


def test_sign_in_asks_the_next_service_when_one_does_not_answer(console: Console) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    console.services.on("GET", "customer", WHOAMI, down)
    console.services.on("GET", "sales", WHOAMI, (200, {"id": "rep-7", "scopes": []}))
    assert console.client.post("/sign-in/token", data={"credential": "x"}).status_code == 303

    for service in ("customer", "sales", "support", "scoring", "marketing"):
        console.services.on("GET", service, WHOAMI, down)
    response = console.client.post("/sign-in/token", data={"credential": "x"})
    assert response.status_code == 503
    assert "No service answered: customer (503 Service unreachable)" in response.text
