"""Calls to the five services' REST APIs, on the signed-in user's behalf."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Mapping
from typing import Any

import httpx

from crm_shared.settings import SERVICES


class ApiError(Exception):
    """A service's answer that was not a success, or no answer: the problem+json fields, when there were some."""

    def __init__(
        self, service: str, status: int, title: str, detail: str = "", errors: Any = None, *, answered: bool = True
    ) -> None:
        super().__init__(f"{service}: {status} {title}: {detail}")
        self.answered = answered
        """False when the service gave no answer at all (refused, timed out): `status` is then the console's 503."""
        self.service = service
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors

    @classmethod
    def of(cls, service: str, response: httpx.Response) -> ApiError:
        body: Any = None
        with contextlib.suppress(ValueError):
            body = response.json()
        if isinstance(body, dict):
            return cls(
                service,
                response.status_code,
                str(body.get("title") or response.reason_phrase),
                str(body.get("detail") or ""),
                body.get("errors"),
            )
        return cls(service, response.status_code, response.reason_phrase, response.text[:200])


class Api:
    """One user's view of the services: every request carries their credential, nothing else."""

    def __init__(self, http: httpx.AsyncClient, urls: Mapping[str, str], credential: str | None) -> None:
        self._http = http
        self._urls = urls
        self._headers = {"Authorization": f"Bearer {credential}"} if credential else {}

    def url(self, service: str) -> str:
        if service not in SERVICES:
            raise KeyError(f"no service {service!r}")
        return self._urls[service]

    async def request(
        self,
        method: str,
        service: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        idempotency_key: str | None = None,
        expect_json: bool = True,
    ) -> Any:
        headers = dict(self._headers)
        if method == "POST":
            # A form posted twice (a double click, a retry after a timeout) is one change, not two.
            headers["Idempotency-Key"] = idempotency_key or uuid.uuid4().hex
        query = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        try:
            response = await self._http.request(
                method, f"{self.url(service)}{path}", params=query, json=json, headers=headers
            )
        except httpx.HTTPError as exc:
            raise ApiError(service, 503, "Service unreachable", f"{type(exc).__name__}: {exc}", answered=False) from exc
        if response.status_code >= 400:
            raise ApiError.of(service, response)
        if not expect_json:
            return response.text
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    async def get(self, service: str, path: str, **params: Any) -> Any:
        return await self.request("GET", service, path, params=params)

    async def post(self, service: str, path: str, body: Any = None, *, idempotency_key: str | None = None) -> Any:
        return await self.request("POST", service, path, json=body, idempotency_key=idempotency_key)

    async def put(self, service: str, path: str, body: Any = None) -> Any:
        return await self.request("PUT", service, path, json=body)

    async def patch(self, service: str, path: str, body: Any = None) -> Any:
        return await self.request("PATCH", service, path, json=body)

    async def delete(self, service: str, path: str) -> Any:
        return await self.request("DELETE", service, path)

    async def text(self, service: str, path: str) -> str:
        return str(await self.request("GET", service, path, expect_json=False))

    async def get_or_none(self, service: str, path: str, **params: Any) -> Any:
        """The answer, or None for a 404 or a 403: a card the user may not see is left out, not an error."""
        try:
            return await self.get(service, path, **params)
        except ApiError as exc:
            if exc.status in (403, 404):
                return None
            raise
