"""The service desk: the queue by SLA due time with its timers, a ticket's page, a reply, a change, an article."""

from __future__ import annotations

import re
from typing import Any

import httpx

from .conftest import Console

AGENT_SCOPES = ("tickets:read", "tickets:write", "customers:read", "records:all")


def _timer(kind: str, status: str, due_at: str | None, **more: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "status": status,
        "target_hours": 8.0,
        "business_hours": True,
        "elapsed_seconds": 600,
        "remaining_seconds": 28_200,
        "started_at": "2026-12-01T09:00:00Z",
        "stopped_at": None,
        "due_at": due_at,
        "warn_at": None,
        "cycle": 1,
        **more,
    }


def _ticket(ticket_id: str, **more: Any) -> dict[str, Any]:
    return {
        "ticket_id": ticket_id,
        "customer_id": "C-1002",
        "kind": "request",
        "subject": f"Subject of {ticket_id}",
        "channel": "email",
        "priority": "normal",
        "category": "service",
        "status": "new",
        "order_id": None,
        "product": None,
        "group": None,
        "assignee_id": None,
        "contract_id": None,
        "created_at": "2026-12-01T09:00:00Z",
        "resolved_at": None,
        "sla_policy_id": "demo-standard",
        "value_tier": None,
        "sla_due_at": None,
        "sla_next": None,
        "timers": None,
        "posts": None,
        "history": None,
        **more,
    }


FIRST_DUE = "2026-12-01T17:00:00+00:00"
WHOLE = _ticket(
    "TK-1",
    priority="high",
    timers=[
        _timer("first_response", "running", FIRST_DUE),
        _timer("resolution", "running", "2026-12-05T17:00:00+00:00", target_hours=40.0),
    ],
    posts=[
        {
            "post_id": "TK-1-1",
            "at": "2026-12-01T09:00:00Z",
            "author": "customer",
            "author_id": "C-1002",
            "body": "Ordered last week, nothing yet.",
            "public": True,
        },
        {
            "post_id": "P-2",
            "at": "2026-12-01T09:05:00Z",
            "author": "agent",
            "author_id": "token:agent-2",
            "body": "Courier asked.",
            "public": False,
        },
    ],
    history=[{"at": "2026-12-01T09:00:00Z", "actor": "system:key:admin", "action": "created", "detail": {}}],
)
ANSWERED = {
    **WHOLE,
    "status": "open",
    "timers": [
        _timer("first_response", "met", None, stopped_at="2026-12-01T09:10:00Z"),
        _timer("resolution", "running", "2026-12-05T17:00:00+00:00", target_hours=40.0),
    ],
    "posts": [
        *WHOLE["posts"],
        {
            "post_id": "P-3",
            "at": "2026-12-01T09:10:00Z",
            "author": "agent",
            "author_id": "token:agent-1",
            "body": "It left our depot today.",
            "public": True,
        },
    ],
}
ARTICLE = {
    "article_id": "demo-descale",
    "title": "Descaling the ATM-200",
    "problem": "Coffee runs slowly.",
    "solution": "Run the descale programme twice.",
    "product": "ATM-200",
    "tags": [],
    "status": "published",
    "updated_at": "2026-11-01T00:00:00Z",
    "used": 3,
    "resolved": 1,
}


def _timer_span(html: str, testid: str) -> str:
    found = re.search(rf'<span[^>]*data-testid="{testid}"[^>]*>[^<]*</span>', html)
    assert found, f"no {testid} in the page"
    return found.group(0)


def _on_ticket(console: Console, ticket: dict[str, Any], suggestions: list[Any] | None = None) -> None:
    console.services.on("GET", "support", "/v1/tickets/TK-1", (200, ticket))
    console.services.on("GET", "customer", "/v1/customers/C-1002", (200, {"customer_id": "C-1002", "name": "Bo Demo"}))
    console.services.on(
        "GET",
        "support",
        "/v1/tickets/TK-1/suggested-articles",
        (200, suggestions if suggestions is not None else [{"article": ARTICLE, "score": 2.5, "matched": ["slow"]}]),
    )


# The queue


def _due(kind: str, status: str, due_at: str) -> dict[str, Any]:
    """A ticket's `sla_next`, as the support service lists it."""
    return {
        "kind": kind,
        "status": status,
        "target_hours": 8.0,
        "business_hours": True,
        "started_at": "2026-12-01T09:00:00Z",
        "due_at": due_at,
        "warn_at": None,
        "cycle": 1,
    }


def _queue_services(console: Console, items: list[dict[str, Any]], next_cursor: str | None = None) -> None:
    console.services.on("GET", "support", "/v1/tickets", (200, {"items": items, "next_cursor": next_cursor}))
    console.services.on("GET", "customer", "/v1/customers/C-1002", (200, {"customer_id": "C-1002", "name": "Bo Demo"}))


def _asked(console: Console) -> httpx.Request:
    (asked,) = console.services.sent("GET", "support", "/v1/tickets")
    return asked


def _no_ticket_read(console: Console) -> bool:
    return not [r for r in console.services.requests if r.url.path.startswith("/v1/tickets/")]


def test_the_queue_lists_open_tickets_by_sla_due_time_with_running_timers(console: Console) -> None:
    console.sign_in_as("agent-1", *AGENT_SCOPES)
    sooner = _ticket(
        "TK-SOONER",
        status="open",
        priority="urgent",
        assignee_id="agent-1",
        sla_due_at="2026-12-01T10:00:00Z",
        sla_next=_due("first_response", "breached", "2026-12-01T10:00:00Z"),
    )
    later = _ticket(
        "TK-LATER",
        created_at="2026-12-01T08:00:00Z",
        sla_due_at="2026-12-03T09:00:00Z",
        sla_next=_due("resolution", "running", "2026-12-03T09:00:00Z"),
    )
    no_policy = _ticket("TK-NONE", status="pending", sla_policy_id=None, created_at="2026-11-01T08:00:00Z")
    _queue_services(console, [sooner, later, no_policy])

    page = console.client.get("/service")

    assert page.status_code == 200
    params = _asked(console).url.params
    assert params.get_list("status") == ["new", "open", "pending"]
    assert (params["sort"], params["limit"], "priority" in params, "assignee_id" in params) == (
        "sla_due",
        "100",
        False,
        False,
    )
    assert _no_ticket_read(console)
    order = re.findall(r'data-testid="ticket-row" data-ticket-id="([^"]+)"', page.text)
    assert order == ["TK-SOONER", "TK-LATER", "TK-NONE"]  # the service's order
    assert 'data-timer-state="breached" data-timer-due="2026-12-01T10:00:00Z"' in page.text
    assert 'data-timer-state="running" data-timer-due="2026-12-03T09:00:00Z"' in page.text
    rows = page.text.split('data-testid="ticket-row"')
    assert "first response" in rows[1] and "resolution" in rows[2]
    assert "no SLA policy" in page.text and "Bo Demo" in page.text and "(you)" in page.text
    assert 'hx-trigger="every 10s"' in page.text and 'class="table-wrap"' in page.text
    assert 'data-testid="queue-truncated"' not in page.text


def test_the_queue_filters_by_status_priority_and_assignee(console: Console) -> None:
    console.sign_in_as("agent-1", *AGENT_SCOPES)
    urgent = _ticket("TK-U", status="pending", priority="urgent", assignee_id="agent-1")
    _queue_services(console, [urgent])

    page = console.client.get("/service?status=pending&priority=urgent&mine=1")

    params = _asked(console).url.params
    assert params.get_list("status") == ["pending"] and params["priority"] == "urgent"
    assert (params["assignee_id"], params["sort"]) == ("agent-1", "sla_due")
    assert 'data-ticket-id="TK-U"' in page.text and "paused while pending" in page.text
    assert _no_ticket_read(console)
    assert 'hx-get="/service?status=pending&amp;priority=urgent&amp;mine=1"' in page.text


def test_the_queue_polls_for_its_table_alone(console: Console) -> None:
    console.sign_in_as("agent-1", *AGENT_SCOPES)
    _queue_services(
        console, [_ticket("TK-1", sla_due_at=FIRST_DUE, sla_next=_due("first_response", "running", FIRST_DUE))]
    )
    part = console.htmx("GET", "/service")
    assert part.status_code == 200
    assert "<html" not in part.text and 'data-ticket-id="TK-1"' in part.text
    assert f'data-timer-due="{FIRST_DUE}"' in part.text
    assert len(console.services.sent("GET", "support", "/v1/tickets")) == 1 and _no_ticket_read(console)


def test_a_queue_longer_than_a_page_says_only_the_first_are_shown(console: Console) -> None:
    console.sign_in_as("agent-1", *AGENT_SCOPES)
    _queue_services(console, [_ticket("TK-1")], next_cursor="eyJwYXJ0IjogInJlc3QifQ==")
    page = console.client.get("/service")
    assert 'data-testid="queue-truncated"' in page.text and "Only the 1 due first are shown" in page.text
    assert "nothing due" in page.text


def test_an_unknown_filter_value_reads_the_open_tickets(console: Console) -> None:
    console.sign_in_as("agent-1", *AGENT_SCOPES)
    _queue_services(console, [])
    page = console.client.get("/service?status=%24where&priority=huge")
    assert page.status_code == 200 and "No ticket open" in page.text
    params = _asked(console).url.params
    assert params.get_list("status") == ["new", "open", "pending"] and "priority" not in params


def test_the_queue_needs_tickets_read(console: Console) -> None:
    console.sign_in_as("rep", "customers:read", "opportunities:read")
    page = console.client.get("/service")
    assert page.status_code == 403 and "tickets:read" in page.text
    assert not console.services.requests


# A ticket's page


def test_the_ticket_page_shows_facts_timers_conversation_and_suggestions(console: Console) -> None:
    console.sign_in_as("agent-1", *AGENT_SCOPES)
    _on_ticket(console, WHOLE)

    page = console.client.get("/service/tickets/TK-1")

    assert page.status_code == 200
    first = _timer_span(page.text, "first-response-timer")
    assert 'data-timer-state="running"' in first and f'data-timer-due="{FIRST_DUE}"' in first
    assert 'data-timer-state="running"' in _timer_span(page.text, "resolution-timer")
    assert 'href="/customers/C-1002"' in page.text and "Bo Demo" in page.text
    conversation = page.text.split('data-testid="conversation"', 1)[1].split("</section>", 1)[0]
    assert conversation.index("Ordered last week") < conversation.index("Courier asked.")
    assert "internal note" in conversation and "agent-2" in conversation and "token:" not in conversation
    assert 'data-testid="reply-form"' in page.text and 'name="body"' in page.text
    assert 'data-article-id="demo-descale"' in page.text and "Link to ticket" in page.text
    (suggested,) = console.services.sent("GET", "support", "/v1/tickets/TK-1/suggested-articles")
    assert suggested.url.params["limit"] == "5"


def test_a_met_first_response_says_so_and_is_not_counted_down(console: Console) -> None:
    console.sign_in_as("agent-1", *AGENT_SCOPES)
    _on_ticket(console, ANSWERED)
    first = _timer_span(console.client.get("/service/tickets/TK-1").text, "first-response-timer")
    assert 'data-timer-state="met"' in first and "data-timer-due" not in first and "met" in first


def test_a_ticket_without_a_policy_says_no_timer_runs(console: Console) -> None:
    console.sign_in_as("agent-1", *AGENT_SCOPES)
    _on_ticket(console, {**WHOLE, "timers": [], "sla_policy_id": None}, suggestions=[])
    page = console.client.get("/service/tickets/TK-1")
    assert "No SLA policy applies" in page.text and "first-response-timer" not in page.text
    assert "No published article matches" in page.text


def test_a_reader_sees_the_ticket_without_the_reply_box(console: Console) -> None:
    console.sign_in_as("viewer", "tickets:read", "records:all")
    _on_ticket(console, WHOLE)
    page = console.client.get("/service/tickets/TK-1")
    assert page.status_code == 200 and 'data-testid="reply-form"' not in page.text
    assert "Assign to me" not in page.text and "Link to ticket" not in page.text


def test_a_ticket_one_does_not_see_is_a_404_page(console: Console) -> None:
    console.sign_in_as("agent-1", *AGENT_SCOPES)
    console.services.on(
        "GET",
        "support",
        "/v1/tickets/TK-9",
        (404, {"title": "Ticket not found", "status": 404, "detail": "no ticket TK-9"}),
    )
    page = console.client.get("/service/tickets/TK-9")
    assert page.status_code == 404 and "no ticket TK-9" in page.text


# Replying


def test_a_reply_is_posted_and_the_conversation_and_sla_come_back_without_a_reload(console: Console) -> None:
    console.sign_in_as("agent-1", *AGENT_SCOPES)
    _on_ticket(console, ANSWERED)
    console.services.on("POST", "support", "/v1/tickets/TK-1/posts", (201, {**WHOLE, "timers": None}))

    part = console.htmx(
        "POST", "/service/tickets/TK-1/posts", data={"body": "It left our depot today.", "kind": "reply"}
    )

    assert part.status_code == 200
    (sent,) = console.services.sent("POST", "support", "/v1/tickets/TK-1/posts")
    assert console.services.body(sent) == {"body": "It left our depot today.", "public": True, "from_customer": False}
    assert sent.headers["authorization"] == "Bearer token-1" and sent.headers["idempotency-key"]
    assert "<html" not in part.text and 'id="ticket"' in part.text
    assert 'data-timer-state="met"' in _timer_span(part.text, "first-response-timer")
    assert "It left our depot today." in part.text.split('data-testid="conversation"', 1)[1]
    assert '<textarea name="body" rows="5" required></textarea>' in part.text


def test_an_internal_note_and_a_relayed_customer_message(console: Console) -> None:
    console.sign_in_as("agent-1", *AGENT_SCOPES)
    _on_ticket(console, WHOLE)
    console.services.on("POST", "support", "/v1/tickets/TK-1/posts", (201, WHOLE))
    console.htmx("POST", "/service/tickets/TK-1/posts", data={"body": "Ask the courier.", "kind": "note"})
    console.htmx("POST", "/service/tickets/TK-1/posts", data={"body": "Still nothing.", "kind": "customer"})
    note, relayed = (
        console.services.body(r) for r in console.services.sent("POST", "support", "/v1/tickets/TK-1/posts")
    )
    assert note == {"body": "Ask the courier.", "public": False, "from_customer": False}
    assert relayed == {"body": "Still nothing.", "public": True, "from_customer": True}


def test_a_plain_form_reply_goes_back_to_the_ticket(console: Console) -> None:
    console.sign_in_as("agent-1", *AGENT_SCOPES)
    console.services.on("POST", "support", "/v1/tickets/TK-1/posts", (201, WHOLE))
    answer = console.post("/service/tickets/TK-1/posts", {"body": "Hello"})
    assert answer.status_code == 303 and answer.headers["location"] == "/service/tickets/TK-1"


def test_a_refused_reply_is_shown_in_the_form_with_the_draft_kept(console: Console) -> None:
    console.sign_in_as("agent-1", *AGENT_SCOPES)
    _on_ticket(console, WHOLE)
    console.services.on(
        "POST",
        "support",
        "/v1/tickets/TK-1/posts",
        (409, {"title": "Post refused", "status": 409, "detail": "only agents write internal notes"}),
    )
    part = console.htmx("POST", "/service/tickets/TK-1/posts", data={"body": "My draft", "kind": "note"})
    assert part.status_code == 409
    form = part.text.split('data-testid="reply-form"', 1)[1]
    assert 'class="problem"' in form and "only agents write internal notes" in form
    assert ">My draft</textarea>" in form and 'value="note" checked' in form


def test_an_invalid_reply_shows_the_services_errors(console: Console) -> None:
    console.sign_in_as("agent-1", *AGENT_SCOPES)
    _on_ticket(console, WHOLE)
    console.services.on(
        "POST",
        "support",
        "/v1/tickets/TK-1/posts",
        (
            422,
            {
                "title": "Invalid request",
                "status": 422,
                "detail": "1 invalid field",
                "errors": [{"location": "body.body", "message": "String should have at least 1 character"}],
            },
        ),
    )
    page = console.post("/service/tickets/TK-1/posts", {"body": ""})
    assert page.status_code == 422 and "<html" in page.text
    assert "<code>body.body</code>: String should have at least 1 character" in page.text


def test_a_reply_needs_the_csrf_token(console: Console) -> None:
    console.sign_in_as("agent-1", *AGENT_SCOPES)
    answer = console.client.post("/service/tickets/TK-1/posts", data={"body": "Hello"})
    assert answer.status_code == 400
    assert not console.services.requests


def test_a_reply_needs_tickets_read_at_least(console: Console) -> None:
    console.sign_in_as("rep", "customers:read")
    answer = console.post("/service/tickets/TK-1/posts", {"body": "Hello"})
    assert answer.status_code == 403
    assert not console.services.requests


# Agent actions


def test_assign_to_me_and_change_the_status(console: Console) -> None:
    console.sign_in_as("agent-1", *AGENT_SCOPES)
    _on_ticket(console, WHOLE)
    console.services.on("PATCH", "support", "/v1/tickets/TK-1", (200, WHOLE))
    assert console.htmx("POST", "/service/tickets/TK-1/change", data={"assign": "me"}).status_code == 200
    assert console.htmx("POST", "/service/tickets/TK-1/change", data={"status": "pending"}).status_code == 200
    assign, status = (console.services.body(r) for r in console.services.sent("PATCH", "support", "/v1/tickets/TK-1"))
    assert assign == {"assignee_id": "agent-1"} and status == {"status": "pending"}


def test_the_status_choices_follow_the_lifecycle(console: Console) -> None:
    console.sign_in_as("agent-1", *AGENT_SCOPES)
    _on_ticket(console, {**WHOLE, "status": "closed", "assignee_id": "agent-1"})
    page = console.client.get("/service/tickets/TK-1")
    status_form = page.text.split('data-testid="status-form"', 1)[1].split("</form>", 1)[0]
    assert re.findall(r"<option>(\w+)</option>", status_form) == ["open"]
    assert "Unassign me" in page.text


def test_a_refused_status_change_is_shown(console: Console) -> None:
    console.sign_in_as("agent-1", *AGENT_SCOPES)
    _on_ticket(console, WHOLE)
    console.services.on(
        "PATCH",
        "support",
        "/v1/tickets/TK-1",
        (409, {"title": "Status refused", "status": 409, "detail": "a closed ticket cannot become pending"}),
    )
    part = console.htmx("POST", "/service/tickets/TK-1/change", data={"status": "pending"})
    assert part.status_code == 409
    facts = part.text.split('data-testid="ticket-facts"', 1)[1].split("</section>", 1)[0]
    assert 'class="problem"' in facts and "a closed ticket cannot become pending" in facts


def test_a_change_needs_the_csrf_token(console: Console) -> None:
    console.sign_in_as("agent-1", *AGENT_SCOPES)
    assert console.client.post("/service/tickets/TK-1/change", data={"status": "open"}).status_code == 400
    assert not console.services.requests


# Knowledge-base articles


def test_linking_an_article_records_its_use(console: Console) -> None:
    console.sign_in_as("agent-1", *AGENT_SCOPES)
    console.services.on("POST", "support", "/v1/tickets/TK-1/articles", (201, {**ARTICLE, "used": 4, "resolved": 2}))
    part = console.htmx(
        "POST", "/service/tickets/TK-1/articles", data={"article_id": "demo-descale", "resolved": "true"}
    )
    assert part.status_code == 200 and 'data-testid="article-linked"' in part.text
    assert "used on 4 tickets, solved 2" in part.text
    (sent,) = console.services.sent("POST", "support", "/v1/tickets/TK-1/articles")
    assert console.services.body(sent) == {"article_id": "demo-descale", "resolved": True}


def test_an_article_that_is_gone_is_a_problem_in_place(console: Console) -> None:
    console.sign_in_as("agent-1", *AGENT_SCOPES)
    console.services.on(
        "POST",
        "support",
        "/v1/tickets/TK-1/articles",
        (404, {"title": "Article not found", "status": 404, "detail": "no article demo-descale"}),
    )
    part = console.htmx("POST", "/service/tickets/TK-1/articles", data={"article_id": "demo-descale"})
    assert part.status_code == 404 and 'class="problem"' in part.text and "no article demo-descale" in part.text
    (sent,) = console.services.sent("POST", "support", "/v1/tickets/TK-1/articles")
    assert console.services.body(sent) == {"article_id": "demo-descale", "resolved": False}


def test_linking_an_article_needs_the_csrf_token(console: Console) -> None:
    console.sign_in_as("agent-1", *AGENT_SCOPES)
    answer = console.client.post("/service/tickets/TK-1/articles", data={"article_id": "demo-descale"})
    assert answer.status_code == 400
    assert not console.services.requests
