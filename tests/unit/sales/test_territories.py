"""Assignment rules as data: which territory takes a lead, and which of its reps gets it."""

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from crm_sales.territories.domain import (
    NO_TERRITORY,
    LeadProfile,
    Rep,
    Territory,
    assign_all,
    matching_territory,
    pick_rep,
)

ANY_LEAD = LeadProfile(region=None, industry=None, company_size=None)


def territory(strategy: str = "round_robin", reps: tuple[Rep, ...] = (), **rules: object) -> Territory:
    return Territory(
        territory_id=str(rules.pop("territory_id", "t")),
        name="T",
        priority=int(rules.pop("priority", 0)),  # type: ignore[call-overload]
        strategy=strategy,  # type: ignore[arg-type]
        reps=reps,
        **rules,  # type: ignore[arg-type]
    )


def reps(n: int, capacity: int = 1_000) -> tuple[Rep, ...]:
    return tuple(Rep(f"rep-{i:02d}", capacity) for i in range(n))


def test_the_first_matching_territory_by_priority_takes_the_lead() -> None:
    rules = [
        territory(territory_id="catch-all", priority=100),
        territory(territory_id="north-big", priority=1, regions=frozenset({"North"}), size_min=500),
        territory(territory_id="north", priority=5, regions=frozenset({"north", "north-east"})),
        territory(territory_id="retail", priority=2, industries=frozenset({"retail"}), size_max=49),
    ]

    def taken(region: str | None, industry: str | None, size: int | None) -> str | None:
        found = matching_territory(rules, LeadProfile(region, industry, size))
        return found.territory_id if found else None

    assert taken(" NORTH ", None, 800) == "north-big"  # regions compare trimmed, case-insensitively
    assert taken("north", None, 499) == "north"
    assert taken("north", None, None) == "north"  # no size: not for a territory with size bounds
    assert taken("south", "Retail", 49) == "retail"
    assert taken("south", "retail", 50) == "catch-all"
    assert matching_territory(rules[1:], ANY_LEAD) is None


@given(st.integers(1, 8), st.integers(0, 5), st.integers(0, 40))
def test_round_robin_cycles_evenly_from_its_cursor(n: int, cursor: int, leads: int) -> None:
    t = territory(reps=reps(n), cursor=cursor)
    done = assign_all([t], [ANY_LEAD] * leads, {})
    owners = [a.owner_id for a in done.assignments]
    expected = [f"rep-{(cursor + i) % n:02d}" for i in range(leads)]
    assert owners == expected
    counts = Counter(owners)
    assert max(counts.values(), default=0) - min((counts[r.user_id] for r in t.reps), default=0) <= 1
    # The cursor moved past the last rep who got a lead: the next batch goes on where this one stopped.
    assert done.cursors.get("t", t.cursor) % n == (cursor + leads) % n


@given(
    st.lists(st.tuples(st.integers(0, 6), st.integers(0, 10), st.booleans()), min_size=1, max_size=6),
    st.sampled_from(["round_robin", "least_busy"]),
    st.integers(0, 30),
)
def test_no_rep_gets_a_lead_when_skipped_or_at_capacity(
    setup: list[tuple[int, int, bool]], strategy: str, leads: int
) -> None:
    team = tuple(Rep(f"rep-{i}", capacity, skip) for i, (_, capacity, skip) in enumerate(setup))
    start = {f"rep-{i}": held for i, (held, _, _) in enumerate(setup)}
    done = assign_all([territory(strategy, team)], [ANY_LEAD] * leads, start)
    got = Counter(a.owner_id for a in done.assignments if a.owner_id)
    room = sum(max(0, r.capacity - start[r.user_id]) for r in team if not r.skip)
    assert sum(got.values()) == min(leads, room)  # every lead that fits is placed, none over capacity
    for rep in team:
        if rep.skip:
            assert got[rep.user_id] == 0
        assert done.open_leads[rep.user_id] == start[rep.user_id] + got[rep.user_id]
        assert got[rep.user_id] == 0 or done.open_leads[rep.user_id] <= rep.capacity
    for a in done.assignments:
        assert a.territory == "t"
        assert (a.owner_id is None) == (a.reason is not None)


@given(st.dictionaries(st.sampled_from([f"rep-{i:02d}" for i in range(6)]), st.integers(0, 20)), st.integers(0, 30))
def test_least_busy_gives_each_lead_to_the_least_loaded_rep(start: dict[str, int], leads: int) -> None:
    t = territory("least_busy", reps(6))
    counts = dict(start)
    for _ in range(leads):
        pick = pick_rep(t, counts)
        assert pick.owner_id is not None
        load = counts.get(pick.owner_id, 0)
        lighter = [r.user_id for r in t.reps if counts.get(r.user_id, 0) < load]
        assert not lighter
        tied = sorted(r.user_id for r in t.reps if counts.get(r.user_id, 0) == load)
        assert pick.owner_id == tied[0]  # ties go by user id
        counts[pick.owner_id] = load + 1
    # Leads level the load: from equal counts, no rep ends more than one above another.
    if not start:
        done = assign_all([t], [ANY_LEAD] * leads, {})
        assert max(done.open_leads.values(), default=0) - min(done.open_leads.get(r.user_id, 0) for r in t.reps) <= 1


def test_round_robin_passes_over_skipped_and_full_reps_keeping_the_turn() -> None:
    team = (Rep("ann", 5), Rep("bob", 5, skip=True), Rep("cat", 1), Rep("dan", 5))
    done = assign_all([territory(reps=team)], [ANY_LEAD] * 5, {"cat": 0})
    assert [a.owner_id for a in done.assignments] == ["ann", "cat", "dan", "ann", "dan"]


def test_without_an_available_rep_the_lead_gets_the_territory_and_the_reason() -> None:
    team = (Rep("ann", 2), Rep("bob", 5, skip=True))
    [full] = assign_all([territory("least_busy", team)], [ANY_LEAD], {"ann": 2}).assignments
    assert (full.territory, full.owner_id) == ("t", None)
    assert full.reason == "no rep of territory t is available (1 skipped, 1 at capacity)"
    [empty] = assign_all([territory()], [ANY_LEAD], {}).assignments
    assert (empty.territory, empty.owner_id, empty.reason) == ("t", None, "territory t has no reps")
    [none] = assign_all([territory(regions=frozenset({"north"}))], [ANY_LEAD], {}).assignments
    assert (none.territory, none.owner_id, none.reason) == (None, None, NO_TERRITORY)
