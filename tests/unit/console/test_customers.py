"""The customer 360 pages: what they ask of the customer service and scoring, and what they show of it."""

from __future__ import annotations

import httpx

from crm_console.pages.customers import churn_reasons

from .conftest import Console

PROFILE = {
    "customer_id": "C-1",
    "kind": "person",
    "name": "Ada Lovelace",
    "email": "ada@example.com",
    "phone": None,
    "channel": "web",
    "consents": {"email": True},
    "preferred_channel": "email",
    "registered_at": "2026-01-02T10:00:00Z",
    "personal_data_erased_at": None,
    "owner_id": "rep-1",
    "territory": "north",
    "tags": ["vip"],
    "merged_into": None,
}
SUMMARY = {
    "customer_id": "C-1",
    "owner_id": "rep-1",
    "territory": "north",
    "scores": {
        "as_of": "2026-12-01T10:00:00Z",
        "value_tier": "high_value",
        "lifecycle_stage": "at_risk",
        "monetary": "1500.00",
        "lifetime_value": "820.00",
        "churn_risk": 0.62,
        "churn_risk_band": "high",
        "satisfaction": 0.4,
        "rfm_segment": None,
        "loyalty_stage": None,
    },
    "orders": 3,
    "realised_value": [{"currency": "EUR", "amount": "1430.00"}],
    "last_order": None,
    "open_tickets": [
        {
            "ticket_id": "TK-9",
            "opened_at": "2026-12-01T09:00:00Z",
            "kind": "complaint",
            "priority": "high",
            "channel": "email",
            "status": "open",
            "sla_policy_id": "standard",
            "sla_state": "breached",
            "warned_timers": [],
            "breached_timers": ["first_response"],
            "due_at": None,
        }
    ],
    "open_opportunities": [
        {
            "opportunity_id": "OP-3",
            "name": "Renewal 2027",
            "stage": "proposal",
            "amount": "9000.00",
            "currency": "EUR",
            "probability": 0.5,
            "forecast_category": "pipeline",
            "expected_close": "2027-01-31",
            "owner_id": "rep-1",
            "opened_at": None,
        }
    ],
    "open_pipeline": [{"currency": "EUR", "amount": "9000.00"}],
}
SCORES = {
    "customer_id": "C-1",
    "reporting_currency": "EUR",
    "recency_days": 140,
    "frequency": 3,
    "lifecycle_stage": "at_risk",
    "churn_risk": 0.62,
    "churn_risk_band": "high",
    "satisfaction": 0.4,
    "probability_alive": None,
    "lifetime_value": "820.00",
    "value": {"forecast_unavailable_because": None},
    "thresholds": {"at_risk_days": 120, "lost_days": 365},
    "inputs": {
        "complaints": [{"complaint_id": "K-1", "severity": "high"}],
        "surveys": [{"survey_id": "S-1", "bad": True}, {"survey_id": "S-2", "bad": False}],
    },
}
CONSENTS = {
    "customer_id": "C-1",
    "granted": ["email"],
    "refused": ["sms"],
    "preferred_channel": "email",
    "service_granted": [],
    "service_refused": [],
}
TIMELINE = {
    "items": [
        {
            "event_id": "e-1",
            "type": "crm.order.placed.v1",
            "time": "2026-12-01T10:00:00Z",
            "source": "/channels/webshop",
            "summary": "Order O-77 placed: 1500.00 EUR",
            "data": {},
            "kind": "order",
            "cause": None,
        }
    ],
    "next_cursor": None,
}
CANDIDATES = [
    {
        "customer_id": "C-2",
        "strength": "proposed",
        "score": 91.0,
        "evidence": ["names 91% alike", "the same postcode LS14AB"],
        "name": "Ada Lovelace",
        "registered_at": "2026-02-01T10:00:00Z",
    }
]


def _customer_services(console: Console) -> None:
    s = console.services
    s.on("GET", "customer", "/v1/customers/C-1", (200, PROFILE))
    s.on("GET", "customer", "/v1/customers/C-1/summary", (200, SUMMARY))
    s.on("GET", "customer", "/v1/customers/C-1/consents", (200, CONSENTS))
    s.on("GET", "customer", "/v1/customers/C-1/duplicates", (200, CANDIDATES))
    s.on("GET", "customer", "/v1/customers/C-1/timeline", (200, TIMELINE))
    s.on("GET", "scoring", "/v1/customers/C-1/scores", (200, SCORES))


def test_search_by_id_finds_the_customer_beside_the_name_search(console: Console) -> None:
    console.sign_in_as("rep", "customers:read")
    console.services.on("GET", "customer", "/v1/customers/C-1", (200, PROFILE))
    other = {**PROFILE, "customer_id": "C-77", "name": "C 1 Ltd"}
    console.services.on("GET", "customer", "/v1/customers", (200, {"items": [PROFILE, other], "next_cursor": None}))
    page = console.client.get("/customers", params={"q": "C-1"})
    assert page.status_code == 200
    assert page.text.count('href="/customers/C-1"') == 1  # found both ways, shown once
    assert 'href="/customers/C-77"' in page.text
    (asked,) = console.services.sent("GET", "customer", "/v1/customers")
    assert asked.url.params["q"] == "C-1"
    assert asked.headers["authorization"] == "Bearer token-1"


def test_search_by_email_asks_for_the_exact_address(console: Console) -> None:
    console.sign_in_as("rep", "customers:read")
    console.services.on("GET", "customer", "/v1/customers", (200, {"items": [], "next_cursor": None}))
    page = console.client.get("/customers", params={"q": "Ada@Example.com"})
    assert "No customer you may see matches" in page.text
    (asked,) = console.services.sent("GET", "customer", "/v1/customers")
    assert asked.url.params["email"] == "Ada@Example.com"
    assert "q" not in asked.url.params


def test_the_360_shows_the_summary_card_with_churn_reasons_tickets_and_opportunities(console: Console) -> None:
    console.sign_in_as("manager", "customers:read", "scores:read")
    _customer_services(console)
    page = console.client.get("/customers/C-1")
    assert page.status_code == 200, page.text
    text = page.text
    assert 'data-testid="summary-card"' in text
    assert "high value" in text and "at risk" in text
    assert "1,430.00 EUR" in text  # realised
    assert "820.00 EUR" in text  # forecast
    assert "no order for 140 days (from 120 days a customer is at_risk)" in text
    assert "1 complaint, 1 severe" in text and "1 bad survey answer" in text
    assert "SLA breached" in text and "first response" in text
    assert "Renewal 2027" in text and "9,000.00 EUR" in text
    assert text.count('data-testid="timeline-entry"') == 1
    assert 'hx-trigger="every 3s"' in text
    assert "names 91% alike" in text
    # No scope to change consents or merge: no buttons, a word on why.
    assert 'data-testid="consent-toggle"' not in text and 'data-testid="confirm-merge"' not in text
    assert "needs the scope consents:write" in text


def test_without_scores_read_scoring_is_not_asked(console: Console) -> None:
    console.sign_in_as("agent", "customers:read")
    _customer_services(console)
    page = console.client.get("/customers/C-1")
    assert page.status_code == 200
    assert console.services.sent("GET", "scoring", "/v1/customers/C-1/scores") == []
    assert "high" in page.text  # the band from the summary card still shows


def test_a_merged_customer_points_to_the_survivor(console: Console) -> None:
    console.sign_in_as("rep", "customers:read")
    console.services.on("GET", "customer", "/v1/customers/C-1", (200, {**PROFILE, "merged_into": "C-9"}))
    page = console.client.get("/customers/C-1")
    assert 'href="/customers/C-9"' in page.text


def test_an_unknown_customer_is_the_services_404(console: Console) -> None:
    console.sign_in_as("rep", "customers:read")
    page = console.client.get("/customers/C-404")
    assert page.status_code == 404


def test_the_timeline_fragment_passes_the_filters_on(console: Console) -> None:
    console.sign_in_as("rep", "customers:read")
    console.services.on("GET", "customer", "/v1/customers/C-1/timeline", (200, TIMELINE))
    fragment = console.htmx(
        "GET",
        "/customers/C-1/timeline",
        params=[
            ("kind", "order"),
            ("kind", "ticket"),
            ("kind", "bogus"),
            ("channel", "email"),
            ("since", "2026-11-01"),
        ],
    )
    assert fragment.status_code == 200
    assert "<html" not in fragment.text and 'data-testid="timeline-entry"' in fragment.text
    (asked,) = console.services.sent("GET", "customer", "/v1/customers/C-1/timeline")
    assert asked.url.params.get_list("kind") == ["order", "ticket"]
    assert asked.url.params["channel"] == "email"
    assert asked.url.params["from"] == "2026-11-01T00:00:00Z"
    # The polling keeps the filter.
    assert "kind=order&amp;kind=ticket&amp;channel=email&amp;since=2026-11-01" in fragment.text


def test_a_consent_toggle_puts_the_answer_and_shows_the_new_state(console: Console) -> None:
    console.sign_in_as("agent", "customers:read", "consents:write")
    console.services.on("PUT", "customer", "/v1/customers/C-1/consents/sms", (200, CONSENTS))
    console.services.on(
        "GET", "customer", "/v1/customers/C-1/consents", (200, {**CONSENTS, "granted": ["email", "sms"], "refused": []})
    )
    answer = console.htmx("POST", "/customers/C-1/consents/sms", data={"granted": "true", "purpose": "marketing"})
    assert answer.status_code == 200, answer.text
    (put,) = console.services.sent("PUT", "customer", "/v1/customers/C-1/consents/sms")
    assert console.services.body(put) == {"granted": True, "purpose": "marketing"}
    assert "sms: saved." in answer.text
    assert answer.text.count('badge good">granted') == 2


def test_a_refused_consent_change_is_shown_in_the_card(console: Console) -> None:
    console.sign_in_as("agent", "customers:read", "consents:write")
    console.services.on(
        "PUT",
        "customer",
        "/v1/customers/C-1/consents/sms",
        (409, {"title": "Consent refused", "status": 409, "detail": "the customer's data was erased"}),
    )
    console.services.on("GET", "customer", "/v1/customers/C-1/consents", (200, CONSENTS))
    answer = console.htmx("POST", "/customers/C-1/consents/sms", data={"granted": "true"})
    assert answer.status_code == 409
    assert "the customer&#39;s data was erased" in answer.text and 'class="problem"' in answer.text


def test_a_consent_change_needs_the_csrf_token(console: Console) -> None:
    console.sign_in_as("agent", "customers:read", "consents:write")
    answer = console.client.post("/customers/C-1/consents/sms", data={"granted": "true"})
    assert answer.status_code == 400
    assert console.services.sent("PUT", "customer", "/v1/customers/C-1/consents/sms") == []


def test_confirming_a_candidate_merges_it_with_its_evidence(console: Console) -> None:
    console.sign_in_as("manager", "customers:read", "customers:merge")
    console.services.on("POST", "customer", "/v1/customers/C-1/merges", (201, {"merge_id": "M-1"}))
    console.services.on("GET", "customer", "/v1/customers/C-1/duplicates", (200, []))
    answer = console.htmx(
        "POST", "/customers/C-1/merges", data={"merged_id": "C-2", "evidence": ["names 91% alike", "postcode"]}
    )
    assert answer.status_code == 200, answer.text
    (merge,) = console.services.sent("POST", "customer", "/v1/customers/C-1/merges")
    assert console.services.body(merge) == {"merged_id": "C-2", "evidence": ["names 91% alike", "postcode"]}
    assert merge.headers["idempotency-key"]
    assert "C-2 is merged into C-1 (M-1)" in answer.text


def test_a_refused_merge_keeps_the_candidates_and_says_why(console: Console) -> None:
    console.sign_in_as("manager", "customers:read", "customers:merge")
    console.services.on(
        "POST",
        "customer",
        "/v1/customers/C-1/merges",
        (409, {"title": "Merge refused", "status": 409, "detail": "C-2 is an organisation, C-1 a person"}),
    )
    console.services.on("GET", "customer", "/v1/customers/C-1/duplicates", (200, CANDIDATES))
    answer = console.htmx("POST", "/customers/C-1/merges", data={"merged_id": "C-2"})
    assert answer.status_code == 409
    assert "C-2 is an organisation, C-1 a person" in answer.text
    assert 'data-testid="confirm-merge"' in answer.text


def test_rejecting_a_candidate_sends_the_reason(console: Console) -> None:
    console.sign_in_as("manager", "customers:read", "customers:merge")

    def rejected(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, json={"customers": ["C-1", "C-2"], "reason": "twins"})

    console.services.on("POST", "customer", "/v1/customers/C-1/duplicates/C-2/rejection", rejected)
    console.services.on("GET", "customer", "/v1/customers/C-1/duplicates", (200, []))
    answer = console.htmx("POST", "/customers/C-1/duplicates/C-2/rejection", data={"reason": " twins "})
    assert answer.status_code == 200
    (sent,) = console.services.sent("POST", "customer", "/v1/customers/C-1/duplicates/C-2/rejection")
    assert console.services.body(sent) == {"reason": "twins"}
    assert "C-2 will not be proposed again." in answer.text


def test_the_pages_need_customers_read(console: Console) -> None:
    console.sign_in_as("marketer", "campaigns:read")
    assert console.client.get("/customers/C-1").status_code == 403
    assert console.services.requests == []


def test_churn_reasons_say_why_in_words() -> None:
    assert churn_reasons(None) == []
    assert churn_reasons({"churn_risk_band": "low", "frequency": 4, "lifecycle_stage": "stable"}) == [
        "orders recently, no complaint or bad survey"
    ]
    assert churn_reasons({"churn_risk_band": "medium", "frequency": 1, "lifecycle_stage": "first_time_buyer"}) == [
        "a single order so far"
    ]
    assert churn_reasons({"probability_alive": 0.2, "frequency": 5, "lifecycle_stage": "stable"}) == [
        "probability still active 20 %"
    ]


def test_an_id_stays_one_segment_of_the_services_path(console: Console) -> None:
    console.sign_in_as("rep", "customers:read")
    console.client.get("/customers/C-1%3Fowner_id=x%23")
    asked = [r.url.raw_path.decode() for r in console.services.requests]
    assert asked == ["/v1/customers/C-1%3Fowner_id%3Dx%23"], asked


def test_search_by_phone_asks_for_the_number(console: Console) -> None:
    console.sign_in_as("rep", "customers:read")
    console.services.on("GET", "customer", "/v1/customers", (200, {"items": [PROFILE], "next_cursor": None}))
    page = console.client.get("/customers", params={"q": "+44 20 7946 0958"})
    assert 'data-testid="customer-link" href="/customers/C-1"' in page.text
    (asked,) = console.services.sent("GET", "customer", "/v1/customers")
    assert asked.url.params["phone"] == "+44 20 7946 0958" and "q" not in asked.url.params
