"""The console on fake services: each test says what the services answer, and sees what the console asked.

The services' own rules are tested against the services; here only what the console makes of their answers.
The browser tests (tests/e2e/console) run the console on the real platform.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from crm_console.app import create_console
from crm_console.identity import COOKIE, User
from crm_console.settings import ConsoleSettings
from crm_shared.security.development import DevelopmentIdentity

SECRET = "s" * 40

Answer = tuple[int, Any] | Callable[[httpx.Request], httpx.Response]


@dataclass
class FakeServices:
    """Answers by (method, service, path); records every request with its body."""

    answers: dict[tuple[str, str, str], Answer] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)

    def on(self, method: str, service: str, path: str, answer: Answer) -> None:
        self.answers[(method, service, path)] = answer

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        service = request.url.host.removesuffix(".test")
        answer = self.answers.get((request.method, service, request.url.path))
        if answer is None:
            return httpx.Response(
                404,
                json={"type": "about:blank", "title": "Not Found", "status": 404, "detail": "no fake answer"},
                headers={"content-type": "application/problem+json"},
            )
        if callable(answer):
            return answer(request)
        status, body = answer
        return httpx.Response(status, json=body)

    def sent(self, method: str, service: str, path: str) -> list[httpx.Request]:
        return [
            r for r in self.requests if r.method == method and r.url.host == f"{service}.test" and r.url.path == path
        ]

    @staticmethod
    def body(request: httpx.Request) -> Any:
        return json.loads(request.content)


@dataclass
class Console:
    client: TestClient
    services: FakeServices
    sessions: Any

    def sign_in_as(self, subject: str = "tester", *scopes: str, credential: str = "token-1") -> User:
        user = User(subject, subject.title(), frozenset(scopes), credential, csrf="csrf-1")
        self.client.cookies.set(COOKIE, self.sessions.dump(user))
        return user

    def post(self, url: str, data: dict[str, Any] | None = None, **kwargs: Any) -> httpx.Response:
        """A form post with the session's CSRF token, as the pages send it."""
        return self.client.post(url, data={"csrf_token": "csrf-1", **(data or {})}, **kwargs)

    def htmx(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        headers = {"HX-Request": "true", "X-CSRF-Token": "csrf-1", **kwargs.pop("headers", {})}
        return self.client.request(method, url, headers=headers, **kwargs)


def console_settings(tmp_path: Path | None = None, **overrides: Any) -> ConsoleSettings:
    urls = {f"{name}_url": f"http://{name}.test" for name in ("customer", "sales", "support", "scoring", "marketing")}
    extra: dict[str, Any] = {}
    if tmp_path is not None:
        identity = DevelopmentIdentity.under(tmp_path)
        identity.ensure()
        extra = {"identity_key_file": identity.key_file, "users_file": identity.users_file}
    return ConsoleSettings(session_secret=SECRET, **urls, **extra, **overrides)


@pytest.fixture
def console_factory() -> Iterator[Callable[..., Console]]:
    clients: list[TestClient] = []

    def make(settings: ConsoleSettings | None = None) -> Console:
        services = FakeServices()
        app = create_console(settings or console_settings())
        client = TestClient(app, follow_redirects=False)
        client.__enter__()
        clients.append(client)
        app.state.http = httpx.AsyncClient(transport=httpx.MockTransport(services.handle))
        return Console(client, services, app.state.sessions)

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def console(console_factory: Callable[..., Console]) -> Console:
    return console_factory()
