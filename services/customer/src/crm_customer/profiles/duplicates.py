"""Duplicate candidates: which other customers may be the same person or organisation, and the evidence. Pure
scoring here; the API finds the candidates through the search keys (an index lookup per rule, never a scan).

Rules, in order of strength:
- **strong**: the same normalised email, the same phone (digits, international prefix kept), or the same external
  id of a channel system. These are the identifiers that would merge automatically once merges exist.
- **proposed**: a name at least `name_threshold` similar (rapidfuzz's token-sort ratio on folded names, so word
  order, case and accents do not count) together with a shared postcode, city or organisation (an account both are
  contacts of). A person confirms or rejects these.

Only customers of the same kind are compared, and an erased profile has nothing left to match on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rapidfuzz import fuzz

from crm_customer.profiles.domain import folded, words

DEFAULT_NAME_THRESHOLD = 85.0
BLOCK_PREFIX = 3
"""The name words' first letters a fuzzy candidate must share with the customer to be compared at all."""


@dataclass(frozen=True)
class Candidate:
    customer_id: str
    strength: Literal["strong", "proposed"]
    score: float
    """0-100: 100 for a strong identifier, else the name similarity."""
    evidence: tuple[str, ...]


def blocking_keys(name: str | None) -> list[str]:
    """The stored name prefixes a candidate must share: the first letters of each word of the name."""
    return sorted({w[:BLOCK_PREFIX] for w in words(name or "") if len(w) >= 2})


def _places(doc: Mapping[str, Any]) -> tuple[set[str], set[str]]:
    postcodes = {folded(a["postcode"]).replace(" ", "") for a in doc.get("addresses") or () if a.get("postcode")}
    cities = {folded(a["city"]) for a in doc.get("addresses") or () if a.get("city")}
    return postcodes, cities


def candidates(
    subject: Mapping[str, Any],
    others: Iterable[Mapping[str, Any]],
    accounts: Mapping[str, set[str]],
    name_threshold: float = DEFAULT_NAME_THRESHOLD,
) -> list[Candidate]:
    """The candidates among `others` (customer documents) for the `subject` document, strongest first; `accounts`
    maps customer ids to the organisations they are contacts of."""
    found: list[Candidate] = []
    postcodes, cities = _places(subject)
    name = subject.get("name")
    for other in others:
        if other["_id"] == subject["_id"] or other.get("kind", "person") != subject.get("kind", "person"):
            continue
        strong = []
        if subject.get("search_email") and other.get("search_email") == subject["search_email"]:
            strong.append("the same email")
        if subject.get("search_phone") and other.get("search_phone") == subject["search_phone"]:
            strong.append("the same phone")
        shared_ids = sorted(set(subject.get("search_external") or ()) & set(other.get("search_external") or ()))
        strong += [f"the same external id {key}" for key in shared_ids]
        if strong:
            found.append(Candidate(other["_id"], "strong", 100.0, tuple(strong)))
            continue
        if not name or not other.get("name"):
            continue
        similarity = round(float(fuzz.token_sort_ratio(" ".join(words(name)), " ".join(words(other["name"])))), 1)
        if similarity < name_threshold:
            continue
        other_postcodes, other_cities = _places(other)
        shared_accounts = sorted(accounts.get(subject["_id"], set()) & accounts.get(other["_id"], set()))
        places = (
            [f"the same postcode {p.upper()}" for p in sorted(postcodes & other_postcodes)]
            + [f"the same city {c}" for c in sorted(cities & other_cities)]
            + [f"contacts of the same organisation {a}" for a in shared_accounts]
        )
        if places:
            found.append(Candidate(other["_id"], "proposed", similarity, (f"names {similarity:g}% alike", *places)))
    return sorted(found, key=lambda c: (c.strength != "strong", -c.score, c.customer_id))


def strong_queries(subject: Mapping[str, Any]) -> Sequence[dict[str, Any]]:
    """One indexed query per strong identifier the subject has."""
    queries: list[dict[str, Any]] = []
    for field in ("search_email", "search_phone"):
        if subject.get(field):
            queries.append({field: subject[field]})
    for key in subject.get("search_external") or ():
        queries.append({"search_external": key})
    return queries
