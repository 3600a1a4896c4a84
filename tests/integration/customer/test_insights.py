"""The 360 timeline's order and filters, the summary card and the customer analysis, on the real database: events
fed through the timeline handler as the consumer feeds them, read back through the API."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from crm_customer import handlers, repository
from crm_customer.app import create_service
from crm_shared.api import encode_cursor
from crm_shared.events import (
    CampaignEnrolled,
    CampaignEnrolledEvent,
    CloudEvent,
    InteractionLogged,
    InteractionLoggedEvent,
    OpportunityOpened,
    OpportunityOpenedEvent,
    OpportunityWon,
    OpportunityWonEvent,
    OrderCancelled,
    OrderCancelledEvent,
    OrderPlaced,
    OrderPlacedEvent,
    OrderRefunded,
    OrderRefundedEvent,
    QuoteSent,
    QuoteSentEvent,
    ScoreSnapshot,
    SegmentChanged,
    SegmentChangedEvent,
    SlaBreached,
    SlaBreachedEvent,
    SlaWarned,
    SlaWarnedEvent,
    TicketOpened,
    TicketOpenedEvent,
    TicketStatusChanged,
    TicketStatusChangedEvent,
)
from crm_shared.store import Store

from helpers import ADMIN_HEADERS, bearer

NewStore = Callable[..., Awaitable[Store]]
T0 = datetime(2026, 3, 2, 10, tzinfo=UTC)
PROBLEM = "application/problem+json"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class Service:
    http: httpx.AsyncClient
    store: Store

    async def record(self, *events: CloudEvent[Any]) -> None:
        outcome = await handlers.record_timeline_events(self.store, list(events))
        assert sorted(outcome.applied) == sorted(e.id for e in events)

    async def register(self, customer: str, **more: Any) -> None:
        answer = await self.http.post("/v1/customers", json={"customer_id": customer, "name": "Test Person", **more})
        assert answer.status_code == 201, answer.text

    async def assign(self, customer: str, owner_id: str, territory: str | None = None) -> None:
        body = {"owner_id": owner_id, "territory": territory}
        answer = await self.http.put(f"/v1/customers/{customer}/assignment", json=body)
        assert answer.status_code == 200, answer.text

    async def get(self, path: str, headers: dict[str, str] | None = None, /, **params: Any) -> httpx.Response:
        return await self.http.get(path, params=params, headers=headers)


@pytest.fixture
async def service(new_store: NewStore) -> AsyncIterator[Service]:
    app = create_service()
    store = await new_store("customer_insights", app.state.runtime.indexes)
    app.state.runtime.store = store
    async with httpx.AsyncClient(
        headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://customer"
    ) as http:
        yield Service(http, store)


def customer_id() -> str:
    return f"C-{uuid.uuid4().hex[:8]}"


def person(subject: str, *scopes: str) -> dict[str, str]:
    """A person's headers; the empty X-API-Key drops the client's default admin key."""
    return {"X-API-Key": "", **bearer(subject, *scopes)}


def order(customer: str, order_id: str, total: str, at: datetime, **more: Any) -> OrderPlacedEvent:
    data = OrderPlaced(customer_id=customer, order_id=order_id, currency="EUR", total=Decimal(total), **more)
    return OrderPlacedEvent.create(data, source="/crm/sales", time=at)


def snapshot(**changes: Any) -> ScoreSnapshot:
    base: dict[str, Any] = {
        "recency_days": 0,
        "frequency": 1,
        "monetary": Decimal("1000.00"),
        "average_order_value": Decimal("1000.00"),
        "value_tier": "high_value",
        "lifecycle_stage": "first_time_buyer",
        "churn_risk": 0.1,
        "churn_risk_band": "low",
        "satisfaction": 0.9,
        "lifetime_value": Decimal("2500.00"),
    }
    return ScoreSnapshot(**{**base, **changes})


def segment_change(
    cause: CloudEvent[Any], dimension: str, old: str | None, new: str, *, id: str | None = None, **scores: Any
) -> SegmentChangedEvent:
    data = SegmentChanged(
        customer_id=cause.customer_id,
        dimension=dimension,
        old=old,
        new=new,
        scores=snapshot(**scores),
        model_version="1",
        changed_at=cause.time,
        caused_by=cause.id,
    )
    return SegmentChangedEvent.create(data, source="/crm/scoring", id=id, time=cause.time, cause=cause)


def enrolment(cause: CloudEvent[Any], journey: str, *, id: str | None = None) -> CampaignEnrolledEvent:
    data = CampaignEnrolled(
        customer_id=cause.customer_id,
        enrolment_id=f"E-{journey}",
        campaign_id=journey,
        journey=journey,
        episode="1",
        channel="email",
        status="contacted",
        trigger_event_id=cause.id,
    )
    return CampaignEnrolledEvent.create(data, source="/crm/marketing", id=id, time=cause.time, cause=cause)


# ---------------------------------------------------------------- timeline


@dataclass(frozen=True)
class Story:
    """An order at T0 and what it caused at the same instant, around other touches."""

    earlier: str
    order: str
    change: str
    enrolment: str
    ticket: str
    call: str


async def a_story(service: Service, customer: str) -> Story:
    earlier = order(customer, "O-0", "20.00", T0 - timedelta(days=1), channel="pos")
    placed = order(customer, "O-1", "1500.00", T0)
    # Ids chosen so that id order is the opposite of cause order.
    change = segment_change(placed, "value_tier", "potential", "high_value", id=f"m-{uuid.uuid4().hex}")
    enrolled = enrolment(change, "high-value-thank-you", id=f"a-{uuid.uuid4().hex}")
    ticket = TicketOpenedEvent.create(
        TicketOpened(customer_id=customer, ticket_id="T-1", kind="question", channel="email", priority="normal"),
        source="/crm/support",
        id=f"c-{uuid.uuid4().hex}",
        time=T0 + timedelta(hours=1),
    )
    call = InteractionLoggedEvent.create(
        InteractionLogged(interaction_id="I-1", customer_id=customer, kind="call", channel="phone"),
        source="/crm/customer",
        time=T0 + timedelta(hours=2),
    )
    # Effects reach the timeline before their causes, in separate batches, as they may from different topics.
    await service.record(enrolled, ticket)
    await service.record(change)
    await service.record(placed, earlier, call)
    return Story(earlier.id, placed.id, change.id, enrolled.id, ticket.id, call.id)


async def all_pages(service: Service, customer: str, **params: Any) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        answer = await service.get(
            f"/v1/customers/{customer}/timeline", **params, **({"cursor": cursor} if cursor else {})
        )
        assert answer.status_code == 200, answer.text
        page = answer.json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen


async def test_the_timeline_is_newest_first_and_at_one_time_a_cause_comes_before_what_it_caused(
    service: Service,
) -> None:
    customer = customer_id()
    s = await a_story(service, customer)
    newest = [s.call, s.ticket, s.order, s.change, s.enrolment, s.earlier]

    whole = (await service.get(f"/v1/customers/{customer}/timeline")).json()
    assert [e["event_id"] for e in whole["items"]] == newest and whole["next_cursor"] is None
    assert [e["kind"] for e in whole["items"]] == ["interaction", "ticket", "order", "segment", "campaign", "order"]
    by_id = {e["event_id"]: e for e in whole["items"]}
    assert by_id[s.change]["cause"] == s.order and by_id[s.enrolment]["cause"] == s.change
    assert by_id[s.order]["cause"] is None

    oldest = (await service.get(f"/v1/customers/{customer}/timeline", order="oldest")).json()["items"]
    assert [e["event_id"] for e in oldest] == [s.earlier, s.order, s.change, s.enrolment, s.ticket, s.call]

    # Pages of two split the instant of the order: the cursor resumes within it, in cause order.
    for order_, expected in (("newest", newest), ("oldest", [e["event_id"] for e in oldest])):
        for limit in (1, 2, 4):
            paged = await all_pages(service, customer, limit=limit, order=order_)
            assert [e["event_id"] for e in paged] == expected, (order_, limit)


async def test_the_timeline_filters_by_kind_channel_and_period_keeping_cause_order(service: Service) -> None:
    customer = customer_id()
    s = await a_story(service, customer)
    url = f"/v1/customers/{customer}/timeline"

    async def ids(**params: Any) -> list[str]:
        answer = await service.get(url, **params)
        assert answer.status_code == 200, answer.text
        return [e["event_id"] for e in answer.json()["items"]]

    assert await ids(kind="order") == [s.order, s.earlier]
    assert await ids(kind=["campaign", "segment"]) == [s.change, s.enrolment]
    assert await ids(kind="segment", type="crm.segment.changed.v1") == [s.change]
    assert await ids(kind="order", type="crm.segment.changed.v1") == []
    assert await ids(kind="consent") == []
    assert await ids(channel="email") == [s.ticket, s.enrolment]
    assert await ids(channel="pos") == [s.earlier]
    in_the_hour = {"from": T0.isoformat(), "to": (T0 + timedelta(hours=1)).isoformat()}
    assert await ids(**in_the_hour) == [s.order, s.change, s.enrolment]
    assert await ids(**in_the_hour, order="oldest") == [s.order, s.change, s.enrolment]
    # The order is filtered out, yet what it caused still follows the chain of causes.
    assert await ids(**in_the_hour, kind=["campaign", "segment"], limit=1) == [s.change]
    paged = await all_pages(service, customer, kind=["campaign", "segment"], limit=1)
    assert [e["event_id"] for e in paged] == [s.change, s.enrolment]
    assert await ids(**{"from": "2026-03-02T11:30:00+01:00"}) == [s.call, s.ticket]


async def test_the_timeline_refuses_an_unknown_kind_a_time_without_offset_an_empty_period_and_garbage(
    service: Service,
) -> None:
    url = "/v1/customers/C-any/timeline"
    refusals: dict[str, dict[str, Any]] = {
        "unknown kind": {"kind": ["order", "nope"]},
        "no offset": {"from": "2026-03-02T10:00:00"},
        "to before from": {"from": "2026-03-02T10:00:00Z", "to": "2026-03-01T10:00:00Z"},
        "unknown order": {"order": "sideways"},
        "unknown channel": {"channel": "pigeon"},
    }
    for label, params in refusals.items():
        answer = await service.get(url, **params)
        assert answer.status_code == 422, (label, answer.text)
    unknown = await service.get(url, kind="nope")
    assert unknown.headers["content-type"] == PROBLEM and "order" in unknown.json()["detail"]
    for bad in (
        "bm90LWpzb24=",
        encode_cursor({"at": T0.isoformat(), "id": "x", "depth": "1"}),
        encode_cursor({"at": T0.isoformat(), "id": "x", "depth": -1}),
        encode_cursor({"at": T0.isoformat(), "id": "x", "depth": True}),
    ):
        answer = await service.get(url, cursor=bad)
        assert answer.status_code == 400 and answer.json()["title"] == "Invalid cursor", answer.text
    # A cursor of before cause order (time and id only) still pages.
    assert (await service.get(url, cursor=encode_cursor({"at": T0.isoformat(), "id": "x"}))).status_code == 200


async def test_a_payload_with_a_date_is_kept_on_the_timeline(service: Service) -> None:
    customer = customer_id()
    sent = QuoteSentEvent.create(
        QuoteSent(customer_id=customer, quote_id="Q-1", currency="EUR", total="900.00", valid_until=date(2026, 4, 1)),
        source="/crm/sales",
        time=T0,
    )
    await service.record(sent)
    [entry] = (await service.get(f"/v1/customers/{customer}/timeline")).json()["items"]
    assert entry["data"]["valid_until"] == "2026-04-01" and entry["kind"] == "quote"


# ---------------------------------------------------------------- summary card


def day(n: int, hours: int = 0) -> datetime:
    return T0 + timedelta(days=n, hours=hours)


async def test_the_summary_card_folds_the_customers_own_projection(service: Service) -> None:
    customer = customer_id()
    await service.register(customer)
    await service.assign(customer, "rep-1", "north")
    first = order(customer, "O-1", "1000.00", day(0))
    second = order(customer, "O-2", "200.00", day(10))
    refund = OrderRefundedEvent.create(
        OrderRefunded(customer_id=customer, order_id="O-2", currency="EUR", amount="50.00"),
        source="/crm/sales",
        time=day(12),
    )
    cancelled = order(customer, "O-3", "70.00", day(4))
    cancel = OrderCancelledEvent.create(
        OrderCancelled(customer_id=customer, order_id="O-3"), source="/crm/sales", time=day(4, 1)
    )

    def ticket(ticket_id: str, at: datetime, policy: str | None = "gold") -> TicketOpenedEvent:
        data = TicketOpened(
            customer_id=customer,
            ticket_id=ticket_id,
            kind="complaint",
            channel="email",
            priority="high",
            sla_policy_id=policy,
        )
        return TicketOpenedEvent.create(data, source="/crm/support", time=at)

    def moved(ticket_id: str, old: str, new: str, at: datetime) -> TicketStatusChangedEvent:
        data = TicketStatusChanged(customer_id=customer, ticket_id=ticket_id, old=old, new=new)
        return TicketStatusChangedEvent.create(data, source="/crm/support", time=at)

    warned = SlaWarnedEvent.create(
        SlaWarned(customer_id=customer, ticket_id="T-1", timer="first_response", policy_id="gold", due_at=day(11, 2)),
        source="/crm/support",
        time=day(11, 1),
    )
    breached = SlaBreachedEvent.create(
        SlaBreached(customer_id=customer, ticket_id="T-2", timer="resolution", policy_id="gold", due_at=day(6)),
        source="/crm/support",
        time=day(6),
    )

    def opportunity(opportunity_id: str, amount: str, at: datetime) -> OpportunityOpenedEvent:
        data = OpportunityOpened(
            customer_id=customer,
            opportunity_id=opportunity_id,
            pipeline_id="default",
            stage="qualify",
            name=f"Deal {opportunity_id}",
            amount=Decimal(amount),
            currency="EUR",
            probability=0.3,
            forecast_category="pipeline",
            expected_close=date(2026, 6, 30),
            owner_id="rep-1",
        )
        return OpportunityOpenedEvent.create(data, source="/crm/sales", time=at)

    won = OpportunityWonEvent.create(
        OpportunityWon(
            customer_id=customer, opportunity_id="OP-2", pipeline_id="default", amount="300.00", currency="EUR"
        ),
        source="/crm/sales",
        time=day(8),
    )
    await service.record(
        first,
        segment_change(first, "value_tier", "potential", "high_value"),
        second,
        segment_change(
            second,
            "lifecycle_stage",
            "first_time_buyer",
            "repeat_buyer",
            lifecycle_stage="repeat_buyer",
            frequency=2,
            monetary=Decimal("1200.00"),
            lifetime_value=Decimal("2600.00"),
        ),
        refund,
        cancelled,
        cancel,
        ticket("T-1", day(11)),
        warned,
        ticket("T-2", day(5)),
        moved("T-2", "new", "open", day(5, 1)),
        breached,
        ticket("T-3", day(1), policy=None),
        moved("T-3", "new", "resolved", day(2)),
        opportunity("OP-1", "5000.00", day(3)),
        opportunity("OP-2", "300.00", day(7)),
        won,
    )

    answer = await service.get(f"/v1/customers/{customer}/summary")
    assert answer.status_code == 200, answer.text
    card = answer.json()
    assert datetime.fromisoformat(card["scores"].pop("as_of")) == day(10)
    assert card["scores"] == {
        "value_tier": "high_value",
        "lifecycle_stage": "repeat_buyer",
        "monetary": "1200.00",
        "lifetime_value": "2600.00",
        "churn_risk": 0.1,
        "churn_risk_band": "low",
        "satisfaction": 0.9,
        "rfm_segment": None,
        "loyalty_stage": None,
    }
    assert (card["customer_id"], card["owner_id"], card["territory"]) == (customer, "rep-1", "north")
    assert card["orders"] == 2
    assert card["realised_value"] == [{"currency": "EUR", "amount": "1150.00"}]
    last = card["last_order"]
    assert datetime.fromisoformat(last.pop("placed_at")) == day(10)
    assert last == {
        "order_id": "O-2",
        "total": "200.00",
        "currency": "EUR",
        "channel": "web",
        "status": "partially_refunded",
        "refunded": "50.00",
    }
    tickets = [
        (t["ticket_id"], t["status"], t["sla_state"], t["warned_timers"], t["breached_timers"])
        for t in card["open_tickets"]
    ]
    assert tickets == [
        ("T-1", "new", "warned", ["first_response"], []),
        ("T-2", "open", "breached", [], ["resolution"]),
    ]
    assert datetime.fromisoformat(card["open_tickets"][0]["due_at"]) == day(11, 2)
    assert [
        (o["opportunity_id"], o["amount"], o["stage"], o["expected_close"]) for o in card["open_opportunities"]
    ] == [("OP-1", "5000.00", "qualify", "2026-06-30")]
    assert card["open_pipeline"] == [{"currency": "EUR", "amount": "5000.00"}]

    # Row-level access exactly as the timeline's: the owner sees it, another person gets the 404 of a missing one.
    assert (
        await service.get(f"/v1/customers/{customer}/summary", person("rep-1", "customers:read"))
    ).status_code == 200
    other = await service.get(f"/v1/customers/{customer}/summary", person("rep-2", "customers:read"))
    assert other.status_code == 404 and other.headers["content-type"] == PROBLEM
    refused = await service.get(f"/v1/customers/{customer}/summary", person("rep-1", "customers:write"))
    assert refused.status_code == 403


async def test_a_customer_with_nothing_yet_has_an_empty_card(service: Service) -> None:
    card = (await service.get("/v1/customers/C-nothing-yet/summary")).json()
    assert card == {
        "customer_id": "C-nothing-yet",
        "owner_id": None,
        "territory": None,
        "scores": None,
        "orders": 0,
        "realised_value": [],
        "last_order": None,
        "open_tickets": [],
        "open_opportunities": [],
        "open_pipeline": [],
    }


# ---------------------------------------------------------------- analysis


def at(year: int, month: int, d: int = 1) -> datetime:
    return datetime(year, month, d, 12, tzinfo=UTC)


async def test_activity_per_period_counts_new_active_reactivated_lost_and_lapsed(service: Service) -> None:
    a, b, c, d = (customer_id() for _ in range(4))
    for customer in (a, b, c):
        await service.register(customer)
    await service.assign(a, "rep-1")
    dropped = order(d, "O-d2", "5.00", at(2025, 4, 2))
    await service.record(
        order(a, "O-a1", "10.00", at(2025, 1, 10)),
        order(a, "O-a2", "10.00", at(2025, 3, 5)),
        order(b, "O-b1", "10.00", at(2025, 2, 20)),
        order(b, "O-b2", "10.00", at(2026, 4, 2)),
        order(c, "O-c1", "10.00", at(2026, 3, 31)),
        # d never signed up (an API key sees them all the same) and their second order was cancelled.
        order(d, "O-d1", "5.00", at(2025, 1, 20)),
        dropped,
        OrderCancelledEvent.create(
            OrderCancelled(customer_id=d, order_id="O-d2"), source="/crm/sales", time=at(2025, 4, 3)
        ),
    )
    url = "/v1/analysis/customers/activity"
    answer = await service.get(url, period="month", **{"from": "2025-01-01T00:00:00Z", "to": "2026-06-01T00:00:00Z"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["period"], body["lapse_days"]) == ("month", 365)
    rows = {r["period"]: (r["active"], r["new"], r["reactivated"], r["lost"], r["lapsed"]) for r in body["rows"]}
    assert list(rows) == [f"2025-{m:02d}" for m in range(1, 13)] + [f"2026-{m:02d}" for m in range(1, 6)]
    assert rows["2025-01"] == (2, 2, 0, 0, 0)
    assert rows["2025-02"] == (1, 1, 0, 0, 0)
    assert rows["2025-04"] == (0, 0, 0, 0, 0)  # d's order of April was cancelled
    assert rows["2026-01"] == (0, 0, 0, 1, 1)  # d lost on 2026-01-20
    assert rows["2026-02"] == (0, 0, 0, 1, 2)  # b on 2026-02-20
    assert rows["2026-03"] == (1, 1, 0, 1, 3)  # a on 2026-03-05; c is new
    assert rows["2026-04"] == (1, 0, 1, 0, 2)  # b is back
    first = body["rows"][0]
    assert datetime.fromisoformat(first["start"]) == datetime(2025, 1, 1, tzinfo=UTC)
    assert datetime.fromisoformat(first["end"]) == datetime(2025, 2, 1, tzinfo=UTC)

    quarters = (
        await service.get(
            url, period="quarter", lapse_days=30, **{"from": "2026-01-01T00:00:00Z", "to": "2026-07-01T00:00:00Z"}
        )
    ).json()
    assert [(r["period"], r["active"], r["new"], r["reactivated"]) for r in quarters["rows"]] == [
        ("2026-Q1", 1, 1, 0),
        ("2026-Q2", 1, 0, 1),
    ]

    # A person counts only the customers they see: rep-1 owns a.
    mine = await service.get(
        url, person("rep-1", "customers:read"), **{"from": "2025-01-01T00:00:00Z", "to": "2025-04-01T00:00:00Z"}
    )
    assert mine.status_code == 200, mine.text
    assert [(r["active"], r["new"]) for r in mine.json()["rows"]] == [(1, 1), (0, 0), (1, 0)]


async def test_the_analysis_refuses_bad_ranges_and_parameters_and_callers_without_the_scope(service: Service) -> None:
    refusals: list[tuple[str, dict[str, Any]]] = [
        ("/v1/analysis/customers/activity", {"period": "week"}),
        ("/v1/analysis/customers/activity", {"from": "2026-01-01T00:00:00"}),
        ("/v1/analysis/customers/activity", {"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}),
        ("/v1/analysis/customers/activity", {"from": "1990-01-01T00:00:00Z", "period": "month"}),
        ("/v1/analysis/customers/activity", {"lapse_days": 0}),
        ("/v1/analysis/customers/distribution", {"by": "shoe_size"}),
        ("/v1/analysis/customers/cohorts", {"months": 0}),
        ("/v1/analysis/customers/cohorts.png", {"months": 61}),
    ]
    for url, params in refusals:
        answer = await service.get(url, **params)
        assert answer.status_code == 422, (url, params, answer.text)
        assert answer.headers["content-type"] == PROBLEM
    too_many = await service.get("/v1/analysis/customers/activity", **{"from": "1990-01-01T00:00:00Z"})
    assert "at most 240" in too_many.json()["detail"]
    for url in ("activity", "distribution", "cohorts", "cohorts.png"):
        refused = await service.get(f"/v1/analysis/customers/{url}", person("rep-1", "customers:write"))
        assert refused.status_code == 403 and "customers:read" in refused.json()["detail"]


async def test_the_distribution_counts_registered_customers_by_scores_and_profile(service: Service) -> None:
    a, b, c = (customer_id() for _ in range(3))
    await service.register(a, channel="web")
    await service.register(b, channel="pos")
    await service.register(c, channel="web")
    profiles = service.store.db[repository.CUSTOMERS]
    await profiles.update_one(
        {"_id": a},
        {
            "$set": {
                "kind": "organisation",
                "industry": "retail",
                "company_size": "10-49",
                "addresses": [{"kind": "billing", "country": "DE", "region": "Bavaria"}],
            }
        },
    )
    await profiles.update_one({"_id": b}, {"$set": {"addresses": [{"kind": "home", "country": "DE"}]}})
    first = order(a, "O-a1", "10.00", at(2026, 1, 5))
    later = order(a, "O-a2", "10.00", at(2026, 2, 5))
    other = order(b, "O-b1", "10.00", at(2026, 1, 5))
    await service.record(
        segment_change(first, "value_tier", None, "potential", value_tier="potential"),
        segment_change(later, "value_tier", "potential", "high_value"),
        segment_change(other, "value_tier", None, "potential", value_tier="potential", lifecycle_stage="prospect"),
        # A customer who never signed up is not in the distribution.
        segment_change(order(customer_id(), "O-x", "1.00", at(2026, 1, 1)), "value_tier", None, "potential"),
    )
    url = "/v1/analysis/customers/distribution"

    async def rows(by: str) -> list[tuple[str | None, int, float]]:
        answer = await service.get(url, by=by)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["by"] == by and body["customers"] == 3
        return [(r["key"], r["customers"], r["share"]) for r in body["rows"]]

    assert await rows("value_tier") == [("high_value", 1, 0.3333), ("potential", 1, 0.3333), (None, 1, 0.3333)]
    assert await rows("lifecycle_stage") == [
        ("first_time_buyer", 1, 0.3333),
        ("prospect", 1, 0.3333),
        (None, 1, 0.3333),
    ]
    assert await rows("channel") == [("web", 2, 0.6667), ("pos", 1, 0.3333)]
    assert await rows("country") == [("DE", 2, 0.6667), (None, 1, 0.3333)]
    assert await rows("region") == [("Bavaria", 1, 0.3333), (None, 2, 0.6667)]
    assert await rows("industry") == [("retail", 1, 0.3333), (None, 2, 0.6667)]
    assert await rows("company_size") == [("10-49", 1, 0.3333), (None, 2, 0.6667)]
    # A person sees the distribution of their own customers: none yet.
    mine = (await service.get(url, person("rep-1", "customers:read"), by="channel")).json()
    assert mine == {"by": "channel", "customers": 0, "rows": []}


async def test_cohort_retention_as_a_table_and_a_png_heat_map(service: Service) -> None:
    a, b, c = (customer_id() for _ in range(3))
    await service.record(
        order(a, "O-a1", "10.00", at(2026, 1, 5)),
        order(a, "O-a2", "10.00", at(2026, 2, 7)),
        order(a, "O-a3", "10.00", at(2026, 4, 1)),
        order(b, "O-b1", "10.00", at(2026, 1, 30)),
        order(b, "O-b2", "10.00", at(2026, 3, 2)),
        order(c, "O-c1", "10.00", at(2026, 2, 14)),
    )
    window = {"from": "2026-01-10T00:00:00Z", "to": "2026-03-01T00:00:00Z", "months": 3}
    answer = await service.get("/v1/analysis/customers/cohorts", **window)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["months"] == 3
    assert [
        (r["cohort"], r["customers"], [(m["month"], m["customers"], m["share"]) for m in r["months"]])
        for r in body["cohorts"]
    ] == [
        ("2026-01", 2, [(0, 2, 1.0), (1, 1, 0.5), (2, 1, 0.5), (3, 1, 0.5)]),
        ("2026-02", 1, [(0, 1, 1.0), (1, 0, 0.0), (2, 0, 0.0), (3, 0, 0.0)]),
    ]

    chart = await service.get("/v1/analysis/customers/cohorts.png", **window)
    assert chart.status_code == 200 and chart.headers["content-type"] == "image/png"
    assert chart.content.startswith(PNG_SIGNATURE) and len(chart.content) > 1000
    empty = await service.get(
        "/v1/analysis/customers/cohorts.png", **{"from": "2025-01-01T00:00:00Z", "to": "2025-02-01T00:00:00Z"}
    )
    assert empty.status_code == 200 and empty.content.startswith(PNG_SIGNATURE)
