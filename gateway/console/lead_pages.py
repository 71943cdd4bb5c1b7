"""The review queue (reviewers) and recording an authority's decision on an after-the-fact
authorisation (admins): forms that call the same service functions as the leads API
(gateway/leads/service.py), so the same policy decides and the same records are written.

What a reviewer may not review (their own search, a lead they reviewed, another agency's,
training lapsed) is not offered: the queue asks the policy (service.reviewable) rather than
repeating its rules, and a verdict posted anyway is judged, and recorded, by review_lead.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Final
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import RedirectResponse, Response

from gateway.admin import Actor
from gateway.api.deps import ServicesDep
from gateway.audit.records import AuditRecord
from gateway.auth.principals import Role
from gateway.console import nav
from gateway.console.auth import CheckedForm, Viewer, page_for, record_read
from gateway.console.rendering import render
from gateway.db import map_database_errors
from gateway.errors import MalformedRequest
from gateway.leads import reads, service
from gateway.leads.service import LeadRecorder
from gateway.services import Services

router = APIRouter(prefix="/console", include_in_schema=False)

ReviewerDep = Annotated[Viewer, Depends(page_for(*nav.REVIEW.roles))]
AdminDep = Annotated[Viewer, Depends(page_for(*nav.WARRANTS.roles))]

VERDICTS: Final = ("confirmed", "rejected", "inconclusive")
QUEUE_PAGE: Final = 50
MAX_TEXT: Final = 4000
STORAGE_FAILED: Final = "the database failed: the leads could not be read or written"


def _actor(viewer: Viewer, request: Request) -> Actor:
    return Actor(
        officer=viewer.principal.id,
        agency=viewer.principal.agency,
        key_id=viewer.principal.key_id,
        client_address=request.client.host if request.client else None,
        via="console",
    )


def _recorder(services: Services, db: AsyncSession) -> LeadRecorder:
    async def record(entry: AuditRecord) -> None:
        await services.audit.append(entry, db=db)  # commits with the change it records

    return record


def _scope(viewer: Viewer) -> str | None:
    """As the API scopes leads: an auditor sees every agency's, anyone else their own's."""
    return None if viewer.principal.has_role(Role.AUDITOR) else viewer.principal.agency


def _text(fields: dict[str, str], name: str) -> str:
    value = fields.get(name, "").strip()
    if not value or len(value) > MAX_TEXT:
        raise MalformedRequest(f"{name} is required (at most {MAX_TEXT} characters)")
    return value


@router.get("/review")
async def review_queue(
    request: Request,
    viewer: ReviewerDep,
    services: ServicesDep,
    cursor: str | None = None,
) -> Response:
    await record_read(services, request, viewer=viewer, action="leads.queue")
    now = datetime.now(UTC)
    with map_database_errors(STORAGE_FAILED):
        async with services.sessions() as db:
            page = await reads.list_leads(
                db,
                agency=_scope(viewer),
                now=now,
                status="pending",
                cursor=cursor,
                limit=QUEUE_PAGE,
            )
            allowed = await service.reviewable(
                db=db,
                decide=services.policy.decide,
                lead_ids=[lead.id for lead in page.leads],
                reviewer=viewer.principal.id,
                now=now,
            )
    offered = [lead for lead in page.leads if allowed.get(lead.id) and allowed[lead.id].allowed]
    return render(
        request,
        "review.html",
        viewer=viewer,
        leads=offered,
        withheld=len(page.leads) - len(offered),
        next_cursor=page.next_cursor,
        verdicts=VERDICTS,
        done=request.query_params.get("lead"),
        outcome=request.query_params.get("outcome"),
    )


@router.post("/review/{lead_id}")
async def review(
    lead_id: str,
    request: Request,
    viewer: ReviewerDep,
    fields: CheckedForm,
    services: ServicesDep,
) -> Response:
    verdict = fields.get("verdict", "")
    if verdict not in VERDICTS:
        raise MalformedRequest(f"verdict is one of {', '.join(VERDICTS)}")
    rationale = _text(fields, "rationale")
    with map_database_errors(STORAGE_FAILED):
        async with services.sessions() as db:
            result = await service.review_lead(
                db=db,
                decide=services.policy.decide,
                lead_id=lead_id,
                actor=_actor(viewer, request),
                verdict=verdict,
                rationale=rationale,
                now=datetime.now(UTC),
                record=_recorder(services, db),
            )
            await db.commit()  # the verdict, or its refusal, is on record before the answer
    outcome = result.status if result.allowed else "refused: " + ", ".join(result.reasons)
    query = urlencode({"lead": lead_id, "outcome": outcome})
    return RedirectResponse(f"/console/review?{query}", status_code=303)


async def authorisations(services: Services, viewer: Viewer) -> list[reads.AuthorisationRead]:
    """Every authorisation the viewer may see, oldest deadline first; clocks that ran out
    are put on record (as the API's list does) before anyone is shown them as overdue."""
    now = datetime.now(UTC)
    with map_database_errors(STORAGE_FAILED):
        async with services.sessions() as db:
            await service.record_overdue(db=db, now=now, record=_recorder(services, db))
            listed = await reads.list_authorisations(db, agency=_scope(viewer), now=now)
            await db.commit()
    return listed


@router.post("/warrants/authorisations/{authorisation_id}/decision")
async def decide_authorisation(
    authorisation_id: str,
    request: Request,
    viewer: AdminDep,
    fields: CheckedForm,
    services: ServicesDep,
) -> Response:
    decision = fields.get("decision", "")
    if decision not in ("granted", "refused"):
        raise MalformedRequest("decision is granted or refused")
    authority, reference = _text(fields, "authority"), _text(fields, "reference")
    with map_database_errors(STORAGE_FAILED):
        async with services.sessions() as db:
            decided = await service.decide_authorisation(
                db=db,
                authorisation_id=authorisation_id,
                granted=decision == "granted",
                authority=authority,
                reference=reference,
                actor=_actor(viewer, request),
                now=datetime.now(UTC),
                record=_recorder(services, db),
            )
            await db.commit()
    query = urlencode({"decided": decided.authorisation_id, "state": decided.state})
    return RedirectResponse(f"/console/warrants?{query}#authorisations", status_code=303)
