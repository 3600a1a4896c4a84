"""The oracle's own rules, on made-up data: they must catch what the fault tests look for."""

from __future__ import annotations

from decimal import Decimal

from faults.rig import one_path
from faults.stream import generate, redelivered, with_poison


def test_a_walk_of_crossings_ending_at_the_current_value_is_one_path() -> None:
    assert one_path([("prospect", "first_time_buyer"), ("first_time_buyer", "repeat")], "repeat")
    # In any order, and back and forth.
    assert one_path([("b", "c"), ("a", "b"), ("c", "b")], "b")
    assert one_path([("a", "b"), ("b", "a")], "a")


def test_a_crossing_published_twice_is_caught() -> None:
    assert not one_path([(None, "hibernating"), (None, "hibernating")], "hibernating")
    assert not one_path([("a", "b"), ("a", "b"), ("b", "c")], "c")
    # Ending elsewhere than the current value is caught too.
    assert not one_path([("a", "b")], "a")


def test_a_segment_that_vanishes_silently_may_be_entered_again() -> None:
    # rfm_segment: hibernating, gone with the last counted order (no crossing), then hibernating again.
    assert one_path([(None, "hibernating"), (None, "hibernating")], "hibernating", may_vanish=True)
    assert one_path([(None, "lost"), (None, "hibernating"), ("hibernating", "at_risk")], "at_risk", may_vanish=True)
    # But a value never left is not entered twice from the same value.
    assert not one_path([("a", "b"), ("c", "a")], "c", may_vanish=True)
    assert not one_path([("x", "a"), ("y", "b")], "b", may_vanish=True)


def test_the_expected_scores_follow_cancellations_and_refunds() -> None:
    stream = generate("T", 40, seed=3)
    for customer in stream.customers:
        orders = stream.orders_of(customer).values()
        assert stream.frequency(customer) == sum(1 for o in orders if not o.cancelled)
        assert stream.monetary(customer) == sum((o.total - o.refunded for o in orders if not o.cancelled), Decimal(0))
    assert any(o.cancelled for o in stream.orders.values())
    assert any(o.refunded for o in stream.orders.values())


def test_redelivery_sends_every_record_two_to_five_times() -> None:
    stream = generate("T", 20, seed=4)
    copies = redelivered(stream, seed=4)
    counts = {r.event_id: sum(1 for c in copies if c.event_id == r.event_id) for r in stream.records}
    assert min(counts.values()) >= 2 and max(counts.values()) <= 5
    assert {c.event_id for c in copies} == stream.event_ids


def test_the_poison_records_are_among_the_good_ones() -> None:
    stream = generate("T", 20, seed=5)
    records = with_poison(stream, seed=5)
    assert len(records) == len(stream.records) + len(stream.poison) == len(stream.records) + 6
    assert max(len(r.value) for r, _ in stream.poison) > 900_000
