"""The published catalog (docs/) is what the code generates, and it accepts what the code emits."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from crm_shared import events
from crm_shared.contract_docs import generate, stale_files

ROOT = Path(__file__).resolve().parents[3]
DOCS = ROOT / "docs"
T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)
SNAPSHOT = events.ScoreSnapshot(
    recency_days=None,
    frequency=0,
    monetary=Decimal(0),
    average_order_value=Decimal(0),
    value_tier="potential",
    lifecycle_stage="prospect",
    churn_risk=0.7,
    churn_risk_band="high",
    satisfaction=None,
)
SAMPLES: dict[str, events.Payload] = {
    "crm.order.placed.v1": events.OrderPlaced(
        customer_id="C-1",
        order_id="O-1",
        currency="EUR",
        total=Decimal("20.00"),
        lines=[events.OrderLine(sku="S-1", quantity=2, unit_price=Decimal("10.00"))],
    ),
    "crm.order.paid.v1": events.OrderPaid(customer_id="C-1", order_id="O-1", currency="EUR", amount=Decimal("20")),
    "crm.order.cancelled.v1": events.OrderCancelled(customer_id="C-1", order_id="O-1"),
    "crm.order.refunded.v1": events.OrderRefunded(customer_id="C-1", order_id="O-1", currency="EUR", amount=Decimal(5)),
    "crm.complaint.filed.v1": events.ComplaintFiled(
        customer_id="C-1", complaint_id="T-1", dimension="people", severity="high", summary="Rude."
    ),
    "crm.survey.answered.v1": events.SurveyAnswered(customer_id="C-1", survey_id="S-1", kind="nps", score=3),
    "crm.customer.registered.v1": events.CustomerRegistered(
        customer_id="C-1", name="A Person", consents=[events.ChannelConsent(channel="email", granted=False)]
    ),
    "crm.interaction.logged.v1": events.InteractionLogged(
        customer_id="C-1", interaction_id="I-1", kind="visit", channel="face_to_face"
    ),
    "crm.segment.changed.v1": events.SegmentChanged(
        customer_id="C-1",
        dimension="churn_risk_band",
        old=None,
        new="high",
        scores=SNAPSHOT,
        model_version="rules-v1",
        changed_at=T0,
        caused_by="e-1",
    ),
    "crm.campaign.enrolled.v1": events.CampaignEnrolled(
        customer_id="C-1",
        enrolment_id="E-1",
        campaign_id="welcome",
        journey="welcome",
        episode="e-1",
        channel=None,
        status="skipped",
        reason="no consent on record",
        trigger_event_id="e-1",
    ),
    "crm.customer.consent_changed.v1": events.ConsentChanged(customer_id="C-1", channel="email", granted=False),
    "crm.campaign.contacted.v1": events.CampaignContacted(
        customer_id="C-1", enrolment_id="E-1", campaign_id="welcome", journey="welcome", channel="sms", cost=Decimal(0)
    ),
    "crm.campaign.converted.v1": events.CampaignConverted(
        customer_id="C-1",
        enrolment_id="E-1",
        campaign_id="win-back-q4",
        journey="win-back",
        group="treated",
        order_id="O-2",
        currency="EUR",
        revenue=Decimal("99.90"),
        enrolled_at=T0,
        ordered_at=T0,
    ),
    "crm.lead.qualified.v1": events.LeadQualified(
        customer_id="C-1", lead_id="L-1", segment_id="hot-prospects", reason="Hot prospects", value_tier="potential"
    ),
    "crm.customer.referred.v1": events.CustomerReferred(
        customer_id="C-1", referral_id="R-1", referred_customer_id="C-2", channel="partner"
    ),
    "crm.lead.converted.v1": events.LeadConverted(
        customer_id="C-1", lead_id="L-1", source="inbound", new_customer=False, account_id="ACC-1"
    ),
    "crm.opportunity.opened.v1": events.OpportunityOpened(
        customer_id="C-1",
        opportunity_id="P-1",
        pipeline_id="new-business",
        stage="qualify",
        name="Fleet renewal",
        amount=Decimal("5000.00"),
        currency="EUR",
        expected_close=T0.date(),
        probability=0.1,
        forecast_category="pipeline",
    ),
    "crm.opportunity.stage_changed.v1": events.OpportunityStageChanged(
        customer_id="C-1",
        opportunity_id="P-1",
        pipeline_id="new-business",
        from_stage="qualify",
        to_stage="propose",
        probability=0.6,
        forecast_category="best_case",
        amount=Decimal("5000.00"),
        currency="EUR",
    ),
    "crm.opportunity.won.v1": events.OpportunityWon(
        customer_id="C-1", opportunity_id="P-1", pipeline_id="new-business", amount=Decimal(5000), currency="EUR"
    ),
    "crm.opportunity.lost.v1": events.OpportunityLost(
        customer_id="C-1",
        opportunity_id="P-1",
        pipeline_id="new-business",
        amount=Decimal(5000),
        currency="EUR",
        reason="price",
    ),
    "crm.order.fulfilled.v1": events.OrderFulfilled(customer_id="C-1", order_id="O-1", tracking_number="JD0001"),
    "crm.activity.scheduled.v1": events.ActivityScheduled(
        customer_id="C-1", activity_id="A-1", kind="visit", title="Site visit", due_at=T0
    ),
    "crm.activity.completed.v1": events.ActivityCompleted(
        customer_id="C-1", activity_id="A-1", kind="visit", title="Site visit"
    ),
    "crm.quote.sent.v1": events.QuoteSent(
        customer_id="C-1", quote_id="Q-1", currency="EUR", total=Decimal("900.00"), valid_until=T0.date()
    ),
    "crm.quote.accepted.v1": events.QuoteAccepted(
        customer_id="C-1", quote_id="Q-1", order_id="O-3", currency="EUR", total=Decimal("900.00")
    ),
    "crm.quote.rejected.v1": events.QuoteRejected(customer_id="C-1", quote_id="Q-1"),
    "crm.customer.match_keys_changed.v1": events.CustomerMatchKeysChanged(
        customer_id="C-1", match_keys=["mk1:" + "A" * 43], reason="registered"
    ),
    "crm.ticket.opened.v1": events.TicketOpened(
        customer_id="C-1", ticket_id="TK-1", kind="complaint", channel="phone", priority="normal"
    ),
    "crm.ticket.status_changed.v1": events.TicketStatusChanged(
        customer_id="C-1", ticket_id="TK-1", old="new", new="open"
    ),
    "crm.ticket.assigned.v1": events.TicketAssigned(customer_id="C-1", ticket_id="TK-1", group="returns"),
    "crm.ticket.replied.v1": events.TicketReplied(
        customer_id="C-1", ticket_id="TK-1", post_id="P-1", author="agent", public=False
    ),
    "crm.survey.requested.v1": events.SurveyRequested(
        customer_id="C-1", survey_id="CSAT-TK-1-1", kind="csat", ticket_id="TK-1", agent_id="agent-7"
    ),
    "crm.sla.warned.v1": events.SlaWarned(
        customer_id="C-1", ticket_id="TK-1", timer="first_response", policy_id="vip", due_at=T0
    ),
    "crm.sla.breached.v1": events.SlaBreached(
        customer_id="C-1", ticket_id="TK-1", timer="resolution", policy_id="vip", due_at=T0, escalated_to_group="leads"
    ),
    "crm.visit.scheduled.v1": events.VisitScheduled(
        customer_id="C-1",
        visit_id="V-1",
        ticket_id="TK-1",
        technician_id="tech-1",
        skill="repair",
        starts_at=T0,
        ends_at=T0,
        contract_id="SC-1",
    ),
    "crm.visit.status_changed.v1": events.VisitStatusChanged(
        customer_id="C-1",
        visit_id="V-1",
        ticket_id="TK-1",
        technician_id="tech-1",
        status="completed",
        minutes_spent=45,
        parts=[events.PartUsedInVisit(part="gasket", quantity=2)],
        installed_product="SN-1",
    ),
    "crm.customer.profile_updated.v1": events.CustomerProfileUpdated(
        customer_id="C-1",
        changed=["attributes", "tags"],
        tags=["vip"],
        industry="retail",
        company_size="10-49",
        attributes={"loyalty_card": "gold", "employees": 12.0, "newsletter": True},
    ),
    "crm.account.contact_changed.v1": events.AccountContactChanged(
        customer_id="ORG-1", contact_id="C-1", roles=["buyer"]
    ),
    "crm.customer.merged.v1": events.CustomerMerged(
        customer_id="C-1", merge_id="merge-1", merged_id="C-2", decided_by="confirmed", evidence=["names 92% alike"]
    ),
    "crm.customer.unmerged.v1": events.CustomerUnmerged(customer_id="C-1", merge_id="merge-1", merged_id="C-2"),
    "crm.customer.erased.v1": events.CustomerErased(customer_id="C-1", erasure_id="erasure-1", pseudonym="anon-1"),
    "crm.customer.export_requested.v1": events.CustomerExportRequested(customer_id="C-1", request_id="export-1"),
    "crm.identity.applied.v1": events.IdentityApplied(
        customer_id="C-1", request_id="erasure-1", request="erasure", service="support", records=2, kept=5
    ),
    "crm.identity.exported.v1": events.ExportAnswered(
        customer_id="C-1", request_id="export-1", service="sales", part=1, parts=1, records={"orders": [{"_id": "O-1"}]}
    ),
}


def validator(type_: str) -> Draft202012Validator:
    schema = json.loads((DOCS / "events" / f"{type_}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def test_docs_are_current() -> None:
    stale = stale_files(DOCS, generate())
    assert not stale, f"run `make docs` and commit: {stale}"


def test_every_event_type_has_a_sample() -> None:
    assert set(SAMPLES) == set(events.EVENT_TYPES)


@pytest.mark.parametrize("type_", sorted(events.EVENT_TYPES))
def test_the_published_schema_accepts_what_the_code_emits(type_: str) -> None:
    cls = events.EVENT_TYPES[type_]
    emitted = json.loads(cls.create(SAMPLES[type_], source="/test", time=T0).to_bytes())
    errors = [e.message for e in validator(type_).iter_errors(emitted)]
    assert not errors


@pytest.mark.parametrize("type_", sorted(events.EVENT_TYPES))
def test_the_published_schema_refuses_what_the_code_refuses(type_: str) -> None:
    cls = events.EVENT_TYPES[type_]
    emitted: dict[str, Any] = json.loads(cls.create(SAMPLES[type_], source="/test", time=T0).to_bytes())
    without_id = {k: v for k, v in emitted.items() if k != "id"}
    wrong_type = {**emitted, "type": "crm.something.else.v1"}
    unknown_field = {**emitted, "data": {**emitted["data"], "surprise": 1}}
    for bad in (without_id, wrong_type, unknown_field):
        assert not validator(type_).is_valid(bad)
