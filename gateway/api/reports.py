"""Reports for auditors and admins: the templates, and a report made at the latest signed
checkpoint, as JSON or (``Accept: text/html``) one printable page. Making one is recorded in
the log before it is served; a refused attempt is recorded too."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict

from gateway.admin import Actor, action_record
from gateway.api.deps import PrincipalDep, ServicesDep
from gateway.audit.records import EventType
from gateway.auth.principals import Principal, Role
from gateway.errors import PermissionDenied
from gateway.reports.render import render
from gateway.reports.service import TemplateSummary, list_templates, make_report

router = APIRouter(prefix="/facegate/v1/reports", tags=["reports"])


class ReportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    template: str
    period: str
    audience: str = "public"


def _actor(principal: Principal, request: Request) -> Actor:
    return Actor.principal(
        principal, client_address=request.client.host if request.client else None
    )


async def report_reader(
    principal: PrincipalDep, services: ServicesDep, request: Request
) -> Principal:
    """Auditors and admins; anyone else is refused, and the refusal is on the log."""
    if principal.has_role(Role.AUDITOR) or principal.has_role(Role.ADMIN):
        return principal
    refused = action_record(
        EventType.REPORT,
        actor=_actor(principal, request),
        action="report.refused",
        detail={"route": request.url.path},
        request_id=request.state.request_id,
    ).model_copy(update={"decision": "deny", "reason_codes": ["not_an_auditor"]})
    await services.audit.append(refused)
    raise PermissionDenied("reports need the auditor or admin role")


ReportReader = Annotated[Principal, Depends(report_reader)]


@router.get("/templates")
async def templates(reader: ReportReader, services: ServicesDep) -> list[TemplateSummary]:
    return list_templates(policy_dir=services.settings.policy_dir)


@router.post("", response_model=None)
async def make(
    body: ReportRequest, reader: ReportReader, services: ServicesDep, request: Request
) -> JSONResponse | HTMLResponse:
    async def record(action: str, **detail: Any) -> None:
        await services.audit.append(
            action_record(
                EventType.REPORT,
                actor=_actor(reader, request),
                action=action,
                detail=detail,
                request_id=request.state.request_id,
            )
        )

    report = await make_report(
        template_id=body.template,
        period=body.period,
        audience=body.audience,
        policy_dir=services.settings.policy_dir,
        audit=services.audit,
        sessions=services.sessions,
        generated_by=reader.id,
        now=datetime.now(UTC),
        record=record,
    )
    if "text/html" in request.headers.get("accept", ""):
        return HTMLResponse(render(report, "html"))
    return JSONResponse(report.document())
