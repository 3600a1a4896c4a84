"""Sales follows the customer service's merges, unmerges, erasures and export requests, on the real database:
a merge moves everything sales holds about the merged customer under the survivor, an event still naming the
merged id is filed under the survivor and goes back with the unmerge, which restores both customers' records
exactly; an erasure keeps the revenue under the pseudonym without the personal fields; an export lists the
customer's records."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from crm_sales import identity as sales_identity
from crm_sales.accounts import repository as accounts
from crm_sales.accounts.domain import Account
from crm_sales.activities import handlers as activity_handlers
from crm_sales.activities import repository as activities
from crm_sales.activities.domain import Activity
from crm_sales.analytics.handlers import account_revenue
from crm_sales.app import INDEXES
from crm_sales.customers import handlers as customers
from crm_sales.expenses import repository as expenses
from crm_sales.expenses.domain import Expense
from crm_sales.leads import handlers as leads
from crm_sales.leads import repository as lead_store
from crm_sales.leads.domain import Lead
from crm_sales.opportunities import handlers as opportunity_handlers
from crm_sales.opportunities import repository as opportunities
from crm_sales.opportunities.domain import Opportunity
from crm_sales.orders import handlers as orders
from crm_sales.orders import repository as order_store
from crm_sales.quotes import repository as quotes
from crm_sales.quotes.domain import Quote, QuoteLine
from crm_sales.settings import SalesSettings
from crm_shared import identity
from crm_shared.events import (
    CloudEvent,
    CustomerErased,
    CustomerErasedEvent,
    CustomerExportRequested,
    CustomerExportRequestedEvent,
    CustomerMatchKeysChanged,
    CustomerMatchKeysChangedEvent,
    CustomerMerged,
    CustomerMergedEvent,
    CustomerUnmerged,
    CustomerUnmergedEvent,
    ExportAnsweredEvent,
    IdentityAppliedEvent,
    LeadQualified,
    LeadQualifiedEvent,
    OrderCancelled,
    OrderCancelledEvent,
    OrderFulfilled,
    OrderFulfilledEvent,
    OrderPaid,
    OrderPaidEvent,
    OrderPlaced,
    OrderPlacedEvent,
    parse_event,
)
from crm_shared.matching import match_keys
from crm_shared.security import Principal
from crm_shared.store import Store, UnitOfWork, outbox_records
from crm_shared.topics import Topic

from helpers import MATCH_KEY_SECRET

NewStore = Callable[..., Awaitable[Store]]
T0 = datetime(2026, 11, 2, 9, tzinfo=UTC)
RATES = SalesSettings().rate_table
SECRET = MATCH_KEY_SECRET.encode()
HELD = (
    order_store.ORDERS,
    opportunities.OPPORTUNITIES,
    quotes.QUOTES,
    activities.ACTIVITIES,
    lead_store.LEADS,
    accounts.ACCOUNTS,
    expenses.EXPENSES,
    "customer_match_keys",
)


@pytest.fixture
async def store(new_store: NewStore) -> Store:
    return await new_store("sales_identity", INDEXES)


# ---------------------------------------------------------------- the customer service's requests


def merged(survivor: str, merged_id: str, merge_id: str = "m-1") -> CustomerMergedEvent:
    data = CustomerMerged(customer_id=survivor, merged_id=merged_id, merge_id=merge_id, decided_by="confirmed")
    return CustomerMergedEvent.create(data, source="/crm/customer", time=T0 + timedelta(days=1))


def unmerged(survivor: str, merged_id: str, merge_id: str = "m-1") -> CustomerUnmergedEvent:
    data = CustomerUnmerged(customer_id=survivor, merged_id=merged_id, merge_id=merge_id)
    return CustomerUnmergedEvent.create(data, source="/crm/customer", time=T0 + timedelta(days=2))


async def apply(store: Store, *requests: CloudEvent[Any]) -> None:
    outcome = await identity.apply_requests(store, "sales", sales_identity.HOLDER, list(requests))
    assert outcome.applied == [r.id for r in requests]


async def answers(store: Store) -> list[Any]:
    records = await outbox_records(store.db, {"topic": Topic.IDENTITY_ANSWERS.value})
    return [parse_event(r["value"]) for r in records]


async def applied(store: Store) -> list[tuple[str, int, int]]:
    return [
        (a.data.request, a.data.records, a.data.kept)
        for a in await answers(store)
        if isinstance(a, IdentityAppliedEvent)
    ]


# ---------------------------------------------------------------- what sales holds


def placed(order_id: str, customer: str, total: str = "100.00") -> OrderPlacedEvent:
    data = OrderPlaced(order_id=order_id, customer_id=customer, currency="EUR", total=total)
    return OrderPlacedEvent.create(data, source="/shop", time=T0)


def paid(order_id: str, customer: str, amount: str) -> OrderPaidEvent:
    data = OrderPaid(order_id=order_id, customer_id=customer, currency="EUR", amount=amount)
    return OrderPaidEvent.create(data, source="/shop", time=T0 + timedelta(hours=1))


async def take_orders(store: Store, events: list[CloudEvent[Any]]) -> None:
    """As the batch consumer does: filed under the survivor first, then applied."""
    outcome = await orders.apply_order_events(store, await identity.redirect(store, events), RATES)
    assert not outcome.rejected


def opportunity(opportunity_id: str, customer: str, **fields: Any) -> Opportunity:
    return Opportunity(
        opportunity_id=opportunity_id,
        customer_id=customer,
        name=fields.pop("name", f"Deal {opportunity_id}"),
        pipeline_id="new-business",
        stage="qualify",
        amount=Decimal("5000.00"),
        currency="EUR",
        probability=0.2,
        forecast_category="pipeline",
        opened_at=T0,
        **fields,
    )


def quote(quote_id: str, customer: str, **fields: Any) -> Quote:
    line = QuoteLine(
        sku="SKU-1",
        quantity=2,
        unit_price=Decimal("50.00"),
        discount_percent=Decimal(0),
        discount=Decimal(0),
        unit_cost=None,
        price_book_id="PB-1",
        chain=("PB-1",),
    )
    return Quote(
        quote_id=quote_id,
        customer_id=customer,
        currency="EUR",
        price_book_id="PB-1",
        price_book_reason="default",
        lines=(line,),
        valid_until=date(2026, 12, 31),
        created_at=T0,
        **fields,
    )


def activity(activity_id: str, customer: str, **fields: Any) -> Activity:
    return Activity(
        activity_id=activity_id,
        kind="call",
        title=fields.pop("title", f"Call about {activity_id}"),
        due_at=T0 + timedelta(days=3),
        created_at=T0,
        owner_id="rep-1",
        customer_id=customer,
        **fields,
    )


async def keys_of(store: Store, customer: str, email: str) -> None:
    data = CustomerMatchKeysChanged(
        customer_id=customer, match_keys=match_keys(SECRET, email=email, phone=None), reason="registered"
    )
    await customers.apply_customer_events(
        store, [CustomerMatchKeysChangedEvent.create(data, source="/crm/customer", time=T0)]
    )


async def customer_with_email(store: Store, email: str) -> str | None:
    async def work(uow: UnitOfWork) -> str | None:
        return await customers.customer_matching(uow, SECRET, email, None)

    return await store.transaction(work)


async def seed(store: Store, customer: str, tag: str) -> None:
    """Two orders (one paid), an opportunity, a quote, an activity, a lead from marketing, an expense on the
    opportunity, match keys."""
    await take_orders(store, [placed(f"O-{tag}1", customer), placed(f"O-{tag}2", customer, "30.00")])
    await take_orders(store, [paid(f"O-{tag}1", customer, "100.00")])

    async def work(uow: UnitOfWork) -> None:
        await opportunities.insert_opportunity(uow, opportunity(f"OP-{tag}", customer))
        await quotes.insert_quote(uow, quote(f"Q-{tag}", customer))
        await activities.insert_activity(uow, activity(f"ACT-{tag}", customer))

    await store.transaction(work)
    lead = LeadQualified(customer_id=customer, lead_id=f"L-{tag}", segment_id="hot", reason="Hot prospects")
    await leads.apply_marketing_event(store, LeadQualifiedEvent.create(lead, source="/crm/marketing", time=T0))
    await keys_of(store, customer, f"{tag.lower()}@example.com")


async def snapshot(store: Store) -> dict[str, list[dict[str, Any]]]:
    return {name: await store.db[name].find({}).sort("_id", 1).to_list(None) for name in HELD}


async def owners(store: Store, collection: str) -> dict[str, str]:
    return {d["_id"]: d["customer_id"] async for d in store.db[collection].find({})}


async def accounts_with(store: Store, contacts: dict[str, list[str]]) -> None:
    async def work(uow: UnitOfWork) -> None:
        for account_id, ids in contacts.items():
            account = Account(account_id=account_id, name=f"{account_id} Ltd", created_at=T0, contacts=tuple(ids))
            await accounts.insert_account(uow, account)

    await store.transaction(work)


async def contacts_of(store: Store) -> dict[str, list[str]]:
    return {d["_id"]: d["contacts"] async for d in store.db[accounts.ACCOUNTS].find({})}


# ---------------------------------------------------------------- merge and unmerge


async def test_a_merge_moves_everything_under_the_survivor_and_the_unmerge_restores_both_exactly(
    store: Store,
) -> None:
    await seed(store, "C-ann", "A")
    await seed(store, "C-bob", "B")
    await accounts_with(store, {"ACC-1": ["C-ann", "C-zed"], "ACC-2": ["C-bob", "C-ann"], "ACC-3": ["C-zed"]})
    before = await snapshot(store)

    await apply(store, merged("C-bob", "C-ann"))

    for collection in (order_store.ORDERS, opportunities.OPPORTUNITIES, quotes.QUOTES, activities.ACTIVITIES):
        assert set((await owners(store, collection)).values()) == {"C-bob"}, collection
    assert await owners(store, lead_store.LEADS) == {"L-A": "C-bob", "L-B": "C-bob"}
    moved = await store.db[order_store.ORDERS].find_one({"_id": "O-A1"})
    assert moved is not None
    assert (moved["customer_id"], moved["placed"]["customer_id"], moved[identity.ORIGIN]) == ("C-bob",) * 2 + ("C-ann",)
    assert order_store.from_document(moved).paid == Decimal("100.00")
    assert await contacts_of(store) == {"ACC-1": ["C-bob", "C-zed"], "ACC-2": ["C-bob"], "ACC-3": ["C-zed"]}
    # Ann's email matches her survivor now; her keys stay where they were.
    assert await customer_with_email(store, "a@example.com") == "C-bob"
    assert await store.db.customer_match_keys.count_documents({}) == 2

    # Saving a moved record (an opportunity moved on, a quote sent) keeps where it came from.
    async def save_again(uow: UnitOfWork) -> None:
        opp = await opportunities.get_opportunity(uow, {"_id": "OP-A"})
        assert opp is not None and opp.customer_id == "C-bob"
        await opportunities.save_opportunity(uow, opp)
        sent = await quotes.get_quote(uow, "Q-A")
        assert sent is not None
        await quotes.save_quote(uow, sent)
        act = await activities.get_activity(uow, {"_id": "ACT-A"})
        assert act is not None
        await activities.save_activity(uow, act)

    await store.transaction(save_again)

    await apply(store, unmerged("C-bob", "C-ann"))

    assert await snapshot(store) == before
    assert await customer_with_email(store, "a@example.com") == "C-ann"
    # 2 orders, an opportunity, a quote, an activity, a lead and 2 accounts' contacts, each way.
    assert await applied(store) == [("merge", 8, 0), ("unmerge", 8, 0)]


async def test_an_event_naming_the_merged_id_is_filed_under_the_survivor_and_goes_back_on_unmerge(
    store: Store,
) -> None:
    await take_orders(store, [placed("O-A1", "C-ann"), placed("O-B1", "C-bob")])
    await apply(store, merged("C-bob", "C-ann"))

    # The channel still names Ann: a new order and a payment on her old one.
    await take_orders(store, [placed("O-A3", "C-ann", "40.00"), paid("O-A1", "C-ann", "60.00")])
    late = LeadQualified(customer_id="C-ann", lead_id="L-A9", segment_id="hot", reason="Hot prospects")
    [filed] = await identity.redirect(store, [LeadQualifiedEvent.create(late, source="/crm/marketing", time=T0)])
    await leads.apply_marketing_event(store, filed)

    new = await store.db[order_store.ORDERS].find_one({"_id": "O-A3"})
    assert new is not None
    assert (new["customer_id"], new["placed"]["customer_id"], new[identity.ORIGIN]) == ("C-bob", "C-bob", "C-ann")
    lead = await store.db[lead_store.LEADS].find_one({"_id": "L-A9"})
    assert lead is not None and (lead["customer_id"], lead[identity.ORIGIN]) == ("C-bob", "C-ann")
    # What sales publishes for it is the survivor's, and says which id the channel named.
    published = [parse_event(r["value"]) for r in await outbox_records(store.db, {"topic": Topic.SALES_EVENTS.value})]
    [republished] = [e for e in published if e.type == "crm.order.placed.v1" and e.data.order_id == "O-A3"]
    assert (republished.customer_id, republished.originalsubject) == ("C-bob", "C-ann")

    await apply(store, unmerged("C-bob", "C-ann"))

    assert await owners(store, order_store.ORDERS) == {"O-A1": "C-ann", "O-A3": "C-ann", "O-B1": "C-bob"}
    assert await owners(store, lead_store.LEADS) == {"L-A9": "C-ann"}
    given_back = await store.db[order_store.ORDERS].find_one({"_id": "O-A3"})
    assert given_back is not None and given_back["placed"]["customer_id"] == "C-ann"
    assert identity.ORIGIN not in given_back
    first = await orders.find_order(store, "O-A1")
    assert first is not None and (first.customer_id, first.paid, first.status) == ("C-ann", Decimal("60.00"), "placed")
    assert await store.db[order_store.ORDERS].count_documents({identity.ORIGIN: {"$exists": True}}) == 0
    # The survivor's own order, and one named for Ann after the unmerge, stay where they belong.
    await take_orders(store, [placed("O-A4", "C-ann", "5.00")])
    assert (await owners(store, order_store.ORDERS))["O-A4"] == "C-ann"
    assert await applied(store) == [("merge", 1, 0), ("unmerge", 3, 0)]


# ---------------------------------------------------------------- erasure


PERSONAL = ("C-eve", "Eve", "eve@example.com", "+49 170", "JD0146", "Leipzig", "lunch with", "rude", "moved away")


async def test_an_erasure_keeps_the_revenue_under_the_pseudonym_and_nothing_of_the_person(store: Store) -> None:
    await take_orders(store, [placed("O-E1", "C-eve", "120.00"), placed("O-E2", "C-eve", "80.00")])
    await take_orders(store, [paid("O-E1", "C-eve", "120.00")])
    shipped = OrderFulfilled(
        order_id="O-E1", customer_id="C-eve", carrier="DHL", tracking_number="JD0146", location="Leipzig, Hauptstr. 1"
    )
    cancelled = OrderCancelled(order_id="O-E2", customer_id="C-eve", reason="Eve moved away")
    await take_orders(
        store,
        [
            OrderFulfilledEvent.create(shipped, source="/shop", time=T0 + timedelta(hours=2)),
            OrderCancelledEvent.create(cancelled, source="/shop", time=T0 + timedelta(hours=3)),
        ],
    )
    await take_orders(store, [placed("O-F1", "C-fay", "10.00")])
    await accounts_with(store, {"ACC-1": ["C-eve", "C-fay"]})

    async def work(uow: UnitOfWork) -> None:
        await opportunities.insert_opportunity(
            uow, opportunity("OP-E", "C-eve", name="Eve's kitchen", account_id="ACC-1", reason="Eve was rude")
        )
        await quotes.insert_quote(uow, quote("Q-E", "C-eve", state="rejected", reject_reason="Eve: too dear"))
        await activities.insert_activity(
            uow, activity("ACT-E", "C-eve", title="Call Eve", notes="+49 170 1234567", outcome="lunch with Eve")
        )
        await lead_store.insert_leads(
            uow,
            [
                Lead(
                    lead_id="L-E",
                    created_at=T0,
                    customer_id="C-eve",
                    name="Eve Example",
                    email="eve@example.com",
                    phone="+49 170 1234567",
                    company="Example GmbH",
                    status="converted",
                )
            ],
        )
        expense = Expense(
            expense_id="X-E",
            owner_id="rep-1",
            category="meals",
            amount=Decimal("42.00"),
            currency="EUR",
            spent_on=date(2026, 11, 1),
            created_at=T0,
            opportunity_id="OP-E",
            description="lunch with Eve",
        )
        await uow.db[expenses.EXPENSES].insert_one(expenses.to_document(expense), session=uow.session)

    await store.transaction(work)
    await keys_of(store, "C-eve", "eve@example.com")
    revenue_before, _ = await account_revenue(store, None, None, RATES)
    fay_before = await store.db[order_store.ORDERS].find_one({"_id": "O-F1"})

    erased = CustomerErased(customer_id="C-eve", erasure_id="er-1", pseudonym="anon-7")
    await apply(store, CustomerErasedEvent.create(erased, source="/crm/customer", time=T0 + timedelta(days=1)))

    # The erased customer's match keys are left empty, under their id (as the customer service's own erasure
    # of them leaves them); nothing else names them or says anything of them.
    held = await snapshot(store)
    assert held.pop("customer_match_keys") == [{"_id": "C-eve", "match_keys": [], "time": T0 + timedelta(days=1)}]
    assert [p for p in PERSONAL if p in json.dumps(held, default=str)] == []
    # The revenue stays, under the pseudonym, and the account still counts it.
    kept = {o.order_id: o for o in map(order_store.from_document, await store.db.orders.find({}).to_list(None))}
    assert {i: (o.customer_id, o.total, o.paid, o.status) for i, o in kept.items()} == {
        "O-E1": ("anon-7", Decimal("120.00"), Decimal("120.00"), "fulfilled"),
        "O-E2": ("anon-7", Decimal("80.00"), Decimal(0), "cancelled"),
        "O-F1": ("C-fay", Decimal("10.00"), Decimal(0), "placed"),
    }
    assert kept["O-E1"].shipments[0].carrier == "DHL" and kept["O-E1"].placed is not None
    assert kept["O-E1"].placed.customer_id == "anon-7"
    assert await store.db[order_store.ORDERS].find_one({"_id": "O-F1"}) == fay_before
    assert (await account_revenue(store, None, None, RATES))[0] == revenue_before == {"ACC-1": Decimal("130.00")}
    assert await contacts_of(store) == {"ACC-1": ["anon-7", "C-fay"]}

    # What is kept still reads as sales' records.
    async def read(uow: UnitOfWork) -> None:
        opp = await opportunities.get_opportunity(uow, {"_id": "OP-E"})
        assert opp is not None and (opp.customer_id, opp.amount, opp.reason) == ("anon-7", Decimal("5000.00"), None)
        act = await activities.get_activity(uow, {"_id": "ACT-E"})
        assert act is not None and (act.title, act.notes, act.outcome) == (sales_identity.ERASED_TITLE, None, None)
        q = await quotes.get_quote(uow, "Q-E")
        assert q is not None and (q.customer_id, q.total, q.reject_reason) == ("anon-7", Decimal("100.00"), None)

    await store.transaction(read)
    lead = await store.db[lead_store.LEADS].find_one({"_id": "L-E"})
    assert lead is not None
    assert lead_store.lead_from_document(lead).status == "converted" and lead["company"] == "Example GmbH"
    expense = await store.db[expenses.EXPENSES].find_one({"_id": "X-E"})
    assert expense is not None and expense["amount"] == Decimal("42.00")
    assert await store.db.customer_match_keys.find_one({"_id": "C-eve"}, {"match_keys": 1}) == {
        "_id": "C-eve",
        "match_keys": [],
    }
    assert await customer_with_email(store, "eve@example.com") is None

    # Cleared: 2 orders, the opportunity, the quote, the activity, the lead, the expense and the match keys;
    # kept under the pseudonym: the 5 records and the account's contact.
    assert await applied(store) == [("erasure", 8, 7)]


# ---------------------------------------------------------------- export


async def test_an_export_lists_the_customers_orders_and_the_rest_of_what_sales_holds(store: Store) -> None:
    await seed(store, "C-xia", "X")
    await take_orders(store, [placed("O-Y1", "C-yan")])
    await accounts_with(store, {"ACC-1": ["C-yan", "C-xia"], "ACC-2": ["C-yan"]})
    request = CustomerExportRequested(customer_id="C-xia", request_id="ex-1")
    await apply(store, CustomerExportRequestedEvent.create(request, source="/crm/customer"))

    [answer] = [a for a in await answers(store) if isinstance(a, ExportAnsweredEvent)]
    assert (answer.data.request_id, answer.data.service, answer.data.part, answer.data.parts) == ("ex-1", "sales", 1, 1)
    records = answer.data.records
    assert [(o["_id"], o["placed"]["total"], o["status"]) for o in records["orders"]] == [
        ("O-X1", "100.00", "paid"),
        ("O-X2", "30.00", "placed"),
    ]
    assert [d["_id"] for d in records["opportunities"]] == ["OP-X"]
    assert [d["_id"] for d in records["quotes"]] == ["Q-X"]
    assert [d["_id"] for d in records["activities"]] == ["ACT-X"]
    assert [d["_id"] for d in records["leads"]] == ["L-X"]
    # The account the customer is a contact of, without the other contacts.
    assert [(d["_id"], d["name"], "contacts" in d) for d in records["accounts"]] == [("ACC-1", "ACC-1 Ltd", False)]
    assert "C-yan" not in json.dumps(records) and "O-Y1" not in json.dumps(records)


async def test_an_opportunity_opened_for_a_merged_id_is_the_survivors_until_the_unmerge(store: Store) -> None:
    await apply(store, merged("C-sv", "C-mg", "m-api"))
    new = opportunity_handlers.NewOpportunity(
        customer_id="C-mg", name="Second machine", amount=Decimal("4800.00"), currency="EUR"
    )
    opened, created = await opportunity_handlers.open_opportunity(store, new, "OP-api-1", T0, rates=RATES)
    assert created and opened.customer_id == "C-sv"
    # The same request again answers the same opportunity, filed under the survivor.
    again, created_again = await opportunity_handlers.open_opportunity(store, new, "OP-api-1", T0, rates=RATES)
    assert not created_again and again.opportunity_id == "OP-api-1"
    doc = await store.db[opportunities.OPPORTUNITIES].find_one({"_id": "OP-api-1"})
    assert doc is not None and doc[identity.ORIGIN] == "C-mg"
    [event] = [parse_event(r["value"]) for r in await outbox_records(store.db, {"type": "crm.opportunity.opened.v1"})]
    assert (event.customer_id, event.originalsubject) == ("C-sv", "C-mg")
    await apply(store, unmerged("C-sv", "C-mg", "m-api"))
    back = await store.db[opportunities.OPPORTUNITIES].find_one({"_id": "OP-api-1"})
    assert back is not None and back["customer_id"] == "C-mg"


async def test_an_activity_planned_for_a_merged_id_is_the_survivors_until_the_unmerge(store: Store) -> None:
    await apply(store, merged("C-sv", "C-mg", "m-act"))
    rep = Principal(kind="token", id="rep-1", scopes=frozenset({"admin"}))
    new = activity_handlers.NewActivity(
        kind="call", title="Call about the machine", due_at=T0 + timedelta(days=1), customer_id="C-mg"
    )
    planned, created = await activity_handlers.schedule(store, new, "A-api-1", T0, principal=rep)
    assert created and planned.customer_id == "C-sv"
    doc = await store.db[activities.ACTIVITIES].find_one({"_id": "A-api-1"})
    assert doc is not None and doc[identity.ORIGIN] == "C-mg"
    [event] = [parse_event(r["value"]) for r in await outbox_records(store.db, {"type": "crm.activity.scheduled.v1"})]
    assert (event.customer_id, event.originalsubject) == ("C-sv", "C-mg")
    await apply(store, unmerged("C-sv", "C-mg", "m-act"))
    back = await store.db[activities.ACTIVITIES].find_one({"_id": "A-api-1"})
    assert back is not None and back["customer_id"] == "C-mg"
