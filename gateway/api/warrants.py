"""Admins register, list and revoke warrants and court orders."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from gateway.api.deps import Admin, DbDep, ServicesDep, record_change
from gateway.api.principals import commit_before_answering
from gateway.context.warrants import (
    WarrantCreate,
    WarrantRead,
    create_warrant,
    list_warrants,
    revoke_warrant,
)

router = APIRouter(prefix="/facegate/v1/warrants", tags=["warrants"])


class WarrantRevoke(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)


@router.post("", status_code=201)
async def add_warrant(
    body: WarrantCreate, admin: Admin, db: DbDep, services: ServicesDep, request: Request
) -> WarrantRead:
    # Bound to the registering admin's agency unless the document names another.
    if body.agency is None:
        body = body.model_copy(update={"agency": admin.agency})
    warrant = await create_warrant(db, warrant=body, created_by=admin.id, now=datetime.now(UTC))
    await record_change(
        services,
        request,
        db=db,
        by=admin,
        action="warrant.create",
        warrant=warrant.model_dump(mode="json", exclude={"subject_description"}),
    )
    await commit_before_answering(db)
    return warrant


@router.get("")
async def get_warrants(
    admin: Admin, db: DbDep, case_number: str | None = None
) -> list[WarrantRead]:
    return await list_warrants(db, case_number=case_number)


@router.post("/{warrant_id}/revoke")
async def revoke(
    warrant_id: str,
    body: WarrantRevoke,
    admin: Admin,
    db: DbDep,
    services: ServicesDep,
    request: Request,
) -> WarrantRead:
    warrant = await revoke_warrant(
        db, warrant_id=warrant_id, reason=body.reason, now=datetime.now(UTC)
    )
    await record_change(
        services,
        request,
        db=db,
        by=admin,
        action="warrant.revoke",
        warrant_id=warrant_id,
        reason=body.reason,
    )
    await commit_before_answering(db)
    return warrant
