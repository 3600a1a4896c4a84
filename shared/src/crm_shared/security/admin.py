"""The admin API every service has: API keys (issue, list, rotate, revoke), the audit log, and who am I."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt, field_validator

from crm_shared.api import Cursor, IdInPath, Limit, Page, keyset_page
from crm_shared.events import EVENT_TYPES, utc_now
from crm_shared.problems import Problem
from crm_shared.security import keys
from crm_shared.security.audit import AUDIT_LOG
from crm_shared.security.guard import Guard, audited, requires
from crm_shared.security.principal import ADMIN, SCOPES, Principal
from crm_shared.security.settings import check_rate_limit

MAX_KEY_DAYS = 730
DEFAULT_KEY_DAYS = 90

router = APIRouter(prefix="/v1", tags=["security"])
Admin = Depends(audited)


def _guard(request: Request) -> Guard:
    return request.app.state.runtime.guard  # type: ignore[no-any-return]


def _store(request: Request) -> Any:
    return request.app.state.runtime.require_store()


class NewKey(BaseModel):
    """A key for one channel system: the least it needs."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9 ._-]+$", examples=["webshop"])
    scopes: list[str] = Field(min_length=1, max_length=len(SCOPES), examples=[["events:write", "orders:read"]])
    event_types: list[str] | None = Field(
        default=None,
        max_length=len(EVENT_TYPES),
        description="The event types it may POST to /v1/events; null for any its scopes allow.",
        examples=[["crm.order.placed.v1", "crm.order.paid.v1"]],
    )
    read_only: bool = Field(default=False, description="Refuse every scope but the `:read` ones.")
    rate_limit: str | None = Field(
        default=None, max_length=100, description="Its own limit, e.g. `500/second`; null for the service default."
    )
    expires_in_days: int = Field(default=DEFAULT_KEY_DAYS, ge=1, le=MAX_KEY_DAYS)

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(SCOPES))
        if unknown:
            raise ValueError(f"unknown scopes {unknown}; known: {sorted(SCOPES)}")
        return value

    @field_validator("event_types")
    @classmethod
    def _known_types(cls, value: list[str] | None) -> list[str] | None:
        unknown = sorted(set(value or ()) - set(EVENT_TYPES))
        if unknown:
            raise ValueError(f"unknown event types {unknown}")
        return value

    @field_validator("rate_limit")
    @classmethod
    def _limit(cls, value: str | None) -> str | None:
        return check_rate_limit(value) if value is not None else None


class KeyView(BaseModel):
    key_id: str
    name: str
    scopes: list[str]
    event_types: list[str] | None
    read_only: bool
    rate_limit: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    replaced_by: str | None
    status: Literal["active", "expired", "revoked"]

    @classmethod
    def of(cls, record: keys.ApiKeyRecord) -> KeyView:
        why = record.usable_at(utc_now())
        state: Literal["active", "expired", "revoked"] = (
            "active" if why is None else "revoked" if "revoked" in why else "expired"
        )
        fields = record.model_dump(exclude={"secret_sha256", "version"})
        return cls(**{**fields, "scopes": list(record.scopes), "status": state})


class IssuedKey(BaseModel):
    key: str = Field(description="The API key. It is shown this once: only its hash is kept.")
    record: KeyView


class Rotation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_seconds: StrictInt = Field(
        default=86400, ge=0, le=30 * 86400, description="How long the old key keeps working (default a day)."
    )


class WhoAmI(BaseModel):
    kind: str
    id: str
    scopes: list[str]
    read_only: bool
    sees_all_records: bool


@router.get("/auth/whoami", response_model=WhoAmI, summary="The caller, as this service authenticated it")
async def whoami(principal: Annotated[Principal, requires("")]) -> WhoAmI:
    return WhoAmI(
        kind=principal.kind,
        id=principal.id,
        scopes=sorted(principal.scopes),
        read_only=principal.read_only,
        sees_all_records=principal.sees_all_records,
    )


@router.post(
    "/admin/keys",
    status_code=status.HTTP_201_CREATED,
    response_model=IssuedKey,
    dependencies=[requires(ADMIN), Admin],
    summary="Issue an API key (shown once); every service knows it within about a second",
)
async def issue_key(body: NewKey, request: Request) -> IssuedKey:
    key, record = keys.issue(
        name=body.name,
        scopes=body.scopes,
        event_types=body.event_types,
        read_only=body.read_only,
        rate_limit=body.rate_limit,
        expires_at=utc_now() + timedelta(days=body.expires_in_days),
    )
    await keys.save_key(_store(request), _guard(request).keys, record)
    return IssuedKey(key=key, record=KeyView.of(record))


@router.get("/admin/keys", response_model=list[KeyView], dependencies=[requires(ADMIN), Admin], summary="Every API key")
async def list_keys(request: Request) -> list[KeyView]:
    return [KeyView.of(r) for r in _guard(request).keys.records()]


def _known(request: Request, key_id: str) -> keys.ApiKeyRecord:
    record = _guard(request).keys.get(key_id)
    if record is None:
        raise Problem(404, "API key not found", f"no API key {key_id}")
    return record


@router.get(
    "/admin/keys/{key_id}",
    response_model=KeyView,
    dependencies=[requires(ADMIN), Admin],
    responses={404: {"description": "No API key with this id"}},
    summary="One API key",
)
async def get_key(request: Request, key_id: IdInPath) -> KeyView:
    return KeyView.of(_known(request, key_id))


@router.post(
    "/admin/keys/{key_id}/rotate",
    status_code=status.HTTP_201_CREATED,
    response_model=IssuedKey,
    dependencies=[requires(ADMIN), Admin],
    responses={
        404: {"description": "No API key with this id"},
        409: {"description": "The key is revoked or expired: issue a new one"},
    },
    summary="A new key with the same rights; the old one works for the grace period, then expires",
)
async def rotate_key(request: Request, key_id: IdInPath, body: Rotation | None = None) -> IssuedKey:
    record = _known(request, key_id)
    if record.usable_at(utc_now()):
        raise Problem(409, "API key not active", f"API key {key_id} is expired or revoked: issue a new one")
    key, fresh, old = keys.rotated(record, timedelta(seconds=(body or Rotation()).grace_seconds))
    await keys.save_key(_store(request), _guard(request).keys, fresh)
    await keys.save_key(_store(request), _guard(request).keys, old)
    return IssuedKey(key=key, record=KeyView.of(fresh))


@router.delete(
    "/admin/keys/{key_id}",
    response_model=KeyView,
    dependencies=[requires(ADMIN), Admin],
    responses={404: {"description": "No API key with this id"}},
    summary="Revoke an API key: refused by every service within about a second",
)
async def revoke_key(request: Request, key_id: IdInPath) -> KeyView:
    record = _known(request, key_id)
    if record.revoked_at is None:
        record = keys.revoked(record)
        await keys.save_key(_store(request), _guard(request).keys, record)
    return KeyView.of(record)


class AuditRecord(BaseModel):
    id: str
    at: datetime
    service: str
    principal: str = Field(description="`key:<id>`, `token:<subject>` (hashed when it is an address) or anonymous.")
    action: str = Field(examples=["GET /v1/customers/{customer_id}"])
    target: dict[str, str] = Field(description="The ids in the path.")
    status: int
    outcome: Literal["allowed", "denied", "failed"]
    reason: str | None


@router.get(
    "/admin/audit",
    response_model=Page[AuditRecord],
    dependencies=[requires(ADMIN)],
    summary="The audit log of this service, newest first",
)
async def audit_log(
    request: Request,
    limit: Limit = 50,
    cursor: Cursor = None,
    outcome: Annotated[Literal["allowed", "denied", "failed"] | None, Query()] = None,
    principal: Annotated[str | None, Query(max_length=200, pattern=r"^[A-Za-z0-9:._@-]+$")] = None,
    since: Annotated[AwareDatetime | None, Query()] = None,
) -> Page[AuditRecord]:
    query: dict[str, Any] = {}
    if outcome is not None:
        query["outcome"] = outcome
    if principal is not None:
        query["principal"] = principal
    if since is not None:
        query["at"] = {"$gte": since}
    docs, next_cursor = await keyset_page(
        _store(request).db[AUDIT_LOG], query, time_field="at", limit=limit, cursor=cursor, newest_first=True
    )
    items = [AuditRecord(id=d["_id"], **{k: v for k, v in d.items() if k != "_id"}) for d in docs]
    return Page[AuditRecord](items=items, next_cursor=next_cursor)
