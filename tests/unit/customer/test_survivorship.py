"""Survivorship of a merge and what an unmerge gives back, as pure functions on stored customer documents."""

from datetime import UTC, datetime, timedelta

import pytest

from crm_customer.identity import survivorship
from crm_customer.identity.survivorship import Rules, RulesRefused

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _doc(customer_id: str, registered: datetime, **fields: object) -> dict[str, object]:
    return {"_id": customer_id, "registered_at": registered, "consents": {}, "consents_changed_at": {}, **fields}


SURVIVOR = _doc(
    "S",
    T0,
    name="Ada Lovelace",
    email="ada@example.com",
    phone=None,
    tags=["b2b"],
    attributes={"points": 10},
    consents={"email": True},
    consents_changed_at={"email": T0 + timedelta(days=1)},
)
MERGED = _doc(
    "M",
    T0 + timedelta(days=5),
    name="Ada King",
    email="ada.king@example.com",
    phone="+44 20 1234",
    tags=["vip", "b2b"],
    attributes={"points": 5, "tier": "gold"},
    external_ids={"pos": "P-1"},
    consents={"email": False, "sms": True},
    consents_changed_at={"email": T0 + timedelta(days=6)},
)


def test_default_rules_keep_the_survivors_values_and_fill_the_gaps() -> None:
    result = survivorship.merge(SURVIVOR, MERGED)
    fields = {**SURVIVOR, **result.fields}
    assert fields["name"] == "Ada Lovelace" and fields["email"] == "ada@example.com"
    assert fields["phone"] == "+44 20 1234"  # first non-empty
    assert fields["tags"] == ["b2b", "vip"] and fields["external_ids"] == {"pos": "P-1"}
    assert fields["attributes"] == {"points": 10, "tier": "gold"}
    assert "name" not in result.changed and "phone" in result.changed


def test_the_newer_consent_fact_wins_whichever_profile_it_is_on() -> None:
    fields = {**SURVIVOR, **survivorship.merge(SURVIVOR, MERGED).fields}
    # The merged customer refused email after the survivor granted it: the refusal stays.
    assert fields["consents"] == {"email": False, "sms": True}
    older_refusal = {**MERGED, "consents_changed_at": {"email": T0}}
    assert {**SURVIVOR, **survivorship.merge(SURVIVOR, older_refusal).fields}["consents"]["email"] is True


def test_configured_rules_most_recent_oldest_and_sum() -> None:
    rules = Rules.parse("name=most_recent, email=oldest, attributes.points=sum")
    fields = {**SURVIVOR, **survivorship.merge(SURVIVOR, MERGED, rules).fields}
    assert fields["name"] == "Ada King"  # the merged one signed up later
    assert fields["email"] == "ada@example.com"  # the survivor signed up first
    assert fields["attributes"]["points"] == 15
    assert fields["registered_at"] == T0


@pytest.mark.parametrize("text", ["nickname=survivor", "name=loudest", "attributes.=sum"])
def test_unknown_fields_and_rules_are_refused(text: str) -> None:
    with pytest.raises(RulesRefused):
        Rules.parse(text)


def test_an_unmerge_gives_back_what_did_not_change_since_and_keeps_what_did() -> None:
    merged_fields = survivorship.merge(SURVIVOR, MERGED).fields
    after = {**SURVIVOR, **merged_fields}
    now = {**after, "tags": ["b2b", "vip", "new"]}  # tagged again since the merge
    at = T0 + timedelta(days=30)
    restored = survivorship.unmerge(SURVIVOR, after, now, at)
    assert restored["phone"] is None and restored["external_ids"] is None
    assert "tags" not in restored  # changed since: the newer value stays
    assert restored["consents"] == {"email": True, "sms": False}  # sms: never answered, so refused
    assert restored["consents_changed_at"]["email"] == at and restored["consents_changed_at"]["sms"] == at


def test_an_unmerge_of_a_merge_that_changed_nothing_changes_nothing() -> None:
    same = dict(SURVIVOR)
    after = {**SURVIVOR, **survivorship.merge(SURVIVOR, _doc("M", T0 + timedelta(days=1))).fields}
    assert survivorship.unmerge(same, after, after, T0 + timedelta(days=2)) == {}
