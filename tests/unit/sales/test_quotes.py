"""Price books and quotes, pure: quantity breaks, inheritance, the most specific book, validity, discount caps,
totals, and the status of a quote."""

from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from functools import partial

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm_sales.quotes import domain, pricing, repository
from crm_sales.quotes.domain import LineRequest
from crm_sales.quotes.pricing import PriceBook, PriceEntry, QuantityBreak
from crm_shared.security import Principal

DAY = date(2026, 6, 15)
T0 = datetime(2026, 6, 15, 9, tzinfo=UTC)
CAPS = {"rep": Decimal(10), "manager": Decimal(25)}

prices = st.decimals(min_value=Decimal("0.01"), max_value=Decimal(100000), places=2)


def book(book_id: str, **fields: object) -> PriceBook:
    base: dict[str, object] = {
        "name": book_id,
        "currency": "EUR",
        "valid_from": date(2026, 1, 1),
        "discount_caps": CAPS,
    }
    return PriceBook(book_id=book_id, **{**base, **fields})


@st.composite
def descending_entries(draw: st.DrawFn) -> PriceEntry:
    """An entry whose break prices descend as their quantities rise, all at most the list price."""
    list_price = draw(prices)
    quantities = sorted(draw(st.sets(st.integers(min_value=2, max_value=1000), max_size=6)))
    breaks, price = [], list_price
    for quantity in quantities:
        price = draw(st.decimals(min_value=Decimal(0), max_value=price, places=2))
        breaks.append(QuantityBreak(quantity, price))
    shuffled = draw(st.permutations(breaks))
    return PriceEntry("SKU-1", list_price, None, tuple(shuffled))


# ---------------------------------------------------------------- quantity breaks


@given(descending_entries(), st.integers(min_value=1, max_value=1200), st.integers(min_value=0, max_value=200))
def test_the_unit_price_never_rises_with_the_quantity(entry: PriceEntry, quantity: int, more: int) -> None:
    pricing.check_breaks(entry)
    assert entry.unit_price_for(quantity + more) <= entry.unit_price_for(quantity) <= entry.unit_price


@given(descending_entries(), st.integers(min_value=1, max_value=1200))
def test_the_highest_break_at_or_below_the_quantity_applies(entry: PriceEntry, quantity: int) -> None:
    reached = [b for b in entry.breaks if b.min_quantity <= quantity]
    expected = max(reached, key=lambda b: b.min_quantity).unit_price if reached else entry.unit_price
    assert entry.unit_price_for(quantity) == expected


def test_breaks_at_the_boundaries() -> None:
    entry = PriceEntry(
        "ATM", Decimal("100"), None, (QuantityBreak(50, Decimal("80")), QuantityBreak(10, Decimal("90")))
    )
    assert [entry.unit_price_for(q) for q in (1, 9, 10, 49, 50, 1000)] == [
        Decimal(100),
        Decimal(100),
        Decimal(90),
        Decimal(90),
        Decimal(80),
        Decimal(80),
    ]


@pytest.mark.parametrize(
    ("breaks", "why"),
    [
        ((QuantityBreak(10, Decimal("101")),), "more than 100"),
        ((QuantityBreak(10, Decimal("90")), QuantityBreak(20, Decimal("95"))), "more than 90"),
        ((QuantityBreak(10, Decimal("90")), QuantityBreak(10, Decimal("80"))), "two quantity breaks"),
    ],
)
def test_a_break_that_raises_the_price_is_refused(breaks: tuple[QuantityBreak, ...], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        pricing.check_breaks(PriceEntry("ATM", Decimal(100), None, breaks))


# ---------------------------------------------------------------- inheritance


def test_a_product_missing_from_a_book_is_priced_by_its_nearest_ancestor() -> None:
    base = book("base", entries=(PriceEntry("A", Decimal(10)), PriceEntry("B", Decimal(20), Decimal(12))))
    middle = book("middle", parent_id="base", entries=(PriceEntry("B", Decimal(18)),))
    top = book("top", parent_id="middle", entries=(PriceEntry("C", Decimal(5)),))
    books = {b.book_id: b for b in (base, middle, top)}
    a = pricing.price(top, books, "A", 1)
    assert (a.unit_price, a.book_id, a.chain) == (Decimal(10), "base", ("top", "middle", "base"))
    b = pricing.price(top, books, "B", 1)
    assert (b.unit_price, b.unit_cost, b.book_id, b.chain) == (Decimal(18), None, "middle", ("top", "middle"))
    c = pricing.price(top, books, "C", 3)
    assert (c.book_id, c.chain) == ("top", ("top",))
    with pytest.raises(pricing.NoPrice, match="top > middle > base"):
        pricing.price(top, books, "Z", 1)


def test_a_stored_cycle_does_not_loop_forever() -> None:
    a = book("a", parent_id="b")
    b = book("b", parent_id="a")
    with pytest.raises(pricing.NoPrice, match="a > b"):
        pricing.price(a, {"a": a, "b": b}, "X", 1)


def test_a_parent_that_makes_a_cycle_is_refused() -> None:
    stored = {"a": book("a"), "b": book("b", parent_id="a"), "c": book("c", parent_id="b")}
    with pytest.raises(pricing.PriceBookRefused, match=r"cycle \(a > c > b > a\)"):
        pricing.check_parent(book("a", parent_id="c"), stored)
    with pytest.raises(pricing.PriceBookRefused, match="cycle"):
        pricing.check_parent(book("a", parent_id="a"), stored)
    pricing.check_parent(book("d", parent_id="c"), stored)


def test_a_missing_parent_or_one_in_another_currency_is_refused() -> None:
    stored = {"usd": book("usd", currency="USD"), "b": book("b", parent_id="gone")}
    with pytest.raises(pricing.PriceBookRefused, match="inherits from nope, which does not exist"):
        pricing.check_parent(book("x", parent_id="nope"), stored)
    with pytest.raises(pricing.PriceBookRefused, match="b inherits from gone"):
        pricing.check_parent(book("x", parent_id="b"), stored)
    with pytest.raises(pricing.PriceBookRefused, match="in USD"):
        pricing.check_parent(book("x", parent_id="usd"), stored)


def test_a_chain_deeper_than_the_limit_is_refused() -> None:
    stored = {f"b{i}": book(f"b{i}", parent_id=f"b{i - 1}" if i else None) for i in range(pricing.MAX_CHAIN + 1)}
    pricing.check_parent(book("x", parent_id=f"b{pricing.MAX_CHAIN - 2}"), stored)
    with pytest.raises(pricing.PriceBookRefused, match="more than"):
        pricing.check_parent(book("x", parent_id=f"b{pricing.MAX_CHAIN}"), stored)


# ---------------------------------------------------------------- which book


GENERAL = book("general")
TIER = book("tier", value_tier="high_value")
SEGMENT = book("segment", segment="wholesale")
BOTH = book("both", segment="wholesale", value_tier="high_value")
ALL = (GENERAL, TIER, SEGMENT, BOTH)


@pytest.mark.parametrize(
    ("segment", "tier", "chosen"),
    [
        ("wholesale", "high_value", "both"),
        ("retail", "high_value", "tier"),
        ("wholesale", "low_value", "segment"),
        ("wholesale", None, "segment"),
        (None, None, "general"),
        ("retail", "low_value", "general"),
    ],
)
def test_the_most_specific_book_wins(segment: str | None, tier: str | None, chosen: str) -> None:
    choice = pricing.choose_book(ALL, currency="EUR", day=DAY, segment=segment, value_tier=tier)
    assert choice is not None and choice.book.book_id == chosen


@given(st.permutations(ALL), st.sampled_from([None, "wholesale", "retail"]), st.sampled_from([None, "high_value"]))
def test_the_choice_does_not_depend_on_the_order_books_come_in(
    books: list[PriceBook], segment: str | None, tier: str | None
) -> None:
    chosen = pricing.choose_book(books, currency="EUR", day=DAY, segment=segment, value_tier=tier)
    again = pricing.choose_book(ALL, currency="EUR", day=DAY, segment=segment, value_tier=tier)
    assert chosen == again


def test_among_equals_the_latest_valid_from_wins_and_the_currency_must_match() -> None:
    older = book("older", valid_from=date(2026, 1, 1))
    newer = book("newer", valid_from=date(2026, 6, 1))
    later = book("later", valid_from=date(2026, 7, 1))
    dollars = book("dollars", currency="USD", valid_from=date(2026, 6, 10))
    choice = pricing.choose_book([newer, older, later, dollars], currency="EUR", day=DAY, segment=None, value_tier=None)
    assert choice is not None and choice.book.book_id == "newer" and "general" in choice.reason
    assert pricing.choose_book([dollars], currency="EUR", day=DAY, segment=None, value_tier=None) is None


def test_a_more_specific_book_beats_a_newer_general_one() -> None:
    newer_general = book("newer", valid_from=date(2026, 6, 1))
    older_tier = book("older-tier", value_tier="high_value", valid_from=date(2025, 1, 1))
    choice = pricing.choose_book(
        [newer_general, older_tier], currency="EUR", day=DAY, segment=None, value_tier="high_value"
    )
    assert choice is not None and choice.book.book_id == "older-tier" and "value tier" in choice.reason


def test_a_book_for_another_segment_never_applies() -> None:
    assert pricing.choose_book([SEGMENT, BOTH], currency="EUR", day=DAY, segment=None, value_tier=None) is None


@given(
    st.dates(min_value=date(2025, 1, 1), max_value=date(2027, 12, 31)),
    st.integers(min_value=0, max_value=400),
    st.one_of(st.none(), st.integers(min_value=0, max_value=400)),
)
def test_a_book_applies_from_its_first_to_its_last_day(start: date, offset: int, length: int | None) -> None:
    end = start + timedelta(days=length) if length is not None else None
    b = book("b", valid_from=start, valid_to=end)
    day = start + timedelta(days=offset - 200)
    inside = start <= day and (end is None or day <= end)
    assert b.valid_on(day) is inside
    chosen = pricing.choose_book([b], currency="EUR", day=day, segment=None, value_tier=None)
    assert (chosen is not None) is inside


# ---------------------------------------------------------------- discounts, caps, totals


def principal(*scopes: str, team: frozenset[str] = frozenset(), kind: str = "token") -> Principal:
    return Principal(kind=kind, id="rep-1", scopes=frozenset(scopes), team=team)  # type: ignore[arg-type]


def test_the_role_comes_from_admin_and_the_team_claim() -> None:
    assert domain.role_of(principal("quotes:write")) == "rep"
    assert domain.role_of(principal("quotes:write", team=frozenset({"rep-2"}))) == "manager"
    assert domain.role_of(principal("admin")) == "admin"
    assert domain.role_of(principal("quotes:write", kind="api_key")) == "rep"


PRICED = book("priced", entries=(PriceEntry("A", Decimal("19.99"), Decimal("12.00")), PriceEntry("B", Decimal(5))))


@pytest.mark.parametrize(
    ("role", "percent", "allowed"),
    [
        ("rep", Decimal(10), True),
        ("rep", Decimal("10.01"), False),
        ("manager", Decimal(25), True),
        ("manager", Decimal("25.5"), False),
        ("admin", Decimal(100), True),
    ],
)
def test_a_discount_over_the_role_cap_is_refused_naming_the_cap(
    role: pricing.Role, percent: Decimal, allowed: bool
) -> None:
    requests = [LineRequest("B", 1), LineRequest("A", 3, percent)]
    if allowed:
        assert domain.price_lines(PRICED, {}, requests, role)[1].discount_percent == percent
        return
    with pytest.raises(domain.DiscountOverCap) as refused:
        domain.price_lines(PRICED, {}, requests, role)
    cap = CAPS[role]
    assert (refused.value.line, refused.value.sku, refused.value.cap) == (2, "A", cap)
    assert f"{role} cap of {cap}%" in str(refused.value)


def test_a_role_the_book_names_no_cap_for_gives_no_discount() -> None:
    uncapped = book("uncapped", entries=PRICED.entries, discount_caps={"manager": Decimal(5)})
    assert domain.price_lines(uncapped, {}, [LineRequest("A", 1)], "rep")[0].discount == 0
    with pytest.raises(domain.DiscountOverCap, match="rep cap of 0%"):
        domain.price_lines(uncapped, {}, [LineRequest("A", 1, Decimal("0.01"))], "rep")


def test_the_discount_is_rounded_to_the_cent_half_to_even() -> None:
    assert domain.discount_amount(Decimal("0.25"), Decimal(10)) == Decimal("0.02")  # 0.025 -> 0.02
    assert domain.discount_amount(Decimal("0.35"), Decimal(10)) == Decimal("0.04")  # 0.035 -> 0.04
    assert domain.discount_amount(Decimal("19.99") * 3, Decimal("7.5")) == Decimal("4.50")  # 4.49775


lines = st.lists(
    st.tuples(
        st.sampled_from(["A", "B"]),
        st.integers(min_value=1, max_value=10_000),
        st.decimals(min_value=Decimal(0), max_value=Decimal(10), places=2),
    ),
    min_size=1,
    max_size=20,
)


def make_quote(quote_lines: tuple[domain.QuoteLine, ...], valid_until: date = DAY) -> domain.Quote:
    return domain.Quote(
        quote_id="Q-1",
        customer_id="C-1",
        currency="EUR",
        price_book_id="priced",
        price_book_reason="given",
        lines=quote_lines,
        valid_until=valid_until,
        created_at=T0,
        opportunity_id="OP-1",
    )


@given(lines)
def test_the_total_is_the_sum_of_the_lines_net_of_discounts_and_the_order_agrees(
    requested: list[tuple[str, int, Decimal]],
) -> None:
    priced = domain.price_lines(PRICED, {}, [LineRequest(*r) for r in requested], "rep")
    for line, (_, quantity, percent) in zip(priced, requested, strict=True):
        gross = line.unit_price * quantity
        assert line.discount == (gross * percent / 100).quantize(Decimal("0.01"), ROUND_HALF_EVEN)
        assert Decimal(0) <= line.net <= gross
    quote = make_quote(priced)
    assert quote.total == sum((line.unit_price * line.quantity - line.discount for line in priced), Decimal(0))
    # OrderPlaced checks its own total against its lines: building it is the check.
    order = quote.order()
    assert order.total == quote.total and order.order_id == "O-Q-1"
    assert [(li.sku, li.quantity, li.unit_price, li.discount, li.unit_cost) for li in order.lines] == [
        (li.sku, li.quantity, li.unit_price, li.discount, li.unit_cost) for li in priced
    ]


# ---------------------------------------------------------------- status


def test_a_quote_goes_draft_sent_accepted_and_repeats_change_nothing() -> None:
    quote = make_quote(domain.price_lines(PRICED, {}, [LineRequest("A", 2)], "rep"))
    assert quote.status(DAY) == "draft"
    with pytest.raises(domain.QuoteRefused, match="only a sent quote"):
        domain.accept(quote, T0)
    sent = domain.send(quote, T0)
    assert sent.status(DAY) == "sent" and domain.send(sent, T0 + timedelta(hours=1)) == sent
    accepted = domain.accept(sent, T0 + timedelta(hours=2))
    assert accepted.status(DAY) == "accepted" and accepted.order_id == "O-Q-1"
    assert domain.accept(accepted, T0 + timedelta(hours=3)) == accepted
    with pytest.raises(domain.QuoteRefused, match="accepted"):
        domain.reject(accepted, T0, "late")
    rejected = domain.reject(sent, T0, "too dear")
    assert rejected.status(DAY) == "rejected" and rejected.reject_reason == "too dear"
    with pytest.raises(domain.QuoteRefused):
        domain.accept(rejected, T0)


def test_a_quote_past_its_last_day_is_expired_and_refused() -> None:
    quote = domain.send(make_quote((), valid_until=DAY), T0)
    assert quote.status(DAY) == "sent"
    assert quote.status(DAY + timedelta(days=1)) == "expired"
    next_day = T0 + timedelta(days=1)
    commands = (
        partial(domain.accept, quote, next_day),
        partial(domain.reject, quote, next_day, None),
        partial(domain.send, make_quote((), valid_until=DAY), next_day),
    )
    for command in commands:
        with pytest.raises(domain.QuoteExpired, match="expired after 2026-06-15"):
            command()
    # Accepted stays accepted after the day.
    accepted = domain.accept(quote, T0)
    assert accepted.status(DAY + timedelta(days=400)) == "accepted"


def test_documents_round_trip() -> None:
    parent = book(
        "p",
        valid_to=date(2026, 12, 31),
        segment="wholesale",
        entries=(PriceEntry("A.1", Decimal("1.5"), None, (QuantityBreak(3, Decimal(1)),)),),
    )
    assert repository.book_from_document(repository.book_to_document(parent)) == parent
    quote = domain.send(make_quote(domain.price_lines(PRICED, {}, [LineRequest("A", 2, Decimal(5))], "rep")), T0)
    assert repository.quote_from_document(repository.quote_to_document(quote)) == quote
