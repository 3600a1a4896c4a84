"""What a profile holds beyond sign-up, and how it changes. Pure: no I/O, no framework.

A customer is a person or an organisation (an account). Both have tags, an owner, external ids (the customer's id
in a channel system: `webshop` → `W-123`) and custom attributes of declared types. An organisation has its
industry, company type and size; a person their birthday and personal events (an anniversary, a graduation). Both
have addresses.

A change names only what it changes; a field sent as null removes it. A change that leaves everything as it was is
no change. Addresses, birthday, personal events, external ids and personal attributes are personal data: they are
never published, and an erasure removes them. Search keys (name prefixes, the normalised email and phone) are
derived from the profile, so an erasure removes them too.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, Literal, get_args

from crm_customer.profiles.attributes import AttributeDefinition, check_values

Kind = Literal["person", "organisation"]
CompanySize = Literal["1-9", "10-49", "50-249", "250-999", "1000+"]
COMPANY_SIZES: tuple[CompanySize, ...] = get_args(CompanySize)
ContactRole = Literal["buyer", "decision_maker", "technical_contact", "billing", "user"]
CONTACT_ROLES: tuple[ContactRole, ...] = get_args(ContactRole)
ORGANISATION_ONLY = ("industry", "company_type", "company_size")
PERSON_ONLY = ("birthday", "personal_events")
CONTACT_DETAILS = ("name", "email", "phone")
"""Changed by a profile change too, but held in the sign-up's details (crm_customer.domain.Details)."""
PERSONAL_EXTRAS = ("addresses", "birthday", "personal_events", "external_ids")
"""Personal data of the extras: removed by an erasure, never published."""
MIN_PREFIX, MAX_PREFIX = 2, 20


class ProfileRefused(ValueError):
    """A change the profile does not allow (a field of the other kind, an undeclared attribute, a bad value)."""


@dataclass(frozen=True)
class Address:
    kind: str
    line1: str | None = None
    line2: str | None = None
    postcode: str | None = None
    city: str | None = None
    region: str | None = None
    country: str | None = None
    """ISO 3166-1 alpha-2."""


@dataclass(frozen=True)
class PersonalEvent:
    kind: str
    on: date
    label: str | None = None


@dataclass(frozen=True)
class Extras:
    tags: tuple[str, ...] = ()
    industry: str | None = None
    company_type: str | None = None
    company_size: CompanySize | None = None
    addresses: tuple[Address, ...] = ()
    birthday: date | None = None
    personal_events: tuple[PersonalEvent, ...] = ()
    external_ids: Mapping[str, str] = field(default_factory=dict)
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProfileChange:
    """The fields to change (`sent`); their values in the other fields, None meaning remove. `attributes` and
    `external_ids` change per key (a key with None removes that one)."""

    sent: frozenset[str]
    tags: tuple[str, ...] = ()
    industry: str | None = None
    company_type: str | None = None
    company_size: CompanySize | None = None
    addresses: tuple[Address, ...] = ()
    birthday: date | None = None
    personal_events: tuple[PersonalEvent, ...] = ()
    external_ids: Mapping[str, str | None] = field(default_factory=dict)
    attributes: Mapping[str, Any] = field(default_factory=dict)
    contact: Mapping[str, str | None] = field(default_factory=dict)
    """New name, email or phone (None removes one), by field, for those in `sent`."""


def _merged(current: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(current)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def change_profile(
    extras: Extras, kind: Kind, change: ProfileChange, definitions: Mapping[str, AttributeDefinition]
) -> tuple[Extras, list[str]]:
    """The extras after the change and the names of the fields that changed (empty: no change). Raises
    ProfileRefused for a field of the other kind of customer or an attribute value its declaration refuses."""
    other = ORGANISATION_ONLY if kind == "person" else PERSON_ONLY
    wrong = sorted(set(other) & change.sent)
    if wrong:
        article = "an" if kind == "organisation" else "a"
        raise ProfileRefused(f"{article} {kind} has no {', '.join(wrong)}")
    try:
        attributes = check_values(definitions, kind, change.attributes)
    except ValueError as exc:
        raise ProfileRefused(str(exc)) from exc
    after = extras
    for name in change.sent - {"attributes", "external_ids", *CONTACT_DETAILS}:
        value = getattr(change, name)
        if name == "tags":
            value = tuple(sorted(set(value)))
        after = replace(after, **{name: value})
    if "external_ids" in change.sent:
        after = replace(after, external_ids=_merged(extras.external_ids, change.external_ids))
    if "attributes" in change.sent:
        after = replace(after, attributes=_merged(extras.attributes, attributes))
    changed = [
        name for name in sorted(change.sent - set(CONTACT_DETAILS)) if getattr(after, name) != getattr(extras, name)
    ]
    return after, changed


def erased(extras: Extras, definitions: Mapping[str, AttributeDefinition]) -> Extras:
    """The extras without personal data: addresses, birthday, personal events, external ids and the attributes
    declared personal (an attribute whose declaration is gone is removed too: nobody can say it is not personal)."""
    kept = {
        name: value
        for name, value in extras.attributes.items()
        if name in definitions and not definitions[name].personal
    }
    return replace(extras, addresses=(), birthday=None, personal_events=(), external_ids={}, attributes=kept)


def folded(text: str) -> str:
    """Lower case without accents, for matching what a person types against what is stored."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


APOSTROPHES = str.maketrans("", "", "'\u2019")


def words(text: str, *, join_apostrophes: bool = True) -> list[str]:
    """The words of a text, folded; an apostrophe joins (O'Brien is obrien) unless told otherwise."""
    text = folded(text)
    if join_apostrophes:
        text = text.translate(APOSTROPHES)
    return [w for w in "".join(c if c.isalnum() else " " for c in text).split() if w]


def name_prefixes(name: str | None) -> list[str]:
    """Every prefix (2 to 20 characters) of every word of the name, O'Brien both as obrien and as o and brien: a
    search for "ada lov" finds "Ada Lovelace" by exact matches on an index, with no regular expression built from
    what a user typed."""
    if not name:
        return []
    tokens = set(words(name)) | set(words(name, join_apostrophes=False))
    prefixes = {w[:n] for w in tokens for n in range(MIN_PREFIX, min(len(w), MAX_PREFIX) + 1)}
    prefixes |= {w for w in tokens if len(w) < MIN_PREFIX}
    return sorted(prefixes)


def query_prefixes(query: str) -> list[str]:
    """What a name search looks up: each word of the query, cut to the longest prefix stored."""
    return sorted({w[:MAX_PREFIX] for w in words(query)})


def external_keys(external_ids: Mapping[str, str]) -> list[str]:
    return sorted(f"{system}:{value}" for system, value in external_ids.items())


def roles_of(roles: Iterable[str]) -> tuple[ContactRole, ...]:
    unknown = sorted(set(roles) - set(CONTACT_ROLES))
    if unknown:
        raise ProfileRefused(f"unknown roles {', '.join(unknown)}; the roles are {', '.join(CONTACT_ROLES)}")
    return tuple(r for r in CONTACT_ROLES if r in set(roles))
