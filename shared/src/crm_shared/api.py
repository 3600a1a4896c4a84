"""Small pieces every service's REST API shares: cursor pagination, the Idempotency-Key header, the event answer."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from fastapi import Header, Path, Query, Response, status
from pydantic import BaseModel, Field
from pymongo.asynchronous.collection import AsyncCollection

from crm_shared.consumer import Rejected
from crm_shared.events import check_time, derived_event_id, new_event_id
from crm_shared.problems import Problem
from crm_shared.store import AlreadyApplied

ItemT = TypeVar("ItemT")
T = TypeVar("T")

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description="Repeat a POST with the same key and it is applied once; the answer is the same.",
    ),
]
Limit = Annotated[int, Query(ge=1, le=500, description="Page size.")]
IdInPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]*$",
        description="An id, as the contract's ids.",
    ),
]
"""Every id in a path: what the contract allows for ids, so no other string reaches a query."""
Cursor = Annotated[str | None, Query(max_length=500, description="`next_cursor` of the previous page.")]


class Page(BaseModel, Generic[ItemT]):
    items: list[ItemT]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


def encode_cursor(position: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(position, default=str).encode()).decode()


def invalid_cursor(why: str) -> Problem:
    return Problem(400, "Invalid cursor", f"the cursor is not one this API returned: {why}")


def decode_cursor(cursor: str | None) -> dict[str, Any] | None:
    """The position a `cursor` query parameter holds; read its fields with `cursor_id` and `cursor_time`."""
    if cursor is None:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (binascii.Error, ValueError) as exc:
        raise invalid_cursor("not base64url JSON") from exc
    if not isinstance(value, dict):
        raise invalid_cursor("not a JSON object")
    return value


def cursor_id(after: Mapping[str, Any], name: str = "id") -> str:
    """The id a page resumes after: a string, never an operator or a number that would reach the query."""
    value = after.get(name)
    if not isinstance(value, str):
        raise invalid_cursor(f"`{name}` is not a string")
    return value


def cursor_time(after: Mapping[str, Any], name: str = "at") -> datetime:
    """The time a page resumes after, in UTC: ISO 8601 with its offset, within the times events may carry.

    Any time a page can end on is one of those; one outside what BSON holds (year 1 at +01:00 is before
    year 1 in UTC) would overflow in the driver, and a time without offset names no instant.
    """
    value = after.get(name)
    if not isinstance(value, str):
        raise invalid_cursor(f"`{name}` is not a time")
    try:
        at = datetime.fromisoformat(value)
    except ValueError as exc:
        raise invalid_cursor(f"`{name}` is not a time") from exc
    if at.utcoffset() is None:
        raise invalid_cursor(f"`{name}` has no UTC offset")
    try:
        return check_time(at)
    except ValueError as exc:
        raise invalid_cursor(f"`{name}` is out of range: {exc}") from exc


def command_event_id(scope: str, idempotency_key: str | None) -> str:
    """The id of the event a POST becomes: stable for a repeated Idempotency-Key, fresh otherwise."""
    return derived_event_id(scope, idempotency_key) if idempotency_key else new_event_id()


class Accepted(BaseModel):
    """The answer to `POST /v1/events`."""

    id: str = Field(description="The event id.")
    status: Literal["applied", "duplicate"] = Field(
        description="'applied', or 'duplicate' when this event id was applied before."
    )


async def accept_event(event_id: str, applying: Awaitable[object]) -> Accepted:
    """The answer to `POST /v1/events`: applied once, a repeat is a duplicate, a domain refusal is a 409."""
    try:
        await applying
    except AlreadyApplied:
        return Accepted(id=event_id, status="duplicate")
    except Rejected as exc:
        raise Problem(409, "Event rejected", str(exc)) from exc
    return Accepted(id=event_id, status="applied")


async def record_once(
    response: Response,
    *,
    what: str,
    conflict: str,
    recording: Awaitable[tuple[T, bool]],
    existing_if_same: Callable[[], Awaitable[T | None]],
) -> T:
    """POST of a business fact: 201 when new, 200 when it is already there with this content, 409 otherwise.

    `recording` applies the fact and says whether it was new; `existing_if_same` gives the stored record
    when it has the posted content (asked when the Idempotency-Key was applied before).
    """
    try:
        value, new = await recording
    except AlreadyApplied:
        existing = await existing_if_same()
        if existing is None:
            raise Problem(
                409, "Idempotency-Key reused", f"this Idempotency-Key was used for a different {what}"
            ) from None
        response.status_code = status.HTTP_200_OK
        return existing
    except Rejected as exc:
        raise Problem(409, conflict, str(exc)) from exc
    if not new:
        response.status_code = status.HTTP_200_OK
    return value


async def keyset_page(
    collection: AsyncCollection[dict[str, Any]],
    query: dict[str, Any],
    *,
    time_field: str,
    limit: int,
    cursor: str | None,
    newest_first: bool,
    projection: Mapping[str, Any] | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page ordered by (time, _id), and the cursor of the next: stable while new documents keep arriving.

    A later page asks for the documents from the cursor's time on, as one more bound on the query's own filters
    (a flat filter, never `$and` or `$or`: the embedded database scans the whole collection for those, 434 ms
    against 1.5 ms on 16,000 timeline entries), and skips those of that time up to the cursor's id as it reads.
    A `projection` leaves out what the page does not show; it must keep `time_field`."""
    after = decode_cursor(cursor)
    direction = -1 if newest_first else 1
    if after is None:
        ordered = collection.find(query, projection).sort([(time_field, direction), ("_id", direction)])
        docs = await ordered.limit(limit + 1).to_list(limit + 1)
    else:
        at, last_id = cursor_time(after), cursor_id(after)
        bounded = _from_time(query, time_field, at, newest_first)
        ordered = (
            collection.find(bounded, projection)
            .sort([(time_field, direction), ("_id", direction)])
            .batch_size(limit + 2)
        )
        docs = []
        async for doc in ordered:
            if doc[time_field] == at and not _beyond(doc["_id"], last_id, newest_first):
                continue  # of the cursor's time and not after its id: on an earlier page
            docs.append(doc)
            if len(docs) > limit:
                break
    if len(docs) <= limit:
        return docs, None
    last = docs[limit - 1]
    return docs[:limit], encode_cursor({"at": last[time_field].isoformat(), "id": str(last["_id"])})


def _from_time(query: dict[str, Any], time_field: str, at: datetime, newest_first: bool) -> dict[str, Any]:
    """The query with the cursor's time as an inclusive bound on its time field, merged into a window the query
    already has (the cursor's time lies inside it: it came from a document the query found)."""
    bound = {"$lte" if newest_first else "$gte": at}
    own = query.get(time_field)
    if own is None:
        return {**query, time_field: bound}
    if isinstance(own, dict) and all(isinstance(k, str) and k.startswith("$") for k in own):
        return {**query, time_field: {**own, **bound}}
    return {"$and": [query, {time_field: bound}]}  # an exact time: nothing to merge into (rare)


def _beyond(doc_id: Any, last_id: str, newest_first: bool) -> bool:
    key = str(doc_id)
    return key < last_id if newest_first else key > last_id
