"""Leads: people and companies sales may sell to, where they came from, and how far sales got with them.

Pure: no I/O, no framework. A lead moves new → contacted → qualified → converted, or is disqualified (with a
reason) from any open status; only a conversion makes it converted. Duplicates are found by normalised email
and phone (and by customer id when marketing sent one).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal, get_args

from crm_shared.events import LeadQualified, LeadSource

# The normalisation is the platform's: the customer service's match keys use the same.
from crm_shared.matching import PHONE_DIGITS as PHONE_DIGITS
from crm_shared.matching import normalise_email as normalise_email
from crm_shared.matching import normalise_phone as normalise_phone

LeadStatus = Literal["new", "contacted", "qualified", "converted", "disqualified"]
STATUSES: tuple[LeadStatus, ...] = get_args(LeadStatus)
OPEN_STATUSES: tuple[LeadStatus, ...] = ("new", "contacted", "qualified")
"""A rep works these: they count against the rep's capacity and assignment applies to them."""

NEXT_STATUSES: Mapping[LeadStatus, tuple[LeadStatus, ...]] = {
    "new": ("contacted", "disqualified"),
    "contacted": ("qualified", "disqualified"),
    "qualified": ("disqualified",),
    "converted": (),
    "disqualified": (),
}
"""The statuses a person may set next. `converted` is absent on purpose: only a conversion sets it (with the
customer, account and opportunity it made), so `qualified` goes on by converting."""

CONVERTIBLE: tuple[LeadStatus, ...] = OPEN_STATUSES


@dataclass(frozen=True)
class Lead:
    """A person or company sales may sell to.

    `owner_id` (the sales person, a token subject) and `territory` decide who sees the lead; assignment rules
    set them when the lead arrives, or leave the owner empty with `unassigned_reason` saying why.
    `customer_id` is None until the lead is converted, unless marketing qualified a known customer.
    `segment_id`, `reason`, `value_tier`, `lifecycle_stage` and `qualified_at` are marketing's hand-over.
    """

    lead_id: str
    created_at: datetime
    source: LeadSource = "other"
    status: LeadStatus = "new"
    customer_id: str | None = None
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    company: str | None = None
    industry: str | None = None
    company_size: int | None = None
    region: str | None = None
    owner_id: str | None = None
    territory: str | None = None
    unassigned_reason: str | None = None
    disqualified_reason: str | None = None
    converted_at: datetime | None = None
    account_id: str | None = None
    opportunity_id: str | None = None
    segment_id: str | None = None
    reason: str | None = None
    value_tier: str | None = None
    lifecycle_stage: str | None = None
    qualified_at: datetime | None = None

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def email_key(self) -> str | None:
        return normalise_email(self.email)

    @property
    def phone_key(self) -> str | None:
        return normalise_phone(self.phone)


def take_lead(qualified: LeadQualified, at: datetime) -> Lead:
    """A lead marketing qualified: a known customer, unassigned until the rules assign it."""
    return Lead(
        lead_id=qualified.lead_id,
        created_at=at,
        source="marketing",
        customer_id=qualified.customer_id,
        segment_id=qualified.segment_id,
        reason=qualified.reason,
        value_tier=qualified.value_tier,
        lifecycle_stage=qualified.lifecycle_stage,
        qualified_at=at,
    )


# ---------------------------------------------------------------- duplicates


@dataclass(frozen=True)
class DuplicateKeys:
    """What a new lead is a duplicate by."""

    email: str | None
    phone: str | None
    customer_id: str | None


def duplicate_keys(lead: Lead) -> DuplicateKeys:
    return DuplicateKeys(lead.email_key, lead.phone_key, lead.customer_id)


# ---------------------------------------------------------------- status


def lead_status(value: str) -> LeadStatus:
    """`value` as a status; ValueError for another string."""
    for status in STATUSES:
        if status == value:
            return status
    raise ValueError(f"{value!r} is not a lead status; the statuses are {', '.join(STATUSES)}")


class TransitionRefused(Exception):
    """A status change the lifecycle does not allow; `allowed` lists what may come next."""

    def __init__(self, detail: str, allowed: tuple[LeadStatus, ...]) -> None:
        super().__init__(detail)
        self.allowed = allowed


def change_status(lead: Lead, to: LeadStatus, *, reason: str | None = None) -> Lead:
    """The lead in status `to`, or TransitionRefused. Disqualifying needs a reason; setting the status the lead
    has already is no change."""
    if to == lead.status and to != "disqualified":
        return lead
    allowed = NEXT_STATUSES[lead.status]
    if to not in allowed:
        how = " (a lead becomes converted only by converting it)" if to == "converted" else ""
        raise TransitionRefused(f"a {lead.status} lead cannot become {to}{how}", allowed)
    if to == "disqualified":
        if reason is None or not reason.strip():
            raise TransitionRefused("disqualifying a lead needs a reason", allowed)
        return replace(lead, status=to, disqualified_reason=reason.strip())
    return replace(lead, status=to)


def can_convert(lead: Lead) -> str | None:
    """Why `lead` cannot be converted, or None when it can: an open lead can, a converted or disqualified one
    cannot. Conversion itself (in another package) sets status, customer_id, account_id, opportunity_id and
    converted_at on the lead."""
    if lead.status == "converted":
        return f"lead {lead.lead_id} is converted already"
    if lead.status not in CONVERTIBLE:
        return f"lead {lead.lead_id} is {lead.status}: only a new, contacted or qualified lead can be converted"
    return None
