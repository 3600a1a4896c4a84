"""Triggered journeys as data. Pure: no I/O, no framework.

A journey says which fact starts it (a segment change on one dimension, or a complaint) and which
campaign it runs. The fact that starts it names the journey *episode*: the segment-changed event's id
(scoring publishes one per boundary crossing) or the complaint id. A customer is enrolled at most
once per (journey, episode); a later crossing or another complaint is a new episode.

The defaults can be replaced with CRM_MARKETING_JOURNEYS (a JSON list of journeys), validated at
start-up: an unknown dimension, a value scoring never publishes or a repeated name stops the service.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from crm_shared.events import SegmentChanged, SegmentDimension

JourneyTrigger = Literal["segment_changed", "complaint_filed"]
JourneyName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")]

# The values scoring publishes on each dimension (its contract); rfm_segment names are scoring's to grow.
SEGMENT_VALUES: Mapping[SegmentDimension, frozenset[str] | None] = {
    "value_tier": frozenset({"potential", "low_value", "high_value"}),
    "lifecycle_stage": frozenset(
        {"prospect", "first_time_buyer", "repeat", "stable", "at_risk", "lost", "reactivated"}
    ),
    "churn_risk_band": frozenset({"low", "medium", "high"}),
    "rfm_segment": None,
}


class Journey(BaseModel):
    """A campaign started by a fact about one customer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: JourneyName = Field(examples=["win-back"])
    campaign_id: JourneyName | None = Field(
        default=None, description="The journey's own campaign (budget-less); defaults to the journey's name."
    )
    trigger: JourneyTrigger = "segment_changed"
    dimension: SegmentDimension | None = Field(default=None, description="For trigger segment_changed.")
    new_value: str | None = Field(default=None, examples=["lost"], description="For trigger segment_changed.")
    requires_value_tier: str | None = Field(
        default=None, examples=["high_value"], description="Only customers in this value tier at the change."
    )
    frequency_capped: bool = Field(
        default=True,
        description="Counts toward, and is limited by, the contact frequency cap. A reply to the customer's "
        "own complaint is service, not marketing pressure, so complaint-recovery is not capped.",
    )
    description: str = Field(default="", max_length=500)

    @model_validator(mode="after")
    def _trigger_is_complete(self) -> Self:
        if self.trigger == "segment_changed":
            if self.dimension is None or self.new_value is None:
                raise ValueError(f"journey {self.name!r}: a segment_changed trigger needs dimension and new_value")
            allowed = SEGMENT_VALUES[self.dimension]
            if allowed is not None and self.new_value not in allowed:
                raise ValueError(
                    f"journey {self.name!r}: {self.dimension} is never {self.new_value!r};"
                    f" expected one of {', '.join(sorted(allowed))}"
                )
        elif self.dimension is not None or self.new_value is not None:
            raise ValueError(f"journey {self.name!r}: a {self.trigger} trigger takes no dimension or new_value")
        tiers = SEGMENT_VALUES["value_tier"]
        if self.requires_value_tier is not None and tiers is not None and self.requires_value_tier not in tiers:
            raise ValueError(
                f"journey {self.name!r}: requires_value_tier {self.requires_value_tier!r} is not one of"
                f" {', '.join(sorted(tiers))}"
            )
        return self

    @property
    def campaign(self) -> str:
        return self.campaign_id or self.name


def check_journeys(journeys: Iterable[Journey]) -> tuple[Journey, ...]:
    """Refuse a configuration where two journeys share a name (enrolments are unique per journey name)."""
    journeys = tuple(journeys)
    names = [j.name for j in journeys]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"journey names must be unique, repeated: {', '.join(duplicates)}")
    return journeys


DEFAULT_JOURNEYS: tuple[Journey, ...] = check_journeys(
    [
        Journey(
            name="welcome",
            dimension="lifecycle_stage",
            new_value="first_time_buyer",
            description="Welcome a customer after the first order, the hard conversion, so a second one follows.",
        ),
        Journey(
            name="high-value-thank-you",
            dimension="value_tier",
            new_value="high_value",
            description="Thank a customer who became high value and introduce their one-to-one follow-up.",
        ),
        Journey(
            name="service-recovery",
            dimension="churn_risk_band",
            new_value="high",
            requires_value_tier="high_value",
            description="A retention offer for a high-value customer whose churn risk became high.",
        ),
        Journey(
            name="complaint-recovery",
            trigger="complaint_filed",
            frequency_capped=False,
            description="Contact any customer who complained, to put it right (one episode per complaint).",
        ),
        Journey(
            name="win-back",
            dimension="lifecycle_stage",
            new_value="lost",
            description="A win-back offer for a customer who became lost.",
        ),
    ]
)


def journeys_triggered(change: SegmentChanged, journeys: Iterable[Journey]) -> list[Journey]:
    """The journeys this segment change starts, in configuration order."""
    if change.old == change.new:
        return []
    return [
        j
        for j in journeys
        if j.trigger == "segment_changed"
        and j.dimension == change.dimension
        and j.new_value == change.new
        and (j.requires_value_tier is None or change.scores.value_tier == j.requires_value_tier)
    ]


def journeys_for_complaint(journeys: Iterable[Journey]) -> list[Journey]:
    """The journeys a complaint starts, whatever the customer's segments."""
    return [j for j in journeys if j.trigger == "complaint_filed"]
