"""Auditors' pages over the log: the explorer, one record with its inclusion proof, and
one case's timeline. Each read is recorded (``record_read``) before it is served.

The proof is checked in the auditor's browser (static/verify.js), not here: the page
hands over the record's leaf bytes, the proof, the signed checkpoint and the log's public
key, and the browser recomputes the hashes and checks the signature with WebCrypto.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Request
from pydantic import ValidationError
from sqlalchemy import select
from starlette.responses import JSONResponse, Response

from gateway.api.deps import ServicesDep
from gateway.audit.chain import format_time
from gateway.audit.models import AuditLogEntry
from gateway.audit.query import InvalidQuery, encode_cursor
from gateway.audit.records import AuditRecord, EventType
from gateway.audit.schemas import AuditEntryRead, AuditPage, AuditQuery
from gateway.audit.stores import map_database_errors
from gateway.console import nav
from gateway.console.auth import Viewer, page_for, record_read
from gateway.console.rendering import SECURITY_HEADERS, render

router = APIRouter(prefix="/console", include_in_schema=False)

AuditorDep = Annotated[Viewer, Depends(page_for(*nav.AUDIT.roles))]
CaseReaderDep = Annotated[Viewer, Depends(page_for(*nav.CASES.roles))]

PAGE_SIZE: Final = 25
MAX_PAGE: Final = 200
# The audit API's filters (gateway.audit.schemas.AuditQuery), in the form's order.
FILTERS: Final = tuple(AuditQuery.model_fields)
COLUMNS: Final = tuple(AuditRecord.model_fields)


def _filters_from(params: dict[str, str]) -> tuple[AuditQuery, str | None]:
    """The explorer form's filters as an AuditQuery, or an empty one and what is wrong.
    The form's datetime-local fields carry no zone: they are read as UTC, as labelled."""
    given = {k: v.strip() for k, v in params.items() if k in FILTERS and v.strip()}
    for name in ("time_from", "time_until"):
        if name in given and not given[name].endswith(("Z", "z")) and "+" not in given[name]:
            given[name] += "Z"
    try:
        return AuditQuery.model_validate(given), None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'filters'}: {error['msg']}"
            for error in exc.errors()
        )
        return AuditQuery(), problems


async def _page(
    services: Any, filters: AuditQuery, cursor: str | None, limit: int = PAGE_SIZE
) -> tuple[AuditPage | None, str | None]:
    try:
        page: AuditPage = await services.audit_records.query(filters, cursor=cursor, limit=limit)
    except InvalidQuery as exc:
        return None, str(exc)
    return page, None


@router.get("/audit")
async def explorer(
    request: Request,
    viewer: AuditorDep,
    services: ServicesDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = PAGE_SIZE,
) -> Response:
    params = dict(request.query_params)
    filters, problem = _filters_from(params)
    await record_read(
        services,
        request,
        viewer=viewer,
        action="audit.list",
        filters=filters.model_dump(mode="json", exclude_none=True),
        cursor=cursor,
    )
    page, query_problem = (None, None) if problem else await _page(services, filters, cursor, limit)
    kept = {k: v for k, v in params.items() if k in FILTERS and v}
    if limit != PAGE_SIZE:
        kept["limit"] = str(limit)
    return render(
        request,
        "audit.html",
        viewer=viewer,
        status_code=400 if problem or query_problem else 200,
        page=page,
        problem=problem or query_problem,
        params=kept,
        event_types=[e.value for e in EventType],
        next_query={**kept, "cursor": page.next_cursor} if page and page.next_cursor else None,
        first_query=kept if cursor else None,
    )


async def _entry(services: Any, seq: int) -> AuditEntryRead | None:
    page, _ = await _page(services, AuditQuery(), encode_cursor(seq - 1) if seq > 1 else None, 1)
    if page is None or not page.entries or page.entries[0].seq != seq:
        return None
    return page.entries[0]


def _field_value(name: str, entry: AuditEntryRead) -> Any:
    """A field as the leaf carries it (chain.canonical_bytes): the browser compares the
    two, so the table cannot show a field other than the one the proof covers."""
    if name == "time":
        return format_time(entry.time)
    return entry.model_dump(mode="json", include={name})[name]


@router.get("/audit/{seq}")
async def record_page(
    seq: int, request: Request, viewer: AuditorDep, services: ServicesDep
) -> Response:
    await record_read(services, request, viewer=viewer, action="audit.record", seq=seq)
    entry = await _entry(services, seq) if seq >= 1 else None
    if entry is None:
        return render(
            request, "error.html", viewer=viewer, status_code=404,
            message=f"The log holds no record {seq}.",
        )  # fmt: skip
    # Every field the leaf carries (it leaves out only nulls), so the browser can check
    # that the table shows all of them and nothing else.
    values = [(name, _field_value(name, entry)) for name in COLUMNS]
    fields = [(name, value) for name, value in values if value is not None]
    return render(
        request,
        "record.html",
        viewer=viewer,
        entry=entry,
        fields=[(name, value, json.dumps(value)) for name, value in fields],
    )


@router.get("/audit/{seq}/proof")
async def record_proof(
    seq: int, request: Request, viewer: AuditorDep, services: ServicesDep
) -> Response:
    """What the browser needs to check record ``seq`` itself: its leaf bytes, its
    inclusion proof in the latest signed checkpoint, that checkpoint, the public key."""
    await record_read(services, request, viewer=viewer, action="audit.inclusion_proof", seq=seq)
    latest = await services.audit_reader.latest_checkpoint()
    signer = services.audit.signer
    if latest is None or signer is None or not 1 <= seq <= latest.tree_size:
        return JSONResponse(
            {"error": f"no signed checkpoint covers record {seq} yet"},
            status_code=409,
            headers=SECURITY_HEADERS,
        )
    leaf = (await services.audit_reader.entries(seq, seq + 1)).entries[0].leaf
    proof = await services.audit_reader.inclusion_proof(seq, latest.tree_size)
    return JSONResponse(
        {
            "seq": seq,
            "leaf": leaf,
            "proof": proof.model_dump(mode="json"),
            "checkpoint": latest.note,
            "public_key": str(signer.verifier),
        },
        headers=SECURITY_HEADERS,
    )


@router.get("/cases")
async def cases(
    request: Request,
    viewer: CaseReaderDep,
    services: ServicesDep,
    case_number: Annotated[str | None, Query(max_length=100)] = None,
    cursor: str | None = None,
) -> Response:
    """One case's timeline: every record naming the case, oldest first."""
    case_number = (case_number or "").strip() or None
    await record_read(
        services,
        request,
        viewer=viewer,
        action="audit.case_timeline" if case_number else "audit.case_list",
        case_number=case_number,
        cursor=cursor,
    )
    page, problem = None, None
    known: list[str] = []
    if case_number:
        page, problem = await _page(services, AuditQuery(case_number=case_number), cursor, limit=50)
    else:
        known = await _case_numbers(services)
    return render(
        request,
        "cases.html",
        viewer=viewer,
        status_code=400 if problem else 200,
        case_number=case_number,
        page=page,
        problem=problem,
        known=known,
        summary=_summary,
    )


def _summary(entry: AuditEntryRead) -> str:
    """One line saying what a timeline entry was, from its fields."""
    detail = entry.detail
    parts = [entry.operation or str(detail.get("action") or "")]
    for key in ("verdict", "kind", "state", "lead_id", "authorisation_id"):
        if key in detail:
            parts.append(f"{key}: {detail[key]}")
    if entry.match_count is not None:
        parts.append(f"{entry.match_count} match(es)")
    return " · ".join(p for p in parts if p)


async def _case_numbers(services: Any, limit: int = 100) -> list[str]:
    statement = (
        select(AuditLogEntry.case_number)
        .where(AuditLogEntry.case_number.is_not(None))
        .distinct()
        .order_by(AuditLogEntry.case_number)
        .limit(limit)
    )
    with map_database_errors():
        async with services.sessions() as db:
            return [str(n) for n in (await db.scalars(statement)).all()]
