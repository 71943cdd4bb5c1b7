"""A case as the log knows it, for auditors: its disclosure packet (a zip) and its timeline.
Both are audit reads, recorded before they are served (the packet's record is inside it)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from gateway.admin import Actor, action_record
from gateway.api.deps import Auditor, ServicesDep, record_read
from gateway.audit.disclosure import (
    MAX_TIMELINE_PAGE,
    ReadRecord,
    TimelinePage,
    build_packet,
    case_timeline,
    packet_zip,
)
from gateway.audit.records import AuditRecord, EventType
from gateway.services import Services

router = APIRouter(prefix="/facegate/v1/cases", tags=["cases"])


@router.get("/{case_number}/disclosure", response_class=Response)
async def disclosure(
    case_number: str, auditor: Auditor, services: ServicesDep, request: Request
) -> Response:
    """The case's disclosure packet as a zip (packet.json, packet.html, checkpoint,
    log.pub); verify it with `facegate audit verify-packet`."""

    def read_record(action: str, detail: Mapping[str, Any]) -> AuditRecord:
        actor = Actor.principal(
            auditor, client_address=request.client.host if request.client else None
        )
        return action_record(
            EventType.AUDIT_READ,
            actor=actor,
            action=action,
            detail=detail,
            request_id=request.state.request_id,
        )

    return await disclosure_download(services, case_number, read_record)


@router.get("/{case_number}/timeline")
async def timeline(
    case_number: str,
    auditor: Auditor,
    services: ServicesDep,
    request: Request,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_TIMELINE_PAGE)] = 100,
) -> TimelinePage:
    """The case's entries in time order, a page at a time (``next_cursor``)."""
    await record_read(
        services,
        request,
        by=auditor,
        action="case.timeline",
        case_number=case_number,
        cursor=cursor,
    )
    return await case_timeline(
        sessions=services.sessions, case_number=case_number, cursor=cursor, limit=limit
    )


async def disclosure_download(
    services: Services,
    case_number: str,
    read_record: ReadRecord,
) -> Response:
    """Build a case's disclosure packet (recorded by ``read_record``) and answer it as a
    zip download: the API's route and the console's page both answer with this."""
    packet = await build_packet(
        audit=services.audit,
        sessions=services.sessions,
        case_number=case_number,
        read_record=read_record,
        now=datetime.now(UTC),
    )
    return Response(
        packet_zip(packet),
        media_type="application/zip",
        headers={
            "content-disposition": f'attachment; filename="disclosure-{packet.packet_id}.zip"',
            "cache-control": "no-store",
        },
    )
