"""The exception a route raises to answer with a precise RFC 9457 problem."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class Problem(Exception):
    """An RFC 9457 problem: raise it from a route to answer with a precise 4xx; `headers` go with the answer."""

    def __init__(
        self, status: int, title: str, detail: str, *, headers: Mapping[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = extra
