"""Money scores in the reporting currency: each order's net value converted at its currency's rate, never summed
across currencies as one number; money in a currency with no rate, or not its order's, is refused."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_scoring import domain, handlers, population
from crm_scoring.domain import Cancelled, CustomerFacts, Paid, Placed, Refunded, Thresholds
from crm_scoring.settings import ScoringSettings
from crm_shared.consumer import Rejected
from crm_shared.money import ExchangeRates

T0 = datetime(2026, 11, 1, 9, tzinfo=UTC)
RATES = ExchangeRates.of("EUR", {"EUR": "1", "USD": "0.90", "GBP": "1.15"})
MIXED = Thresholds(exchange_rates=RATES)


def placed(order_id: str, total: str, currency: str, days: float = 0) -> Placed:
    return Placed(order_id, Decimal(total), currency, T0 + timedelta(days=days))


def facts_of(*facts: domain.Fact) -> CustomerFacts:
    return domain.record_all(CustomerFacts("C-1"), facts)


def test_monetary_value_adds_each_orders_net_value_in_the_reporting_currency() -> None:
    facts = facts_of(
        placed("O-1", "100.00", "EUR"),
        placed("O-2", "200.00", "USD", days=1),
        Refunded("O-2", "e-r", Decimal("50.00"), T0 + timedelta(days=2), "USD"),
        placed("O-3", "40.00", "GBP", days=3),
    )
    scores = domain.score(facts, T0 + timedelta(days=3), MIXED)
    # 100.00 EUR + (200.00 - 50.00) USD x 0.90 + 40.00 GBP x 1.15 = 100.00 + 135.00 + 46.00 = 281.00 EUR,
    # not the 290.00 the three numbers make side by side.
    assert scores.frequency == 3
    assert scores.monetary == Decimal("281.00")
    assert scores.average_order_value == Decimal("93.67")  # 281.00 / 3
    assert [(p.order_id, v) for p, v in domain.counted_orders(facts, RATES)] == [
        ("O-1", Decimal("100.00")),
        ("O-2", Decimal("135.00")),
        ("O-3", Decimal("46.00")),
    ]


def test_the_value_tier_compares_the_converted_value_with_the_threshold() -> None:
    # 1000.00 USD is 900.00 EUR: below the 1000 EUR threshold, though the number is not.
    facts = facts_of(placed("O-1", "1000.00", "USD"))
    assert domain.score(facts, T0, MIXED).value_tier == "low_value"
    in_dollars = Thresholds(exchange_rates=ExchangeRates.of("USD", {"USD": "1"}))
    assert domain.score(facts, T0, in_dollars).value_tier == "high_value"


def test_an_order_whose_currency_lost_its_rate_does_not_count() -> None:
    facts = facts_of(placed("O-1", "100.00", "EUR"), placed("O-2", "999.00", "XXX", days=1))
    scores = domain.score(facts, T0 + timedelta(days=1), MIXED)
    assert (scores.frequency, scores.monetary, scores.last_order_at) == (1, Decimal("100.00"), T0)
    assert domain.value_in(facts.orders["O-2"], RATES) is None


def test_scoring_refuses_an_order_refund_or_payment_in_a_currency_without_a_rate() -> None:
    with pytest.raises(Rejected, match=r"order O-9 not scored: currency XXX has no exchange rate"):
        handlers.check_priced(placed("O-9", "10.00", "XXX"), RATES)
    with pytest.raises(Rejected, match=r"accepted currencies are EUR, GBP, USD \(CRM_EXCHANGE_RATES\)"):
        handlers.check_priced(Refunded("O-9", "e-r", Decimal(1), T0, "XXX"), RATES)
    handlers.check_priced(placed("O-9", "10.00", "USD"), RATES)
    handlers.check_priced(Cancelled("O-9", T0), RATES)


def test_a_refund_in_another_currency_than_its_order_is_refused() -> None:
    order = facts_of(placed("O-1", "100.00", "EUR"))
    with pytest.raises(domain.FactRejected, match=r"refund of 5 USD on order O-1 contradicts its currency: the order"):
        domain.record(order, Refunded("O-1", "e-r", Decimal(5), T0, "USD"))


def test_a_refund_known_before_its_order_refuses_an_order_in_another_currency() -> None:
    early = facts_of(Refunded("O-1", "e-r", Decimal(5), T0, "USD"))
    with pytest.raises(domain.FactRejected, match=r"order O-1 in EUR contradicts a refund of 5 USD known for it"):
        domain.record(early, placed("O-1", "100.00", "EUR"))
    with pytest.raises(domain.FactRejected, match=r"the refunds and payments known for it are in USD"):
        domain.record(early, Paid("O-1", "e-p", Decimal(100), T0, "EUR"))
    assert domain.record(early, placed("O-1", "100.00", "USD")).orders["O-1"].net_value == Decimal("95.00")


def test_a_refund_recorded_without_its_currency_is_in_its_orders() -> None:
    facts = facts_of(placed("O-1", "100.00", "USD"), Refunded("O-1", "e-r", Decimal("10.00"), T0))
    assert domain.score(facts, T0, MIXED).monetary == Decimal("81.00")  # 90.00 USD x 0.90


def test_the_settings_table_reaches_the_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_REPORTING_CURRENCY", "USD")
    monkeypatch.setenv("CRM_EXCHANGE_RATES", '{"USD": "1", "EUR": "1.10"}')
    settings = ScoringSettings()
    assert settings.thresholds.exchange_rates == ExchangeRates.of("USD", {"USD": "1", "EUR": "1.10"})
    assert Thresholds().exchange_rates == ExchangeRates.default()


def test_a_changed_rate_table_changes_the_population_version() -> None:
    values = [population.CustomerValue(T0, 1, Decimal(10 * i), Decimal(10 * i)) for i in range(1, 6)]
    other = ExchangeRates.of("EUR", {"EUR": "1", "USD": "0.91"})
    for minimum in (5, 6):  # in force, and not yet

        def version(rates: ExchangeRates, minimum: int = minimum) -> str:
            pop = population.compute(values, revenue_share=0.8, min_population=minimum, exchange_rates=rates.describe())
            return pop.version

        assert version(RATES) != version(other)
        assert version(RATES) == version(RATES)


# ---------------------------------------------------------------- order-insensitivity across currencies


@st.composite
def mixed_pools(draw: st.DrawFn) -> list[domain.Fact]:
    """Orders in several currencies, each with refunds and payments in its own currency (or none recorded)."""

    def at() -> datetime:
        return T0 + timedelta(minutes=draw(st.integers(0, 60 * 24 * 60)))

    money = st.decimals(min_value=0, max_value=3000, places=2, allow_nan=False, allow_infinity=False)
    pool: list[domain.Fact] = []
    for i in range(draw(st.integers(0, 5))):
        order_id, currency = f"O-{i}", draw(st.sampled_from(["EUR", "USD", "GBP"]))
        total = draw(money)
        pool += [Placed(order_id, total, currency, at()) for _ in range(draw(st.integers(1, 2)))]
        for j in range(draw(st.integers(0, 2))):
            pool.append(Refunded(order_id, f"R-{i}-{j}", draw(money), at(), draw(st.sampled_from([currency, None]))))
        pool += [Cancelled(order_id, at()) for _ in range(draw(st.integers(0, 2)) // 2)]
        pool += [Paid(order_id, f"P-{i}", total, at(), currency) for _ in range(draw(st.integers(0, 1)))]
    return pool


@settings(max_examples=200, deadline=None)
@given(data=st.data(), pool=mixed_pools())
def test_any_order_of_mixed_currency_facts_gives_the_same_scores(data: st.DataObject, pool: list[domain.Fact]) -> None:
    shuffled = data.draw(st.permutations(pool))
    reference, other = facts_of(*pool), facts_of(*shuffled)
    assert other == reference
    as_of = reference.latest_at or T0
    scores = domain.score(reference, as_of, MIXED)
    assert domain.score(other, as_of, MIXED) == scores
    # The monetary value is the sum of each counted order's net value at its currency's rate.
    by_hand = Decimal(0)
    for order in reference.orders.values():
        if order.placed is not None and order.cancelled_at is None:
            refunded = sum((r.amount for r in order.refunds.values()), Decimal(0))
            net = order.placed.total - min(refunded, order.placed.total)
            by_hand += net * RATES.rate(order.placed.currency)
    assert scores.monetary == by_hand
