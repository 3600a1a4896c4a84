"""The sales pages: the board by stage and its moves, the forecast against quota, my activities, quotes."""

from __future__ import annotations

import json
import re
from html import unescape
from typing import Any

import httpx
import pytest

from crm_console.pages.sales import parts_of

from .conftest import Console

SALES_SCOPES = (
    "opportunities:read",
    "opportunities:write",
    "forecasts:read",
    "activities:read",
    "activities:write",
    "quotes:read",
    "quotes:write",
    "customers:read",
)

PIPELINE = {
    "pipeline_id": "new-business",
    "name": "New business",
    "stages": [
        {"stage_id": "qualify", "name": "Qualify", "probability": 0.1, "forecast_category": "pipeline", "requires": []},
        {"stage_id": "develop", "name": "Develop", "probability": 0.3, "forecast_category": "pipeline", "requires": []},
        {
            "stage_id": "propose",
            "name": "Propose",
            "probability": 0.6,
            "forecast_category": "best_case",
            "requires": ["amount", "expected_close"],
        },
    ],
}


def opportunity(opportunity_id: str, stage: str, **extra: Any) -> dict[str, Any]:
    return {
        "opportunity_id": opportunity_id,
        "customer_id": "C-1001",
        "name": f"Deal {opportunity_id}",
        "pipeline_id": "new-business",
        "stage": stage,
        "status": "open",
        "amount": "4800.00",
        "currency": "EUR",
        "probability": 0.1,
        "forecast_category": "pipeline",
        "expected_close": None,
        "owner_id": "rep-1",
        **extra,
    }


def column_of(page: str, opportunity_id: str) -> str:
    """The stage of the column the card is in, read from the page as a browser would."""
    for column in re.finditer(r'data-testid="stage-column" data-stage="([^"]+)"(.*?)</section>', page, re.S):
        if f'data-opportunity-id="{opportunity_id}"' in column.group(2):
            return column.group(1)
    raise AssertionError(f"no card {opportunity_id} on the board")


def a_board(console: Console, *cards: dict[str, Any]) -> None:
    console.services.on("GET", "sales", "/v1/pipelines", (200, [PIPELINE]))
    console.services.on("GET", "sales", "/v1/opportunities", (200, {"items": list(cards), "next_cursor": None}))


# ---------------------------------------------------------------- the index


def test_the_index_links_only_the_pages_of_ones_scopes(console: Console) -> None:
    console.sign_in_as("rep", "opportunities:read", "activities:read")
    page = console.client.get("/sales").text
    assert 'href="/sales/pipeline"' in page and 'href="/sales/activities"' in page
    assert 'href="/sales/forecast"' not in page and 'href="/sales/quotes"' not in page


def test_sales_needs_one_of_its_scopes(console: Console) -> None:
    console.sign_in_as("agent", "tickets:read")
    assert console.client.get("/sales").status_code == 403


# ---------------------------------------------------------------- the pipeline


def test_the_board_has_a_column_per_stage_in_order_and_a_card_per_open_opportunity(console: Console) -> None:
    console.sign_in_as("manager-1", *SALES_SCOPES)
    a_board(
        console,
        opportunity("O-1", "qualify"),
        opportunity("O-2", "propose", expected_close="2027-01-31", amount="1200.50"),
    )
    page = console.client.get("/sales/pipeline")
    assert page.status_code == 200
    stages = re.findall(r'data-testid="stage-column" data-stage="([^"]+)"', page.text)
    assert stages == ["qualify", "develop", "propose"]
    assert column_of(page.text, "O-1") == "qualify" and column_of(page.text, "O-2") == "propose"
    assert "Deal O-2" in page.text and "1,200.50 EUR" in page.text and "2027-01-31" in page.text
    assert "rep-1" in page.text and 'href="/customers/C-1001"' in page.text
    (asked,) = console.services.sent("GET", "sales", "/v1/opportunities")
    assert asked.url.params["status"] == "open" and asked.url.params["pipeline_id"] == "new-business"
    assert "owner_id" not in asked.url.params
    # The button moves a card to the next stage; the last stage has none.
    assert page.text.count('data-testid="advance"') == 1
    assert 'name="stage" value="develop"' in page.text
    assert '<script src="/static/sales.js"' in page.text


def test_only_mine_asks_for_the_users_own(console: Console) -> None:
    console.sign_in_as("rep-1", *SALES_SCOPES)
    a_board(console)
    console.client.get("/sales/pipeline?mine=1")
    (asked,) = console.services.sent("GET", "sales", "/v1/opportunities")
    assert asked.url.params["owner_id"] == "rep-1"


def test_the_board_follows_the_pages_of_opportunities(console: Console) -> None:
    console.sign_in_as("manager-1", *SALES_SCOPES)
    console.services.on("GET", "sales", "/v1/pipelines", (200, [PIPELINE]))

    def pages(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("cursor") == "next":
            return httpx.Response(200, json={"items": [opportunity("O-2", "develop")], "next_cursor": None})
        return httpx.Response(200, json={"items": [opportunity("O-1", "qualify")], "next_cursor": "next"})

    console.services.on("GET", "sales", "/v1/opportunities", pages)
    page = console.client.get("/sales/pipeline").text
    assert column_of(page, "O-1") == "qualify" and column_of(page, "O-2") == "develop"


def test_a_reader_sees_the_board_without_buttons(console: Console) -> None:
    console.sign_in_as("viewer", "opportunities:read")
    a_board(console, opportunity("O-1", "qualify"))
    page = console.client.get("/sales/pipeline").text
    assert 'data-opportunity-id="O-1"' in page
    assert 'data-testid="advance"' not in page and 'draggable="true"' not in page


def test_an_unknown_pipeline_is_a_404(console: Console) -> None:
    console.sign_in_as("manager-1", *SALES_SCOPES)
    a_board(console)
    assert console.client.get("/sales/pipeline?pipeline_id=renewals").status_code == 404


def test_the_pipeline_needs_opportunities_read(console: Console) -> None:
    console.sign_in_as("rep", "activities:read")
    assert console.client.get("/sales/pipeline").status_code == 403


def test_advancing_moves_the_card_and_answers_the_board(console: Console) -> None:
    console.sign_in_as("manager-1", *SALES_SCOPES)
    board = {"stage": "qualify"}
    console.services.on("GET", "sales", "/v1/pipelines", (200, [PIPELINE]))
    console.services.on(
        "GET",
        "sales",
        "/v1/opportunities",
        lambda r: httpx.Response(200, json={"items": [opportunity("O-1", board["stage"])], "next_cursor": None}),
    )

    def moved(request: httpx.Request) -> httpx.Response:
        board["stage"] = json.loads(request.content)["stage"]
        return httpx.Response(200, json=opportunity("O-1", board["stage"]))

    console.services.on("POST", "sales", "/v1/opportunities/O-1/stage", moved)
    answer = console.htmx("POST", "/sales/pipeline/O-1/stage", data={"stage": "develop", "pipeline_id": "new-business"})
    assert answer.status_code == 200
    (sent,) = console.services.sent("POST", "sales", "/v1/opportunities/O-1/stage")
    assert console.services.body(sent) == {"stage": "develop"}
    assert answer.text.lstrip().startswith('<div id="board"')
    assert "<html" not in answer.text
    assert column_of(answer.text, "O-1") == "develop"
    assert 'data-testid="moved"' in answer.text


def test_a_refused_move_is_shown_on_the_card_which_stays(console: Console) -> None:
    console.sign_in_as("manager-1", *SALES_SCOPES)
    a_board(console, opportunity("O-1", "develop"))
    detail = "stage propose requires expected_close: opportunity O-1 has no expected close date"
    console.services.on(
        "POST",
        "sales",
        "/v1/opportunities/O-1/stage",
        (409, {"title": "Opportunity change refused", "status": 409, "detail": detail}),
    )
    answer = console.htmx("POST", "/sales/pipeline/O-1/stage", data={"stage": "propose"})
    assert answer.status_code == 409
    assert 'class="problem"' in answer.text and "has no expected close date" in unescape(answer.text)
    assert column_of(answer.text, "O-1") == "develop"


def test_a_move_without_htmx_goes_back_to_the_board(console: Console) -> None:
    console.sign_in_as("manager-1", *SALES_SCOPES)
    console.services.on("POST", "sales", "/v1/opportunities/O-1/stage", (200, opportunity("O-1", "develop")))
    answer = console.post("/sales/pipeline/O-1/stage", {"stage": "develop", "mine": "1"})
    assert answer.status_code == 303 and answer.headers["location"] == "/sales/pipeline?mine=1"


def test_winning_places_the_order_and_the_card_leaves_the_board(console: Console) -> None:
    console.sign_in_as("manager-1", *SALES_SCOPES)
    open_ones = [opportunity("O-1", "develop")]
    console.services.on("GET", "sales", "/v1/pipelines", (200, [PIPELINE]))
    console.services.on(
        "GET",
        "sales",
        "/v1/opportunities",
        lambda r: httpx.Response(200, json={"items": open_ones, "next_cursor": None}),
    )

    def won(request: httpx.Request) -> httpx.Response:
        open_ones.clear()
        return httpx.Response(200, json={**opportunity("O-1", "develop"), "status": "won"})

    console.services.on("POST", "sales", "/v1/opportunities/O-1/win", won)
    answer = console.htmx(
        "POST", "/sales/pipeline/O-1/close", data={"outcome": "won", "reason": " best offer ", "place_order": "1"}
    )
    assert answer.status_code == 200, answer.text
    (sent,) = console.services.sent("POST", "sales", "/v1/opportunities/O-1/win")
    assert console.services.body(sent) == {"reason": "best offer", "place_order": True}
    assert 'data-testid="closed"' in answer.text and "Deal O-1 is won" in answer.text
    assert 'data-opportunity-id="O-1"' not in answer.text


def test_losing_without_a_reason_is_the_services_refusal_on_the_card(console: Console) -> None:
    console.sign_in_as("manager-1", *SALES_SCOPES)
    a_board(console, opportunity("O-1", "develop"))
    problem = {
        "title": "Invalid request",
        "status": 422,
        "detail": "1 invalid field",
        "errors": [{"location": "body.reason", "message": "String should have at least 1 character"}],
    }
    console.services.on("POST", "sales", "/v1/opportunities/O-1/lose", (422, problem))
    answer = console.htmx("POST", "/sales/pipeline/O-1/close", data={"outcome": "lost", "reason": "  "})
    assert answer.status_code == 422
    (sent,) = console.services.sent("POST", "sales", "/v1/opportunities/O-1/lose")
    assert console.services.body(sent) == {"reason": ""}
    assert "body.reason" in answer.text and column_of(answer.text, "O-1") == "develop"


def test_closing_needs_an_outcome_and_the_csrf_token(console: Console) -> None:
    console.sign_in_as("manager-1", *SALES_SCOPES)
    assert console.htmx("POST", "/sales/pipeline/O-1/close", data={"outcome": "maybe"}).status_code == 422
    answer = console.client.post("/sales/pipeline/O-1/close", data={"outcome": "won"}, headers={"HX-Request": "true"})
    assert answer.status_code == 400
    assert not console.services.requests


def test_a_move_needs_the_csrf_token(console: Console) -> None:
    console.sign_in_as("manager-1", *SALES_SCOPES)
    answer = console.client.post("/sales/pipeline/O-1/stage", data={"stage": "develop"}, headers={"HX-Request": "true"})
    assert answer.status_code == 400
    assert not console.services.requests


def test_a_move_needs_opportunities_write(console: Console) -> None:
    console.sign_in_as("viewer", "opportunities:read")
    assert console.post("/sales/pipeline/O-1/stage", {"stage": "develop"}).status_code == 403
    assert not console.services.requests


# ---------------------------------------------------------------- the forecast


def forecast_of(period: str, closed: str = "0", commit: str = "0", quota: str | None = None) -> dict[str, Any]:
    categories = {
        key: {"count": 0, "amount": "0", "weighted": "0"} for key in ("pipeline", "best_case", "commit", "omitted")
    }
    categories["closed"] = {"count": 1, "amount": closed, "weighted": closed}
    categories["commit"] = {"count": 1, "amount": commit, "weighted": commit}
    return {
        "period": period,
        "currency": "EUR",
        "categories": categories,
        "weighted_pipeline": "0",
        "closed_won": closed,
        "won_count": 1,
        "commit": commit,
        "best_case": commit,
        "quota": quota,
        "attainment": str(round(float(closed) / float(quota), 4)) if quota else None,
        "gap": str(max(float(quota) - float(closed), 0)) if quota else None,
        "unpriced": [],
    }


@pytest.mark.parametrize(
    ("period", "parts"),
    [
        ("2027", ["2027-Q1", "2027-Q2", "2027-Q3", "2027-Q4"]),
        ("2027-Q2", ["2027-04", "2027-05", "2027-06"]),
        ("2027-11", ["2027-11"]),
        ("2027-Q5", None),
        ("next year", None),
    ],
)
def test_a_period_is_shown_by_its_parts(period: str, parts: list[str] | None) -> None:
    assert parts_of(period) == parts


def test_the_forecast_shows_each_quarter_and_the_year_against_quota(console: Console) -> None:
    console.sign_in_as("manager-1", *SALES_SCOPES)

    def forecasts(request: httpx.Request) -> httpx.Response:
        period = request.url.params["period"]
        if period == "2027":
            return httpx.Response(200, json=forecast_of("2027", "30000.00", "5000.00", "120000.00"))
        return httpx.Response(200, json=forecast_of(period, "7500.00", "1250.00", "30000.00"))

    console.services.on("GET", "sales", "/v1/forecasts", forecasts)
    console.services.on(
        "GET",
        "sales",
        "/v1/quotas",
        (
            200,
            [
                {"owner_id": "rep-1", "period": "2027-Q1", "amount": "30000.00", "currency": "EUR", "updated_at": "x"},
                {"owner_id": "rep-1", "period": "2026-Q1", "amount": "1.00", "currency": "EUR", "updated_at": "x"},
            ],
        ),
    )
    page = console.client.get("/sales/forecast?period=2027&owner_id=rep-1")
    assert page.status_code == 200
    asked = sorted(r.url.params["period"] for r in console.services.sent("GET", "sales", "/v1/forecasts"))
    assert asked == ["2027", "2027-Q1", "2027-Q2", "2027-Q3", "2027-Q4"]
    assert all(r.url.params["owner_id"] == "rep-1" for r in console.services.sent("GET", "sales", "/v1/forecasts"))
    rows = re.findall(r'data-testid="forecast-row" data-period="([^"]+)"', page.text)
    assert rows == ["2027-Q1", "2027-Q2", "2027-Q3", "2027-Q4", "2027"]
    assert "120,000.00" in page.text and "25.0 %" in page.text
    # Only the quotas of the periods shown.
    assert "2026-Q1" not in page.text
    # The chart's data: fetched by sales.js from the page's JSON endpoint (no inline script).
    src = unescape(re.search(r'data-src="([^"]*)"', page.text).group(1))  # type: ignore[union-attr]
    assert src == "/sales/forecast.json?period=2027&owner_id=rep-1"
    spec = console.client.get(src).json()
    assert spec["labels"] == ["2027-Q1", "2027-Q2", "2027-Q3", "2027-Q4"]
    closed = next(d for d in spec["datasets"] if d["key"] == "closed")
    assert closed["data"] == [7500.0] * 4
    assert next(d for d in spec["datasets"] if d["key"] == "quota")["data"] == [30000.0] * 4
    assert "chart.umd.min.js" in page.text and "<script>" not in page.text


def test_the_chart_data_refuses_a_non_period_and_passes_a_refusal_on(console: Console) -> None:
    console.sign_in_as("manager-1", *SALES_SCOPES)
    bad = console.client.get("/sales/forecast.json?period=soon")
    assert bad.status_code == 422 and "quarter" in bad.json()["detail"]
    console.services.on("GET", "sales", "/v1/forecasts", (403, {"title": "Forbidden", "status": 403, "detail": "no"}))
    console.services.on("GET", "sales", "/v1/quotas", (200, []))
    refused = console.client.get("/sales/forecast.json?period=2027-03")
    assert refused.status_code == 403
    assert refused.json() == {"status": 403, "title": "Forbidden", "detail": "no", "service": "sales"}


def test_a_month_is_one_row(console: Console) -> None:
    console.sign_in_as("manager-1", *SALES_SCOPES)
    console.services.on("GET", "sales", "/v1/forecasts", (200, forecast_of("2027-03", "10.00")))
    console.services.on("GET", "sales", "/v1/quotas", (200, []))
    page = console.client.get("/sales/forecast?period=2027-03").text
    assert len(console.services.sent("GET", "sales", "/v1/forecasts")) == 1
    assert re.findall(r'data-testid="forecast-row" data-period="([^"]+)"', page) == ["2027-03"]
    assert "No quota set" in page


def test_not_a_period_is_refused_before_the_service(console: Console) -> None:
    console.sign_in_as("manager-1", *SALES_SCOPES)
    page = console.client.get("/sales/forecast?period=2027-Q9")
    assert page.status_code == 422 and 'class="problem"' in page.text
    assert not console.services.requests


def test_an_owner_the_user_does_not_see_is_the_services_403(console: Console) -> None:
    console.sign_in_as("rep-1", *SALES_SCOPES)
    refused = (403, {"title": "Owner not allowed", "status": 403, "detail": "rep-1 sees only their own"})
    console.services.on("GET", "sales", "/v1/forecasts", refused)
    console.services.on("GET", "sales", "/v1/quotas", refused)
    page = console.client.get("/sales/forecast?period=2027-01&owner_id=rep-2")
    assert page.status_code == 403 and "sees only their own" in page.text


def test_the_forecast_needs_forecasts_read(console: Console) -> None:
    console.sign_in_as("rep", "opportunities:read")
    assert console.client.get("/sales/forecast").status_code == 403


# ---------------------------------------------------------------- my activities


def activity(activity_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "activity_id": activity_id,
        "kind": "call",
        "title": f"Call {activity_id}",
        "due_at": "2026-12-03T10:00:00Z",
        "status": "planned",
        "overdue": False,
        "owner_id": "rep-1",
        "customer_id": "C-1001",
        "opportunity_id": None,
        "lead_id": None,
        "notes": None,
        "outcome": None,
        "completed_at": None,
        **extra,
    }


def test_my_activities_are_the_users_with_the_overdue_highlighted(console: Console) -> None:
    console.sign_in_as("rep-1", *SALES_SCOPES)
    items = [activity("ACT-1", overdue=True), activity("ACT-2", due_at="2099-01-01T09:00:00Z")]
    console.services.on("GET", "sales", "/v1/activities", (200, {"items": items, "next_cursor": None}))
    page = console.client.get("/sales/activities")
    assert page.status_code == 200
    (asked,) = console.services.sent("GET", "sales", "/v1/activities")
    assert asked.url.params["owner_id"] == "rep-1" and asked.url.params["status"] == "planned"
    first, second = page.text.split('data-activity-id="ACT-2"')
    assert 'class="overdue"' in first and 'badge bad">overdue' in first
    assert "overdue" not in second.split("</li>")[0]
    assert page.text.count('data-testid="complete"') == 2


def test_the_overdue_filter_asks_the_service_for_the_overdue(console: Console) -> None:
    console.sign_in_as("rep-1", *SALES_SCOPES)
    console.services.on("GET", "sales", "/v1/activities", (200, {"items": [], "next_cursor": None}))
    page = console.client.get("/sales/activities?show=overdue")
    (asked,) = console.services.sent("GET", "sales", "/v1/activities")
    assert asked.url.params["overdue"] == "true" and "status" not in asked.url.params
    assert "Nothing overdue" in page.text


def test_completing_an_activity_answers_it_done(console: Console) -> None:
    console.sign_in_as("rep-1", *SALES_SCOPES)
    done = activity("ACT-1", status="done", outcome="Wants a quote", completed_at="2026-12-03T10:30:00Z")
    console.services.on("POST", "sales", "/v1/activities/ACT-1/complete", (200, done))
    answer = console.htmx("POST", "/sales/activities/ACT-1/complete", data={"outcome": " Wants a quote "})
    assert answer.status_code == 200
    (sent,) = console.services.sent("POST", "sales", "/v1/activities/ACT-1/complete")
    assert console.services.body(sent) == {"outcome": "Wants a quote"}
    assert answer.text.lstrip().startswith("<li") and 'badge good">done' in answer.text
    assert 'data-testid="complete"' not in answer.text


def test_a_refused_completion_is_shown_on_the_activity(console: Console) -> None:
    console.sign_in_as("rep-1", *SALES_SCOPES)
    console.services.on(
        "POST",
        "sales",
        "/v1/activities/ACT-1/complete",
        (409, {"title": "Activity refused", "status": 409, "detail": "activity ACT-1 is cancelled"}),
    )
    console.services.on("GET", "sales", "/v1/activities/ACT-1", (200, activity("ACT-1", status="cancelled")))
    answer = console.htmx("POST", "/sales/activities/ACT-1/complete", data={"outcome": ""})
    assert answer.status_code == 409
    assert 'class="problem"' in answer.text and "is cancelled" in answer.text


def test_completing_needs_the_csrf_token_and_activities_write(console: Console) -> None:
    console.sign_in_as("rep-1", *SALES_SCOPES)
    assert console.client.post("/sales/activities/ACT-1/complete", data={"outcome": ""}).status_code == 400
    console.sign_in_as("viewer", "activities:read")
    assert console.post("/sales/activities/ACT-1/complete").status_code == 403
    assert not console.services.requests


def test_activities_need_activities_read(console: Console) -> None:
    console.sign_in_as("rep", "quotes:read")
    assert console.client.get("/sales/activities").status_code == 403


# ---------------------------------------------------------------- quotes


def a_quote(quote_id: str, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "quote_id": quote_id,
        "customer_id": "C-1001",
        "opportunity_id": None,
        "status": status,
        "currency": "EUR",
        "price_book_id": "list-eur",
        "price_book_reason": "the most specific book that applies",
        "lines": [
            {
                "sku": "ATM-200",
                "quantity": 2,
                "unit_price": "2400.00",
                "discount_percent": "5",
                "discount": "240.00",
                "gross": "4800.00",
                "net": "4560.00",
                "price_book_id": "list-eur",
            }
        ],
        "total": "4560.00",
        "tax_percent": "0",
        "tax": "0.00",
        "total_with_tax": "4560.00",
        "valid_until": "2027-01-31",
        "created_at": "2026-12-01T09:00:00Z",
        "owner_id": "rep-1",
        "order_id": None,
        **extra,
    }


def test_quotes_are_listed_with_the_actions_their_status_allows(console: Console) -> None:
    console.sign_in_as("rep-1", *SALES_SCOPES)
    items = [a_quote("Q-1", "draft"), a_quote("Q-2", "sent"), a_quote("Q-3", "accepted")]
    console.services.on("GET", "sales", "/v1/quotes", (200, {"items": items, "next_cursor": None}))
    page = console.client.get("/sales/quotes?status=&customer_id=C-1001")
    assert page.status_code == 200
    (asked,) = console.services.sent("GET", "sales", "/v1/quotes")
    assert asked.url.params["customer_id"] == "C-1001" and "status" not in asked.url.params
    rows = {m.group(1): m.group(2) for m in re.finditer(r'data-quote-id="([^"]+)">(.*?)</tr>', page.text, re.S)}
    assert 'data-testid="quote-send"' in rows["Q-1"] and 'data-testid="quote-accept"' not in rows["Q-1"]
    assert 'data-testid="quote-accept"' in rows["Q-2"] and 'data-testid="quote-reject"' in rows["Q-2"]
    assert 'hx-post="/sales/quotes/Q-2/accept" hx-target="closest tr"' in rows["Q-2"]
    assert 'data-testid="quote-' not in rows["Q-3"].replace('data-testid="quote-status"', "")
    assert "4,560.00 EUR" in page.text


def test_a_quote_page_shows_its_lines_and_totals(console: Console) -> None:
    console.sign_in_as("rep-1", *SALES_SCOPES)
    console.services.on("GET", "sales", "/v1/quotes/Q-1", (200, a_quote("Q-1", "sent")))
    page = console.client.get("/sales/quotes/Q-1").text
    assert "ATM-200" in page and "240.00" in page and "4,560.00 EUR" in page
    assert 'action="/sales/quotes/Q-1/accept"' in page


def test_the_editor_offers_the_price_books_and_their_products(console: Console) -> None:
    console.sign_in_as("rep-1", *SALES_SCOPES)
    book = {"book_id": "list-eur", "name": "List EUR", "currency": "EUR", "entries": [{"sku": "ATM-200"}]}
    console.services.on("GET", "sales", "/v1/price-books", (200, {"items": [book], "next_cursor": None}))
    page = console.client.get("/sales/quotes/new?customer_id=C-1001&opportunity_id=O-1").text
    assert '<option value="list-eur"' in page and '<option value="ATM-200">' in page
    assert 'name="customer_id" value="C-1001"' in page and 'name="opportunity_id" value="O-1"' in page


def test_a_new_quote_is_built_from_its_lines(console: Console) -> None:
    console.sign_in_as("rep-1", *SALES_SCOPES)
    console.services.on("POST", "sales", "/v1/quotes", (201, a_quote("Q-9", "draft")))
    answer = console.post(
        "/sales/quotes",
        {
            "customer_id": "C-1001",
            "currency": "eur",
            "price_book_id": "",
            "tax_percent": "19",
            "idempotency_key": "k-1",
            "sku": ["ATM-200", "", "GRIND-1"],
            "quantity": ["2", "", "1"],
            "discount_percent": ["5", "", ""],
        },
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/sales/quotes/Q-9"
    (sent,) = console.services.sent("POST", "sales", "/v1/quotes")
    assert sent.headers["idempotency-key"] == "k-1"
    assert console.services.body(sent) == {
        "customer_id": "C-1001",
        "currency": "EUR",
        "tax_percent": "19",
        "lines": [{"sku": "ATM-200", "quantity": 2, "discount_percent": "5"}, {"sku": "GRIND-1", "quantity": 1}],
    }


def test_a_quote_the_service_refuses_shows_the_form_again_with_the_reason(console: Console) -> None:
    console.sign_in_as("rep-1", *SALES_SCOPES)
    console.services.on(
        "POST",
        "sales",
        "/v1/quotes",
        (422, {"title": "Discount over cap", "status": 422, "detail": "line 1: 30 % is over the rep's cap of 10 %"}),
    )
    answer = console.post(
        "/sales/quotes",
        {
            "customer_id": "C-1001",
            "currency": "EUR",
            "idempotency_key": "k-2",
            "sku": "ATM-200",
            "quantity": "1",
            "discount_percent": "30",
        },
    )
    assert answer.status_code == 422
    assert 'class="problem"' in answer.text and "over the rep&#39;s cap" in answer.text
    assert 'name="discount_percent" value="30"' in answer.text and 'value="k-2"' in answer.text


def test_a_quantity_that_is_not_a_number_is_refused_before_the_service(console: Console) -> None:
    console.sign_in_as("rep-1", *SALES_SCOPES)
    answer = console.post("/sales/quotes", {"customer_id": "C-1001", "currency": "EUR", "sku": "X", "quantity": "two"})
    assert answer.status_code == 422 and "not a whole number" in answer.text
    assert not console.services.sent("POST", "sales", "/v1/quotes")


@pytest.mark.parametrize(("action", "body"), [("send", None), ("accept", None), ("reject", {"reason": "Too dear"})])
def test_a_quote_action_answers_its_row(console: Console, action: str, body: Any) -> None:
    console.sign_in_as("rep-1", *SALES_SCOPES)
    after = {"send": "sent", "accept": "accepted", "reject": "rejected"}[action]
    console.services.on("POST", "sales", f"/v1/quotes/Q-1/{action}", (200, a_quote("Q-1", after)))
    answer = console.htmx("POST", f"/sales/quotes/Q-1/{action}", data={"reason": "Too dear"})
    assert answer.status_code == 200
    (sent,) = console.services.sent("POST", "sales", f"/v1/quotes/Q-1/{action}")
    assert (json.loads(sent.content) if sent.content else None) == body
    assert answer.text.lstrip().startswith("<tr") and f">{after}</span>" in answer.text


def test_a_refused_quote_action_is_shown_and_the_quote_stays(console: Console) -> None:
    console.sign_in_as("rep-1", *SALES_SCOPES)
    console.services.on(
        "POST",
        "sales",
        "/v1/quotes/Q-1/accept",
        (409, {"title": "Quote expired", "status": 409, "detail": "quote Q-1 expired on 2026-11-30"}),
    )
    console.services.on("GET", "sales", "/v1/quotes/Q-1", (200, a_quote("Q-1", "expired")))
    answer = console.htmx("POST", "/sales/quotes/Q-1/accept")
    assert answer.status_code == 409
    assert 'class="problem"' in answer.text and "expired on 2026-11-30" in answer.text
    page = console.post("/sales/quotes/Q-1/accept")
    assert page.status_code == 409 and "<html" in page.text and "expired on 2026-11-30" in page.text


def test_an_unknown_quote_action_is_not_routed(console: Console) -> None:
    console.sign_in_as("rep-1", *SALES_SCOPES)
    assert console.post("/sales/quotes/Q-1/delete").status_code == 422
    assert not console.services.requests


def test_quote_changes_need_the_csrf_token_and_quotes_write(console: Console) -> None:
    console.sign_in_as("rep-1", *SALES_SCOPES)
    assert console.client.post("/sales/quotes", data={"customer_id": "C-1001"}).status_code == 400
    assert console.client.post("/sales/quotes/Q-1/send").status_code == 400
    console.sign_in_as("viewer", "quotes:read")
    assert console.post("/sales/quotes", {"customer_id": "C-1001"}).status_code == 403
    assert console.client.get("/sales/quotes/new").status_code == 403
    assert not console.services.requests


def test_quotes_need_quotes_read(console: Console) -> None:
    console.sign_in_as("rep", "opportunities:read")
    assert console.client.get("/sales/quotes").status_code == 403
