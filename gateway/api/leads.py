"""Leads, reviews, actions and after-the-fact authorisations: thin callers of gateway/leads/.

A refused review or action is committed (its record) and then answered 403 with the
policy's reason codes: the refusal is on record whatever the caller does next.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.admin import Actor
from gateway.api.actions import commit_before_answering, recorder
from gateway.api.deps import (
    Admin,
    Auditor,
    DbDep,
    PrincipalDep,
    ServicesDep,
    record_read,
    require_role,
)
from gateway.audit.records import AuditRecord
from gateway.auth.principals import Principal, Role
from gateway.leads import reads, service
from gateway.leads.service import LeadDecision, LeadRecorder
from gateway.services import Services

router = APIRouter(prefix="/facegate/v1", tags=["leads"])

# Who may read leads: reviewers work the queue, officers follow their cases, auditors watch.
Reader = Annotated[
    Principal, Depends(require_role(Role.REVIEWER, Role.OFFICER, Role.AUDITOR, Role.ADMIN))
]


class ReviewCreate(BaseModel):
    verdict: Literal["confirmed", "rejected", "inconclusive"]
    rationale: str = Field(min_length=1, max_length=4000)


class ActionCreate(BaseModel):
    kind: str = Field(min_length=1, max_length=64)
    note: str = Field(default="", max_length=4000)


class Training(BaseModel):
    trained_until: date | None  # the last day it is valid; None: no training on record


class AuthorisationDecision(BaseModel):
    granted: bool
    authority: str = Field(min_length=1, max_length=200)
    reference: str = Field(min_length=1, max_length=200)


def _scope(principal: Principal) -> str | None:
    """Whose leads a caller sees: an auditor's every agency's, anyone else their own's."""
    return None if principal.has_role(Role.AUDITOR) else principal.agency


def _actor(principal: Principal, request: Request) -> Actor:
    return Actor.principal(
        principal, client_address=request.client.host if request.client else None
    )


def _recorder(services: Services, db: AsyncSession) -> LeadRecorder:
    async def record(entry: AuditRecord) -> None:
        await services.audit.append(entry, db=db)

    return record


def _answer(result: LeadDecision) -> JSONResponse | dict[str, object]:
    if result.allowed:
        return asdict(result)
    return JSONResponse(
        {
            "error": {
                "code": "policy_denied",
                "message": "; ".join(result.messages),
                "reasons": result.reasons,
            },
            "lead": asdict(result),
        },
        status_code=403,
        headers={"x-facegate-reasons": ",".join(result.reasons)},
    )


@router.get("/leads")
async def get_leads(
    caller: Reader,
    db: DbDep,
    case_number: str | None = None,
    status: str | None = None,
    officer: str | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=reads.MAX_LIMIT)] = 100,
) -> reads.LeadPage:
    return await reads.list_leads(
        db,
        agency=_scope(caller),
        now=datetime.now(UTC),
        case_number=case_number,
        status=status,
        officer=officer,
        cursor=cursor,
        limit=limit,
    )


@router.get("/leads/outcomes")
async def get_outcomes(
    auditor: Auditor, db: DbDep, services: ServicesDep, request: Request
) -> list[reads.OutcomeCounts]:
    await record_read(services, request, by=auditor, action="leads.outcomes")
    return await reads.outcomes(db, bands=reads.similarity_bands(services.settings.policy_dir))


@router.get("/leads/{lead_id}")
async def get_lead(lead_id: str, caller: Reader, db: DbDep) -> reads.LeadRead:
    return await reads.get_lead(db, lead_id, agency=_scope(caller), now=datetime.now(UTC))


@router.post("/leads/{lead_id}/reviews", response_model=None)
async def add_review(
    lead_id: str,
    body: ReviewCreate,
    caller: PrincipalDep,
    db: DbDep,
    services: ServicesDep,
    request: Request,
) -> JSONResponse | dict[str, object]:
    result = await service.review_lead(
        db=db,
        decide=services.policy.decide,
        lead_id=lead_id,
        actor=_actor(caller, request),
        verdict=body.verdict,
        rationale=body.rationale,
        now=datetime.now(UTC),
        record=_recorder(services, db),
    )
    await commit_before_answering(db)
    return _answer(result)


@router.post("/leads/{lead_id}/actions", response_model=None)
async def add_action(
    lead_id: str,
    body: ActionCreate,
    caller: PrincipalDep,
    db: DbDep,
    services: ServicesDep,
    request: Request,
) -> JSONResponse | dict[str, object]:
    result = await service.act_on_lead(
        db=db,
        decide=services.policy.decide,
        lead_id=lead_id,
        actor=_actor(caller, request),
        kind=body.kind,
        note=body.note,
        now=datetime.now(UTC),
        record=_recorder(services, db),
    )
    await commit_before_answering(db)
    return _answer(result)


@router.get("/authorisations")
async def get_authorisations(
    caller: Annotated[Principal, Depends(require_role(Role.AUDITOR, Role.ADMIN))],
    db: DbDep,
    services: ServicesDep,
    request: Request,
    status: Literal["pending", "overdue", "granted", "refused"] | None = None,
) -> list[reads.AuthorisationRead]:
    if caller.has_role(Role.AUDITOR):
        await record_read(services, request, by=caller, action="authorisations.list", status=status)
    now = datetime.now(UTC)
    # Clocks that ran out are on record before anyone is shown them as overdue.
    await service.record_overdue(db=db, now=now, record=_recorder(services, db))
    listed = await reads.list_authorisations(db, agency=_scope(caller), now=now, status=status)
    await commit_before_answering(db)
    return listed


@router.post("/authorisations/{authorisation_id}/decision")
async def decide(
    authorisation_id: str,
    body: AuthorisationDecision,
    admin: Admin,
    db: DbDep,
    services: ServicesDep,
    request: Request,
) -> dict[str, object]:
    decided = await service.decide_authorisation(
        db=db,
        authorisation_id=authorisation_id,
        granted=body.granted,
        authority=body.authority,
        reference=body.reference,
        actor=_actor(admin, request),
        now=datetime.now(UTC),
        record=_recorder(services, db),
    )
    await commit_before_answering(db)
    return asdict(decided)


@router.post("/principals/{principal_id}/training")
async def set_training(
    principal_id: str,
    body: Training,
    admin: Admin,
    db: DbDep,
    services: ServicesDep,
    request: Request,
) -> Training:
    """Record a reviewer's training (Maryland wants it yearly): `principal.training`."""
    await service.set_training(
        db=db,
        principal_id=principal_id,
        trained_until=body.trained_until,
        record=recorder(services, request, db=db, by=admin),
    )
    await commit_before_answering(db)
    return body
