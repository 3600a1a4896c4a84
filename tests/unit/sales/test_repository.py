"""The order document mapping keeps the currency of payments and refunds, and reads documents written without it;
the lead mapping keeps owner and territory, and reads documents written without them as unassigned."""

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from crm_sales.leads import domain as leads
from crm_sales.leads import repository as lead_repository
from crm_sales.orders import domain, repository
from crm_shared.events import LeadQualified, OrderPaid, OrderPlaced, OrderRefunded

T0 = datetime(2026, 11, 1, tzinfo=UTC)
PLACED = OrderPlaced(order_id="O-1", customer_id="C-1", currency="EUR", total=Decimal("100.00"))


def test_payments_and_refunds_keep_their_currency_in_the_document() -> None:
    order = domain.place(None, PLACED, T0)
    order = domain.pay(order, OrderPaid(order_id="O-1", customer_id="C-1", currency="EUR", amount=Decimal(60)), "p", T0)
    order = domain.refund(
        order, OrderRefunded(order_id="O-1", customer_id="C-1", currency="EUR", amount=Decimal(5)), "r", T0
    )
    doc = repository.to_document(order)
    assert [f["currency"] for f in doc["payments"] + doc["refunds"]] == ["EUR", "EUR"]
    assert repository.from_document(doc) == order


def test_a_payment_kept_before_its_order_keeps_its_currency() -> None:
    early = domain.pay(None, OrderPaid(order_id="O-1", customer_id="C-1", currency="USD", amount=Decimal(60)), "p", T0)
    assert repository.from_document(repository.to_document(early)).currency == "USD"


def test_an_old_document_without_currencies_reads_them_as_the_orders() -> None:
    old = {
        "_id": "O-1",
        "customer_id": "C-1",
        "placed": PLACED.model_dump(mode="python"),
        "placed_at": T0,
        "payments": [{"event_id": "p", "amount": Decimal("60.00"), "at": T0}],
        "refunds": [{"event_id": "r", "amount": Decimal("5.00"), "at": T0}],
        "cancelled_at": None,
        "cancel_reason": None,
        "status": "placed",
    }
    order = repository.from_document(old)
    assert [f.currency for f in (*order.payments, *order.refunds)] == ["EUR", "EUR"]
    awaiting = repository.from_document({**old, "placed": None, "placed_at": None})
    assert (awaiting.status, awaiting.currency, awaiting.payments[0].currency) == ("awaiting_order", None, None)
    # Once the order arrives, the facts recorded without a currency take its.
    placed = domain.place(awaiting, PLACED.model_copy(update={"currency": "GBP"}), T0)
    assert [f.currency for f in (*placed.payments, *placed.refunds)] == ["GBP", "GBP"]


LEAD = leads.Lead(
    lead_id="L-1",
    created_at=T0,
    source="marketing",
    customer_id="C-1",
    segment_id="hot",
    reason="Hot prospects",
    value_tier="potential",
    lifecycle_stage="prospect",
    qualified_at=T0,
)


def test_a_lead_keeps_its_owner_and_territory_in_the_document() -> None:
    assigned = replace(LEAD, owner_id="rep-a", territory="north")
    doc = lead_repository.lead_to_document(assigned)
    assert (doc["owner_id"], doc["territory"]) == ("rep-a", "north")
    assert lead_repository.lead_from_document(doc) == assigned


def test_a_lead_from_marketing_is_unassigned_and_an_old_document_reads_so() -> None:
    taken = leads.take_lead(
        LeadQualified(customer_id="C-1", lead_id="L-1", segment_id="hot", reason="Hot prospects"), T0
    )
    assert (taken.owner_id, taken.territory, taken.status, taken.source) == (None, None, "new", "marketing")
    # A document marketing's hand-over wrote before leads had sources, contacts and created_at.
    old = {
        "_id": "L-1",
        "customer_id": "C-1",
        "segment_id": "hot",
        "reason": "Hot prospects",
        "value_tier": "potential",
        "lifecycle_stage": "prospect",
        "qualified_at": T0,
    }
    assert lead_repository.lead_from_document(old) == LEAD


def test_a_lead_document_holds_the_normalised_keys_duplicates_are_found_by() -> None:
    lead = replace(LEAD, email="  Ada@Example.COM ", phone="0044 (20) 7946-0018")
    doc = lead_repository.lead_to_document(lead)
    assert (doc["email_key"], doc["phone_key"]) == ("ada@example.com", "+442079460018")
    assert (doc["email"], doc["created_at"], doc["converted_at"]) == ("  Ada@Example.COM ", T0, None)
    converted = {**doc, "status": "converted", "account_id": "A-1", "opportunity_id": "OP-1", "converted_at": T0}
    read = lead_repository.lead_from_document(converted)
    assert (read.status, read.account_id, read.opportunity_id, read.converted_at) == ("converted", "A-1", "OP-1", T0)
