"""Accounts: the organisations sales sells to, and the customers (contacts) who work for them. Pure: no I/O.

An account has an owner and a territory, which decide who sees it (as for leads and opportunities); its contacts
are customer ids, each once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Account:
    account_id: str
    name: str
    created_at: datetime
    industry: str | None = None
    company_size: int | None = None
    region: str | None = None
    territory: str | None = None
    owner_id: str | None = None
    contacts: tuple[str, ...] = field(default_factory=tuple)

    def with_contact(self, customer_id: str) -> Account:
        """The account with `customer_id` among its contacts (once)."""
        if customer_id in self.contacts:
            return self
        return Account(**{**self.__dict__, "contacts": (*self.contacts, customer_id)})


_SPACES = re.compile(r"\s+")


def name_key(name: str) -> str:
    """What two spellings of one organisation's name share: case and runs of spaces do not count."""
    return _SPACES.sub(" ", name).strip().casefold()
