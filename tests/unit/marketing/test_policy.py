"""Holdout, frequency cap, budget, attribution window and results: the rules every enrolment follows."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from crm_marketing import domain
from crm_shared.events import ChannelConsent, ConsentChanged, CustomerRegistered

T0 = datetime(2026, 11, 1, tzinfo=UTC)
NO_HOLDOUT = domain.Policy(holdout_share=0)


def email_granted(customer: str = "C-1") -> domain.ContactPreferences:
    registered = CustomerRegistered(
        customer_id=customer, name="Test Person", consents=[ChannelConsent(channel="email", granted=True)]
    )
    return domain.record_registration(None, registered, "e-reg", T0)


# ---------------------------------------------------------------- holdout


def test_the_holdout_draw_is_the_same_for_a_customer_and_journey_and_differs_across_journeys() -> None:
    assert domain.holdout_draw("C-1", "welcome") == domain.holdout_draw("C-1", "welcome")
    assert domain.holdout_draw("C-1", "welcome") != domain.holdout_draw("C-1", "win-back")
    assert domain.holdout_draw("C-1", "welcome") != domain.holdout_draw("C-2", "welcome")
    assert all(0 <= domain.holdout_draw(f"C-{i}", "welcome") < 1 for i in range(1000))


@pytest.mark.parametrize("share", [0.10, 0.25, 0.5])
def test_the_holdout_share_holds_over_ten_thousand_customers(share: float) -> None:
    held = sum(domain.in_holdout(f"C-{i:05d}", "welcome", share) for i in range(10_000))
    # Binomial standard deviation at n=10,000 is at most 0.005: four of them is a safe tolerance.
    assert abs(held / 10_000 - share) < 0.02


def test_no_holdout_share_holds_no_one_out() -> None:
    assert not any(domain.in_holdout(f"C-{i}", "welcome", 0) for i in range(10_000))


def test_the_readme_demo_customers_are_not_held_out_at_the_default_share() -> None:
    for customer in ("C-1001", "C-1002", "C-1003"):
        for journey in ("welcome", "high-value-thank-you", "service-recovery", "complaint-recovery", "win-back"):
            assert not domain.in_holdout(customer, journey, domain.Policy().holdout_share), (customer, journey)


def test_a_held_out_customer_is_not_contacted_even_with_consent() -> None:
    everyone = domain.Policy(holdout_share=0.999999)
    decision = domain.decide("C-1", "welcome", email_granted(), everyone, recent_contacts=0)
    assert decision == domain.Decision("holdout", None, "holdout group")


# ---------------------------------------------------------------- frequency cap


def test_the_frequency_cap_skips_the_contact_beyond_the_limit() -> None:
    policy = domain.Policy(holdout_share=0, max_contacts_per_period=3)
    prefs = email_granted()
    assert domain.decide("C-1", "welcome", prefs, policy, recent_contacts=2).status == "contacted"
    capped = domain.decide("C-1", "welcome", prefs, policy, recent_contacts=3)
    assert capped == domain.Decision("skipped", None, "frequency cap")


def test_an_uncapped_journey_is_contacted_whatever_the_recent_contacts() -> None:
    decision = domain.decide(
        "C-1", "complaint-recovery", email_granted(), NO_HOLDOUT, recent_contacts=9, frequency_capped=False
    )
    assert decision == domain.Decision("contacted", "email")


def test_no_consent_is_reported_before_the_cap() -> None:
    decision = domain.decide("C-1", "welcome", None, NO_HOLDOUT, recent_contacts=9)
    assert decision.reason == "no consent on record"


# ---------------------------------------------------------------- consent


def test_a_consent_change_revoking_email_is_respected_and_an_older_one_is_not() -> None:
    prefs = email_granted()
    revoked = domain.record_consent_change(
        prefs, ConsentChanged(customer_id="C-1", channel="email", granted=False), "e-2", T0 + timedelta(days=1)
    )
    assert domain.decide("C-1", "welcome", revoked, NO_HOLDOUT, recent_contacts=0).reason == (
        "customer refused every channel"
    )
    stale = domain.record_consent_change(
        revoked, ConsentChanged(customer_id="C-1", channel="email", granted=True), "e-3", T0 - timedelta(days=1)
    )
    assert stale == revoked


def test_a_campaign_channel_is_only_used_when_granted() -> None:
    prefs = email_granted()
    assert domain.choose_channel(prefs, only="email") == domain.ChannelChoice("email")
    assert domain.choose_channel(prefs, only="sms") == domain.ChannelChoice(None, "customer has not granted sms")


# ---------------------------------------------------------------- budget


@pytest.mark.parametrize(
    ("spent", "cost", "allowed"),
    [("0", "0.40", True), ("9.60", "0.40", True), ("9.61", "0.40", False), ("10.00", "0.01", False)],
)
def test_a_budget_is_never_overspent(spent: str, cost: str, allowed: bool) -> None:
    assert domain.can_spend(Decimal("10.00"), Decimal(spent), Decimal(cost)) is allowed


def test_only_a_contact_costs() -> None:
    holdout = domain.enrol("C-1", "w", "w", "e", "e", domain.Decision("holdout"), T0, Decimal("0.40"))
    contacted = domain.enrol("C-1", "w", "w", "e", "e", domain.Decision("contacted", "email"), T0, Decimal("0.40"))
    assert (holdout.cost, contacted.cost) == (Decimal(0), Decimal("0.40"))


# ---------------------------------------------------------------- attribution


@pytest.mark.parametrize(
    ("after", "counts"),
    [
        (timedelta(0), False),
        (timedelta(seconds=-1), False),
        (timedelta(microseconds=1), True),
        (timedelta(days=30), True),
        (timedelta(days=30, microseconds=1), False),
    ],
)
def test_the_attribution_window_runs_from_just_after_enrolment_to_its_end(after: timedelta, counts: bool) -> None:
    assert domain.attributed(T0, T0 + after, timedelta(days=30)) is counts


# ---------------------------------------------------------------- results


def test_results_compare_the_contacted_with_the_holdout() -> None:
    results = domain.CampaignResults(
        treated=domain.GroupOutcome(enrolled=100, converted=20, orders=25, revenue=Decimal("2000.00")),
        holdout=domain.GroupOutcome(enrolled=10, converted=1, orders=1, revenue=Decimal("100.00")),
        cost=Decimal("40.00"),
    )
    assert results.treated.conversion_rate == pytest.approx(0.20)
    assert results.uplift == pytest.approx(0.10)
    assert results.incremental_revenue == Decimal("1000.00")
    assert results.roi == pytest.approx(24.0)


def test_without_a_holdout_or_a_cost_there_is_no_uplift_or_roi() -> None:
    treated = domain.GroupOutcome(enrolled=5, converted=1, orders=1, revenue=Decimal("10"))
    nobody = domain.GroupOutcome(enrolled=0, converted=0, orders=0, revenue=Decimal(0))
    results = domain.CampaignResults(treated, nobody, Decimal(0))
    assert (results.uplift, results.incremental_revenue, results.roi) == (None, None, None)
    assert results.uplift_interval is None
    assert domain.CampaignResults(nobody, treated, Decimal(0)).uplift_interval is None


def test_the_uplifts_interval_is_newcombes_hybrid_score_interval() -> None:
    # Newcombe (1998), Statistics in Medicine 17:873, table II, example (a) by method 10: 56/70 - 48/80.
    results = domain.CampaignResults(
        treated=domain.GroupOutcome(enrolled=70, converted=56, orders=56, revenue=Decimal("0")),
        holdout=domain.GroupOutcome(enrolled=80, converted=48, orders=48, revenue=Decimal("0")),
        cost=Decimal(0),
    )
    assert results.uplift == pytest.approx(0.2)
    low, high = results.uplift_interval or (0.0, 0.0)
    assert (round(low, 4), round(high, 4)) == (0.0524, 0.3339)


def test_the_interval_holds_at_no_and_at_every_conversion() -> None:
    # Wilson's upper bound at 0 of n is z^2 / (n + z^2): 0.2775 at n = 10, where a normal interval is 0 wide.
    assert domain.wilson_interval(0, 10) == (0.0, pytest.approx(0.2775, abs=5e-5))
    assert domain.wilson_interval(10, 10) == (pytest.approx(0.7225, abs=5e-5), pytest.approx(1.0))
    low, high = domain.difference_interval(0, 10, 0, 10) or (1.0, -1.0)
    assert (round(low, 4), round(high, 4)) == (-0.2775, 0.2775)
    low, high = domain.difference_interval(10, 10, 0, 10) or (0.0, 0.0)
    assert (round(low, 4), round(high, 4)) == (0.6075, 1.0)
