"""The marketing pages: segments and their counts, journeys, campaigns and their results, and the population."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import httpx
import pytest

from crm_console.pages.marketing import campaign_status

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
    "unusable": None,
}
OLD = {
    "segment_id": "old-rules",
    "name": "Old",
    "description": None,
    "definition": None,
    "count": None,
    "as_of": "2026-12-03T10:00:00Z",
    "unusable": "definition.all.0.rule: is before 1900-01-01",
}
UNTARGETED = {**VIP, "segment_id": "lapsed", "name": "Lapsed", "count": 0}


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
    # Newcombe's interval of 56/70 - 48/80, as marketing gives it.
    "uplift_ci_low": 0.0524,
    "uplift_ci_high": 0.3339,
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
    "uplift_ci_low": None,
    "uplift_ci_high": None,
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
    services.on("GET", "marketing", "/v1/segments", (200, {"items": [UNTARGETED, OLD, VIP], "next_cursor": "seg2"}))


def test_a_campaigns_status_follows_its_dates() -> None:
    assert campaign_status(PLANNED, NOW) == "running"
    assert campaign_status(ON_SEGMENT, NOW) == "planned"
    assert campaign_status(PLANNED, NOW + timedelta(days=31)) == "ended"
    assert campaign_status({**PLANNED, "archived_at": NOW.isoformat()}, NOW) == "archived"
    assert campaign_status(JOURNEY_CAMPAIGN, NOW) == "running"


# ---------------------------------------------------------------- the index


def test_the_index_lists_campaigns_journeys_and_every_segment_with_its_count(console: Console) -> None:
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
    (listed,) = console.services.sent("GET", "marketing", "/v1/segments")
    assert listed.headers["authorization"] == "Bearer token-1"
    assert parse_qs(listed.url.query.decode()) == {"limit": ["20"]}
    # Every segment, targeted by a campaign or not, in the service's order, with the service's count.
    assert page.text.count('data-testid="segment-row"') == 3
    assert page.text.index(">Lapsed</a>") < page.text.index(">Old</a>") < page.text.index(">VIPs</a>")
    assert 'data-testid="segment-count">0<' in page.text and 'data-testid="segment-count">137<' in page.text
    assert not console.services.sent("GET", "marketing", "/v1/segments/vip")
    assert '/marketing?segments_cursor=seg2">More segments' in page.text
    assert 'hx-get="/marketing" hx-trigger="every 30s"' in page.text
    assert '/marketing?cursor=abc">More campaigns' in page.text


def test_the_next_page_of_campaigns_passes_the_cursor(console: Console) -> None:
    console.sign_in_as("marketer", *MARKETER)
    index_answers(console.services)
    assert console.client.get("/marketing?cursor=abc").status_code == 200
    assert parse_qs(console.services.sent("GET", "marketing", "/v1/campaigns")[0].url.query.decode())["cursor"] == [
        "abc"
    ]


def test_the_next_page_of_segments_passes_its_cursor_and_keeps_the_campaigns_page(console: Console) -> None:
    console.sign_in_as("marketer", *MARKETER)
    index_answers(console.services)
    page = console.client.get("/marketing?segments_cursor=seg2&cursor=abc")
    assert page.status_code == 200
    (listed,) = console.services.sent("GET", "marketing", "/v1/segments")
    assert parse_qs(listed.url.query.decode()) == {"limit": ["20"], "cursor": ["seg2"]}
    assert parse_qs(console.services.sent("GET", "marketing", "/v1/campaigns")[0].url.query.decode())["cursor"] == [
        "abc"
    ]
    # The refresh counts this page again; each "More" link keeps the other list's page.
    assert 'hx-get="/marketing?segments_cursor=seg2"' in page.text
    assert '/marketing?segments_cursor=seg2&amp;cursor=abc">More segments' in page.text
    assert '/marketing?cursor=abc&amp;segments_cursor=seg2">More campaigns' in page.text


def test_the_last_page_of_segments_has_no_more_link_and_none_says_so(console: Console) -> None:
    console.sign_in_as("marketer", *MARKETER)
    index_answers(console.services)
    console.services.on("GET", "marketing", "/v1/segments", (200, {"items": [], "next_cursor": None}))
    page = console.client.get("/marketing")
    assert page.status_code == 200
    assert "No segment is defined yet." in page.text and "More segments" not in page.text


def test_the_htmx_refresh_counts_the_same_page_of_segments_again_and_nothing_else(console: Console) -> None:
    console.sign_in_as("marketer", *MARKETER)
    index_answers(console.services)
    fragment = console.htmx("GET", "/marketing?segments_cursor=seg2")
    assert fragment.status_code == 200
    assert "<html" not in fragment.text and 'data-testid="segment-count">137<' in fragment.text
    (listed,) = console.services.sent("GET", "marketing", "/v1/segments")
    assert parse_qs(listed.url.query.decode())["cursor"] == ["seg2"]
    assert not console.services.sent("GET", "marketing", "/v1/campaigns")
    assert not console.services.sent("GET", "marketing", "/v1/journeys")


def test_a_segment_that_cannot_be_counted_says_why_and_the_rest_shows(console: Console) -> None:
    console.sign_in_as("marketer", *MARKETER)
    index_answers(console.services)
    page = console.client.get("/marketing")
    assert page.status_code == 200
    assert 'data-testid="segment-unusable">Stored under rules no longer accepted' in page.text
    assert "is before 1900-01-01" in page.text
    assert page.text.count('data-testid="segment-count"') == 2
    assert page.text.count('data-testid="campaign-row"') == 3


def test_a_refused_or_failed_segment_list_empties_only_its_card(console: Console) -> None:
    console.sign_in_as("marketer", *MARKETER)
    index_answers(console.services)
    console.services.on("GET", "marketing", "/v1/segments", (403, {"title": "Forbidden"}))
    page = console.client.get("/marketing")
    assert page.status_code == 200
    assert "Not allowed: the segments need the scope segments:read." in page.text
    assert page.text.count('data-testid="campaign-row"') == 3
    console.services.on("GET", "marketing", "/v1/segments", (503, {"title": "Database unavailable"}))
    page = console.client.get("/marketing")
    assert page.status_code == 200
    assert 'class="problem">marketing: 503 Database unavailable' in page.text
    assert page.text.count('data-testid="campaign-row"') == 3


def test_a_user_with_segments_only_sees_no_campaign_card(console: Console) -> None:
    console.sign_in_as("analyst", "segments:read")
    index_answers(console.services)
    page = console.client.get("/marketing")
    assert page.status_code == 200
    assert not console.services.sent("GET", "marketing", "/v1/campaigns")
    assert 'data-testid="campaigns"' not in page.text and 'data-testid="segment-count">137<' in page.text


def test_a_user_with_campaigns_only_is_not_shown_or_asked_for_segments(console: Console) -> None:
    console.sign_in_as("planner", "campaigns:read")
    index_answers(console.services)
    page = console.client.get("/marketing")
    assert page.status_code == 200
    assert not console.services.sent("GET", "marketing", "/v1/segments")
    assert 'id="segments"' not in page.text and page.text.count('data-testid="campaign-row"') == 3


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
    # The service's interval, shown as it is given: the console computes none of its own.
    assert "+5.2 to +33.4 points" in text and "treated converts better" in text
    interval = {**RESULTS, "uplift_ci_low": -0.01, "uplift_ci_high": 0.41}
    console.services.on("GET", "marketing", "/v1/campaigns/win-back-q4/results", (200, interval))
    shown = console.client.get("/marketing/campaigns/win-back-q4").text
    assert "-1.0 to +41.0 points" in shown and "no clear difference" in shown
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
    assert 'data-testid="uplift-interval">\u2013</dd>' in page.text
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


def tier_move(old: str | None, new: str, kind: str, customers: int) -> dict[str, object]:
    return {"from": old, "to": new, "move": kind, "customers": customers}


TIER_MOVEMENTS = [
    {
        "period": "2026-10",
        "upgrades": 30,
        "downgrades": 0,
        "entered": 0,
        "moves": [
            tier_move("potential", "low_value", "upgrade", 25),
            tier_move("low_value", "high_value", "upgrade", 5),
        ],
    },
    {
        "period": "2026-11",
        "upgrades": 2,
        "downgrades": 3,
        "entered": 1,
        "moves": [
            tier_move(None, "low_value", "entered", 1),
            tier_move("potential", "high_value", "upgrade", 1),
            tier_move("low_value", "high_value", "upgrade", 1),
            tier_move("low_value", "potential", "downgrade", 2),
            tier_move("high_value", "potential", "downgrade", 1),
        ],
    },
]


def test_the_population_page_shows_the_pareto_curve_and_the_movements(console: Console) -> None:
    console.sign_in_as("marketer", *MARKETER)
    console.services.on("GET", "scoring", "/v1/population/pareto", (200, PARETO))
    console.services.on("GET", "scoring", "/v1/population/movements", (200, MOVEMENTS))
    console.services.on("GET", "scoring", "/v1/population/tier-movements", (200, TIER_MOVEMENTS))
    console.services.on("GET", "scoring", "/v1/population", (200, DISTRIBUTION))
    page = console.client.get("/marketing/population?period=week")
    assert page.status_code == 200
    (asked,) = console.services.sent("GET", "scoring", "/v1/population/movements")
    assert asked.url.params["period"] == "week"
    (asked_tiers,) = console.services.sent("GET", "scoring", "/v1/population/tier-movements")
    assert asked_tiers.url.params["period"] == "week"
    assert "75.1 %" in page.text and "12,000.00 EUR" in page.text
    assert 'data-src="/marketing/population/pareto.json"' in page.text
    assert 'data-src="/marketing/population/movements.json?period=week"' in page.text
    assert 'data-src="/marketing/population/tier-movements.json?period=week"' in page.text
    assert "<td>2026-11</td>" in page.text and "<td>high_value</td>" in page.text
    # The table under the value-tier chart: the totals and every move of the period.
    tier_table = page.text.split('data-testid="tier-movements-table"')[1].split("</table>")[0]
    assert '<td class="num">2</td><td class="num">3</td><td class="num">1</td>' in tier_table
    assert "no tier → low_value: 1; potential → high_value: 1;" in tier_table
    assert "potential → low_value: 25; low_value → high_value: 5" in tier_table
    assert "keeps no history" not in page.text


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


def test_the_tier_movements_json_stacks_the_moves_by_kind_and_tier_reached(console: Console) -> None:
    console.sign_in_as("marketer", *MARKETER)
    console.services.on("GET", "scoring", "/v1/population/tier-movements", (200, TIER_MOVEMENTS))
    tiers = console.client.get("/marketing/population/tier-movements.json?period=week").json()
    assert console.services.sent("GET", "scoring", "/v1/population/tier-movements")[0].url.params["period"] == "week"
    assert tiers == {
        "period": "week",
        "periods": ["2026-10", "2026-11"],
        "upgrades": [30, 2],
        "downgrades": [0, 3],
        "entered": [0, 1],
        # Upgrades, then downgrades, then entries; each by the tier reached, lowest first. The two upgrades to
        # high_value of November (from potential and from low_value) are one stack segment.
        "series": [
            {"move": "upgrade", "to": "low_value", "customers": [25, 0]},
            {"move": "upgrade", "to": "high_value", "customers": [5, 2]},
            {"move": "downgrade", "to": "potential", "customers": [0, 3]},
            {"move": "entered", "to": "low_value", "customers": [0, 1]},
        ],
    }
    assert console.client.get("/marketing/population/tier-movements.json?period=year").status_code == 422


def test_the_tier_movements_json_passes_on_a_refusal_and_an_empty_history_says_so(console: Console) -> None:
    console.sign_in_as("marketer", *MARKETER)
    console.services.on("GET", "scoring", "/v1/population/tier-movements", (403, {"title": "Forbidden"}))
    refused = console.client.get("/marketing/population/tier-movements.json")
    assert (refused.status_code, refused.json()["title"], refused.json()["service"]) == (403, "Forbidden", "scoring")
    console.services.on("GET", "scoring", "/v1/population/tier-movements", (200, []))
    console.services.on("GET", "scoring", "/v1/population", (200, DISTRIBUTION))
    page = console.client.get("/marketing/population")
    assert "No customer has changed value tier yet." in page.text
    assert "tier-movements-chart" not in page.text


def test_without_scores_read_the_population_cards_say_not_allowed(console: Console) -> None:
    console.sign_in_as("marketer", "campaigns:read", "segments:read")
    page = console.client.get("/marketing/population")
    assert page.status_code == 200
    assert page.text.count('data-testid="not-allowed"') == 4
    assert not console.services.sent("GET", "scoring", "/v1/population/tier-movements")
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
