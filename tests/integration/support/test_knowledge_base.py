"""The knowledge base on the real database: search finds a published article by words of its solution (stemmed,
ranked by BM25, drafts and archived ones left out), a ticket gets suggestions from its text, and each use on a
ticket is counted once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from crm_shared.store import Store
from crm_support.app import INDEXES, create_service

from helpers import ADMIN_HEADERS, bearer

NewStore = Callable[..., Awaitable[Store]]


@pytest.fixture
async def support(new_store: NewStore) -> AsyncIterator[httpx.AsyncClient]:
    store = await new_store("support_kb", INDEXES)
    app = create_service()
    app.state.runtime.store = store
    async with httpx.AsyncClient(
        headers=ADMIN_HEADERS, transport=httpx.ASGITransport(app=app), base_url="http://support"
    ) as http:
        yield http


def article(title: str, problem: str, solution: str, **more: object) -> dict[str, object]:
    return {"title": title, "problem": problem, "solution": solution, "status": "published", **more}


async def test_search_finds_an_article_by_words_of_its_solution_ranked_by_relevance(
    support: httpx.AsyncClient,
) -> None:
    http, run = support, uuid.uuid4().hex[:8]
    articles = {
        f"jam-{run}": article(
            "Paper jams in the A3 printer",
            "The printer stops with a paper jam.",
            f"Remove the tray and clean the feed rollers {run}.",
        ),
        f"panel-{run}": article(
            "Cracked front panel", "The panel arrived cracked.", f"Order a replacement panel through returns {run}."
        ),
        f"rollers-{run}": article(f"Worn rollers {run}", "Rollers squeak.", "Replace the rollers.", status="draft"),
    }
    for article_id, body in articles.items():
        assert (await http.put(f"/v1/kb/articles/{article_id}", json=body)).status_code == 201
    assert (await http.put(f"/v1/kb/articles/jam-{run}", json=articles[f"jam-{run}"])).status_code == 200

    # Words of the solution, written otherwise: "cleaning" finds "clean", "roller" finds "rollers".
    found = (await http.get("/v1/kb/search", params={"q": f"cleaning the roller {run}"})).json()
    assert found[0]["article"]["article_id"] == f"jam-{run}"
    assert {"clean", "roller"} <= set(found[0]["matched"])
    assert f"rollers-{run}" not in [f["article"]["article_id"] for f in found]  # a draft is not found
    # The rarer word decides: both mention the run, only one the panel.
    ranked = (await http.get("/v1/kb/search", params={"q": f"panel {run}"})).json()
    assert [f["article"]["article_id"] for f in ranked][:2] == [f"panel-{run}", f"jam-{run}"]
    assert ranked[0]["score"] > ranked[1]["score"]
    assert (await http.get("/v1/kb/search", params={"q": "the and of"})).json() == []

    archived = {**articles[f"panel-{run}"], "status": "archived"}
    assert (await http.put(f"/v1/kb/articles/panel-{run}", json=archived)).status_code == 200
    after = (await http.get("/v1/kb/search", params={"q": f"panel {run}"})).json()
    assert f"panel-{run}" not in [f["article"]["article_id"] for f in after]


async def test_a_ticket_gets_suggestions_and_each_use_is_counted_once(support: httpx.AsyncClient) -> None:
    http, run = support, uuid.uuid4().hex[:8]
    body = article(f"Heater {run} will not start", "No heat.", f"Reset the {run} thermostat and bleed the radiators.")
    assert (await http.put(f"/v1/kb/articles/heat-{run}", json=body)).status_code == 201
    opened = await http.post(
        "/v1/tickets",
        json={
            "customer_id": f"C-{run}",
            "subject": "Cold flat",
            "description": f"My {run} radiators stay cold.",
            "channel": "phone",
            "group": f"heating-{run}",
        },
    )
    ticket_id = opened.json()["ticket_id"]
    suggested = (await http.get(f"/v1/tickets/{ticket_id}/suggested-articles")).json()
    assert [s["article"]["article_id"] for s in suggested] == [f"heat-{run}"]

    used = await http.post(f"/v1/tickets/{ticket_id}/articles", json={"article_id": f"heat-{run}", "resolved": True})
    again = await http.post(f"/v1/tickets/{ticket_id}/articles", json={"article_id": f"heat-{run}", "resolved": True})
    assert (used.status_code, again.status_code) == (201, 200)
    assert (again.json()["used"], again.json()["resolved"]) == (1, 1)
    missing = await http.post(f"/v1/tickets/{ticket_id}/articles", json={"article_id": "nope"})
    assert missing.status_code == 404
    # Agents read and use the knowledge base; writing it needs kb:write.
    agent = {"X-API-Key": "", **bearer("agent-1", "tickets:read", "tickets:write")}
    assert (await http.get("/v1/kb/search", params={"q": "heater"}, headers=agent)).status_code == 200
    assert (await http.put(f"/v1/kb/articles/x-{run}", json=body, headers=agent)).status_code == 403
