"""Profiles beyond sign-up, pure: typed attributes refuse what does not fit their declaration, a change names
what it changed, an erasure keeps only what is not personal, and name search keys need no regular expression."""

from __future__ import annotations

from datetime import date

import pytest

from crm_customer.profiles.attributes import AttributeDefinition, AttributeInvalid, check_values, public_value
from crm_customer.profiles.domain import (
    Address,
    Extras,
    ProfileChange,
    ProfileRefused,
    change_profile,
    erased,
    name_prefixes,
    query_prefixes,
    roles_of,
)

DEFS = {
    d.name: d
    for d in (
        AttributeDefinition("loyalty_card", "enum", "Loyalty card", enum_values=("none", "silver", "gold")),
        AttributeDefinition("employees", "number", "Employees", applies_to="organisation"),
        AttributeDefinition("credit_limit", "money", "Credit limit"),
        AttributeDefinition("member_since", "date", "Member since"),
        AttributeDefinition("newsletter", "boolean", "Newsletter"),
        AttributeDefinition("shoe_size", "string", "Shoe size", applies_to="person", personal=True),
    )
}


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("loyalty_card", "platinum", "'platinum' is not one of none, silver, gold"),
        ("employees", "12", "expected a finite number, got str"),
        ("employees", float("nan"), "expected a finite number"),
        ("employees", True, "expected a finite number, got bool"),
        ("credit_limit", 12.5, 'expected {"amount": "12.50", "currency": "EUR"}'),
        ("credit_limit", {"amount": 12.5, "currency": "EUR"}, "decimal string"),
        ("credit_limit", {"amount": "1.23456", "currency": "EUR"}, "at most 4 decimals"),
        ("credit_limit", {"amount": "10", "currency": "euro"}, "ISO 4217"),
        ("member_since", "2026-02-30", "is not a date"),
        ("member_since", "3 May 2026", "is not a date YYYY-MM-DD"),
        ("member_since", "2026-5-3", "expected a date YYYY-MM-DD"),
        ("newsletter", "yes", "expected true or false, got str"),
    ],
)
def test_a_value_that_does_not_fit_its_declaration_is_refused_with_the_reason(
    name: str, value: object, message: str
) -> None:
    with pytest.raises(AttributeInvalid, match=None) as refused:
        check_values(DEFS, "organisation", {name: value})
    assert message in str(refused.value) and name in str(refused.value)


def test_values_are_stored_in_a_form_the_database_compares_correctly() -> None:
    stored = check_values(
        DEFS,
        "person",
        {
            "loyalty_card": "gold",
            "credit_limit": {"amount": "1500.50", "currency": "EUR"},
            "member_since": "2020-01-31",
            "newsletter": False,
            "shoe_size": None,
        },
    )
    assert stored == {
        "loyalty_card": "gold",
        "credit_limit": {"amount": "1500.50", "currency": "EUR", "value": 1500.5},
        "member_since": "2020-01-31",
        "newsletter": False,
        "shoe_size": None,
    }
    assert public_value(stored["credit_limit"]) == {"amount": "1500.50", "currency": "EUR"}
    assert check_values(DEFS, "organisation", {"employees": 12}) == {"employees": 12.0}


def test_undeclared_attributes_and_those_of_the_other_kind_are_refused() -> None:
    with pytest.raises(AttributeInvalid, match="no attribute 'colour' is declared"):
        check_values(DEFS, "person", {"colour": "red"})
    with pytest.raises(AttributeInvalid, match="applies to organisation customers, not to a person"):
        check_values(DEFS, "person", {"employees": 3})
    with pytest.raises(AttributeInvalid, match="needs its values"):
        AttributeDefinition("tier", "enum", "Tier")
    with pytest.raises(AttributeInvalid, match="lower-case letters"):
        AttributeDefinition("Bad Name", "string", "Bad")


def test_a_change_names_only_what_it_changed_and_the_same_change_again_is_none() -> None:
    change = ProfileChange(
        sent=frozenset({"tags", "attributes", "external_ids"}),
        tags=("vip", "espresso", "vip"),
        attributes={"loyalty_card": "gold"},
        external_ids={"webshop": "W-1"},
    )
    after, changed = change_profile(Extras(), "person", change, DEFS)
    assert (after.tags, dict(after.attributes), dict(after.external_ids)) == (
        ("espresso", "vip"),
        {"loyalty_card": "gold"},
        {"webshop": "W-1"},
    )
    assert changed == ["attributes", "external_ids", "tags"]
    assert change_profile(after, "person", change, DEFS) == (after, [])
    removed, changed = change_profile(
        after, "person", ProfileChange(sent=frozenset({"attributes"}), attributes={"loyalty_card": None}), DEFS
    )
    assert (dict(removed.attributes), changed) == ({}, ["attributes"])


def test_company_facts_are_an_organisations_and_a_birthday_a_persons() -> None:
    with pytest.raises(ProfileRefused, match="a person has no company_size, industry"):
        change_profile(
            Extras(), "person", ProfileChange(sent=frozenset({"industry", "company_size"}), industry="x"), DEFS
        )
    with pytest.raises(ProfileRefused, match="an organisation has no birthday"):
        change_profile(
            Extras(), "organisation", ProfileChange(sent=frozenset({"birthday"}), birthday=date(1990, 1, 1)), DEFS
        )


def test_an_erasure_keeps_only_what_is_not_personal() -> None:
    extras = Extras(
        tags=("vip",),
        addresses=(Address("home", city="Leeds"),),
        birthday=date(1990, 5, 1),
        external_ids={"webshop": "W-1"},
        attributes={"loyalty_card": "gold", "shoe_size": "42", "retired": "x"},
    )
    kept = erased(extras, DEFS)
    assert kept == Extras(tags=("vip",), attributes={"loyalty_card": "gold"})


def test_name_search_keys_are_word_prefixes_without_accents_or_case() -> None:
    keys = name_prefixes("Zoë O'Brien-Smith")
    expected = {"zo", "zoe", "o", "br", "bri", "brie", "brien", "ob", "obr", "obri", "obrie", "obrien"}
    assert keys == sorted(expected | {"sm", "smi", "smit", "smith"})
    assert query_prefixes("  ZOË   smi ") == ["smi", "zoe"]
    assert set(query_prefixes("zoe smi")) <= set(keys)
    assert name_prefixes(None) == []
    assert query_prefixes("(.*)") == []


def test_contact_roles_are_known_ones_in_a_fixed_order() -> None:
    assert roles_of(["technical_contact", "buyer"]) == ("buyer", "technical_contact")
    with pytest.raises(ProfileRefused, match="unknown roles boss"):
        roles_of(["boss"])
