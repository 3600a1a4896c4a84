"""REST API of territories: their assignment rules, kept as data."""

from typing import Annotated, Any, Literal, Self

from fastapi import APIRouter, Body, Response, status
from pydantic import BaseModel, ConfigDict, Field, model_validator

from crm_sales.territories import domain, handlers
from crm_shared.api import Cursor, IdInPath, Limit, Page, cursor_id, decode_cursor, encode_cursor
from crm_shared.events import utc_now
from crm_shared.problems import Problem
from crm_shared.security import TerritoryId, UserId, requires
from crm_shared.service import StoreDep

router = APIRouter(prefix="/v1", tags=["territories"])

Criterion = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f$]+$")]
"""A region or an industry, as leads carry it (compared case-insensitively)."""


class RepIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: UserId = Field(description="The sales person, as their token's subject names them.")
    capacity: int = Field(ge=0, le=100_000, description="At most this many open leads (new, contacted, qualified).")
    skip: bool = Field(default=False, description="Pass this rep over (on holiday, off sick), keeping their place.")


class TerritoryRules(BaseModel):
    """Which leads a territory takes, and how it shares them among its reps."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    priority: int = Field(ge=0, le=1_000_000, description="Lower is tried first; the first matching territory wins.")
    regions: list[Criterion] = Field(default=[], max_length=200, description="Empty: any region.")
    industries: list[Criterion] = Field(default=[], max_length=200, description="Empty: any industry.")
    company_size_min: int | None = Field(default=None, ge=0, le=10_000_000, description="Employees, inclusive.")
    company_size_max: int | None = Field(default=None, ge=0, le=10_000_000, description="Employees, inclusive.")
    strategy: Literal["round_robin", "least_busy"] = Field(
        description="round_robin: each rep in turn; least_busy: the rep with the fewest open leads (ties by user id)."
    )
    reps: list[RepIn] = Field(default=[], max_length=500)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (
            self.company_size_min is not None
            and self.company_size_max is not None
            and self.company_size_min > self.company_size_max
        ):
            raise ValueError("company_size_min is above company_size_max")
        users = [r.user_id for r in self.reps]
        if len(set(users)) != len(users):
            raise ValueError("a rep is listed twice")
        return self

    def territory(self, territory_id: str) -> domain.Territory:
        return domain.Territory(
            territory_id=territory_id,
            name=self.name,
            priority=self.priority,
            strategy=self.strategy,
            reps=tuple(domain.Rep(r.user_id, r.capacity, r.skip) for r in self.reps),
            regions=frozenset(self.regions),
            industries=frozenset(self.industries),
            size_min=self.company_size_min,
            size_max=self.company_size_max,
        )


class NewTerritory(TerritoryRules):
    territory_id: TerritoryId = Field(description="The id tokens name in their `crm_territories` claim.")


class TerritoryView(NewTerritory):
    cursor: int = Field(description="Round-robin: the index of the rep tried first for the next lead.")

    @classmethod
    def of(cls, t: domain.Territory) -> "TerritoryView":
        return cls(
            territory_id=t.territory_id,
            name=t.name,
            priority=t.priority,
            regions=sorted(t.regions),
            industries=sorted(t.industries),
            company_size_min=t.size_min,
            company_size_max=t.size_max,
            strategy=t.strategy,
            reps=[RepIn(user_id=r.user_id, capacity=r.capacity, skip=r.skip) for r in t.reps],
            cursor=t.cursor,
        )


TERRITORY_EXAMPLE = {
    "territory_id": "north-smb",
    "name": "North, small and mid-sized",
    "priority": 10,
    "regions": ["north"],
    "industries": [],
    "company_size_min": 1,
    "company_size_max": 499,
    "strategy": "round_robin",
    "reps": [{"user_id": "rep-17", "capacity": 40}, {"user_id": "rep-21", "capacity": 40, "skip": True}],
}
NO_SUCH_TERRITORY: dict[int | str, dict[str, Any]] = {404: {"description": "No such territory"}}


def territory_not_found(territory_id: str) -> Problem:
    return Problem(404, "Territory not found", f"no territory {territory_id}")


@router.post(
    "/territories",
    response_model=TerritoryView,
    status_code=status.HTTP_201_CREATED,
    summary="Define a territory and its assignment rules",
    description="The territory id is the idempotency key: the same definition posted again answers 200, another "
    "definition under an existing id 409 (change one with PUT).",
    dependencies=[requires("territories:write")],
    responses={200: {"description": "Already defined so"}, 409: {"description": "Defined otherwise"}},
)
async def create_territory(
    store: StoreDep,
    response: Response,
    new: Annotated[NewTerritory, Body(examples=[TERRITORY_EXAMPLE])],
) -> TerritoryView:
    try:
        territory, created = await handlers.create_territory(store, new.territory(new.territory_id), utc_now())
    except handlers.TerritoryConflict as exc:
        raise Problem(409, "Territory exists", str(exc)) from exc
    if not created:
        response.status_code = status.HTTP_200_OK
    return TerritoryView.of(territory)


@router.get(
    "/territories",
    response_model=Page[TerritoryView],
    summary="Territories, by id",
    dependencies=[requires("territories:read")],
)
async def territories(store: StoreDep, limit: Limit = 50, cursor: Cursor = None) -> Page[TerritoryView]:
    after = decode_cursor(cursor)
    found, last = await handlers.territory_page(store, limit, cursor_id(after, "territory_id") if after else None)
    return Page[TerritoryView](
        items=[TerritoryView.of(t) for t in found],
        next_cursor=encode_cursor({"territory_id": last}) if last is not None else None,
    )


@router.get(
    "/territories/{territory_id}",
    response_model=TerritoryView,
    summary="One territory",
    dependencies=[requires("territories:read")],
    responses=NO_SUCH_TERRITORY,
)
async def get_territory(store: StoreDep, territory_id: IdInPath) -> TerritoryView:
    territory = await handlers.find_territory(store, territory_id)
    if territory is None:
        raise territory_not_found(territory_id)
    return TerritoryView.of(territory)


@router.put(
    "/territories/{territory_id}",
    response_model=TerritoryView,
    summary="Replace a territory's rules (its round-robin position stays)",
    dependencies=[requires("territories:write")],
    responses=NO_SUCH_TERRITORY,
)
async def replace_territory(
    store: StoreDep, territory_id: IdInPath, rules: Annotated[TerritoryRules, Body()]
) -> TerritoryView:
    territory = await handlers.replace_territory(store, rules.territory(territory_id), utc_now())
    if territory is None:
        raise territory_not_found(territory_id)
    return TerritoryView.of(territory)


@router.delete(
    "/territories/{territory_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a territory's rules (its leads keep it as their territory)",
    dependencies=[requires("territories:write")],
    responses=NO_SUCH_TERRITORY,
)
async def delete_territory(store: StoreDep, territory_id: IdInPath) -> Response:
    if not await handlers.delete_territory(store, territory_id):
        raise territory_not_found(territory_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
