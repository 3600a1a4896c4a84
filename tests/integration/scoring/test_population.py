"""The population job on the real database: the 80/20 tier and RFM applied to every customer, changes once."""

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx

from crm_scoring import handlers, repository
from crm_scoring.app import create_service
from crm_scoring.domain import Thresholds
from crm_scoring.settings import ScoringSettings
from crm_shared.events import (
    OrderCancelled,
    OrderCancelledEvent,
    OrderPlaced,
    OrderPlacedEvent,
    SurveyAnswered,
    SurveyAnsweredEvent,
)
from crm_shared.store import Store, outbox_records

from helpers import ADMIN_HEADERS

NewStore = Callable[..., Awaitable[Store]]
T0 = datetime(2026, 9, 1, 10, tzinfo=UTC)
THRESHOLDS = Thresholds()


def order(customer: str, order_id: str, total: str, at: datetime) -> OrderPlacedEvent:
    data = OrderPlaced(customer_id=customer, order_id=order_id, currency="EUR", total=Decimal(total))
    return OrderPlacedEvent.create(data, source="/channels/web", time=at)


async def seed(store: Store, top: int = 5, rest: int = 20) -> tuple[list[str], list[str]]:
    """`top` customers of 900.00 (low value under the fixed 1000 threshold) and `rest` of 50.00."""
    prefix = uuid.uuid4().hex[:6]
    tops = [f"C-{prefix}-top-{i}" for i in range(top)]
    others = [f"C-{prefix}-low-{i}" for i in range(rest)]
    for i, customer in enumerate([*tops, *others]):
        total = "900.00" if customer in tops else "50.00"
        await handlers.apply_event(store, order(customer, f"O-{customer}", total, T0 + timedelta(hours=i)), THRESHOLDS)
    return tops, others


async def test_the_refresh_makes_the_top_spenders_high_value_once(new_store: NewStore) -> None:
    store = await new_store("scoring_pop", repository.INDEXES)
    tops, others = await seed(store)
    now = datetime.now(UTC)

    first = await handlers.refresh_population(store, THRESHOLDS, now)

    pop = first.population
    # 5 x 900 + 20 x 50 = 5500; 80% is 4400, reached by the five 900s.
    assert (pop.customers, pop.in_force, pop.high_value_monetary) == (25, True, Decimal("900.00"))
    assert pop.models is None  # fewer than 50 customers: no fit
    assert first.rescored == 25
    tier_changes = [c for c in first.changes if c.data.dimension == "value_tier"]
    assert sorted((c.data.customer_id, c.data.old, c.data.new) for c in tier_changes) == [
        (c, "low_value", "high_value") for c in sorted(tops)
    ]
    assert {c.data.caused_by for c in first.changes} == {f"population:{pop.version}"}
    assert {c.data.customer_id for c in first.changes if c.data.dimension == "rfm_segment"} == {*tops, *others}
    for change in tier_changes:
        assert change.data.scores.rfm_score is not None and change.data.scores.rfm_score[2] == "5"

    second = await handlers.refresh_population(store, THRESHOLDS, now + timedelta(minutes=5))
    assert (second.population.version, second.rescored, second.changes) == (pop.version, 0, [])
    outbox = len(await outbox_records(store.db, {"key": {"$in": tops}, "type": "crm.segment.changed.v1"}))
    # Per top customer: the first order's tier and lifecycle changes, then the tier and RFM changes.
    assert outbox == 4 * len(tops)

    doc = await store.db[repository.CUSTOMERS].find_one({"_id": tops[0]})
    assert doc is not None
    assert (doc["segments"]["value_tier"], doc["population_version"]) == ("high_value", pop.version)


async def test_a_new_order_is_scored_against_the_population_in_force(new_store: NewStore) -> None:
    store = await new_store("scoring_pop", repository.INDEXES)
    await seed(store)
    await handlers.refresh_population(store, THRESHOLDS, datetime.now(UTC))
    customer = f"C-{uuid.uuid4().hex[:8]}"

    result = await handlers.apply_event(store, order(customer, "O-1", "950.00", T0 + timedelta(days=2)), THRESHOLDS)

    assert result.customer is not None
    scores = result.customer.scores
    assert (scores.value_tier, scores.rfm_score, scores.rfm_segment) == ("high_value", "515", "potential_loyalists")
    assert [(c.data.dimension, c.data.new) for c in result.changes] == [
        ("value_tier", "high_value"),
        ("lifecycle_stage", "first_time_buyer"),
        ("rfm_segment", "potential_loyalists"),
    ]


async def test_population_endpoints(new_store: NewStore) -> None:
    store = await new_store("scoring_pop", repository.INDEXES)
    tops, _ = await seed(store)
    app = create_service(ScoringSettings())
    app.state.runtime.store = store

    async with httpx.AsyncClient(
        headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://scoring"
    ) as http:
        refreshed = await http.post("/v1/population/refresh")
        distribution = await http.get("/v1/population")
        pareto = await http.get("/v1/population/pareto")
        movements = await http.get("/v1/population/movements", params={"period": "month"})
        scores = await http.get(f"/v1/customers/{tops[0]}/scores")
        bad = await http.get("/v1/population/movements", params={"period": "year"})

    assert refreshed.status_code == 200, refreshed.text
    assert (refreshed.json()["rescored"], refreshed.json()["population"]["high_value_monetary"]) == (25, "900.00")
    body = distribution.json()
    assert body["customers"] == 25
    assert body["value_tier"] == {"high_value": 5, "low_value": 20}
    assert body["lifecycle_stage"] == {"first_time_buyer": 25}
    assert sum(body["rfm_segment"].values()) == 25 and "none" not in body["rfm_segment"]
    curve = pareto.json()
    assert (curve["customers"], curve["revenue"]) == (25, "5500.00")
    assert curve["top_20_percent_revenue_share"] == round(4500 / 5500, 4)
    assert len(curve["curve"]) == 20 and curve["curve"][-1] == {"customer_share": 1.0, "revenue_share": 1.0}
    assert movements.json() == [{"period": "2026-09", "new": 25, "lost": 0, "reactivated": 0}]
    view = scores.json()
    assert (view["value_tier"], view["rfm_score"][2], view["population"]["high_value_monetary"]) == (
        "high_value",
        "5",
        "900.00",
    )
    assert view["population"]["monetary_cuts"] == ["50.00", "50.00", "50.00", "50.00"]
    assert view["value_quadrant"] == "big_occasional"
    assert bad.status_code == 422


async def test_the_population_shows_csat_and_nps_from_the_stored_answers(new_store: NewStore) -> None:
    store = await new_store("scoring_pop", repository.INDEXES)
    app = create_service(ScoringSettings())
    app.state.runtime.store = store
    prefix = uuid.uuid4().hex[:6]
    # NPS on product from 5 customers, 2 answers each: 10, 9, 9, 8, 7, 7, 6, 4, 2, 0 -> 3 promoters, 4 detractors.
    nps = [10, 9, 9, 8, 7, 7, 6, 4, 2, 0]
    for i, score in enumerate(nps):
        await handlers.apply_event(store, answered(f"C-{prefix}-{i // 2}", f"N-{prefix}-{i}", "nps", score, "product"))
    # CSAT on people: 5, 4, 3 -> 2 of 3 satisfied; CSAT on service: 1.
    for i, (score, dimension) in enumerate([(5, "people"), (4, "people"), (3, "people"), (1, "service")]):
        await handlers.apply_event(store, answered(f"C-{prefix}-{i}", f"S-{prefix}-{i}", "csat", score, dimension))

    async with httpx.AsyncClient(
        headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://scoring"
    ) as http:
        body = (await http.get("/v1/population")).json()

    satisfaction = body["satisfaction"]
    overall = satisfaction["overall"]
    assert (overall["nps_answers"], overall["promoters"], overall["passives"], overall["detractors"]) == (10, 3, 3, 4)
    assert overall["nps"] == -10.0  # 30% - 40%
    assert (overall["csat_answers"], overall["csat_satisfied"], overall["csat_percent"]) == (4, 2, 50.0)
    by_dimension = satisfaction["by_dimension"]
    assert (by_dimension["product"]["nps"], by_dimension["product"]["csat_percent"]) == (-10.0, None)
    assert (by_dimension["people"]["csat_percent"], by_dimension["people"]["csat_answers"]) == (66.67, 3)
    assert (by_dimension["service"]["csat_percent"], by_dimension["service"]["nps_answers"]) == (0.0, 0)


def cancel(customer: str, order_id: str, at: datetime) -> OrderCancelledEvent:
    return OrderCancelledEvent.create(OrderCancelled(customer_id=customer, order_id=order_id), source="/x", time=at)


def move(old: str | None, new: str, kind: str, customers: int) -> dict[str, object]:
    return {"from": old, "to": new, "move": kind, "customers": customers}


async def test_tier_movements_count_the_moves_between_value_tiers_per_period(new_store: NewStore) -> None:
    store = await new_store("scoring_pop", repository.INDEXES)
    # September: 25 first orders, potential to low_value (900.00 is under the fixed 1000 threshold).
    tops, others = await seed(store)
    # October: the 80/20 threshold (900.00) makes the five top spenders high_value.
    await handlers.refresh_population(store, THRESHOLDS, datetime(2026, 10, 5, 12, tzinfo=UTC))
    nov = datetime(2026, 11, 3, 9, tzinfo=UTC)
    # November: two cancelled first orders drop to potential; others[1] drops, buys again and drops again (one
    # customer, the same move twice); a newcomer's 950.00 goes straight to high_value.
    newcomer = f"{others[0]}-new"
    for event in [
        cancel(tops[0], f"O-{tops[0]}", nov),
        cancel(others[0], f"O-{others[0]}", nov),
        cancel(others[1], f"O-{others[1]}", nov + timedelta(days=1)),
        order(others[1], f"O-{others[1]}-2", "50.00", nov + timedelta(days=2)),
        cancel(others[1], f"O-{others[1]}-2", nov + timedelta(days=3)),
        order(newcomer, f"O-{newcomer}", "950.00", nov + timedelta(days=4)),
    ]:
        await handlers.apply_event(store, event, THRESHOLDS)
    # A change from no tier (the event schema allows it) is an entry, neither up nor down; other dimensions and
    # unknown tiers are not counted.
    await store.db[repository.SEGMENT_CHANGES].insert_many(
        [
            {
                "_id": "entered",
                "customer_id": "C-x",
                "dimension": "value_tier",
                "old": None,
                "new": "low_value",
                "changed_at": nov + timedelta(days=5),
            },
            {
                "_id": "unknown",
                "customer_id": "C-y",
                "dimension": "value_tier",
                "old": "low_value",
                "new": "gold",
                "changed_at": nov + timedelta(days=5),
            },
        ]
    )
    app = create_service(ScoringSettings())
    app.state.runtime.store = store

    async with httpx.AsyncClient(
        headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://scoring"
    ) as http:
        monthly = await http.get("/v1/population/tier-movements")
        weekly = await http.get(
            "/v1/population/tier-movements", params={"period": "week", "from": "2026-10-01T00:00:00Z"}
        )
        # 2026-11-01T00:00+01:00 is 31 October 23:00 UTC: the range is November 1 to 3 (exclusive 4) in UTC.
        daily = await http.get(
            "/v1/population/tier-movements",
            params={"period": "day", "from": "2026-11-01T00:00:00+01:00", "to": "2026-11-04T00:00:00Z"},
        )
        naive = await http.get("/v1/population/tier-movements", params={"from": "2026-11-01T00:00:00"})
        backwards = await http.get(
            "/v1/population/tier-movements", params={"from": "2026-11-02T00:00:00Z", "to": "2026-11-01T00:00:00Z"}
        )
        unknown_period = await http.get("/v1/population/tier-movements", params={"period": "year"})

    assert monthly.status_code == 200, monthly.text
    november = {
        "upgrades": 2,
        "downgrades": 3,
        "entered": 1,
        "moves": [
            move(None, "low_value", "entered", 1),
            move("potential", "low_value", "upgrade", 1),
            move("potential", "high_value", "upgrade", 1),
            move("low_value", "potential", "downgrade", 2),
            move("high_value", "potential", "downgrade", 1),
        ],
    }
    assert monthly.json() == [
        {
            "period": "2026-09",
            "upgrades": 25,
            "downgrades": 0,
            "entered": 0,
            "moves": [move("potential", "low_value", "upgrade", 25)],
        },
        {
            "period": "2026-10",
            "upgrades": 5,
            "downgrades": 0,
            "entered": 0,
            "moves": [move("low_value", "high_value", "upgrade", 5)],
        },
        {"period": "2026-11", **november},
    ]
    assert weekly.json() == [
        {
            "period": "2026-W41",
            "upgrades": 5,
            "downgrades": 0,
            "entered": 0,
            "moves": [move("low_value", "high_value", "upgrade", 5)],
        },
        {"period": "2026-W45", **november},
    ]
    assert daily.json() == [
        {
            "period": "2026-11-03",
            "upgrades": 0,
            "downgrades": 2,
            "entered": 0,
            "moves": [move("low_value", "potential", "downgrade", 1), move("high_value", "potential", "downgrade", 1)],
        },
    ]
    assert (naive.status_code, backwards.status_code, unknown_period.status_code) == (422, 422, 422)
    assert "offset" in naive.json()["detail"] and "after" in backwards.json()["detail"]


def answered(customer: str, survey_id: str, kind: str, score: int, dimension: str) -> SurveyAnsweredEvent:
    data = SurveyAnswered.model_validate(
        {"customer_id": customer, "survey_id": survey_id, "kind": kind, "score": score, "dimension": dimension}
    )
    return SurveyAnsweredEvent.create(data, source="/crm/support", time=T0)


async def test_statistics_take_effect_only_beyond_the_tolerance_and_rescore_only_whom_they_can_move(
    new_store: NewStore,
) -> None:
    store = await new_store("scoring_pop", repository.INDEXES)
    thresholds = Thresholds(population_tolerance=0.1)
    prefix = uuid.uuid4().hex[:6]
    base = [(f"C-{prefix}-{i:02d}", f"{10 * (i + 1)}.00", T0 + timedelta(hours=i)) for i in range(25)]
    for customer, total, at in base:
        await handlers.apply_event(store, order(customer, f"O-{customer}", total, at), thresholds)
    now = datetime.now(UTC)
    first = await handlers.refresh_population(store, thresholds, now, fit=False)
    assert (first.adopted, first.rescored) == (True, 25)

    # One more small, early customer: the median moves from 130.00 to 120.00 (under 10%), the cuts not at all.
    small = f"C-{prefix}-small"
    await handlers.apply_event(store, order(small, f"O-{small}", "15.00", T0 - timedelta(hours=1)), thresholds)
    unmoved = await handlers.refresh_population(store, thresholds, now + timedelta(seconds=1), fit=False)
    assert (unmoved.adopted, unmoved.moved, unmoved.rescored, unmoved.changes) == (False, [], 0, [])
    assert unmoved.population.version == first.population.version
    doc = await store.db[repository.POPULATION].find_one({"_id": repository.CURRENT})
    assert doc is not None and doc["last_refresh"]["customers"] == 26 and doc["last_refresh"]["adopted"] is False

    # Five big, late customers move the cuts, the 80/20 threshold and the medians: only the customers between an
    # old and a new bound are rescored, the others are labelled with the new version.
    for i in range(5):
        big = f"C-{prefix}-big-{i}"
        await handlers.apply_event(
            store, order(big, f"O-{big}", "1000.00", T0 + timedelta(days=2, hours=i)), thresholds
        )
    moved = await handlers.refresh_population(store, thresholds, now + timedelta(seconds=2), fit=False)
    assert moved.adopted and moved.population.version != first.population.version
    assert "high_value_monetary" in moved.moved
    assert 0 < moved.rescored < 31
    doc = await store.db[repository.POPULATION].find_one({"_id": repository.CURRENT})
    assert doc is not None and doc["last_refresh"]["relabelled"] == 31 - moved.rescored
    stale = await store.db[repository.CUSTOMERS].count_documents(
        {"population_version": {"$ne": moved.population.version}}
    )
    assert stale == 0
    # Nobody left behind: every customer's scores are what a full rescore under the new statistics gives.
    rebuilt = await handlers.rebuild(store, thresholds)
    assert (rebuilt.customers, rebuilt.different) == (31, [])
