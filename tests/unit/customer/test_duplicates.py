"""Duplicate candidates, pure: a strong identifier makes a strong candidate; alike names are proposed only with a
shared place or organisation; other kinds and erased profiles are never compared."""

from __future__ import annotations

from typing import Any

from crm_customer.profiles.duplicates import blocking_keys, candidates, strong_queries


def doc(customer_id: str, name: str | None, **more: Any) -> dict[str, Any]:
    return {"_id": customer_id, "name": name, "kind": "person", **more}


SUBJECT = doc(
    "C-1",
    "Ada Lovelace",
    search_email="ada@example.com",
    search_phone="+442079460001",
    search_external=["webshop:W-1"],
    addresses=[{"postcode": "LS1 4AB", "city": "Leeds"}],
)


def test_strong_identifiers_make_strong_candidates_with_what_matched() -> None:
    others = [
        doc("C-2", "A. Lovelace", search_email="ada@example.com"),
        doc("C-3", "Someone Else", search_phone="+442079460001", search_external=["webshop:W-1"]),
    ]
    found = candidates(SUBJECT, others, {})
    assert [(c.customer_id, c.strength, c.score, c.evidence) for c in found] == [
        ("C-2", "strong", 100.0, ("the same email",)),
        ("C-3", "strong", 100.0, ("the same phone", "the same external id webshop:W-1")),
    ]


def test_alike_names_are_proposed_only_with_a_shared_place_or_organisation() -> None:
    others = [
        doc("C-4", "Lovelace, Ada", addresses=[{"postcode": "ls14ab"}]),  # word order and spacing aside
        doc("C-5", "Ada Lovelace", addresses=[{"city": "York"}]),  # alike, but nothing shared
        doc("C-6", "Adah Lovelace"),  # alike and contacts of one organisation
        doc("C-7", "Bob Lovelace", addresses=[{"city": "Leeds"}]),  # shared city, names not alike enough
        {**doc("ORG-1", "Ada Lovelace"), "kind": "organisation"},  # another kind
        doc("C-8", None, search_email=None),  # erased
    ]
    found = candidates(SUBJECT, others, {"C-1": {"ORG-9"}, "C-6": {"ORG-9"}})
    assert [(c.customer_id, c.strength) for c in found] == [("C-4", "proposed"), ("C-6", "proposed")]
    assert found[0].score == 100.0 and found[0].evidence == ("names 100% alike", "the same postcode LS14AB")
    assert found[1].evidence[1] == "contacts of the same organisation ORG-9"
    assert 85 <= found[1].score < 100
    assert candidates(SUBJECT, others, {"C-1": {"ORG-9"}, "C-6": {"ORG-9"}}, name_threshold=99) == [found[0]]


def test_lookups_are_one_indexed_query_per_identifier_and_a_name_block() -> None:
    assert strong_queries(SUBJECT) == [
        {"search_email": "ada@example.com"},
        {"search_phone": "+442079460001"},
        {"search_external": "webshop:W-1"},
    ]
    assert blocking_keys("Zoë O'Brien") == ["obr", "zoe"]
    assert blocking_keys(None) == []
