"""What a new lead must hold, whether it comes from the API or a CSV row: one validation for both.

Messages name the field and the rule, never the value: a lead's name, email and phone are personal data.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from crm_sales.leads import domain
from crm_shared.events import LeadSource
from crm_shared.security import UserId

Line = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
"""One line of text: no control characters."""
Label = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f$]+$")]


class LeadDraft(BaseModel):
    """A new lead: a name or a company, and an email or a phone to reach and de-duplicate it by."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    source: LeadSource = Field(description="Where the lead came from.")
    name: Line | None = Field(default=None, description="The person.")
    email: Annotated[str, Field(max_length=254)] | None = None
    phone: Annotated[str, Field(max_length=40)] | None = None
    company: Line | None = None
    industry: Label | None = None
    company_size: int | None = Field(default=None, ge=1, le=10_000_000, description="Employees.")
    region: Label | None = None
    owner_id: UserId | None = Field(
        default=None, description="The owner, when known; otherwise the territories' rules assign one."
    )

    @field_validator("email")
    @classmethod
    def _an_address(cls, value: str | None) -> str | None:
        domain.normalise_email(value)
        return value or None

    @field_validator("phone")
    @classmethod
    def _a_number(cls, value: str | None) -> str | None:
        domain.normalise_phone(value)
        return value or None

    @model_validator(mode="after")
    def _reachable(self) -> Self:
        if not (self.name or self.company):
            raise ValueError("a lead needs a name or a company")
        if not (self.email or self.phone):
            raise ValueError("a lead needs an email or a phone")
        return self

    def lead(self, lead_id: str, at: datetime) -> domain.Lead:
        return domain.Lead(
            lead_id=lead_id,
            created_at=at,
            source=self.source,
            name=self.name,
            email=self.email,
            phone=self.phone,
            company=self.company,
            industry=self.industry,
            company_size=self.company_size,
            region=self.region,
            owner_id=self.owner_id,
        )


def reasons(error: ValidationError) -> str:
    """A validation error in words that hold no input value."""
    parts = []
    for e in error.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in e["loc"])
        message = str(e["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)
