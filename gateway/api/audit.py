"""Auditors list and verify the audit log. Every read is itself recorded."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from gateway.api.deps import Auditor, ServicesDep, record_action
from gateway.audit.records import EventType
from gateway.audit.schemas import AuditPage, AuditQuery, VerifyReport

router = APIRouter(prefix="/facegate/v1/audit", tags=["audit"])


@router.get("/records")
async def list_records(
    filters: Annotated[AuditQuery, Query()],
    auditor: Auditor,
    services: ServicesDep,
    request: Request,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    # Recorded before the read is served: an auditor's look at the log is on the log.
    await record_action(
        services,
        request,
        db=None,
        by=auditor,
        event_type=EventType.AUDIT_READ,
        action="audit.list",
        filters=filters.model_dump(mode="json", exclude_none=True),
        cursor=cursor,
    )
    return await services.audit.query(filters, cursor=cursor, limit=limit)


@router.get("/verify")
async def verify(auditor: Auditor, services: ServicesDep, request: Request) -> VerifyReport:
    await record_action(
        services,
        request,
        db=None,
        by=auditor,
        event_type=EventType.AUDIT_READ,
        action="audit.verify",
    )
    return await services.audit.verify()
