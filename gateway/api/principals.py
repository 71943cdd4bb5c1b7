"""Admins enrol principals, issue and revoke their API keys, and disable them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.api.deps import Admin, DbDep, ServicesDep, record_change
from gateway.auth.admin import ApiKeyRevoked, PrincipalDisabled, disable_principal, revoke_key
from gateway.auth.api_keys import issue_api_key, key_id_of
from gateway.auth.principals import Principal, Role, create_principal, list_principals

router = APIRouter(prefix="/facegate/v1/principals", tags=["principals"])


class PrincipalCreate(BaseModel):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    name: str = Field(min_length=1, max_length=200)
    agency: str = Field(min_length=1, max_length=200)
    roles: list[Role] = Field(min_length=1)


class PrincipalDisable(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)


class IssuedApiKey(BaseModel):
    principal_id: str
    api_key: str  # shown once


@router.post("", status_code=201)
async def add_principal(
    body: PrincipalCreate, admin: Admin, db: DbDep, services: ServicesDep, request: Request
) -> Principal:
    principal = await create_principal(
        db,
        principal_id=body.id,
        name=body.name,
        agency=body.agency,
        roles=body.roles,
        now=datetime.now(UTC),
    )
    await record_change(
        services,
        request,
        db=db,
        by=admin,
        action="principal.create",
        principal=principal.model_dump(mode="json"),
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
    api_key = await issue_api_key(db, principal_id=principal_id, now=datetime.now(UTC))
    await record_change(
        services,
        request,
        db=db,
        by=admin,
        action="api_key.issue",
        principal_id=principal_id,
        api_key_id=key_id_of(api_key),
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
    async def record(action: str, **detail: Any) -> None:
        await record_change(services, request, db=db, by=admin, action=action, **detail)

    revoked = await revoke_key(
        db=db, principal_id=principal_id, key_id=key_id, now=datetime.now(UTC), record=record
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
    async def record(action: str, **detail: Any) -> None:
        await record_change(services, request, db=db, by=admin, action=action, **detail)

    disabled = await disable_principal(
        db=db,
        principal_id=principal_id,
        reason=body.reason,
        now=datetime.now(UTC),
        record=record,
    )
    await commit_before_answering(db)
    return disabled


async def commit_before_answering(db: AsyncSession) -> None:
    # A dependency's exit runs after FastAPI has sent the answer, so without this the admin
    # is told a key is revoked while it still works (issue 11). A failed commit raises here,
    # and is the answer. The change and its audit record commit together, as before.
    await db.commit()
