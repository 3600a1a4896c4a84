"""Which value of each field the survivor of a merge keeps, and what an unmerge gives back. Pure: no I/O.

A merge combines two stored customer documents. Each field has a survivorship rule:
- `survivor`: the survivor's value, always;
- `first_non_empty`: the survivor's value, else the merged customer's;
- `most_recent`: the value of the customer whose profile changed last (its last profile change, else its
  sign-up), else the other's when that one is empty;
- `oldest`: the value of the customer who signed up first, else the other's when that one is empty;
- `union`: lists joined without repeats (tags, addresses, personal events), maps joined with the survivor's
  value winning per key (external ids, attributes);
- `sum`: numbers added (a counter kept as a number attribute).
Attributes are resolved one by one (`attributes.<name>`), `first_non_empty` unless configured.
Consents are not configurable: per channel and purpose the newer fact wins by its own time, a refusal on a tie,
as for every consent change; so a refusal given later on either profile is never lost to a merge. The sign-up
time is the older one.

An unmerge gives the survivor back its own value for each field the merge changed, unless the field changed
again since the merge (then the newer value stays with the survivor), and restores the merged customer as it
was, with what arrived for it since.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, get_args

Rule = Literal["survivor", "first_non_empty", "most_recent", "oldest", "union", "sum"]
RULES: tuple[Rule, ...] = get_args(Rule)

DEFAULT_RULES: Mapping[str, Rule] = {
    "name": "first_non_empty",
    "email": "first_non_empty",
    "phone": "first_non_empty",
    "preferred_channel": "most_recent",
    "tags": "union",
    "industry": "first_non_empty",
    "company_type": "first_non_empty",
    "company_size": "first_non_empty",
    "addresses": "union",
    "birthday": "first_non_empty",
    "personal_events": "union",
    "external_ids": "union",
    "owner_id": "first_non_empty",
    "territory": "first_non_empty",
}
"""The configurable fields and their default rules; `attributes.<name>` configures one attribute."""
ATTRIBUTE_DEFAULT: Rule = "first_non_empty"
CONSENTS = (("consents", "consents_changed_at"), ("service_consents", "service_consents_changed_at"))


class RulesRefused(ValueError):
    """A survivorship setting names an unknown field or rule."""


@dataclass(frozen=True)
class Rules:
    fields: Mapping[str, Rule] = field(default_factory=lambda: dict(DEFAULT_RULES))
    attributes: Mapping[str, Rule] = field(default_factory=dict)

    def for_attribute(self, name: str) -> Rule:
        return self.attributes.get(name, ATTRIBUTE_DEFAULT)

    @classmethod
    def parse(cls, text: str) -> Rules:
        """`field=rule` pairs separated by commas, e.g. `name=most_recent,attributes.points=sum`; the fields not
        named keep their default rule."""
        fields: dict[str, Rule] = dict(DEFAULT_RULES)
        attributes: dict[str, Rule] = {}
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            name, _, rule = (s.strip() for s in item.partition("="))
            if rule not in RULES:
                raise RulesRefused(f"unknown survivorship rule {rule!r} for {name!r}; the rules are {', '.join(RULES)}")
            if name.startswith("attributes.") and len(name) > len("attributes."):
                attributes[name.removeprefix("attributes.")] = rule
            elif name in fields:
                fields[name] = rule
            else:
                raise RulesRefused(
                    f"no survivorship for {name!r}: the fields are {', '.join(DEFAULT_RULES)} and attributes.<name>"
                )
        return cls(fields, attributes)


DEFAULTS = Rules()


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _changed_at(doc: Mapping[str, Any]) -> datetime:
    return doc.get("profile_updated_at") or doc["registered_at"]  # type: ignore[no-any-return]


def _union(mine: Any, theirs: Any) -> Any:
    if isinstance(mine, Mapping) or isinstance(theirs, Mapping):
        return {**dict(theirs or {}), **dict(mine or {})}
    joined = list(mine or [])
    joined += [v for v in theirs or [] if v not in joined]
    return joined


def _sum(mine: Any, theirs: Any) -> Any:
    numbers = [v for v in (mine, theirs) if isinstance(v, int | float) and not isinstance(v, bool)]
    if len(numbers) == 2:
        return numbers[0] + numbers[1]
    return mine if not _empty(mine) else theirs


def pick(rule: Rule, survivor: Mapping[str, Any], merged: Mapping[str, Any], mine: Any, theirs: Any) -> Any:
    """The value `rule` keeps of the survivor's (`mine`) and the merged customer's (`theirs`)."""
    if rule == "survivor":
        return mine
    if rule == "union":
        return _union(mine, theirs)
    if rule == "sum":
        return _sum(mine, theirs)
    if _empty(theirs):
        return mine
    if _empty(mine):
        return theirs
    if rule == "first_non_empty":
        return mine
    if rule == "most_recent":
        return theirs if _changed_at(merged) > _changed_at(survivor) else mine
    return theirs if merged["registered_at"] < survivor["registered_at"] else mine  # oldest


def _consents(
    survivor: Mapping[str, Any], merged: Mapping[str, Any], values: str, times: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    mine, theirs = dict(survivor.get(values) or {}), dict(merged.get(values) or {})
    my_times, their_times = dict(survivor.get(times) or {}), dict(merged.get(times) or {})
    consents, changed_at = dict(mine), dict(my_times)
    for channel, granted in theirs.items():
        theirs_at = their_times.get(channel, merged["registered_at"])
        if channel not in mine:
            consents[channel], changed_at[channel] = granted, theirs_at
            continue
        mine_at = my_times.get(channel, survivor["registered_at"])
        # The newer fact wins; at the same time a refusal does.
        if (theirs_at, not granted) > (mine_at, not mine[channel]):
            consents[channel], changed_at[channel] = granted, theirs_at
    return consents, changed_at


@dataclass(frozen=True)
class Merged:
    """The survivor's fields after the merge (`fields`: to `$set`), and the names of those that changed."""

    fields: dict[str, Any]
    changed: list[str]


def merge(survivor: Mapping[str, Any], merged: Mapping[str, Any], rules: Rules = DEFAULTS) -> Merged:
    """The survivor's document fields after merging `merged` into it (stored documents, as the repository keeps
    them); the search keys are derived by the caller from the result."""
    after: dict[str, Any] = {}
    for name, rule in rules.fields.items():
        after[name] = pick(rule, survivor, merged, survivor.get(name), merged.get(name))
    attributes = dict(survivor.get("attributes") or {})
    for name, value in (merged.get("attributes") or {}).items():
        attributes[name] = pick(rules.for_attribute(name), survivor, merged, attributes.get(name), value)
    after["attributes"] = attributes
    for values, times in CONSENTS:
        after[values], after[times] = _consents(survivor, merged, values, times)
    preferred = after.get("preferred_channel")
    if preferred is not None and not after["consents"].get(preferred):
        # The preferred channel is always a granted one.
        after["preferred_channel"] = next(
            (
                c
                for c in (survivor.get("preferred_channel"), merged.get("preferred_channel"))
                if c and after["consents"].get(c)
            ),
            None,
        )
    after["registered_at"] = min(survivor["registered_at"], merged["registered_at"])
    changed = sorted(name for name, value in after.items() if not _same(value, survivor.get(name)))
    return Merged({name: after[name] for name in changed}, changed)


def _same(a: Any, b: Any) -> bool:
    """Equal, counting a missing value, an empty list and an empty map as one."""
    return (_empty(a) and _empty(b)) or a == b


def unmerge(
    before: Mapping[str, Any], after_merge: Mapping[str, Any], now: Mapping[str, Any], at: datetime
) -> dict[str, Any]:
    """The survivor's fields to `$set` on an unmerge at `at`: for each field the merge changed (`after_merge`
    differs from `before`), its value before the merge, unless it changed again since (`now` differs from
    `after_merge`). A consent goes back per channel on the same condition, as a fact of `at` (so every service
    holding the newer one takes it); a channel the survivor had no answer for before is refused, never left
    granted by the other customer's consent."""
    restored: dict[str, Any] = {}
    consent_fields = {name for pair in CONSENTS for name in pair}
    for name in set(after_merge) | set(before):
        if name in consent_fields or name == "_id":
            continue
        was, merged_value, current = before.get(name), after_merge.get(name), now.get(name)
        if not _same(merged_value, was) and _same(current, merged_value):
            restored[name] = was
    for values, times in CONSENTS:
        consents, changed_at = dict(now.get(values) or {}), dict(now.get(times) or {})
        was = dict(before.get(values) or {})
        merged_values, merged_at = dict(after_merge.get(values) or {}), dict(after_merge.get(times) or {})
        touched = False
        for channel, merged_value in merged_values.items():
            untouched_since = (consents.get(channel), changed_at.get(channel)) == (merged_value, merged_at.get(channel))
            if untouched_since and merged_value != was.get(channel, False):
                consents[channel], changed_at[channel] = was.get(channel, False), at
                touched = True
        if touched:
            restored[values], restored[times] = consents, changed_at
    if "preferred_channel" not in restored and restored.get("consents") is not None:
        preferred = now.get("preferred_channel")
        if preferred is not None and not restored["consents"].get(preferred):
            restored["preferred_channel"] = (
                before.get("preferred_channel")
                if restored["consents"].get(before.get("preferred_channel") or "")
                else None
            )
    return restored
