"""Officers open case sessions and receive vendor-style credentials bound to the case."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from gateway.admin import close_session as close_case_session
from gateway.admin import open_session as open_case_session
from gateway.api.actions import commit_before_answering, recorder
from gateway.api.deps import DbDep, Officer, PrincipalDep, ServicesDep
from gateway.auth.sessions import IssuedCredentials
from gateway.case import CaseContext

router = APIRouter(prefix="/facegate/v1/sessions", tags=["sessions"])


class SessionOpen(CaseContext):
    ttl_seconds: int | None = Field(default=None, gt=0)


class SessionClosed(BaseModel):
    access_key_id: str
    revoked_at: datetime


@router.post("", status_code=201)
async def open_session(
    body: SessionOpen, officer: Officer, db: DbDep, services: ServicesDep, request: Request
) -> IssuedCredentials:
    settings = services.settings
    ttl = timedelta(seconds=body.ttl_seconds) if body.ttl_seconds else settings.session_ttl
    issued = await open_case_session(
        db=db,
        master_key=services.master_key,
        principal=officer,
        context=CaseContext.model_validate(body.model_dump(exclude={"ttl_seconds"})),
        ttl=ttl,
        max_ttl=settings.session_max_ttl,
        now=datetime.now(UTC),
        record=recorder(services, request, db=db, by=officer),
    )
    await commit_before_answering(db)
    return issued


@router.delete("/{access_key_id}")
async def close_session(
    access_key_id: str,
    principal: PrincipalDep,
    db: DbDep,
    services: ServicesDep,
    request: Request,
) -> SessionClosed:
    now = datetime.now(UTC)
    await close_case_session(
        db=db,
        access_key_id=access_key_id,
        by=principal,
        now=now,
        record=recorder(services, request, db=db, by=principal),
    )
    await commit_before_answering(db)
    return SessionClosed(access_key_id=access_key_id, revoked_at=now)
