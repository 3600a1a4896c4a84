"""Two customers' facts as one after a merge, and back again after an unmerge. Pure: no I/O, no framework.

A fact is known by its key: `order:<order id>` (an order with its refunds, payments and cancellation goes as one,
as `order_owners` files it under one customer), `complaint:<id>`, `survey:<id>`, `interaction:<id>`,
`referral:<id>`. A merge gives the survivor the union of both customers' facts (`combine`) and remembers, per id
merged into it, which keys came from that id (`Origin`), including the keys events naming it have added since;
an unmerge takes those keys out again (`split`).

A key both customers held is kept by the survivor, in the survivor's version (with what the merged id knew of it
and does not contradict it); the merged id's own version is set aside in its Origin, so nothing is lost and an
unmerge gives each its own again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from crm_scoring.domain import Cancelled, CustomerFacts, Fact, FactRejected, OrderFacts, record_all

FactKey = str


def fact_keys(facts: CustomerFacts) -> frozenset[FactKey]:
    return frozenset(
        [f"order:{k}" for k in facts.orders]
        + [f"complaint:{k}" for k in facts.complaints]
        + [f"survey:{k}" for k in facts.surveys]
        + [f"interaction:{k}" for k in facts.interactions]
        + [f"referral:{k}" for k in facts.referrals]
    )


def _order_facts(order: OrderFacts) -> list[Fact]:
    """The facts an order was recorded from, in an order `record` accepts them in (the order first)."""
    facts: list[Fact] = [order.placed] if order.placed is not None else []
    facts += [order.refunds[k] for k in sorted(order.refunds)] + [order.payments[k] for k in sorted(order.payments)]
    if order.cancelled_at is not None:
        facts.append(Cancelled(order.order_id, order.cancelled_at))
    return facts


def units(facts: CustomerFacts) -> dict[FactKey, list[Fact]]:
    """The facts by key, each key's facts in the order they can be recorded in."""
    found: dict[FactKey, list[Fact]] = {f"order:{k}": _order_facts(o) for k, o in facts.orders.items()}
    found |= {f"complaint:{k}": [c] for k, c in facts.complaints.items()}
    found |= {f"survey:{k}": [s] for k, s in facts.surveys.items()}
    found |= {f"interaction:{k}": [i] for k, i in facts.interactions.items()}
    found |= {f"referral:{k}": [r] for k, r in facts.referrals.items()}
    return found


def restrict(facts: CustomerFacts, keys: Iterable[FactKey], customer_id: str | None = None) -> CustomerFacts:
    """Only the facts under `keys`, as facts of `customer_id` (by default the same customer)."""
    wanted = frozenset(keys)

    def kept(kind: str, key: str) -> bool:
        return f"{kind}:{key}" in wanted

    return CustomerFacts(
        customer_id=facts.customer_id if customer_id is None else customer_id,
        orders={k: v for k, v in facts.orders.items() if kept("order", k)},
        complaints={k: v for k, v in facts.complaints.items() if kept("complaint", k)},
        surveys={k: v for k, v in facts.surveys.items() if kept("survey", k)},
        interactions={k: v for k, v in facts.interactions.items() if kept("interaction", k)},
        referrals={k: v for k, v in facts.referrals.items() if kept("referral", k)},
    )


def without(facts: CustomerFacts, keys: Iterable[FactKey]) -> CustomerFacts:
    return restrict(facts, fact_keys(facts) - frozenset(keys))


def combine(survivor: CustomerFacts, merged: CustomerFacts) -> CustomerFacts:
    """The survivor's facts with the merged id's added: the union, each key merged as `domain.record` merges a fact
    known twice (the earliest time kept). A key whose facts contradict the survivor's (another total for the same
    order, refunds in another currency) keeps the survivor's facts under it, whole: the two are not mixed."""
    facts = survivor
    for _, unit in sorted(units(merged).items()):
        try:
            facts = record_all(facts, unit)
        except FactRejected:
            continue
    return facts


def split(
    facts: CustomerFacts, keys: Iterable[FactKey], merged_id: str, set_aside: CustomerFacts | None = None
) -> tuple[CustomerFacts, CustomerFacts]:
    """(what the survivor keeps, what goes back to `merged_id`): the keys of the merged id leave the survivor, but
    those it held too (`set_aside`: the merged id's own versions of them), which both keep."""
    aside = set_aside or CustomerFacts(merged_id)
    moved = frozenset(keys) - fact_keys(aside)
    given_back = combine(restrict(facts, moved, merged_id), replace(aside, customer_id=merged_id))
    return without(facts, moved), given_back


# ---------------------------------------------------------------- which facts came from which merged id


@dataclass(frozen=True)
class Origin:
    """The facts of a survivor that came from one merged id (directly, through an id merged into it since, or from
    events that named it after the merge): their keys, and the merged id's own versions of the keys the survivor
    held too (`set_aside`)."""

    customer_id: str
    keys: frozenset[FactKey]
    set_aside: CustomerFacts

    @property
    def moved(self) -> frozenset[FactKey]:
        """The keys an unmerge takes away from the survivor (it keeps those set aside)."""
        return self.keys - fact_keys(self.set_aside)


Origins = Mapping[str, Origin]


@dataclass(frozen=True)
class Attributed:
    """A customer's facts and which of them came from the ids merged into it."""

    facts: CustomerFacts
    origins: Origins = field(default_factory=dict)


def _add(origins: dict[str, Origin], origin: Origin) -> None:
    known = origins.get(origin.customer_id)
    if known is not None:
        origin = Origin(origin.customer_id, known.keys | origin.keys, combine(known.set_aside, origin.set_aside))
    if origin.keys:
        origins[origin.customer_id] = origin


def merge(survivor: Attributed, merged: Attributed) -> Attributed:
    """The survivor after `merged` was merged into it: the facts combined, and the origins of both plus one for the
    merged id (its own facts). A merge of a customer others were merged into keeps their origins apart (A into B,
    then B into C: C knows what came from A and from B), so each unmerge gives back only its own."""
    shared = fact_keys(survivor.facts) & fact_keys(merged.facts)
    origins = dict(survivor.origins)
    inherited: set[FactKey] = set()
    for origin_id in sorted(merged.origins):
        origin = merged.origins[origin_id]
        inherited |= origin.moved
        aside = combine(origin.set_aside, restrict(merged.facts, origin.moved & shared, origin_id))
        _add(origins, Origin(origin_id, origin.keys, aside))
    own = fact_keys(merged.facts) - inherited
    merged_id = merged.facts.customer_id
    _add(origins, Origin(merged_id, own, restrict(merged.facts, own & shared, merged_id)))
    return Attributed(combine(survivor.facts, merged.facts), origins)


def unmerge(survivor: Attributed, merged_id: str, origin_ids: Sequence[str]) -> tuple[Attributed, Attributed]:
    """(the survivor after, the merged id restored) when the merge of `merged_id` is undone: what came from it and
    from the ids merged into it before (`origin_ids`) goes back to it, each of those keeping its own origin there;
    the survivor keeps the rest, with the origins of the other ids merged into it."""
    ids = [merged_id, *sorted(set(origin_ids) - {merged_id})]
    back = [survivor.origins[i] for i in ids if i in survivor.origins]
    facts = CustomerFacts(merged_id)
    origins: dict[str, Origin] = {}
    moved: set[FactKey] = set()
    for origin in back:
        moved |= origin.moved
        _, part = split(survivor.facts, origin.keys, merged_id, origin.set_aside)
        if origin.customer_id != merged_id:
            held_too = fact_keys(part) & fact_keys(facts)
            _add(origins, Origin(origin.customer_id, origin.keys, restrict(part, held_too, origin.customer_id)))
        facts = combine(facts, part)
    rest = {i: o for i, o in survivor.origins.items() if i not in ids}
    kept = normalised(Attributed(without(survivor.facts, moved), rest))
    return kept, Attributed(facts, origins)


def normalised(held: Attributed) -> Attributed:
    """`held` with every set-aside version of a key the customer no longer holds back among its facts (the id that
    held the key too went away with it): a set-aside version is only ever a second copy."""
    facts = held.facts
    origins: dict[str, Origin] = {}
    for origin_id in sorted(held.origins):
        origin = held.origins[origin_id]
        missing = fact_keys(origin.set_aside) - fact_keys(facts)
        if missing:
            facts = combine(facts, restrict(origin.set_aside, missing, facts.customer_id))
            origin = replace(origin, set_aside=without(origin.set_aside, missing))
        _add(origins, replace(origin, keys=origin.keys & fact_keys(facts)))
    return Attributed(facts, origins)


def attribute(origins: Origins, before: CustomerFacts, after: CustomerFacts, origin_id: str) -> Origins:
    """The origins after an event that named `origin_id` (a merged id, the event filed under the survivor) took
    the facts from `before` to `after`: the keys it added are `origin_id`'s. A fact added under a key known
    before (a refund of an order) goes with that key."""
    if origin_id == after.customer_id:
        return origins
    added = fact_keys(after) - fact_keys(before)
    if not added:
        return origins
    updated = dict(origins)
    _add(updated, Origin(origin_id, added, CustomerFacts(origin_id)))
    return updated
