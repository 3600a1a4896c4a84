"""REST of merges, unmerges, erasure status and exports (crm_customer.identity.service)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from crm_customer import handlers
from crm_customer.identity import service
from crm_customer.identity.survivorship import DEFAULTS, Rules
from crm_customer.problems import no_customer
from crm_customer.settings import CustomerSettings, match_secret_of
from crm_shared.api import IdInPath
from crm_shared.events import CustomerId
from crm_shared.problems import Problem
from crm_shared.security import Principal, audited, requires
from crm_shared.service import StoreDep, get_runtime

router = APIRouter(prefix="/v1", tags=["identity and privacy"])

CustomerReader = Annotated[Principal, requires("customers:read")]
Merger = Annotated[Principal, requires("customers:merge")]
Exporter = Annotated[Principal, requires("customers:export")]
Eraser = Annotated[Principal, requires("customers:erase")]

NOT_SEEN = "No such customer or merge, or one the caller may not see (the same answer either way)"


def _settings(request: Request) -> CustomerSettings | None:
    settings = get_runtime(request).settings
    return settings if isinstance(settings, CustomerSettings) else None


def _rules(request: Request) -> Rules:
    settings = _settings(request)
    return settings.survivorship_rules if settings is not None else DEFAULTS


def _services(request: Request) -> tuple[str, ...]:
    settings = _settings(request)
    return settings.privacy_service_names if settings is not None else service.PRIVACY_SERVICES


def _refused(exc: service.MergeRefused) -> Problem:
    title = {404: "Not found", 422: "Merge refused"}.get(exc.status, "Merge refused")
    return Problem(exc.status, title, str(exc))


class ServiceDone(BaseModel):
    at: datetime
    records: int = Field(description="Records moved, given back or cleared.")
    kept: int = Field(default=0, description="Records kept under the pseudonym (erasure).")


class MergeView(BaseModel):
    merge_id: str
    survivor_id: str
    merged_id: str
    decided_by: Literal["automatic", "confirmed"]
    evidence: list[str]
    merged_by: str | None
    merged_at: datetime
    fields_changed: list[str] = Field(description="The survivor's fields the survivorship rules changed.")
    status: Literal["merged", "unmerged", "permanent"] = Field(
        description="permanent: an erasure removed the profiles as they were, so it cannot be undone."
    )
    unmerged_at: datetime | None = None
    applied: dict[str, dict[str, ServiceDone]] = Field(
        description="Per step (merge, unmerge), the services that applied it, with when and how many records."
    )
    pending: list[str] = Field(description="The services that have not applied the latest step yet.")

    @classmethod
    def of(cls, doc: dict[str, Any], services: tuple[str, ...]) -> MergeView:
        applied = doc.get("applied") or {}
        step = "unmerge" if doc.get("status") == "unmerged" else "merge"
        pending = [s for s in services if s not in (applied.get(step) or {})]
        return cls(
            merge_id=doc["_id"],
            survivor_id=doc["survivor_id"],
            merged_id=doc["merged_id"],
            decided_by=doc["decided_by"],
            evidence=doc.get("evidence", []),
            merged_by=doc.get("merged_by"),
            merged_at=doc["merged_at"],
            fields_changed=doc.get("fields_changed", []),
            status=doc["status"],
            unmerged_at=doc.get("unmerged_at"),
            applied={k: {s: ServiceDone(**v) for s, v in by.items()} for k, by in applied.items()},
            pending=pending,
        )


class MergeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    merged_id: CustomerId = Field(description="The customer that becomes this one; its profile is kept for an undo.")
    evidence: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list,
        max_length=20,
        description="Why they are one, as the person confirming saw it (e.g. the duplicate candidate's evidence).",
    )


@router.post(
    "/customers/{customer_id}/merges",
    status_code=status.HTTP_201_CREATED,
    response_model=MergeView,
    summary="Confirm that another customer is this one: merge it into this one (the survivor)",
    description="The survivor's fields are resolved by the survivorship rules (CRM_CUSTOMER_SURVIVORSHIP); "
    "crm.customer.merged.v1 tells every service to move what it holds under the survivor. `pending` lists the "
    "services that have not applied it yet. Undo with POST /v1/merges/{merge_id}/undo.",
    dependencies=[Depends(audited)],
    responses={404: {"description": NOT_SEEN}, 409: {"description": "Merged or erased already, or another kind"}},
)
async def merge_customers(
    principal: Merger,
    store: StoreDep,
    request: Request,
    customer_id: IdInPath,
    body: Annotated[MergeBody, Body()],
) -> MergeView:
    try:
        record = await service.merge_customers(
            store,
            customer_id,
            body.merged_id,
            evidence=body.evidence,
            rules=_rules(request),
            match_secret=match_secret_of(get_runtime(request).settings),
            seen_by=principal,
        )
    except service.MergeRefused as exc:
        raise _refused(exc) from exc
    return MergeView.of(record, _services(request))


@router.post(
    "/merges/{merge_id}/undo",
    response_model=MergeView,
    summary="Undo a merge: both customers as they were, plus what happened to each since",
    description="The survivor gets back its own value of every field the merge changed, unless it changed since; "
    "the merged customer comes back as it was at the merge, with the consent facts that arrived for it since. "
    "crm.customer.unmerged.v1 tells every service to give back what came from the merged customer, and what "
    "arrived for it since.",
    dependencies=[Depends(audited)],
    responses={404: {"description": NOT_SEEN}, 409: {"description": "Undone already, permanent, or superseded"}},
)
async def undo_merge(principal: Merger, store: StoreDep, request: Request, merge_id: IdInPath) -> MergeView:
    try:
        record = await service.unmerge(
            store, merge_id, match_secret=match_secret_of(get_runtime(request).settings), seen_by=principal
        )
    except service.MergeRefused as exc:
        raise _refused(exc) from exc
    return MergeView.of(record, _services(request))


@router.get(
    "/merges/{merge_id}",
    response_model=MergeView,
    summary="A merge, and which services have applied it",
    responses={404: {"description": NOT_SEEN}},
)
async def get_merge(principal: CustomerReader, store: StoreDep, request: Request, merge_id: IdInPath) -> MergeView:
    record = await service.find_merge(store, merge_id)
    if record is None or not await handlers.sees_customer(store, principal, record["survivor_id"]):
        raise Problem(404, "Not found", f"no merge {merge_id}")
    return MergeView.of(record, _services(request))


@router.get(
    "/customers/{customer_id}/merges",
    response_model=list[MergeView],
    summary="The merges the customer took part in, as survivor or as the customer merged, oldest first",
    responses={404: {"description": NOT_SEEN}},
)
async def list_merges(
    principal: CustomerReader, store: StoreDep, request: Request, customer_id: IdInPath
) -> list[MergeView]:
    if await handlers.find_profile(store, customer_id, seen_by=principal) is None:
        raise no_customer(customer_id)
    return [MergeView.of(d, _services(request)) for d in await service.merges_of(store, customer_id)]


# ---------------------------------------------------------------- erasure status


class ErasureStatusView(BaseModel):
    erasure_id: str
    customer_id: str
    pseudonym: str = Field(description="The id the aggregates each service kept are filed under now.")
    requested_at: datetime
    confirmed: dict[str, ServiceDone] = Field(description="The services that applied the erasure.")
    pending: list[str] = Field(description="The services that have not confirmed it yet.")
    complete: bool
    completed_at: datetime | None

    @classmethod
    def of(cls, doc: dict[str, Any]) -> ErasureStatusView:
        return cls(
            erasure_id=doc["_id"],
            customer_id=doc["customer_id"],
            pseudonym=doc["pseudonym"],
            requested_at=doc["requested_at"],
            confirmed={s: ServiceDone(**v) for s, v in (doc.get("confirmed") or {}).items()},
            pending=doc["pending"],
            complete=doc["complete"],
            completed_at=doc["completed_at"],
        )


@router.get(
    "/erasures/{erasure_id}",
    response_model=ErasureStatusView,
    summary="Whether an erasure is complete everywhere, and which services are still pending",
    responses={404: {"description": "No such erasure"}},
)
async def get_erasure(_: Eraser, store: StoreDep, erasure_id: IdInPath) -> ErasureStatusView:
    found = await service.find_erasure(store, erasure_id)
    if found is None:
        raise Problem(404, "Not found", f"no erasure {erasure_id}")
    return ErasureStatusView.of(found)


@router.get(
    "/customers/{customer_id}/erasures",
    response_model=list[ErasureStatusView],
    summary="The erasures of a customer, oldest first, each with its status",
)
async def list_erasures(_: Eraser, store: StoreDep, customer_id: IdInPath) -> list[ErasureStatusView]:
    return [ErasureStatusView.of(d) for d in await service.erasures_of(store, customer_id)]


# ---------------------------------------------------------------- export


class ExportView(BaseModel):
    request_id: str
    customer_id: str
    requested_at: datetime
    expires_at: datetime = Field(description="When the export (personal data) is removed.")
    status: Literal["gathering", "complete"]
    answered: dict[str, str] = Field(description="Per service that answered: parts received of parts sent.")
    pending: list[str] = Field(description="The services whose answer is not complete yet.")
    document: dict[str, dict[str, list[dict[str, Any]]]] | None = Field(
        default=None, description="Once complete: per service, its records about the customer by collection."
    )


def _export_view(status_doc: dict[str, Any], document: dict[str, Any] | None) -> ExportView:
    answered = {
        s: f"{len(a.get('received', []))}/{a.get('parts', '?')}" for s, a in (status_doc.get("answered") or {}).items()
    }
    return ExportView(
        request_id=status_doc["_id"],
        customer_id=status_doc["customer_id"],
        requested_at=status_doc["requested_at"],
        expires_at=status_doc["expires_at"],
        status=status_doc["status"],
        answered=answered,
        pending=status_doc["pending"],
        document=document,
    )


@router.post(
    "/customers/{customer_id}/exports",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ExportView,
    summary="Ask every service for everything it holds about the customer (a privacy export)",
    description="crm.customer.export_requested.v1 goes to every service; GET /v1/exports/{request_id} shows the "
    "answers as they arrive and, once every service answered, the whole document. Kept 30 days.",
    dependencies=[Depends(audited)],
    responses={404: {"description": NOT_SEEN}},
)
async def request_export(principal: Exporter, store: StoreDep, request: Request, customer_id: IdInPath) -> ExportView:
    if await handlers.find_profile(store, customer_id, seen_by=principal) is None:
        raise no_customer(customer_id)
    record = await service.request_export(store, customer_id, _services(request), principal.id)
    return _export_view(service.export_status(record), None)


@router.get(
    "/exports/{request_id}",
    response_model=ExportView,
    summary="An export's status, and once complete the document",
    responses={404: {"description": "No such export (or expired)"}},
)
async def get_export(principal: Exporter, store: StoreDep, request_id: IdInPath) -> ExportView:
    found = await service.find_export(store, request_id)
    if found is None or not await handlers.sees_customer(store, principal, found[0]["customer_id"]):
        raise Problem(404, "Not found", f"no export {request_id}")
    return _export_view(*found)


# ---------------------------------------------------------------- duplicate proposals rejected


class RejectionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, Field(min_length=1, max_length=500)] | None = Field(
        default=None, description="Why they are not one, for the next person who looks (no personal data)."
    )


class RejectionView(BaseModel):
    customers: list[str]
    reason: str | None
    rejected_by: str | None
    rejected_at: datetime


@router.post(
    "/customers/{customer_id}/duplicates/{other_id}/rejection",
    status_code=status.HTTP_201_CREATED,
    response_model=RejectionView,
    summary="Say that a proposed duplicate is not this customer: it is not proposed again",
    description="GET /v1/customers/{customer_id}/duplicates leaves the pair out from then on; DELETE withdraws "
    "the rejection. A merge of the two stays possible.",
    dependencies=[Depends(audited)],
    responses={404: {"description": NOT_SEEN}, 422: {"description": "The same customer twice"}},
)
async def reject_proposal(
    principal: Merger,
    store: StoreDep,
    customer_id: IdInPath,
    other_id: IdInPath,
    body: Annotated[RejectionBody | None, Body()] = None,
) -> RejectionView:
    for seen in (customer_id, other_id):
        if await handlers.find_profile(store, seen, seen_by=principal) is None:
            raise no_customer(seen)
    try:
        record = await service.reject_proposal(
            store, customer_id, other_id, reason=body.reason if body else None, by=principal.id
        )
    except service.MergeRefused as exc:
        raise _refused(exc) from exc
    return RejectionView(**{k: v for k, v in record.items() if k != "_id"})


@router.delete(
    "/customers/{customer_id}/duplicates/{other_id}/rejection",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Withdraw a rejection: the pair may be proposed again",
    dependencies=[Depends(audited)],
    responses={404: {"description": "No such rejection"}},
)
async def withdraw_rejection(principal: Merger, store: StoreDep, customer_id: IdInPath, other_id: IdInPath) -> Response:
    if await handlers.find_profile(
        store, customer_id, seen_by=principal
    ) is None or not await service.withdraw_rejection(store, customer_id, other_id):
        raise Problem(404, "Not found", f"no rejection of {customer_id} and {other_id}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
