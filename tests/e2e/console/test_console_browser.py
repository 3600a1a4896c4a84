"""A rep, an agent, a marketer and an operator at work in the console, in headless Chromium, on `crm run`."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from .conftest import HAVE_CHROMIUM, NO_CHROMIUM, RunningCrm, screenshot, sign_in
from helpers import eventually

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.timeout(300),
    pytest.mark.skipif(not HAVE_CHROMIUM, reason=NO_CHROMIUM),
]


def _new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8].upper()}"


async def _no_horizontal_scroll(page: Any) -> bool:
    """The page fits the viewport's width: nothing is cut off on a phone (a wide table scrolls in its box)."""
    return bool(await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"))


async def test_sign_in_shows_the_sections_of_ones_scopes(crm_run: RunningCrm, laptop: Any) -> None:
    await laptop.goto(f"{crm_run.console}/customers")
    assert "/sign-in" in laptop.url
    await laptop.fill("input[name=username]", "rep-1")
    await laptop.fill("input[name=password]", crm_run.password + "-wrong")
    await laptop.click("form[action='/sign-in'] button[type=submit]")
    assert "do not match" in await laptop.text_content(".problem")
    await screenshot(laptop, "01-sign-in-refused")

    await sign_in(laptop, crm_run, "marketer-1")
    nav = await laptop.text_content("header nav")
    assert "Marketing" in nav and "Customers" in nav
    assert "Operator" not in nav and "Sales" not in nav
    await screenshot(laptop, "02-home-marketer")
    assert laptop.script_errors == []


async def test_find_a_customer_and_see_an_order_appear_in_the_timeline_without_a_reload(
    crm_run: RunningCrm, laptop: Any
) -> None:
    await sign_in(laptop, crm_run, "manager-1")
    await laptop.fill("form[data-testid=customer-search] input[name=q]", "C-1001")
    await laptop.click("form[data-testid=customer-search] button[type=submit]")
    await laptop.click("a[data-testid=customer-link][href='/customers/C-1001']")
    await laptop.wait_for_url(f"{crm_run.console}/customers/C-1001")
    await laptop.wait_for_selector("[data-testid=summary-card]")
    await laptop.wait_for_selector("[data-testid=timeline-entry]")
    await screenshot(laptop, "03-customer-360")

    # A marker the page keeps only as long as it is not reloaded.
    await laptop.evaluate("window.__notReloaded = true")
    order_id = _new_id("O-BROWSER")
    event = {
        "specversion": "1.0",
        "id": f"webshop-{order_id}",
        "source": "/channels/webshop",
        "type": "crm.order.placed.v1",
        "time": datetime.now(UTC).isoformat(),
        "subject": "C-1001",
        "data": {"customer_id": "C-1001", "order_id": order_id, "currency": "EUR", "total": "99.00"},
    }
    producer = AIOKafkaProducer(bootstrap_servers=crm_run.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait("crm.ingest.orders", json.dumps(event).encode(), key=b"C-1001")
    finally:
        await producer.stop()
    entry = laptop.locator("[data-testid=timeline-entry]", has_text=order_id)
    await entry.first.wait_for(timeout=45_000)
    assert await laptop.evaluate("window.__notReloaded === true")
    await screenshot(laptop, "04-timeline-new-order")
    assert laptop.script_errors == []


async def test_move_an_opportunity_to_the_next_stage(crm_run: RunningCrm, laptop: Any) -> None:
    await sign_in(laptop, crm_run, "manager-1", "/sales/pipeline")
    card = laptop.locator("[data-testid=opportunity-card]").first
    await card.wait_for()
    opportunity = await card.get_attribute("data-opportunity-id")
    columns = laptop.locator("[data-testid=stage-column]")
    stages = [await columns.nth(i).get_attribute("data-stage") for i in range(await columns.count())]
    before = await laptop.locator(
        f"[data-testid=stage-column]:has([data-opportunity-id='{opportunity}'])"
    ).get_attribute("data-stage")
    await screenshot(laptop, "05-pipeline-before")

    await card.locator("[data-testid=advance]").click()
    wanted = stages[stages.index(before) + 1]
    moved = laptop.locator(f"[data-testid=stage-column][data-stage='{wanted}'] [data-opportunity-id='{opportunity}']")
    await moved.wait_for()
    await screenshot(laptop, "06-pipeline-after")

    async with httpx.AsyncClient(headers=crm_run.admin_headers) as http:
        stored = (await http.get(f"{crm_run.urls['sales']}/v1/opportunities/{opportunity}")).json()
    assert stored["stage"] == wanted

    # The demo opportunity has no expected close date, which the stage after needs: the sales API refuses the
    # move, the card says why and stays where it is.
    after = stages[stages.index(wanted) + 1]
    needs = await laptop.locator(f"[data-testid=stage-column][data-stage='{after}'] header").text_content()
    assert "expected close" in needs and not stored.get("expected_close")
    await moved.locator("[data-testid=advance]").click()
    refused = laptop.locator(f"[data-opportunity-id='{opportunity}'] [data-testid=refusal]")
    await refused.wait_for()
    assert "close" in (await refused.text_content()).lower()
    stayed = f"[data-testid=stage-column][data-stage='{wanted}'] [data-opportunity-id='{opportunity}']"
    assert await laptop.locator(stayed).count() == 1
    await screenshot(laptop, "06b-pipeline-refused")
    async with httpx.AsyncClient(headers=crm_run.admin_headers) as http:
        stored = (await http.get(f"{crm_run.urls['sales']}/v1/opportunities/{opportunity}")).json()
    assert stored["stage"] == wanted

    # Won: the deal leaves the board.
    card = laptop.locator(f"[data-testid=opportunity-card][data-opportunity-id='{opportunity}']")
    await card.locator("[data-testid=close-deal] summary").click()
    await card.locator("input[name=reason]").fill("Best service offer")
    await card.locator("[data-testid=win]").click()
    await laptop.wait_for_selector("[data-testid=closed]")
    assert await laptop.locator(f"[data-opportunity-id='{opportunity}']").count() == 0
    await screenshot(laptop, "06c-pipeline-won")
    async with httpx.AsyncClient(headers=crm_run.admin_headers) as http:
        stored = (await http.get(f"{crm_run.urls['sales']}/v1/opportunities/{opportunity}")).json()
    assert stored["status"] == "won"

    # The forecast counts it as closed won this year, in its table and in the chart drawn from the page's JSON.
    await laptop.goto(f"{crm_run.console}/sales/forecast")
    assert "4,800.00" in await laptop.text_content("[data-testid=forecast-summary]")
    await laptop.wait_for_function(
        "() => window.Chart && Chart.getChart(document.querySelector('canvas[data-testid=forecast-chart]'))"
    )
    await screenshot(laptop, "06d-forecast")
    assert laptop.script_errors == []


async def test_answer_a_ticket_and_see_its_first_response_timer_met(crm_run: RunningCrm, laptop: Any) -> None:
    async with httpx.AsyncClient(headers=crm_run.admin_headers) as http:
        created = await http.post(
            f"{crm_run.urls['support']}/v1/tickets",
            json={
                "customer_id": "C-1002",
                "kind": "request",
                "subject": "Where is my parcel?",
                "description": "Ordered last week, nothing yet.",
                "channel": "email",
                "priority": "high",
                "category": "service",
            },
        )
    assert created.status_code == 201, created.text
    ticket_id = created.json()["ticket_id"]

    await sign_in(laptop, crm_run, "agent-1", "/service")
    row = laptop.locator(f"[data-testid=ticket-row][data-ticket-id='{ticket_id}']")
    await row.wait_for()
    await screenshot(laptop, "07-ticket-queue")
    await laptop.goto(f"{crm_run.console}/service/tickets/{ticket_id}")
    timer = laptop.locator("[data-testid=first-response-timer]")
    assert await timer.get_attribute("data-timer-state") == "running"
    first = await timer.text_content()
    await laptop.wait_for_function(
        "t => document.querySelector('[data-testid=first-response-timer]').textContent !== t", arg=first
    )

    await laptop.fill("form[data-testid=reply-form] textarea[name=body]", "It left our depot today: tracking follows.")
    await laptop.click("form[data-testid=reply-form] button[type=submit]")
    await laptop.wait_for_selector("[data-testid=first-response-timer][data-timer-state=met]")
    assert "met" in (await laptop.text_content("[data-testid=first-response-timer]")).lower()
    assert "It left our depot today" in await laptop.text_content("[data-testid=conversation]")
    await screenshot(laptop, "08-ticket-answered")
    assert laptop.script_errors == []


async def test_open_a_campaigns_results(crm_run: RunningCrm, laptop: Any) -> None:
    campaign_id = _new_id("browser-campaign").lower()
    now = datetime.now(UTC)
    async with httpx.AsyncClient(headers=crm_run.admin_headers) as http:
        created = await http.post(
            f"{crm_run.urls['marketing']}/v1/campaigns",
            json={
                "campaign_id": campaign_id,
                "name": "Browser test welcome",
                "objective": "Welcome new customers.",
                "journey": "welcome",
                "starts_at": (now - timedelta(days=30)).isoformat(),
                "ends_at": (now + timedelta(days=30)).isoformat(),
                "budget": "100.00",
                "cost_per_contact": "0.50",
            },
        )
    assert created.status_code == 201, created.text

    await sign_in(laptop, crm_run, "marketer-1", "/marketing")
    await laptop.click(f"[data-testid=campaign-row] a[href='/marketing/campaigns/{campaign_id}']")
    await laptop.wait_for_selector("[data-testid=campaign-results]")
    chart = laptop.locator("canvas[data-testid=results-chart]")
    await chart.wait_for()
    # Drawn: Chart.js has attached a chart to the canvas.
    await laptop.wait_for_function(
        "() => window.Chart && Chart.getChart(document.querySelector('canvas[data-testid=results-chart]'))"
    )
    await screenshot(laptop, "09-campaign-results")
    assert laptop.script_errors == []


async def test_the_operator_sees_health_lag_and_replays_a_dead_letter(crm_run: RunningCrm, laptop: Any) -> None:
    order_id = _new_id("O-POISON")
    broken = {
        "specversion": "1.0",
        "id": f"webshop-{order_id}",
        "source": "/channels/webshop",
        "type": "crm.order.placed.v1",
        "time": datetime.now(UTC).isoformat(),
        "subject": "C-1003",
        "data": {"customer_id": "C-1003", "order_id": order_id, "currency": "EUR", "total": "not money"},
    }
    producer = AIOKafkaProducer(bootstrap_servers=crm_run.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait("crm.ingest.orders", json.dumps(broken).encode(), key=b"C-1003")
    finally:
        await producer.stop()

    await sign_in(laptop, crm_run, "admin", "/operator")
    for service in ("customer", "sales", "support", "scoring", "marketing"):
        card = laptop.locator(f"[data-testid=service-card][data-service={service}]")
        assert "healthy" in await card.text_content()
    await laptop.wait_for_selector("[data-testid=lag-table] tbody tr")
    await screenshot(laptop, "10-operator")

    async def parked() -> bool:
        await laptop.goto(f"{crm_run.console}/operator/deadletters?service=sales")
        return await laptop.locator("[data-testid=deadletter-row]", has_text="crm.ingest.orders").count() > 0

    await eventually(parked, timeout=30, what="the poison order among sales' dead letters")
    await laptop.locator("[data-testid=deadletter-row] a").first.click()
    await laptop.wait_for_selector("[data-testid=replay-form]")
    assert "total" in await laptop.text_content("[data-testid=reason]")
    record = await laptop.input_value("textarea[name=record]")
    await laptop.fill("textarea[name=record]", re.sub(r'"not money"', '"12.50"', record))
    await laptop.click("[data-testid=replay-form] button[type=submit]")
    await laptop.wait_for_selector("[data-testid=replayed]")
    await screenshot(laptop, "11-dead-letter-replayed")

    async def applied() -> bool:
        async with httpx.AsyncClient(headers=crm_run.admin_headers) as http:
            return (await http.get(f"{crm_run.urls['sales']}/v1/orders/{order_id}")).status_code == 200

    await eventually(applied, timeout=30, what="the corrected order in sales")
    assert laptop.script_errors == []


async def test_the_pages_fit_a_phone(crm_run: RunningCrm, phone: Any) -> None:
    pages = {
        "manager-1": (
            ("/", "12-phone-home"),
            ("/customers/C-1001", "13-phone-customer-360"),
            ("/sales/pipeline", "14-phone-pipeline"),
            ("/service", "15-phone-ticket-queue"),
            ("/sales/forecast", "16-phone-forecast"),
            ("/sales/quotes/new", "17-phone-quote-editor"),
        ),
        "marketer-1": (("/marketing", "18-phone-marketing"), ("/marketing/population", "19-phone-population")),
        "admin": (("/operator", "20-phone-operator"),),
    }
    for username, paths in pages.items():
        await sign_in(phone, crm_run, username)
        for path, name in paths:
            await phone.goto(f"{crm_run.console}{path}")
            await phone.wait_for_load_state("networkidle")
            assert "/sign-in" not in phone.url, path
            await screenshot(phone, name)
            assert await _no_horizontal_scroll(phone), path
