"""The management API's vendor inventory: auditors (and admins) list which systems staff
can reach, and on what attestations. Secrets are never listed, only where each comes from."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from gateway.api.deps import ServicesDep, record_read, require_role
from gateway.auth.principals import Principal, Role

router = APIRouter(prefix="/facegate/v1/vendors", tags=["vendors"])

AuditorOrAdmin = Annotated[Principal, Depends(require_role(Role.AUDITOR, Role.ADMIN))]


@router.get("")
async def list_vendors(
    reader: AuditorOrAdmin, services: ServicesDep, request: Request
) -> dict[str, Any]:
    await record_read(
        services,
        request,
        by=reader,
        action="vendors.list",
    )
    return {"vendors": [backend.public_view() for backend in services.inventory.backends]}
