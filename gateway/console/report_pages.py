"""Reports (auditors, admins: make one for a period and audience, preview it, download it
as JSON, CSV or HTML) and a case's disclosure packet (auditors): the same services as the
API (gateway/reports/service.py, gateway/audit/disclosure.py), so making a report and
reading a packet are recorded in the log exactly as the API records them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from gateway.admin import Actor, action_record
from gateway.api.cases import disclosure_download
from gateway.api.deps import ServicesDep
from gateway.audit.records import AuditRecord, EventType
from gateway.console import nav
from gateway.console.auth import CheckedForm, Viewer, page_for
from gateway.console.rendering import render
from gateway.errors import MalformedRequest
from gateway.reports.render import MEDIA_TYPES
from gateway.reports.render import render as render_report
from gateway.reports.service import list_templates, make_report

router = APIRouter(prefix="/console", include_in_schema=False)

ReportsDep = Annotated[Viewer, Depends(page_for(*nav.REPORTS.roles))]
CasesDep = Annotated[Viewer, Depends(page_for(*nav.CASES.roles))]

FORMATS: Final = ("preview", "html", "json", "csv")
# A report's page is self-contained (inline styles, inline SVG charts) and runs no script:
# previewed from the console, it is allowed exactly that and nothing else.
PREVIEW_CSP: Final = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


def _actor(viewer: Viewer, request: Request) -> Actor:
    return Actor(
        officer=viewer.principal.id,
        agency=viewer.principal.agency,
        key_id=viewer.principal.key_id,
        client_address=request.client.host if request.client else None,
        via="console",
    )


def _filename(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(parts))


@router.get("/reports")
async def reports(request: Request, viewer: ReportsDep, services: ServicesDep) -> Response:
    return render(
        request,
        "reports.html",
        viewer=viewer,
        templates=list_templates(policy_dir=services.settings.policy_dir),
        formats=FORMATS,
        default_period=str(datetime.now(UTC).year),
    )


@router.post("/reports")
async def make(
    request: Request, viewer: ReportsDep, fields: CheckedForm, services: ServicesDep
) -> Response:
    fmt = fields.get("format", "preview")
    if fmt not in FORMATS:
        raise MalformedRequest(f"format is one of {', '.join(FORMATS)}")
    template, period = fields.get("template", ""), fields.get("period", "").strip()
    audience = fields.get("audience", "public")

    async def record(action: str, **detail: Any) -> None:
        await services.audit.append(
            action_record(
                EventType.REPORT,
                actor=_actor(viewer, request),
                action=action,
                detail=detail,
                request_id=request.state.request_id,
            )
        )

    report = await make_report(
        template_id=template,
        period=period,
        audience=audience,
        policy_dir=services.settings.policy_dir,
        audit=services.audit,
        sessions=services.sessions,
        generated_by=viewer.principal.id,
        now=datetime.now(UTC),
        record=record,
    )
    if fmt == "preview":
        return Response(
            render_report(report, "html"),
            media_type=MEDIA_TYPES["html"],
            headers={"content-security-policy": PREVIEW_CSP, "cache-control": "no-store"},
        )
    name = _filename("report", template, period, audience) + f".{fmt}"
    return Response(
        render_report(report, "html" if fmt == "html" else "json" if fmt == "json" else "csv"),
        media_type=MEDIA_TYPES[fmt],
        headers={
            "content-disposition": f'attachment; filename="{name}"',
            "content-security-policy": PREVIEW_CSP,
            "cache-control": "no-store",
        },
    )


@router.get("/cases/{case_number}/disclosure")
async def disclosure(
    case_number: str, request: Request, viewer: CasesDep, services: ServicesDep
) -> Response:
    """The case's disclosure packet, the zip GET /facegate/v1/cases/{case}/disclosure
    gives; building it records the auditor's read (the record is inside the packet)."""

    def read_record(action: str, detail: Mapping[str, Any]) -> AuditRecord:
        return action_record(
            EventType.AUDIT_READ,
            actor=_actor(viewer, request),
            action=action,
            detail=detail,
            request_id=request.state.request_id,
        )

    return await disclosure_download(services, case_number, read_record)
