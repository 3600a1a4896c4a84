"""The marketing pages: segments and their counts, journeys, campaigns and their results, and the population."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import httpx
import pytest

from crm_console.pages.marketing import campaign_status, uplift_interval, wilson

from .conftest import Console, FakeServices

MARKETER = ("campaigns:read", "campaigns:write", "segments:read", "segments:write", "scores:read")
NOW = datetime.now(UTC)

PLANNED = {
    "campaign_id": "win-back-q4",
    "kind": "planned",
    "name": "Win-back Q4",
    "objective": "Bring lost customers back.",
    "journey": "win-back",
    "segment_id": None,
    "channel": "email",
    "offer": "15% off",
    "starts_at": (NOW - timedelta(days=3)).isoformat(),
    "ends_at": (NOW + timedelta(days=30)).isoformat(),
    "currency": "EUR",
    "budget": "500.00",
    "cost_per_contact": "0.40",
    "spent": "12.40",
    "archived_at": None,
}
ON_SEGMENT = {
    **PLANNED,
    "campaign_id": "vip-email",
    "name": "VIP by email",
    "journey": None,
    "segment_id": "vip",
    "starts_at": (NOW + timedelta(days=3)).isoformat(),
}
JOURNEY_CAMPAIGN = {
    "campaign_id": "welcome",
    "kind": "journey",
    "name": "welcome",
    "objective": "Welcome",
    "journey": "welcome",
    "currency": "EUR",
    "budget": None,
    "cost_per_contact": "0",
    "spent": "0",
}
JOURNEYS = [
    {
        "name": "welcome",
        "campaign_id": "welcome",
        "trigger": "segment_changed",
        "dimension": "lifecycle_stage",
        "new_value": "first_time_buyer",
        "requires_value_tier": None,
        "frequency_capped": True,
        "description": "Welcome a customer after the first order.",
        "channel_rules": "...",
    },
    {
        "name": "complaint-recovery",
        "campaign_id": "complaint-recovery",
        "trigger": "complaint_filed",
        "dimension": None,
        "new_value": None,
        "requires_value_tier": None,
        "frequency_capped": False,
        "description": "Contact any customer who complained.",
        "channel_rules": "...",
    },
]
VIP = {
    "segment_id": "vip",
    "name": "VIPs",
    "description": None,
    "definition": {"all": [{"field": "value_tier", "op": "eq", "value": "high_value"}], "any": None},
    "count": 137,
    "as_of": "2026-12-03T10:00:00Z",
}


def group(enrolled: int, converted: int, revenue: str, rate: float | None, per: str | None) -> dict[str, object]:
    return {
        "enrolled": enrolled,
        "converted": converted,
        "orders": converted,
        "revenue": revenue,
        "conversion_rate": rate,
        "revenue_per_customer": per,
    }


RESULTS = {
    "campaign_id": "win-back-q4",
    "currency": "EUR",
    "attribution_days": 30,
    "contacted": 70,
    "holdout": 80,
    "skipped": 4,
    "treated_group": group(70, 56, "2800.00", 0.8, "40.00"),
    "holdout_group": group(80, 48, "1600.00", 0.6, "20.00"),
    "uplift": 0.2,
    "incremental_revenue": "1400.00",
    "cost": "28.00",
    "roi": 49.0,
}
NO_CONTACTS = {
    **RESULTS,
    "contacted": 0,
    "holdout": 0,
    "skipped": 0,
    "treated_group": group(0, 0, "0", None, None),
    "holdout_group": group(0, 0, "0", None, None),
    "uplift": None,
    "incremental_revenue": None,
    "cost": "0",
    "roi": None,
}


def index_answers(services: FakeServices) -> None:
    services.on(
        "GET",
        "marketing",
        "/v1/campaigns",
        (200, {"items": [ON_SEGMENT, PLANNED, JOURNEY_CAMPAIGN], "next_cursor": "abc"}),
    )
    services.on("GET", "marketing", "/v1/journeys", (200, JOURNEYS))
    services.on("GET", "marketing", "/v1/segments/vip", (200, VIP))


# ---------------------------------------------------------------- the uplift's interval


def test_the_uplift_interval_is_newcombes_hybrid_score_interval() -> None:
    # Newcombe (1998), Statistics in Medicine 17:873, table II example (a): 56/70 - 48/80, method 10.
    low, high = uplift_interval(56, 70, 48, 80) or (0.0, 0.0)
    assert (round(low, 4), round(high, 4)) == (0.0524, 0.3339)


def test_the_interval_holds_at_no_conversions_and_is_none_without_a_group() -> None:
    low, high = uplift_interval(0, 10, 0, 10) or (1.0, -1.0)
    assert low < 0 < high
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == pytest.approx(1.0)
    assert uplift_interval(0, 0, 3, 10) is None and uplift_interval(3, 10, 0, 0) is None


def test_a_campaigns_status_follows_its_dates() -> None:
    assert campaign_status(PLANNED, NOW) == "running"
    assert campaign_status(ON_SEGMENT, NOW) == "planned"
    assert campaign_status(PLANNED, NOW + timedelta(days=31)) == "ended"
    assert campaign_status({**PLANNED, "archived_at": NOW.isoformat()}, NOW) == "archived"
    assert campaign_status(JOURNEY_CAMPAIGN, NOW) == "running"


# ---------------------------------------------------------------- the index


def test_the_index_lists_campaigns_journeys_and_the_targeted_segments_counts(console: Console) -> None:
    console.sign_in_as("marketer", *MARKETER)
    index_answers(console.services)
    page = console.client.get("/marketing")
    assert page.status_code == 200
    asked = console.services.sent("GET", "marketing", "/v1/campaigns")
    assert asked and asked[0].headers["authorization"] == "Bearer token-1"
    assert parse_qs(asked[0].url.query.decode()) == {"limit": ["100"]}
    assert page.text.count('data-testid="campaign-row"') == 3
    assert '<a href="/marketing/campaigns/win-back-q4">Win-back Q4</a>' in page.text
    assert "journey win-back" in page.text and "500.00 EUR" in page.text and "12.40 EUR" in page.text
    assert 'badge good">running' in page.text and 'badge warn">planned' in page.text
    assert f"{NOW - timedelta(days=3):%Y-%m-%d}" in page.text
    assert page.text.count('data-testid="journey-row"') == 2 and "a complaint is filed" in page.text
    assert 'data-testid="segment-count">137<' in page.text
    assert console.services.sent("GET", "marketing", "/v1/segments/vip")
    assert '/marketing?cursor=abc">More campaigns' in page.text


def test_the_next_page_of_campaigns_passes_the_cursor(console: Console) -> None:
    console.sign_in_as("marketer", *MARKETER)
    index_answers(console.services)
    assert console.client.get("/marketing?cursor=abc").status_code == 200
    assert parse_qs(console.services.sent("GET", "marketing", "/v1/campaigns")[0].url.query.decode())["cursor"] == [
        "abc"
    ]


def test_the_htmx_refresh_returns_only_the_segments(console: Console) -> None:
    console.sign_in_as("marketer", *MARKETER)
    index_answers(console.services)
    fragment = console.htmx("GET", "/marketing")
    assert fragment.status_code == 200
    assert "<html" not in fragment.text and 'data-testid="segment-count">137<' in fragment.text


def test_a_segment_that_cannot_be_counted_says_why_and_the_rest_shows(console: Console) -> None:
    console.sign_in_as("marketer", *MARKETER)
    index_answers(console.services)
    console.services.on(
        "GET",
        "marketing",
        "/v1/segments/vip",
        (409, {"title": "Segment definition unusable", "detail": "stored under older rules"}),
    )
    page = console.client.get("/marketing")
    assert page.status_code == 200
    assert 'class="problem">marketing: 409 Segment definition unusable: stored under older rules' in page.text
    assert page.text.count('data-testid="campaign-row"') == 3


def test_a_user_with_segments_only_sees_no_campaign_card(console: Console) -> None:
    console.sign_in_as("analyst", "segments:read")
    page = console.client.get("/marketing")
    assert page.status_code == 200
    assert not console.services.sent("GET", "marketing", "/v1/campaigns")
    assert 'data-testid="campaigns"' not in page.text and "Segments" in page.text


def test_the_marketing_pages_need_a_marketing_scope(console: Console) -> None:
    console.sign_in_as("rep", "opportunities:read")
    for path in ("/marketing", "/marketing/campaigns/win-back-q4", "/marketing/population"):
        page = console.client.get(path)
        assert page.status_code == 403, path
        assert "campaigns:read or segments:read" in page.text
    assert console.services.requests == []


# ---------------------------------------------------------------- a campaign


def test_a_campaigns_page_shows_its_facts_and_results(console: Console) -> None:
    console.sign_in_as("marketer", *MARKETER)
    console.services.on("GET", "marketing", "/v1/campaigns/win-back-q4", (200, PLANNED))
    console.services.on("GET", "marketing", "/v1/campaigns/win-back-q4/results", (200, RESULTS))
    page = console.client.get("/marketing/campaigns/win-back-q4")
    assert page.status_code == 200
    text = page.text
    assert 'data-testid="campaign-results"' in text
    assert 'data-testid="treated-contacts">70<' in text and 'data-testid="holdout-contacts">80<' in text
    assert "80.0 %" in text and "60.0 %" in text and "2,800.00 EUR" in text and "1,600.00 EUR" in text
    assert "+20.0 points" in text
    assert "+5.2 to +33.4 points" in text and "treated converts better" in text
    assert 'data-testid="roi">4900.0 %' in text
    assert '<canvas data-testid="results-chart"' in text
    assert 'data-src="/marketing/campaigns/win-back-q4/results.json"' in text
    assert '<script src="/static/vendor/chart.umd.min.js"' in text and '<script src="/static/marketing.js"' in text
    assert "Bring lost customers back." in text and "500.00 EUR" in text
    assert "launch-form" not in text


def test_a_campaign_without_contacts_shows_zeros_and_no_interval(console: Console) -> None:
    console.sign_in_as("marketer", *MARKETER)
    console.services.on("GET", "marketing", "/v1/campaigns/win-back-q4", (200, PLANNED))
    console.services.on("GET", "marketing", "/v1/campaigns/win-back-q4/results", (200, NO_CONTACTS))
    page = console.client.get("/marketing/campaigns/win-back-q4")
    assert page.status_code == 200
    assert 'data-testid="treated-contacts">0<' in page.text and "needs contacts in both groups" in page.text
    assert 'data-testid="results-chart"' in page.text


def test_a_campaign_without_results_shows_a_note(console: Console) -> None:
    console.sign_in_as("marketer", *MARKETER)
    console.services.on("GET", "marketing", "/v1/campaigns/win-back-q4", (200, PLANNED))
    page = console.client.get("/marketing/campaigns/win-back-q4")
    assert page.status_code == 200
    assert 'data-testid="no-results"' in page.text
    assert 'data-testid="campaign-results"' not in page.text and "results-chart" not in page.text


def test_an_unknown_campaign_is_the_services_404(console: Console) -> None:
    console.sign_in_as("marketer", *MARKETER)
    console.services.on(
        "GET", "marketing", "/v1/campaigns/nope", (404, {"title": "Campaign not found", "detail": "no campaign nope"})
    )
    page = console.client.get("/marketing/campaigns/nope")
    assert page.status_code == 404 and "no campaign nope" in page.text


def test_the_results_json_feeds_the_chart_with_zeros_for_no_contacts(console: Console) -> None:
    console.sign_in_as("marketer", *MARKETER)
    console.services.on("GET", "marketing", "/v1/campaigns/win-back-q4/results", (200, RESULTS))
    data = console.client.get("/marketing/campaigns/win-back-q4/results.json").json()
    assert data == {
        "campaign_id": "win-back-q4",
        "currency": "EUR",
        "groups": ["treated", "holdout"],
        "contacts": [70, 80],
        "conversions": [56, 48],
        "conversion_rate": [0.8, 0.6],
        "revenue": [2800.0, 1600.0],
        "revenue_per_customer": [40.0, 20.0],
    }
    console.services.on("GET", "marketing", "/v1/campaigns/win-back-q4/results", (200, NO_CONTACTS))
    empty = console.client.get("/marketing/campaigns/win-back-q4/results.json").json()
    assert empty["contacts"] == [0, 0] and empty["conversion_rate"] == [0.0, 0.0]
    assert empty["revenue_per_customer"] == [0.0, 0.0]


def test_the_results_json_passes_on_a_refusal_as_json(console: Console) -> None:
    console.sign_in_as("marketer", *MARKETER)
    answer = console.client.get("/marketing/campaigns/nope/results.json")
    assert answer.status_code == 404
    assert answer.json()["detail"] == "no fake answer"


def test_a_segment_campaign_can_be_launched(console: Console) -> None:
    console.sign_in_as("marketer", *MARKETER)
    running = {**ON_SEGMENT, "starts_at": (NOW - timedelta(days=1)).isoformat()}
    console.services.on("GET", "marketing", "/v1/campaigns/vip-email", (200, running))
    console.services.on(
        "POST",
        "marketing",
        "/v1/campaigns/vip-email/launch",
        (200, {"campaign_id": "vip-email", "enrolled": {"contacted": 9, "holdout": 1}, "already_enrolled": 2}),
    )
    assert 'data-testid="launch-form"' in console.client.get("/marketing/campaigns/vip-email").text
    page = console.post("/marketing/campaigns/vip-email/launch")
    assert page.status_code == 200
    assert "9 contacted, 1 holdout; 2 enrolled before" in page.text
    sent = console.services.sent("POST", "marketing", "/v1/campaigns/vip-email/launch")
    assert len(sent) == 1 and sent[0].headers["idempotency-key"]
    console.services.on(
        "POST",
        "marketing",
        "/v1/campaigns/vip-email/launch",
        (200, {"campaign_id": "vip-email", "enrolled": {"contacted": 0, "holdout": 0}, "already_enrolled": 12}),
    )
    assert "Launched: nobody new; 12 enrolled before" in console.post("/marketing/campaigns/vip-email/launch").text


def test_a_refused_launch_is_shown_on_the_page(console: Console) -> None:
    console.sign_in_as("marketer", *MARKETER)
    console.services.on("GET", "marketing", "/v1/campaigns/vip-email", (200, ON_SEGMENT))
    console.services.on(
        "POST",
        "marketing",
        "/v1/campaigns/vip-email/launch",
        (409, {"title": "Campaign not running", "detail": "campaign vip-email runs from tomorrow"}),
    )
    page = console.post("/marketing/campaigns/vip-email/launch")
    assert page.status_code == 409
    assert 'class="problem"' in page.text and "campaign vip-email runs from tomorrow" in page.text
    assert "VIP by email" in page.text


def test_a_launch_without_the_csrf_token_is_refused(console: Console) -> None:
    console.sign_in_as("marketer", *MARKETER)
    page = console.client.post("/marketing/campaigns/vip-email/launch", data={})
    assert page.status_code == 400 and "stale" in page.text
    assert not console.services.sent("POST", "marketing", "/v1/campaigns/vip-email/launch")


# ---------------------------------------------------------------- segments


def test_a_segment_page_shows_its_definition_and_count(console: Console) -> None:
    console.sign_in_as("marketer", *MARKETER)
    console.services.on("GET", "marketing", "/v1/segments/vip", (200, VIP))
    page = console.client.get("/marketing/segments/vip")
    assert page.status_code == 200
    assert 'data-testid="segment-count">137<' in page.text and "&#34;high_value&#34;" in page.text
    assert "&#34;any&#34;" not in page.text
    fragment = console.htmx("GET", "/marketing/segments/vip")
    assert "<html" not in fragment.text and ">137<" in fragment.text


def test_looking_a_segment_up_goes_to_its_page(console: Console) -> None:
    console.sign_in_as("marketer", *MARKETER)
    answer = console.client.get("/marketing/segments", params={"segment_id": " a/b "})
    assert answer.status_code == 303 and answer.headers["location"] == "/marketing/segments/a%2Fb"


def test_defining_a_segment_posts_the_definition_and_shows_it(console: Console) -> None:
    console.sign_in_as("marketer", *MARKETER)
    console.services.on("POST", "marketing", "/v1/segments", (201, VIP))
    assert 'name="csrf_token" value="csrf-1"' in console.client.get("/marketing/segments/new").text
    answer = console.post(
        "/marketing/segments",
        {
            "segment_id": "vip",
            "name": "VIPs",
            "definition": '{"all": [{"field": "value_tier", "op": "eq", "value": "x"}]}',
        },
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/marketing/segments/vip"
    (sent,) = console.services.sent("POST", "marketing", "/v1/segments")
    assert FakeServices.body(sent) == {
        "segment_id": "vip",
        "name": "VIPs",
        "definition": {"all": [{"field": "value_tier", "op": "eq", "value": "x"}]},
    }


@pytest.mark.parametrize(
    ("definition", "answer", "status", "shown"),
    [
        ("{not json", None, 422, "The definition is not JSON"),
        ('{"all": []}', (422, {"title": "Invalid", "detail": "definition: empty group"}), 422, "empty group"),
        ('{"all": [{}]}', (409, {"title": "Segment id taken", "detail": "vip exists"}), 409, "vip exists"),
    ],
)
def test_a_refused_segment_is_shown_with_the_form_kept(
    console: Console, definition: str, answer: tuple[int, object] | None, status: int, shown: str
) -> None:
    console.sign_in_as("marketer", *MARKETER)
    if answer is not None:
        console.services.on("POST", "marketing", "/v1/segments", answer)
    page = console.post("/marketing/segments", {"segment_id": "vip", "name": "VIPs", "definition": definition})
    assert page.status_code == status
    assert 'class="problem"' in page.text and shown in page.text
    assert 'value="VIPs"' in page.text


def test_defining_a_segment_without_the_csrf_token_is_refused(console: Console) -> None:
    console.sign_in_as("marketer", *MARKETER)
    page = console.client.post("/marketing/segments", data={"segment_id": "vip", "name": "x", "definition": "{}"})
    assert page.status_code == 400
    assert not console.services.sent("POST", "marketing", "/v1/segments")


# ---------------------------------------------------------------- population

PARETO = {
    "customers": 40,
    "reporting_currency": "EUR",
    "revenue": "12000.00",
    "top_20_percent_revenue_share": 0.7512,
    "curve": [{"customer_share": 0.2, "revenue_share": 0.7512}, {"customer_share": 1.0, "revenue_share": 1.0}],
}
MOVEMENTS = [
    {"period": "2026-10", "new": 5, "lost": 1, "reactivated": 0},
    {"period": "2026-11", "new": 3, "lost": 2, "reactivated": 1},
]
DISTRIBUTION = {"customers": 40, "value_tier": {"high_value": 8, "low_value": 20, "potential": 12}}


def test_the_population_page_shows_the_pareto_curve_and_the_movements(console: Console) -> None:
    console.sign_in_as("marketer", *MARKETER)
    console.services.on("GET", "scoring", "/v1/population/pareto", (200, PARETO))
    console.services.on("GET", "scoring", "/v1/population/movements", (200, MOVEMENTS))
    console.services.on("GET", "scoring", "/v1/population", (200, DISTRIBUTION))
    page = console.client.get("/marketing/population?period=week")
    assert page.status_code == 200
    (asked,) = console.services.sent("GET", "scoring", "/v1/population/movements")
    assert asked.url.params["period"] == "week"
    assert "75.1 %" in page.text and "12,000.00 EUR" in page.text
    assert 'data-src="/marketing/population/pareto.json"' in page.text
    assert 'data-src="/marketing/population/movements.json?period=week"' in page.text
    assert "<td>2026-11</td>" in page.text and "<td>high_value</td>" in page.text


def test_the_population_json_endpoints_feed_the_charts(console: Console) -> None:
    console.sign_in_as("marketer", *MARKETER)
    console.services.on("GET", "scoring", "/v1/population/pareto", (200, PARETO))
    console.services.on("GET", "scoring", "/v1/population/movements", (200, MOVEMENTS))
    pareto = console.client.get("/marketing/population/pareto.json").json()
    assert pareto["customer_share"] == [0.0, 0.2, 1.0] and pareto["revenue_share"] == [0.0, 0.7512, 1.0]
    movements = console.client.get("/marketing/population/movements.json?period=day").json()
    assert movements == {
        "period": "day",
        "periods": ["2026-10", "2026-11"],
        "new": [5, 3],
        "reactivated": [0, 1],
        "lost": [1, 2],
    }
    assert console.services.sent("GET", "scoring", "/v1/population/movements")[0].url.params["period"] == "day"
    assert console.client.get("/marketing/population/movements.json?period=year").status_code == 422


def test_without_scores_read_the_population_cards_say_not_allowed(console: Console) -> None:
    console.sign_in_as("marketer", "campaigns:read", "segments:read")
    page = console.client.get("/marketing/population")
    assert page.status_code == 200
    assert page.text.count('data-testid="not-allowed"') == 3
    assert not console.services.sent("GET", "scoring", "/v1/population/pareto")


def test_a_scoring_refusal_or_outage_empties_only_its_card(console: Console) -> None:
    console.sign_in_as("marketer", *MARKETER)
    console.services.on("GET", "scoring", "/v1/population/pareto", (403, {"title": "Forbidden"}))

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    console.services.on("GET", "scoring", "/v1/population/movements", down)
    console.services.on("GET", "scoring", "/v1/population", (200, DISTRIBUTION))
    page = console.client.get("/marketing/population")
    assert page.status_code == 200
    assert page.text.count('data-testid="not-allowed"') == 1
    assert "scoring: 503 Service unreachable" in page.text and "<td>potential</td>" in page.text
