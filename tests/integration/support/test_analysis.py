"""Support analysis on the real database: tickets opened, answered, set pending and resolved through the API (and
two opened days and weeks ago, as the API cannot date them back) give exact volumes, SLA percent met, repeat
complainers and the backlog by age; an agent's reports cover only the tickets they see; bad queries are 422s."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from crm_shared.security import Principal
from crm_shared.store import Store
from crm_support.app import INDEXES, create_service
from crm_support.tickets import domain, handlers

from helpers import ADMIN_HEADERS, bearer

NewStore = Callable[..., Awaitable[Store]]
PROBLEM = "application/problem+json"
D = timedelta(days=1)
AGENT = Principal(kind="token", id="agent-1", scopes=frozenset({"tickets:write"}))


@pytest.fixture
async def support(new_store: NewStore) -> AsyncIterator[tuple[Store, httpx.AsyncClient]]:
    store = await new_store("support_analysis", INDEXES)
    app = create_service()
    app.state.runtime.store = store
    async with httpx.AsyncClient(
        headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://support"
    ) as http:
        yield store, http


async def open_ago(store: Store, run: str, name: str, age: timedelta, **fields: Any) -> domain.Ticket:
    new = handlers.NewTicket(subject="Help", **fields)
    ticket, _ = await handlers.open_ticket(store, new, f"TK-{run}-{name}", datetime.now(UTC) - age, by=AGENT)
    return ticket


def decided(figures: dict[str, Any]) -> tuple[int, int, int, float | None]:
    return figures["met"], figures["breached"], figures["running"], figures["percent_met"]


async def test_volumes_sla_repeat_complainers_and_backlog_of_tickets_worked_through_the_api(
    support: tuple[Store, httpx.AsyncClient],
) -> None:
    store, http = support
    run = uuid.uuid4().hex[:8]
    # Email and phone are under a policy: answer within an hour, resolve within a day; web is under none.
    policy = {
        "name": "Email and phone",
        "order": 1,
        "conditions": {"channels": ["email", "phone"]},
        "targets": {
            "first_response": {"hours": 1, "business_hours": False},
            "resolution": {"hours": 24, "business_hours": False},
        },
    }
    assert (await http.put(f"/v1/sla/policies/std-{run}", json=policy)).status_code in (200, 201)
    happy, unhappy = f"C-{run}-1", f"C-{run}-2"

    async def opened(**body: Any) -> str:
        answer = await http.post("/v1/tickets", json={"subject": "Help", **body})
        assert answer.status_code == 201, answer.text
        return str(answer.json()["ticket_id"])

    # 1: a request answered and resolved at once; 2: a complaint set pending; 3: a complaint left new;
    # 4: a question on the web, under no policy.
    answered = await opened(customer_id=happy, channel="email", category="product", product=f"P-{run}")
    reply = await http.post(f"/v1/tickets/{answered}/posts", json={"body": "Here is how."})
    assert (reply.status_code, reply.json()["status"]) == (201, "open")
    assert (await http.patch(f"/v1/tickets/{answered}", json={"status": "resolved"})).status_code == 200
    pending = await opened(
        customer_id=unhappy, kind="complaint", channel="phone", category="service", group=f"returns-{run}"
    )
    assert (await http.patch(f"/v1/tickets/{pending}", json={"status": "pending"})).status_code == 200
    waiting = await opened(customer_id=unhappy, kind="complaint", channel="phone", category="service")
    await opened(customer_id=happy, kind="question", channel="web")
    # 5: the same customer's complaint of two days ago, never answered: both timers breached.
    old = await open_ago(
        store, run, "old", 2 * D, customer_id=unhappy, kind="complaint", channel="phone", category="people"
    )
    # 6: a request of 40 days ago, answered in half an hour, open ever since: resolution breached.
    ancient = await open_ago(store, run, "ancient", 40 * D, customer_id=happy, kind="request", channel="email")
    answer_at = ancient.created_at + timedelta(minutes=30)

    def answer(ticket: domain.Ticket) -> domain.Ticket:
        return domain.post(ticket, domain.Post(f"P-{run}", answer_at, domain.Actor("agent", "agent-1"), "Done."))

    changed = await handlers.change_ticket(store, ancient.ticket_id, answer, seen_by=None)  # type: ignore[arg-type]
    assert changed is not None and changed.status == "open"

    now = datetime.now(UTC)
    window = {"from": (now - 60 * D).isoformat(), "to": (now + timedelta(minutes=1)).isoformat()}

    by_channel = (await http.get("/v1/reports/tickets", params={**window, "by": "channel"})).json()
    assert by_channel == [
        {"key": "email", "requests": 2, "complaints": 0, "questions": 0, "total": 2},
        {"key": "phone", "requests": 0, "complaints": 3, "questions": 0, "total": 3},
        {"key": "web", "requests": 0, "complaints": 0, "questions": 1, "total": 1},
    ]
    by_period = (await http.get("/v1/reports/tickets", params=window)).json()
    months = Counter(f"{at:%Y-%m}" for at in (now, now, now, now, old.created_at, ancient.created_at))
    assert {r["key"]: r["total"] for r in by_period} == dict(months)
    by_product = (await http.get("/v1/reports/tickets", params={**window, "by": "product"})).json()
    assert [(r["key"], r["total"]) for r in by_product] == [(f"P-{run}", 1), (None, 5)]
    # The default range is the last 90 days, up to now.
    assert sum(r["total"] for r in (await http.get("/v1/reports/tickets")).json()) == 6

    sla = {r["key"]: r for r in (await http.get("/v1/reports/sla", params={**window, "by": "channel"})).json()}
    email, phone, web = sla["email"], sla["phone"], sla["web"]
    assert (email["tickets"], email["without_policy"]) == (2, 0)
    # First response: both met, one at once, one in 30 minutes; resolution: one met, one breached.
    first, resolution = email["first_response"], email["resolution"]
    assert decided(first) == (2, 0, 0, 100.0)
    assert (first["median_hours"], first["average_hours"]) == (0.25, 0.25)
    assert decided(resolution) == (1, 1, 0, 50.0)
    assert resolution["median_hours"] is not None and resolution["median_hours"] < 0.01
    assert decided(email["next_response"]) == (0, 0, 0, None)
    assert email["next_response"]["median_hours"] is None
    # Phone: the old complaint breached both; the pending and the new one are still within their hour.
    assert (phone["tickets"], phone["without_policy"]) == (3, 0)
    assert (decided(phone["first_response"]), decided(phone["resolution"])) == ((0, 1, 2, 0.0), (0, 1, 2, 0.0))
    assert phone["first_response"]["median_hours"] is None
    assert (web["tickets"], web["without_policy"], web["first_response"]["percent_met"]) == (1, 1, None)

    [complainer] = (await http.get("/v1/reports/repeat-complainers", params=window)).json()
    assert (complainer["customer_id"], complainer["complaints"], complainer["open"]) == (unhappy, 3, 3)
    assert complainer["categories"] == ["people", "service"]
    assert datetime.fromisoformat(complainer["first_at"]) == old.created_at
    assert datetime.fromisoformat(complainer["last_at"]) > now - timedelta(minutes=5)
    assert (await http.get("/v1/reports/repeat-complainers", params={**window, "min": 4})).json() == []

    backlog = (await http.get("/v1/reports/backlog")).json()
    assert backlog["open_tickets"] == 5
    buckets = {b["bucket"]: b for b in backlog["buckets"]}
    assert list(buckets) == ["under_1_day", "1_to_3_days", "3_to_7_days", "7_to_30_days", "over_30_days"]
    assert [(b["total"], b["new"], b["open"], b["pending"]) for b in buckets.values()] == [
        (3, 2, 0, 1),
        (1, 1, 0, 0),
        (0, 0, 0, 0),
        (0, 0, 0, 0),
        (1, 0, 1, 0),
    ]
    assert (buckets["1_to_3_days"]["oldest_ticket_id"], buckets["over_30_days"]["oldest_ticket_id"]) == (
        old.ticket_id,
        ancient.ticket_id,
    )
    assert 40 * 24 <= buckets["over_30_days"]["oldest_age_hours"] < 40 * 24 + 1
    assert buckets["3_to_7_days"]["oldest_ticket_id"] is None
    returns = (await http.get("/v1/reports/backlog", params={"group": f"returns-{run}"})).json()
    assert (returns["group"], returns["open_tickets"], returns["buckets"][0]["oldest_ticket_id"]) == (
        f"returns-{run}",
        1,
        pending,
    )
    assert waiting not in {b["oldest_ticket_id"] for b in returns["buckets"]}

    # An agent of the returns group sees its one ticket, in every report.
    agent = {"X-API-Key": "", **bearer("agent-9", "tickets:read", groups=[f"returns-{run}"])}
    seen = (await http.get("/v1/reports/tickets", params={**window, "by": "channel"}, headers=agent)).json()
    assert seen == [{"key": "phone", "requests": 0, "complaints": 1, "questions": 0, "total": 1}]
    assert (await http.get("/v1/reports/backlog", headers=agent)).json()["open_tickets"] == 1
    assert (await http.get("/v1/reports/repeat-complainers", params=window, headers=agent)).json() == []


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/reports/tickets", {"from": "2026-11-02T00:00:00Z", "to": "2026-11-01T00:00:00Z"}),
        ("/v1/reports/sla", {"from": "2025-01-01T00:00:00Z", "to": "2026-11-01T00:00:00Z"}),
        ("/v1/reports/repeat-complainers", {"from": "2026-11-01T00:00:00", "to": "2026-11-02T00:00:00Z"}),
        ("/v1/reports/tickets", {"to": "0001-01-02T00:00:00Z"}),
        ("/v1/reports/tickets", {"by": "agent"}),
        ("/v1/reports/sla", {"by": "kind"}),
        ("/v1/reports/repeat-complainers", {"min": "1"}),
        ("/v1/reports/repeat-complainers", {"min": "101"}),
    ],
)
async def test_a_bad_range_grouping_or_minimum_is_a_problem(
    support: tuple[Store, httpx.AsyncClient], path: str, params: dict[str, str]
) -> None:
    _, http = support
    answer = await http.get(path, params=params)
    assert (answer.status_code, answer.headers["content-type"]) == (422, PROBLEM), answer.text
