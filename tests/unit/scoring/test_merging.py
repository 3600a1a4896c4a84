"""Two customers' facts as one after a merge and back after an unmerge (crm_scoring.merging): nothing lost, each
customer given back its own, chains of merges undone one at a time."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from crm_scoring import domain, merging
from crm_scoring.domain import Complaint, CustomerFacts, Interaction, Placed, Referral, Refunded, Survey
from crm_scoring.merging import Attributed

T0 = datetime(2026, 11, 1, 9, tzinfo=UTC)
DEFAULT = domain.Thresholds()


def placed(order_id: str, total: str, days: float = 0) -> Placed:
    return Placed(order_id, Decimal(total), "EUR", T0 + timedelta(days=days))


def facts(customer_id: str, *facts: domain.Fact) -> CustomerFacts:
    return domain.record_all(CustomerFacts(customer_id), facts)


def test_a_merge_gives_the_union_of_the_facts_and_the_scores_of_both() -> None:
    a = facts("A", placed("O-a", "600.00"), Complaint("T-a", "low", "service", T0))
    b = facts("B", placed("O-b", "500.00", days=3), Interaction("I-b", "call", "phone", T0))
    combined = merging.combine(b, a)
    assert combined.customer_id == "B"
    assert merging.fact_keys(combined) == {"order:O-a", "order:O-b", "complaint:T-a", "interaction:I-b"}
    scores = domain.score(combined, combined.latest_at or T0, DEFAULT)
    assert (scores.frequency, scores.monetary, scores.value_tier) == (2, Decimal("1100.00"), "high_value")
    # Without contradictions the facts do not depend on which is the survivor.
    assert merging.combine(a, b) == replace(combined, customer_id="A")


def test_a_fact_both_knew_keeps_the_earliest_time_and_a_contradiction_keeps_the_survivors_whole() -> None:
    a = facts(
        "A",
        Complaint("T-1", "high", "people", T0),
        placed("O-1", "90.00"),
        Refunded("O-1", "r-a", Decimal("10.00"), T0 + timedelta(days=1)),
    )
    b = facts("B", Complaint("T-1", "high", "people", T0 + timedelta(days=2)), placed("O-1", "100.00"))
    combined = merging.combine(b, a)
    assert combined.complaints["T-1"].at == T0
    # Another total for the same order: the survivor's order stands, without the merged id's refund on it.
    assert combined.orders["O-1"] == b.orders["O-1"]
    # ...and the merged id's version is not lost: it is set aside, and given back by an unmerge.
    survivor = merging.merge(Attributed(b), Attributed(a))
    origin = survivor.origins["A"]
    assert origin.keys == {"complaint:T-1", "order:O-1"} and origin.moved == frozenset()
    assert origin.set_aside == a
    kept, restored = merging.unmerge(survivor, "A", ["A"])
    assert restored == Attributed(a) and kept.origins == {}
    assert kept.facts.orders == b.orders


def test_split_gives_back_the_keys_of_the_merged_id() -> None:
    a = facts("A", placed("O-a", "10.00"), Survey("S-a", "nps", 9, "product", T0))
    b = facts("B", placed("O-b", "20.00"), Referral("R-b", "C-9", T0))
    kept, given_back = merging.split(merging.combine(b, a), merging.fact_keys(a), "A")
    assert (kept, given_back) == (b, a)


def test_events_that_named_the_merged_id_since_go_back_to_it_and_others_stay() -> None:
    a = facts("A", placed("O-a", "10.00"))
    b = facts("B", placed("O-b", "20.00"))
    survivor = merging.merge(Attributed(b), Attributed(a))
    # A new order named A (filed under B), a refund of A's order named B, a complaint named B.
    after = domain.record(survivor.facts, placed("O-a2", "5.00", days=1))
    origins = merging.attribute(survivor.origins, survivor.facts, after, "A")
    refunded = domain.record(after, Refunded("O-a", "r-1", Decimal("1.00"), T0 + timedelta(days=2)))
    origins = merging.attribute(origins, after, refunded, "B")
    complained = domain.record(refunded, Complaint("T-b", "low", "service", T0 + timedelta(days=3)))
    origins = merging.attribute(origins, refunded, complained, "B")
    assert origins["A"].keys == {"order:O-a", "order:O-a2"} and set(origins) == {"A"}

    kept, restored = merging.unmerge(Attributed(complained, origins), "A", ["A"])
    assert set(restored.facts.orders) == {"O-a", "O-a2"} and restored.facts.orders["O-a"].refunded == Decimal("1.00")
    assert merging.fact_keys(kept.facts) == {"order:O-b", "complaint:T-b"} and kept.origins == {}


def test_a_chain_of_merges_is_undone_one_merge_at_a_time() -> None:
    a = facts("A", placed("O-a", "10.00"), Complaint("T-shared", "low", "service", T0))
    b = facts("B", placed("O-b", "20.00"), Complaint("T-shared", "low", "service", T0 + timedelta(hours=1)))
    c = facts("C", placed("O-c", "30.00"))
    b_with_a = merging.merge(Attributed(b), Attributed(a))
    c_with_both = merging.merge(Attributed(c), b_with_a)
    assert set(c_with_both.origins) == {"A", "B"}
    assert merging.fact_keys(c_with_both.facts) == {"order:O-a", "order:O-b", "order:O-c", "complaint:T-shared"}

    # Undoing B's merge gives B its facts and A's, A's still marked as A's.
    kept, restored_b = merging.unmerge(c_with_both, "B", ["B", "A"])
    assert kept == Attributed(c)
    assert merging.fact_keys(restored_b.facts) == merging.fact_keys(b_with_a.facts)
    assert restored_b.origins["A"].keys == b_with_a.origins["A"].keys
    assert restored_b.origins["A"].set_aside.complaints == a.complaints

    # Then A's: A and B get exactly their own facts.
    kept_b, restored_a = merging.unmerge(restored_b, "A", ["A"])
    assert restored_a == Attributed(a)
    assert merging.fact_keys(kept_b.facts) == merging.fact_keys(b) and kept_b.origins == {}


def test_a_key_three_customers_held_is_kept_when_the_one_holding_it_leaves() -> None:
    # A into C, then B into C, A and B with T-1: C's copy of it is A's, B's is set aside. When A leaves with its
    # copy, B's comes back among C's facts rather than staying a second copy of nothing.
    shared = Complaint("T-1", "medium", "product", T0)
    a, b = facts("A", shared), facts("B", shared, placed("O-b", "1.00"))
    c = facts("C", placed("O-c", "2.00"))
    c_with_a = merging.merge(Attributed(c), Attributed(a))
    assert c_with_a.origins["A"].moved == {"complaint:T-1"}
    c_with_both = merging.merge(c_with_a, Attributed(b))
    assert c_with_both.origins["B"].set_aside.complaints == {"T-1": shared}
    kept, restored_a = merging.unmerge(c_with_both, "A", ["A"])
    assert restored_a.facts.complaints == {"T-1": shared}
    assert kept.facts.complaints == {"T-1": shared}
    assert kept.origins["B"].moved == {"complaint:T-1", "order:O-b"}
    kept, restored_b = merging.unmerge(kept, "B", ["B"])
    assert restored_b == Attributed(b) and kept == Attributed(c)


# ---------------------------------------------------------------- properties


@st.composite
def customer_facts(draw: st.DrawFn, customer_id: str, ids: st.SearchStrategy[str]) -> CustomerFacts:
    def at() -> datetime:
        return T0 + timedelta(hours=draw(st.integers(0, 24 * 400)))

    # Few amounts, one currency mostly: the same order under two customers is then often the same order.
    money = st.sampled_from([Decimal("10.00"), Decimal("25.50"), Decimal("99.99")])
    pool: list[domain.Fact] = []
    for order_id in draw(st.lists(ids, max_size=4, unique=True)):
        pool.append(Placed(f"O-{order_id}", draw(money), draw(st.sampled_from(["EUR", "EUR", "USD"])), at()))
        if draw(st.booleans()):
            pool.append(Refunded(f"O-{order_id}", f"r-{customer_id}-{order_id}", draw(money), at()))
    for complaint_id in draw(st.lists(ids, max_size=3, unique=True)):
        severity = draw(st.sampled_from(["low", "medium", "high"]))
        pool.append(Complaint(f"T-{complaint_id}", severity, draw(st.sampled_from(domain.DIMENSIONS)), at()))
    for interaction_id in draw(st.lists(ids, max_size=2, unique=True)):
        pool.append(Interaction(f"I-{interaction_id}", "call", "phone", at()))
    known = CustomerFacts(customer_id)
    for fact in pool:
        try:
            known = domain.record(known, fact)
        except domain.FactRejected:
            continue
    return known


OWN_IDS = st.text("abcdefgh", min_size=1, max_size=3)
SHARED_IDS = st.sampled_from(["1", "2", "3"])


@settings(max_examples=200, deadline=None)
@given(
    a=customer_facts("A", OWN_IDS.map(lambda s: f"a{s}")),
    b=customer_facts("B", OWN_IDS.map(lambda s: f"b{s}")),
)
def test_a_merge_undone_gives_each_customer_its_own_facts(a: CustomerFacts, b: CustomerFacts) -> None:
    survivor = merging.merge(Attributed(b), Attributed(a))
    assert merging.fact_keys(survivor.facts) == merging.fact_keys(a) | merging.fact_keys(b)
    assert merging.unmerge(survivor, "A", ["A"]) == (Attributed(b), Attributed(a))


@settings(max_examples=200, deadline=None)
@given(a=customer_facts("A", SHARED_IDS), b=customer_facts("B", SHARED_IDS), c=customer_facts("C", SHARED_IDS))
def test_with_facts_under_the_same_keys_nothing_is_lost_and_each_gets_its_own_back(
    a: CustomerFacts, b: CustomerFacts, c: CustomerFacts
) -> None:
    b_with_a = merging.merge(Attributed(b), Attributed(a))
    c_with_both = merging.merge(Attributed(c), b_with_a)
    every_key = merging.fact_keys(a) | merging.fact_keys(b) | merging.fact_keys(c)
    assert merging.fact_keys(c_with_both.facts) == every_key

    kept_c, restored_b = merging.unmerge(c_with_both, "B", ["B", "A"])
    assert merging.fact_keys(kept_c.facts) == merging.fact_keys(c) and kept_c.origins == {}
    assert merging.fact_keys(restored_b.facts) == merging.fact_keys(a) | merging.fact_keys(b)
    kept_b, restored_a = merging.unmerge(restored_b, "A", ["A"])
    # The merged id gets its own versions back exactly; a survivor keeps its keys (in the merged version of those
    # both held, which may carry the earliest time of the two).
    assert restored_a.facts == a and restored_a.origins == {}
    assert merging.fact_keys(kept_b.facts) == merging.fact_keys(b) and kept_b.origins == {}
    assert kept_b.facts == merging.combine(b, merging.restrict(a, merging.fact_keys(b)))
