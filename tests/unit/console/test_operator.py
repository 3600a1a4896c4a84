"""The operator's view: health, lag and backlog from the services' own endpoints; dead letters and their replay."""

from __future__ import annotations

import httpx

from crm_console.pages.operator import ServiceState, read_metrics

from .conftest import Console

METRICS = """\
# HELP crm_consumer_lag Records on the partition not yet applied
# TYPE crm_consumer_lag gauge
crm_consumer_lag{group="crm-scoring",partition="0",topic="crm.sales.events"} 7.0
crm_consumer_lag{group="crm-scoring",partition="1",topic="crm.sales.events"} 5.0
crm_consumer_lag{group="crm-scoring",partition="0",topic="crm.support.events"} 0.0
# HELP crm_outbox_backlog Outbox records committed and not yet published
# TYPE crm_outbox_backlog gauge
crm_outbox_backlog{database="crm_scoring"} 3.0
# HELP crm_records_dead_lettered Records refused
# TYPE crm_records_dead_lettered counter
crm_records_dead_lettered_total{group="crm-scoring",topic="crm.sales.events"} 2.0
# HELP crm_lease_held 1 while this process holds the lease
# TYPE crm_lease_held gauge
crm_lease_held{database="crm_scoring",lease="outbox-relay"} 1.0
crm_lease_held{database="crm_scoring",lease="scoring-decay"} 0.0
"""

LETTER = {
    "letter_id": "crm.ingest.orders:1:42:crm-sales:0123456789abcdef",
    "topic": "crm.ingest.orders",
    "partition": 1,
    "offset": 42,
    "consumer_group": "crm-sales",
    "service": "sales",
    "reason": "data.total: not a decimal amount",
    "failed_at": "2026-12-03T10:00:00Z",
    "original_size": 180,
    "original_sha256": "ab" * 32,
    "original_text": '{"id": "e-1", "data": {"total": "x", "email": "***"}}',
    "replayed_at": None,
}
LETTER_PATH = "/v1/admin/deadletters/crm.ingest.orders:1:42:crm-sales:0123456789abcdef"


def test_metrics_are_summed_by_group_and_topic() -> None:
    state = ServiceState("scoring")
    read_metrics(state, METRICS)
    assert state.lag == {("crm-scoring", "crm.sales.events"): 12, ("crm-scoring", "crm.support.events"): 0}
    assert state.total_lag == 12
    assert state.outbox_backlog == 3
    assert state.dead_lettered == 2
    assert state.leases == ["outbox-relay"]


def test_the_view_shows_each_service_and_one_that_is_down(console: Console) -> None:
    console.sign_in_as("ops", "admin")
    for name in ("customer", "sales", "support", "marketing"):
        console.services.on(
            "GET", name, "/readyz", (200, {"status": "ready", "checks": {"database": "ok", "broker": "ok"}})
        )
        console.services.on("GET", name, "/metrics", lambda r: httpx.Response(200, text=METRICS))

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    console.services.on("GET", "scoring", "/readyz", down)
    page = console.client.get("/operator")
    assert page.status_code == 200
    assert page.text.count('badge good">healthy') == 4
    assert 'data-service="scoring"' in page.text and "unreachable" in page.text
    assert "crm.sales.events" in page.text and ">12<" in page.text


def test_a_service_not_ready_shows_what_it_cannot_reach(console: Console) -> None:
    console.sign_in_as("ops", "admin")
    console.services.on(
        "GET",
        "sales",
        "/readyz",
        (503, {"status": "not ready", "checks": {"database": "unreachable: ServerSelectionTimeoutError"}}),
    )
    page = console.client.get("/operator")
    assert "degraded" in page.text


def test_dead_letters_are_listed_with_their_reasons(console: Console) -> None:
    console.sign_in_as("ops", "admin")
    console.services.on("GET", "sales", "/v1/admin/deadletters", (200, {"items": [LETTER], "next_cursor": None}))
    page = console.client.get("/operator/deadletters?service=sales&status=parked")
    assert "data.total: not a decimal amount" in page.text
    (asked,) = console.services.sent("GET", "sales", "/v1/admin/deadletters")
    assert asked.url.params["status"] == "parked"


def test_an_unknown_service_is_a_404(console: Console) -> None:
    console.sign_in_as("ops", "admin")
    assert console.client.get("/operator/deadletters?service=billing").status_code == 404


def test_replay_sends_the_corrected_record(console: Console) -> None:
    console.sign_in_as("ops", "admin")
    console.services.on("GET", "sales", LETTER_PATH, (200, LETTER))
    replayed = {**LETTER, "replayed_at": "2026-12-03T10:05:00Z", "replayed_event_id": "e-1", "replayed_by": "ops"}
    console.services.on("POST", "sales", LETTER_PATH + "/replay", (202, replayed))
    page = console.post(
        f"/operator/deadletters/sales/{LETTER['letter_id']}/replay",
        {"record": '{"id": "e-1", "data": {"total": "1.00"}}'},
    )
    assert page.status_code == 200
    assert 'data-testid="replayed"' in page.text
    (sent,) = console.services.sent("POST", "sales", LETTER_PATH + "/replay")
    assert console.services.body(sent) == {"record": {"id": "e-1", "data": {"total": "1.00"}}}


def test_a_record_that_is_not_json_is_refused_before_the_service(console: Console) -> None:
    console.sign_in_as("ops", "admin")
    console.services.on("GET", "sales", LETTER_PATH, (200, LETTER))
    page = console.post(f"/operator/deadletters/sales/{LETTER['letter_id']}/replay", {"record": "{not json"})
    assert page.status_code == 422 and "not JSON" in page.text
    assert not console.services.sent("POST", "sales", LETTER_PATH + "/replay")


def test_the_services_refusal_of_a_replay_is_shown(console: Console) -> None:
    console.sign_in_as("ops", "admin")
    console.services.on("GET", "sales", LETTER_PATH, (200, LETTER))
    console.services.on(
        "POST",
        "sales",
        LETTER_PATH + "/replay",
        (422, {"title": "Invalid record", "status": 422, "detail": "data.total: not a decimal"}),
    )
    page = console.post(f"/operator/deadletters/sales/{LETTER['letter_id']}/replay", {"record": "{}"})
    assert page.status_code == 422 and "data.total: not a decimal" in page.text


def test_replay_needs_the_csrf_token(console: Console) -> None:
    console.sign_in_as("ops", "admin")
    page = console.client.post(f"/operator/deadletters/sales/{LETTER['letter_id']}/replay", data={"record": "{}"})
    assert page.status_code == 400
    assert not console.services.requests


def test_the_operator_view_needs_admin(console: Console) -> None:
    console.sign_in_as("rep", "customers:read", "records:all")
    assert console.client.get("/operator/deadletters").status_code == 403
