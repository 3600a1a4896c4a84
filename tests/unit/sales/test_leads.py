"""The lead lifecycle and what duplicates are found by: pure rules."""

from datetime import UTC, datetime

import pytest

from crm_sales.leads import domain
from crm_sales.leads.domain import Lead, TransitionRefused, can_convert, change_status, normalise_email, normalise_phone

T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)
LEAD = Lead(lead_id="L-1", created_at=T0, source="inbound", name="Ada", email="ada@example.com")


def test_a_lead_goes_new_contacted_qualified() -> None:
    contacted = change_status(LEAD, "contacted")
    qualified = change_status(contacted, "qualified")
    assert (contacted.status, qualified.status) == ("contacted", "qualified")
    assert change_status(qualified, "qualified") == qualified  # the status it has: no change


@pytest.mark.parametrize("start", domain.OPEN_STATUSES)
def test_an_open_lead_is_disqualified_with_a_reason_only(start: domain.LeadStatus) -> None:
    lead = Lead(lead_id="L-1", created_at=T0, status=start)
    with pytest.raises(TransitionRefused, match="needs a reason"):
        change_status(lead, "disqualified", reason="  ")
    done = change_status(lead, "disqualified", reason=" no budget ")
    assert (done.status, done.disqualified_reason) == ("disqualified", "no budget")
    assert can_convert(done) is not None


@pytest.mark.parametrize(
    ("start", "to", "allowed"),
    [
        ("new", "qualified", ("contacted", "disqualified")),
        ("contacted", "new", ("qualified", "disqualified")),
        ("qualified", "converted", ("disqualified",)),
        ("new", "converted", ("contacted", "disqualified")),
        ("converted", "new", ()),
        ("disqualified", "contacted", ()),
        ("disqualified", "disqualified", ()),
    ],
)
def test_a_status_the_lifecycle_does_not_allow_is_refused_with_what_may_come_next(
    start: domain.LeadStatus, to: domain.LeadStatus, allowed: tuple[str, ...]
) -> None:
    with pytest.raises(TransitionRefused) as refused:
        change_status(Lead(lead_id="L-1", created_at=T0, status=start), to, reason="why")
    assert refused.value.allowed == allowed
    if to == "converted":
        assert "only by converting" in str(refused.value)


def test_only_an_open_lead_can_be_converted() -> None:
    assert [can_convert(Lead(lead_id="L-1", created_at=T0, status=s)) for s in domain.OPEN_STATUSES] == [None] * 3
    assert can_convert(Lead(lead_id="L-1", created_at=T0, status="converted")) == "lead L-1 is converted already"
    assert "disqualified" in str(can_convert(Lead(lead_id="L-1", created_at=T0, status="disqualified")))


@pytest.mark.parametrize(
    ("raw", "key"),
    [(" Ada@Example.COM ", "ada@example.com"), ("", None), (None, None), ("a.b+c@x.co.uk", "a.b+c@x.co.uk")],
)
def test_an_email_is_compared_trimmed_and_lower_case(raw: str | None, key: str | None) -> None:
    assert normalise_email(raw) == key


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("+44 20 7946 0018", "+442079460018"),
        ("0044 (20) 7946-0018", "+442079460018"),
        ("020 7946 0018", "02079460018"),
        ("  ", None),
    ],
)
def test_a_phone_is_compared_by_its_digits_with_a_leading_plus(raw: str, key: str | None) -> None:
    assert normalise_phone(raw) == key


@pytest.mark.parametrize(
    ("normalise", "raw"),
    [
        (normalise_email, "ada.example.com"),
        (normalise_email, "ada@@example.com"),
        (normalise_phone, "12345"),
        (normalise_phone, "call 0123456789"),
        (normalise_phone, "01+23456789"),
    ],
)
def test_a_bad_email_or_phone_is_refused_without_repeating_it(normalise: object, raw: str) -> None:
    with pytest.raises(ValueError) as refused:
        normalise(raw)  # type: ignore[operator]
    assert raw not in str(refused.value) and "ada" not in str(refused.value)
