"""Admins register, list and revoke warrants and court orders."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from gateway.admin import register_warrant, withdraw_warrant
from gateway.api.actions import commit_before_answering, recorder
from gateway.api.deps import Admin, DbDep, ServicesDep
from gateway.context.warrants import WarrantCreate, WarrantRead, list_warrants

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
    warrant = await register_warrant(
        db=db,
        warrant=body,
        created_by=admin.id,
        now=datetime.now(UTC),
        record=recorder(services, request, db=db, by=admin),
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
    warrant = await withdraw_warrant(
        db=db,
        warrant_id=warrant_id,
        reason=body.reason,
        now=datetime.now(UTC),
        record=recorder(services, request, db=db, by=admin),
    )
    await commit_before_answering(db)
    return warrant
