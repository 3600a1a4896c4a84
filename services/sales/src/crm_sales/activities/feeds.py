"""Secret calendar addresses: a calendar app that cannot send a credential subscribes to an owner's `.ics` feed
with `?token=` instead.

A token is `calfeed_<feed id>_<secret>`: 16 hex digits naming the address, then 43 base64url characters of
randomness. The `calendar_feeds` collection keeps one address per owner (`_id` the owner id), with the feed id
and the SHA-256 of the secret, never the secret itself; the token is shown once, when it is made. Making a new
address for the same owner replaces the old one (the old link stops working at once), and deleting it revokes it.
The token reads that one calendar and nothing else.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crm_shared.store import Store, as_stored

CALENDAR_FEEDS = "calendar_feeds"
PREFIX = "calfeed_"
TOKEN_PATTERN = re.compile(r"^calfeed_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class FeedAddress:
    owner_id: str
    feed_id: str
    created_at: datetime
    created_by: str


@dataclass(frozen=True)
class NewFeedAddress:
    address: FeedAddress
    token: str


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _address(doc: dict[str, Any]) -> FeedAddress:
    return FeedAddress(doc["_id"], doc["feed_id"], doc["created_at"], doc["created_by"])


async def make(store: Store, owner_id: str, *, at: datetime, by: str) -> NewFeedAddress:
    """A new secret address for the owner's calendar, replacing the one they had."""
    feed_id, secret, at = secrets.token_hex(8), secrets.token_urlsafe(32), as_stored(at)
    doc = {"feed_id": feed_id, "secret_sha256": _digest(secret), "created_at": at, "created_by": by}
    await store.db[CALENDAR_FEEDS].replace_one({"_id": owner_id}, doc, upsert=True)
    return NewFeedAddress(FeedAddress(owner_id, feed_id, at, by), f"{PREFIX}{feed_id}_{secret}")


async def find(store: Store, owner_id: str) -> FeedAddress | None:
    doc = await store.db[CALENDAR_FEEDS].find_one({"_id": owner_id}, {"secret_sha256": 0})
    return _address(doc) if doc else None


async def revoke(store: Store, owner_id: str) -> bool:
    """Whether there was an address to revoke."""
    return (await store.db[CALENDAR_FEEDS].delete_one({"_id": owner_id})).deleted_count == 1


class FeedRefused(Exception):
    """The token does not open this calendar (malformed, replaced, revoked, or another owner's)."""


async def verify(store: Store, owner_id: str, token: str) -> FeedAddress:
    """The address the token opens for this owner's calendar; FeedRefused when it opens none."""
    matched = TOKEN_PATTERN.match(token)
    if matched is None:
        raise FeedRefused("not a calendar feed token (calfeed_<feed id>_<secret>)")
    feed_id, secret = matched.groups()
    doc = await store.db[CALENDAR_FEEDS].find_one({"_id": owner_id})
    # The digest is compared even for a wrong feed id, so the answer takes as long either way.
    expected = doc["secret_sha256"] if doc else _digest("")
    if not hmac.compare_digest(_digest(secret), expected) or doc is None or doc["feed_id"] != feed_id:
        raise FeedRefused(f"this token does not open the calendar of {owner_id}: it is wrong, replaced or revoked")
    return _address(doc)
