"""Profiles, interactions and the timeline: conflict rules, summaries, no personal data on the timeline."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from crm_customer import domain
from crm_shared.events import (
    EVENT_TYPES,
    AccountContactChanged,
    ActivityCompleted,
    ActivityScheduled,
    CampaignContacted,
    CampaignConverted,
    CampaignEnrolled,
    ChannelConsent,
    CloudEvent,
    ComplaintFiled,
    ConsentChanged,
    CustomerErased,
    CustomerExportRequested,
    CustomerMatchKeysChanged,
    CustomerMerged,
    CustomerProfileUpdated,
    CustomerReferred,
    CustomerRegistered,
    CustomerUnmerged,
    ExportAnswered,
    IdentityApplied,
    InteractionLogged,
    LeadConverted,
    LeadQualified,
    OpportunityLost,
    OpportunityOpened,
    OpportunityStageChanged,
    OpportunityWon,
    OrderCancelled,
    OrderFulfilled,
    OrderLine,
    OrderPaid,
    OrderPlaced,
    OrderRefunded,
    Payload,
    QuoteAccepted,
    QuoteRejected,
    QuoteSent,
    ScoreSnapshot,
    SegmentChanged,
    SlaBreached,
    SlaWarned,
    SurveyAnswered,
    SurveyRequested,
    TicketAssigned,
    TicketOpened,
    TicketReplied,
    TicketStatusChanged,
    VisitScheduled,
    VisitStatusChanged,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)
NAME, EMAIL, PHONE = "Ada Lovelace", "ada.lovelace@example.com", "+44 20 7946 0001"
FREE_TEXT = "Spoke to Ada Lovelace about her order"
REGISTERED = CustomerRegistered(
    customer_id="C-1",
    name=NAME,
    email=EMAIL,
    phone=PHONE,
    channel="web",
    consents=[ChannelConsent(channel="email", granted=True), ChannelConsent(channel="sms", granted=False)],
    preferred_channel="email",
)
SCORES = ScoreSnapshot(
    recency_days=0,
    frequency=1,
    monetary=Decimal("1500.00"),
    average_order_value=Decimal("1500.00"),
    value_tier="high_value",
    lifecycle_stage="first_time_buyer",
    churn_risk=0.1,
    churn_risk_band="low",
    satisfaction=None,
)

# One payload per catalog event type, with its expected summary.
SAMPLES: dict[str, tuple[Payload, str]] = {
    "crm.order.placed.v1": (
        OrderPlaced(
            customer_id="C-1",
            order_id="O-77",
            currency="EUR",
            total=Decimal("1500.00"),
            lines=[OrderLine(sku="ATM-1", quantity=2, unit_price=Decimal("750.00"))],
        ),
        "Order O-77 placed: 1500.00 EUR",
    ),
    "crm.order.paid.v1": (
        OrderPaid(customer_id="C-1", order_id="O-77", currency="EUR", amount=Decimal("1500.00")),
        "Order O-77 paid: 1500.00 EUR",
    ),
    "crm.order.cancelled.v1": (
        OrderCancelled(customer_id="C-1", order_id="O-77", reason=FREE_TEXT),
        "Order O-77 cancelled",
    ),
    "crm.order.refunded.v1": (
        OrderRefunded(customer_id="C-1", order_id="O-77", currency="EUR", amount=Decimal("40.00"), reason=FREE_TEXT),
        "Order O-77 refunded: 40.00 EUR",
    ),
    "crm.complaint.filed.v1": (
        ComplaintFiled(customer_id="C-1", complaint_id="T-77", dimension="service", severity="high", summary=FREE_TEXT),
        "Complaint T-77 (service, high)",
    ),
    "crm.survey.answered.v1": (
        SurveyAnswered(customer_id="C-1", survey_id="S-9", kind="nps", score=9, comment=FREE_TEXT),
        "NPS survey S-9: 9/10 (service)",
    ),
    "crm.customer.registered.v1": (REGISTERED, "Registered via web"),
    "crm.interaction.logged.v1": (
        InteractionLogged(customer_id="C-1", interaction_id="I-5", kind="call", channel="phone", summary=FREE_TEXT),
        "Interaction I-5: call via phone",
    ),
    "crm.segment.changed.v1": (
        SegmentChanged(
            customer_id="C-1",
            dimension="value_tier",
            old="potential",
            new="high_value",
            scores=SCORES,
            model_version="v1",
            changed_at=T0,
            caused_by="e-1",
        ),
        "value_tier: potential → high_value",
    ),
    "crm.campaign.enrolled.v1": (
        CampaignEnrolled(
            customer_id="C-1",
            enrolment_id="EN-1",
            campaign_id="welcome",
            journey="welcome",
            episode="e-1",
            channel="email",
            status="contacted",
            trigger_event_id="e-1",
        ),
        "Enrolled in welcome by email",
    ),
    "crm.customer.consent_changed.v1": (
        ConsentChanged(customer_id="C-1", channel="sms", granted=True, preferred_channel="sms"),
        "Consent for sms granted (now the preferred channel)",
    ),
    "crm.campaign.contacted.v1": (
        CampaignContacted(
            customer_id="C-1",
            enrolment_id="EN-1",
            campaign_id="win-back-q4",
            journey="win-back",
            channel="email",
            cost=Decimal("0.40"),
        ),
        "Contacted by email for win-back (campaign win-back-q4)",
    ),
    "crm.campaign.converted.v1": (
        CampaignConverted(
            customer_id="C-1",
            enrolment_id="EN-1",
            campaign_id="win-back-q4",
            journey="win-back",
            group="treated",
            order_id="O-7",
            currency="EUR",
            revenue=Decimal("80.00"),
            enrolled_at=T0,
            ordered_at=T0 + timedelta(days=3),
        ),
        "Order O-7 (80.00 EUR) attributed to campaign win-back-q4 (treated)",
    ),
    "crm.lead.qualified.v1": (
        LeadQualified(customer_id="C-1", lead_id="L-1", segment_id="hot-prospects", reason="Hot prospects"),
        "Handed to sales as a qualified lead (segment hot-prospects)",
    ),
    "crm.customer.referred.v1": (
        CustomerReferred(customer_id="C-1", referral_id="R-1", referred_customer_id="C-2", channel="face_to_face"),
        "Referred customer C-2 via face_to_face (referral R-1)",
    ),
    "crm.lead.converted.v1": (
        LeadConverted(customer_id="C-1", lead_id="L-1", source="field_visit", new_customer=True, opportunity_id="P-1"),
        "Lead L-1 (field_visit) converted: registered as a new customer, opportunity P-1 opened",
    ),
    "crm.opportunity.opened.v1": (
        OpportunityOpened(
            customer_id="C-1",
            opportunity_id="P-1",
            pipeline_id="new-business",
            stage="qualify",
            name=FREE_TEXT,
            amount=Decimal("5000.00"),
            currency="EUR",
            probability=0.1,
            forecast_category="pipeline",
        ),
        "Opportunity P-1 opened at qualify: 5000.00 EUR",
    ),
    "crm.opportunity.stage_changed.v1": (
        OpportunityStageChanged(
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
        "Opportunity P-1: qualify → propose (60%)",
    ),
    "crm.opportunity.won.v1": (
        OpportunityWon(
            customer_id="C-1",
            opportunity_id="P-1",
            pipeline_id="new-business",
            amount=Decimal("5000.00"),
            currency="EUR",
            reason=FREE_TEXT,
            order_id="O-9",
        ),
        "Opportunity P-1 won: 5000.00 EUR, order O-9",
    ),
    "crm.opportunity.lost.v1": (
        OpportunityLost(
            customer_id="C-1",
            opportunity_id="P-1",
            pipeline_id="new-business",
            amount=Decimal("5000.00"),
            currency="EUR",
            reason=FREE_TEXT,
        ),
        "Opportunity P-1 lost: 5000.00 EUR",
    ),
    "crm.order.fulfilled.v1": (
        OrderFulfilled(customer_id="C-1", order_id="O-1", carrier="DHL", tracking_number="JD0001", location=FREE_TEXT),
        "Order O-1 fulfilled via DHL",
    ),
    "crm.activity.scheduled.v1": (
        ActivityScheduled(
            customer_id="C-1", activity_id="A-1", kind="call", title=FREE_TEXT, due_at=T0 + timedelta(hours=9)
        ),
        "Call A-1 scheduled for 2026-11-01 09:00 UTC",
    ),
    "crm.activity.completed.v1": (
        ActivityCompleted(customer_id="C-1", activity_id="A-1", kind="meeting", title=FREE_TEXT, outcome=FREE_TEXT),
        "Meeting A-1 done",
    ),
    "crm.quote.sent.v1": (
        QuoteSent(customer_id="C-1", quote_id="Q-1", currency="EUR", total=Decimal("900.00"), valid_until=T0.date()),
        "Quote Q-1 sent: 900.00 EUR, valid until 2026-11-01",
    ),
    "crm.quote.accepted.v1": (
        QuoteAccepted(customer_id="C-1", quote_id="Q-1", order_id="O-3", currency="EUR", total=Decimal("900.00")),
        "Quote Q-1 accepted: order O-3, 900.00 EUR",
    ),
    "crm.quote.rejected.v1": (
        QuoteRejected(customer_id="C-1", quote_id="Q-1", reason=FREE_TEXT),
        "Quote Q-1 rejected",
    ),
    "crm.customer.match_keys_changed.v1": (
        CustomerMatchKeysChanged(customer_id="C-1", reason="erased"),
        "Personal data erased",
    ),
    "crm.ticket.opened.v1": (
        TicketOpened(customer_id="C-1", ticket_id="TK-1", kind="request", channel="email", priority="high"),
        "Ticket TK-1 opened: request, high priority, via email",
    ),
    "crm.ticket.status_changed.v1": (
        TicketStatusChanged(customer_id="C-1", ticket_id="TK-1", old="closed", new="open", reopened=True),
        "Ticket TK-1 reopened",
    ),
    "crm.ticket.assigned.v1": (
        TicketAssigned(customer_id="C-1", ticket_id="TK-1", group="returns", assignee_id="agent-7"),
        "Ticket TK-1 assigned to agent-7 and group returns",
    ),
    "crm.ticket.replied.v1": (
        TicketReplied(customer_id="C-1", ticket_id="TK-1", post_id="P-1", author="customer", public=True),
        "Customer wrote on ticket TK-1",
    ),
    "crm.sla.warned.v1": (
        SlaWarned(customer_id="C-1", ticket_id="TK-1", timer="first_response", policy_id="vip", due_at=T0),
        "Ticket TK-1: first response due soon (policy vip)",
    ),
    "crm.survey.requested.v1": (
        SurveyRequested(customer_id="C-1", survey_id="CSAT-TK-1-1", kind="csat", ticket_id="TK-1"),
        "CSAT survey CSAT-TK-1-1 requested about ticket TK-1",
    ),
    "crm.sla.breached.v1": (
        SlaBreached(
            customer_id="C-1", ticket_id="TK-1", timer="resolution", policy_id="vip", due_at=T0, escalated_to="boss-1"
        ),
        "Ticket TK-1: resolution breached, escalated to boss-1",
    ),
    "crm.visit.scheduled.v1": (
        VisitScheduled(
            customer_id="C-1",
            visit_id="V-1",
            ticket_id="TK-1",
            technician_id="tech-1",
            skill="repair",
            starts_at=datetime(2027, 3, 1, 8, tzinfo=UTC),
            ends_at=datetime(2027, 3, 1, 9, tzinfo=UTC),
        ),
        "Visit V-1 for ticket TK-1 booked: repair, 2027-03-01 08:00 UTC",
    ),
    "crm.visit.status_changed.v1": (
        VisitStatusChanged(
            customer_id="C-1",
            visit_id="V-1",
            ticket_id="TK-1",
            technician_id="tech-1",
            status="completed",
            minutes_spent=45,
            parts=[{"part": "gasket", "quantity": 2}, {"part": "seal", "quantity": 1}],  # type: ignore[list-item]
        ),
        "Visit V-1 for ticket TK-1 completed: 45 min, 3 parts",
    ),
    "crm.customer.profile_updated.v1": (
        CustomerProfileUpdated(customer_id="C-1", changed=["company_size", "tags"], tags=["vip"], company_size="10-49"),
        "Profile changed: company size, tags",
    ),
    "crm.account.contact_changed.v1": (
        AccountContactChanged(customer_id="ORG-1", contact_id="C-1", roles=["buyer", "decision_maker"]),
        "Contact C-1: buyer, decision maker",
    ),
    "crm.customer.merged.v1": (
        CustomerMerged(
            customer_id="C-1", merge_id="merge-1", merged_id="C-2", decided_by="automatic", evidence=["the same email"]
        ),
        "Customer C-2 merged into this one (automatic: the same email)",
    ),
    "crm.customer.unmerged.v1": (
        CustomerUnmerged(customer_id="C-1", merge_id="merge-1", merged_id="C-2"),
        "Merge merge-1 undone: customer C-2 is separate again",
    ),
    "crm.customer.erased.v1": (
        CustomerErased(customer_id="C-1", erasure_id="erasure-1", pseudonym="anon-1"),
        "Erasure erasure-1 sent to every service",
    ),
    "crm.customer.export_requested.v1": (
        CustomerExportRequested(customer_id="C-1", request_id="export-1"),
        "Export export-1 of everything held asked for",
    ),
    # Answers of the services on crm.identity.answers: not on the timeline, so no summary of their own.
    "crm.identity.applied.v1": (
        IdentityApplied(customer_id="C-1", request_id="merge-1", request="merge", service="sales", records=3),
        "crm.identity.applied.v1",
    ),
    "crm.identity.exported.v1": (
        ExportAnswered(customer_id="C-1", request_id="export-1", service="sales", part=1, parts=1),
        "crm.identity.exported.v1",
    ),
}


def event_of(type_: str, data: Payload, at: datetime = T0) -> CloudEvent[Any]:
    return EVENT_TYPES[type_].create(data, source="/test", time=at)


# ---------------------------------------------------------------- registration


def test_a_first_registration_makes_a_profile_with_consents_by_channel() -> None:
    profile = domain.register(None, REGISTERED, T0, "e-1")
    assert profile.customer_id == "C-1" and profile.registered_at == T0 and profile.registered_by == "e-1"
    assert profile.details.consents == {"email": True, "sms": False}
    assert (profile.granted, profile.refused) == (["email"], ["sms"])


def test_registering_the_same_details_again_keeps_the_first_profile() -> None:
    profile = domain.register(None, REGISTERED, T0, "e-1")
    reordered = REGISTERED.model_copy(update={"consents": list(reversed(REGISTERED.consents))})
    assert domain.register(profile, reordered, T0 + timedelta(days=1), "e-2") == profile


@pytest.mark.parametrize(
    ("update", "field"),
    [
        ({"email": "other@example.com"}, "email"),
        ({"name": "Someone Else"}, "name"),
        ({"consents": [ChannelConsent(channel="email", granted=False)]}, "consents"),
        ({"preferred_channel": "sms"}, "preferred_channel"),
    ],
)
def test_registering_other_details_is_refused_naming_the_field_not_the_value(
    update: dict[str, Any], field: str
) -> None:
    profile = domain.register(None, REGISTERED, T0, "e-1")
    with pytest.raises(domain.RegistrationRejected, match="already registered") as refused:
        domain.register(profile, REGISTERED.model_copy(update=update), T0, "e-2")
    assert field in str(refused.value)
    for personal in (NAME, EMAIL, PHONE, "other@example.com", "Someone Else"):
        assert personal not in str(refused.value)


def test_a_channel_granted_and_refused_in_one_registration_is_refused() -> None:
    both = REGISTERED.model_copy(
        update={"consents": [ChannelConsent(channel="sms", granted=True), ChannelConsent(channel="sms", granted=False)]}
    )
    with pytest.raises(domain.RegistrationRejected, match="sms is stated twice"):
        domain.register(None, both, T0, "e-1")


def test_the_same_consent_stated_twice_counts_once() -> None:
    twice = REGISTERED.model_copy(update={"consents": [*REGISTERED.consents, REGISTERED.consents[0]]})
    assert domain.register(None, twice, T0, "e-1").details.consents == {"email": True, "sms": False}


# ---------------------------------------------------------------- interactions


def test_an_interaction_logged_twice_is_kept_once_and_other_content_is_refused() -> None:
    logged = SAMPLES["crm.interaction.logged.v1"][0]
    assert isinstance(logged, InteractionLogged)
    first = domain.log_interaction(None, logged, T0, "e-1")
    assert domain.log_interaction(first, logged, T0 + timedelta(hours=1), "e-2") == first
    with pytest.raises(domain.InteractionRejected, match="I-5 was already logged with different content"):
        domain.log_interaction(first, logged.model_copy(update={"kind": "visit"}), T0, "e-3")


# ---------------------------------------------------------------- timeline


def test_every_catalog_event_type_has_a_sample() -> None:
    assert set(SAMPLES) == set(EVENT_TYPES)


@pytest.mark.parametrize("type_", sorted(SAMPLES))
def test_every_event_type_gets_its_summary_without_personal_data(type_: str) -> None:
    data, expected = SAMPLES[type_]
    summary = domain.summarize(event_of(type_, data))
    assert summary == expected
    for personal in (NAME, EMAIL, PHONE, FREE_TEXT):
        assert personal not in summary


def test_a_service_consent_says_what_it_is_for() -> None:
    refused = ConsentChanged(customer_id="C-1", channel="post", granted=False, purpose="service")
    summary = domain.summarize(event_of("crm.customer.consent_changed.v1", refused))
    assert summary == "Consent for post messages about orders and tickets refused"


@pytest.mark.parametrize(
    ("update", "expected"),
    [
        ({"status": "holdout", "channel": None}, "Held out of welcome"),
        (
            {"status": "skipped", "channel": None, "reason": "customer refused every channel"},
            "Not contacted for welcome: customer refused every channel",
        ),
    ],
)
def test_an_enrolment_that_did_not_contact_says_so(update: dict[str, Any], expected: str) -> None:
    data = SAMPLES["crm.campaign.enrolled.v1"][0].model_copy(update=update)
    assert domain.summarize(event_of("crm.campaign.enrolled.v1", data)) == expected


def test_a_first_segment_value_reads_from_none() -> None:
    data = SAMPLES["crm.segment.changed.v1"][0].model_copy(update={"old": None})
    assert domain.summarize(event_of("crm.segment.changed.v1", data)) == "value_tier: none → high_value"


def test_a_sign_up_on_the_timeline_keeps_no_name_email_or_phone() -> None:
    event = event_of("crm.customer.registered.v1", REGISTERED)
    entry = domain.timeline_entry(event)
    assert (entry.event_id, entry.customer_id, entry.type, entry.time) == (event.id, "C-1", event.type, T0)
    assert not domain.PERSONAL_FIELDS & entry.data.keys()
    assert entry.data["consents"] == [
        {"channel": "email", "granted": True, "purpose": "marketing"},
        {"channel": "sms", "granted": False, "purpose": "marketing"},
    ]
    assert entry.data["preferred_channel"] == "email"
    for personal in (NAME, EMAIL, PHONE):
        assert personal not in repr(entry)


def test_other_payloads_are_kept_whole_on_the_timeline() -> None:
    data, _ = SAMPLES["crm.order.placed.v1"]
    entry = domain.timeline_entry(event_of("crm.order.placed.v1", data))
    assert entry.data == data.model_dump(mode="python")
    assert entry.data["total"] == Decimal("1500.00")


def test_without_personal_data_drops_only_the_personal_keys() -> None:
    assert domain.without_personal_data({"name": NAME, "email": EMAIL, "phone": PHONE, "channel": "web"}) == {
        "channel": "web"
    }


# ---------------------------------------------------------------- consent changes


def test_a_consent_change_updates_the_channel_and_the_newest_fact_wins_in_any_order() -> None:
    profile = domain.register(None, REGISTERED, T0, "e-1")
    refuse_email = ConsentChanged(customer_id="C-1", channel="email", granted=False)
    grant_email = ConsentChanged(customer_id="C-1", channel="email", granted=True, preferred_channel="email")
    grant_sms = ConsentChanged(customer_id="C-1", channel="sms", granted=True, preferred_channel="sms")
    facts = [
        (refuse_email, T0 + timedelta(days=2)),
        (grant_email, T0 + timedelta(days=1)),
        (grant_sms, T0 + timedelta(days=3)),
    ]
    outcomes = set()
    for order in (facts, facts[::-1], [facts[1], facts[0], facts[2]]):
        state = profile
        for fact, at in order:
            state = domain.change_consent(state, fact, at)
        outcomes.add((tuple(state.granted), tuple(state.refused)))
    assert outcomes == {(("sms",), ("email",))}
    assert domain.change_consent(profile, refuse_email, T0 - timedelta(days=1)) == profile
    assert domain.change_consent(profile, grant_email.model_copy(update={"preferred_channel": None}), T0) == profile


def test_service_consents_are_kept_apart_from_marketing_ones_and_the_newest_fact_wins() -> None:
    signed_up = REGISTERED.model_copy(
        update={
            "consents": [
                *REGISTERED.consents,
                ChannelConsent(channel="sms", granted=True, purpose="service"),
                ChannelConsent(channel="post", granted=False, purpose="service"),
            ]
        }
    )
    profile = domain.register(None, signed_up, T0, "e-1")
    # SMS is refused for marketing and granted for service: neither answer touches the other.
    assert (profile.refused, dict(profile.details.service_consents)) == (["sms"], {"sms": True, "post": False})
    refuse_service_sms = ConsentChanged(customer_id="C-1", channel="sms", granted=False, purpose="service")
    later = domain.change_consent(profile, refuse_service_sms, T0 + timedelta(days=2))
    assert (later.granted, later.refused, later.details.service_consents["sms"]) == (["email"], ["sms"], False)
    # An older service grant arriving late changes nothing; the marketing email grant is untouched by it.
    stale = ConsentChanged(customer_id="C-1", channel="sms", granted=True, purpose="service")
    assert domain.change_consent(later, stale, T0 + timedelta(days=1)) == later
    assert domain.answer_time(later, "sms", T0, "service") == T0 + timedelta(days=2)
    assert domain.answers_nothing_new(later, refuse_service_sms)
    with pytest.raises(ValueError, match="the preferred channel is a marketing choice"):
        ConsentChanged(customer_id="C-1", channel="sms", granted=True, purpose="service", preferred_channel="sms")


def test_at_equal_times_a_refusal_wins_over_a_grant_in_either_order() -> None:
    profile = domain.register(None, REGISTERED, T0, "e-1")
    at = T0 + timedelta(days=1)
    grant = ConsentChanged(customer_id="C-1", channel="sms", granted=True)
    refuse = ConsentChanged(customer_id="C-1", channel="sms", granted=False)
    one_way = domain.change_consent(domain.change_consent(profile, grant, at), refuse, at)
    other_way = domain.change_consent(domain.change_consent(profile, refuse, at), grant, at)
    assert "sms" in one_way.refused and "sms" in other_way.refused


def test_an_answer_given_now_is_dated_no_earlier_than_the_change_it_answers() -> None:
    profile = domain.register(None, REGISTERED, T0, "e-1")
    now = T0 + timedelta(days=1)
    ahead = now + timedelta(minutes=4)  # a grant stamped a little ahead, within the clock skew
    granted = domain.change_consent(profile, ConsentChanged(customer_id="C-1", channel="sms", granted=True), ahead)
    at = domain.answer_time(granted, "sms", now)
    assert at == ahead
    refused = domain.change_consent(granted, ConsentChanged(customer_id="C-1", channel="sms", granted=False), at)
    assert "sms" in refused.refused
    assert domain.answer_time(granted, "email", now) == now


def test_the_preferred_channel_is_always_a_granted_one() -> None:
    profile = domain.register(None, REGISTERED, T0, "e-1")  # email granted and preferred, sms refused
    prefer_sms = ConsentChanged(customer_id="C-1", channel="email", granted=True, preferred_channel="sms")
    with pytest.raises(domain.ConsentRejected, match="has not granted it"):
        domain.change_consent(profile, prefer_sms, T0 + timedelta(days=1))
    refused = domain.change_consent(
        profile, ConsentChanged(customer_id="C-1", channel="email", granted=False), T0 + timedelta(days=1)
    )
    assert refused.details.preferred_channel is None


def test_a_sign_ups_match_keys_stay_off_the_timeline_and_an_erasure_is_on_it() -> None:
    keys = CustomerMatchKeysChanged(customer_id="C-1", match_keys=["mk1:" + "a" * 43], reason="registered")
    assert not domain.on_timeline(event_of("crm.customer.match_keys_changed.v1", keys))
    erased = CustomerMatchKeysChanged(customer_id="C-1", reason="erased")
    assert domain.on_timeline(event_of("crm.customer.match_keys_changed.v1", erased))
    assert domain.on_timeline(event_of("crm.quote.rejected.v1", QuoteRejected(customer_id="C-1", quote_id="Q-1")))
