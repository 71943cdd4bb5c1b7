"""Admins enrol principals, issue and revoke their API keys, and disable them."""

from __future__ import annotations

from datetime import UTC, date, datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from gateway.admin import (
    ApiKeyRevoked,
    PrincipalDisabled,
    disable_principal,
    enrol_principal,
    issue_key,
    revoke_key,
)
from gateway.api.actions import commit_before_answering, recorder
from gateway.api.deps import Admin, DbDep, ServicesDep
from gateway.auth.principals import Principal, Role, list_principals

router = APIRouter(prefix="/facegate/v1/principals", tags=["principals"])


class PrincipalCreate(BaseModel):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    name: str = Field(min_length=1, max_length=200)
    agency: str = Field(min_length=1, max_length=200)
    roles: list[Role] = Field(min_length=1)
    # The last day the principal's training is valid (reviewers need it current).
    trained_until: date | None = None


class PrincipalDisable(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)


class IssuedApiKey(BaseModel):
    principal_id: str
    api_key: str  # shown once


@router.post("", status_code=201)
async def add_principal(
    body: PrincipalCreate, admin: Admin, db: DbDep, services: ServicesDep, request: Request
) -> Principal:
    principal = await enrol_principal(
        db=db,
        principal_id=body.id,
        name=body.name,
        agency=body.agency,
        roles=body.roles,
        now=datetime.now(UTC),
        record=recorder(services, request, db=db, by=admin),
        trained_until=body.trained_until,
    )
    await commit_before_answering(db)
    return principal


@router.get("")
async def get_principals(admin: Admin, db: DbDep) -> list[Principal]:
    return await list_principals(db)


@router.post("/{principal_id}/keys", status_code=201)
async def add_api_key(
    principal_id: str, admin: Admin, db: DbDep, services: ServicesDep, request: Request
) -> IssuedApiKey:
    api_key = await issue_key(
        db=db,
        principal_id=principal_id,
        now=datetime.now(UTC),
        record=recorder(services, request, db=db, by=admin),
    )
    await commit_before_answering(db)
    return IssuedApiKey(principal_id=principal_id, api_key=api_key)


@router.post("/{principal_id}/keys/{key_id}/revoke")
async def revoke_api_key(
    principal_id: str,
    key_id: str,
    admin: Admin,
    db: DbDep,
    services: ServicesDep,
    request: Request,
) -> ApiKeyRevoked:
    revoked = await revoke_key(
        db=db,
        principal_id=principal_id,
        key_id=key_id,
        now=datetime.now(UTC),
        record=recorder(services, request, db=db, by=admin),
    )
    await commit_before_answering(db)
    return revoked


@router.post("/{principal_id}/disable")
async def disable(
    principal_id: str,
    body: PrincipalDisable,
    admin: Admin,
    db: DbDep,
    services: ServicesDep,
    request: Request,
) -> PrincipalDisabled:
    disabled = await disable_principal(
        db=db,
        principal_id=principal_id,
        reason=body.reason,
        now=datetime.now(UTC),
        record=recorder(services, request, db=db, by=admin),
    )
    await commit_before_answering(db)
    return disabled
