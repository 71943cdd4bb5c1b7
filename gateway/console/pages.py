"""The dashboard, vendors, warrants and policy pages. A page that shows audit data records
the read before it is served (``record_read``); the role each page admits is declared once,
in nav.py."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import select
from starlette.responses import Response

from gateway.api.deps import ServicesDep
from gateway.audit.checkpoint import Checkpoint, CheckpointError
from gateway.audit.models import AuditLogEntry
from gateway.audit.stores import map_database_errors
from gateway.console import lead_pages, nav
from gateway.console.auth import Viewer, page_for, record_read
from gateway.console.rendering import render
from gateway.console.stats import dashboard_figures
from gateway.context.warrants import WarrantRead, list_warrants
from gateway.db import map_database_errors as map_storage_errors
from gateway.leads import reads
from gateway.policy.cases import CASES_DIR, CaseResult, load_cases, run_cases
from gateway.services import Services

router = APIRouter(prefix="/console", include_in_schema=False)

DashboardDep = Annotated[Viewer, Depends(page_for(*nav.DASHBOARD.roles))]
VendorsDep = Annotated[Viewer, Depends(page_for(*nav.VENDORS.roles))]
WarrantsDep = Annotated[Viewer, Depends(page_for(*nav.WARRANTS.roles))]
PolicyDep = Annotated[Viewer, Depends(page_for(*nav.POLICY.roles))]

TABLE_PAGE: Final = 25


@dataclass(frozen=True, slots=True)
class CheckpointStatus:
    tree_size: int | None
    created_at: datetime | None
    verified: bool
    message: str
    note: str | None
    public_key: str | None


async def checkpoint_status(services: Services) -> CheckpointStatus:
    """The latest signed checkpoint and whether its signature verifies against the log's
    key and it is for this log. (Its root is checked against entries by the auditor's
    browser on each record page, and by `facegate audit verify`.)"""
    latest = await services.audit_reader.latest_checkpoint()
    signer = services.audit.signer
    if latest is None or signer is None:
        return CheckpointStatus(None, None, False, "no signed checkpoint yet", None, None)
    try:
        opened = Checkpoint.open(latest.note, signer.verifier)
    except CheckpointError as exc:
        return CheckpointStatus(
            latest.tree_size, latest.created_at, False, str(exc), latest.note, None
        )
    ok = opened.size == latest.tree_size and opened.size <= await services.audit_reader.tree_size()
    message = "signature verifies" if ok else "the signed size does not match the log"
    return CheckpointStatus(
        opened.size, latest.created_at, ok, message, latest.note, str(signer.verifier)
    )


@router.get("/dashboard")
async def dashboard(request: Request, viewer: DashboardDep, services: ServicesDep) -> Response:
    await record_read(services, request, viewer=viewer, action="console.dashboard")
    # Clocks that ran out are put on record first, so the overdue count is the log's.
    await lead_pages.authorisations(services, viewer)
    figures = await dashboard_figures(services.sessions)
    now = datetime.now(UTC)
    return render(
        request,
        "dashboard.html",
        viewer=viewer,
        figures=figures,
        charts=figures.charts(),
        checkpoint=await checkpoint_status(services),
        quarter=f"{now.year}-Q{(now.month - 1) // 3 + 1}",
    )


def _age_days(day: Any, today: datetime) -> int:
    return int((today.date() - day).days)


@router.get("/vendors")
async def vendors(request: Request, viewer: VendorsDep, services: ServicesDep) -> Response:
    await record_read(services, request, viewer=viewer, action="vendors.list")
    now = datetime.now(UTC)
    backends = [
        {
            "view": backend.public_view(),
            "attestations": [
                (kind, a, _age_days(a.date, now)) for kind, a in backend.attestations.items()
            ],
        }
        for backend in services.inventory.backends
    ]
    return render(
        request,
        "vendors.html",
        viewer=viewer,
        backends=backends,
        outcomes=await _lead_outcomes(services),
    )


async def _lead_outcomes(services: Services) -> list[reads.OutcomeCounts]:
    """Per vendor and similarity band, the leads' outcomes (as GET /leads/outcomes)."""
    bands = reads.similarity_bands(services.settings.policy_dir)
    with map_storage_errors("the database failed: the lead outcomes could not be read"):
        async with services.sessions() as db:
            return await reads.outcomes(db, bands=bands)


def warrant_status(warrant: WarrantRead, now: datetime) -> str:
    if warrant.revoked_at is not None:
        return "revoked"
    if now < warrant.valid_from:
        return "not yet valid"
    if now >= warrant.valid_until:
        return "expired"
    return "valid"


@router.get("/warrants")
async def warrants(
    request: Request,
    viewer: WarrantsDep,
    services: ServicesDep,
    page: Annotated[int, Query(ge=1)] = 1,
) -> Response:
    await record_read(services, request, viewer=viewer, action="authorisations.list")
    now = datetime.now(UTC)
    with map_storage_errors("the database failed: the warrants could not be read"):
        async with services.sessions() as db:
            every = await list_warrants(db)
    shown = every[(page - 1) * TABLE_PAGE : page * TABLE_PAGE]
    return render(
        request,
        "warrants.html",
        viewer=viewer,
        warrants=[(w, warrant_status(w, now)) for w in shown],
        page=page,
        pages=_pages(len(every)),
        authorisations=await lead_pages.authorisations(services, viewer),
        decided=request.query_params.get("decided"),
        state=request.query_params.get("state"),
    )


@router.get("/policy")
async def policy(
    request: Request,
    viewer: PolicyDep,
    services: ServicesDep,
    page: Annotated[int, Query(ge=1)] = 1,
) -> Response:
    await record_read(services, request, viewer=viewer, action="policy.show")
    revision = services.policy.revision
    statement = (
        select(AuditLogEntry.time, AuditLogEntry.seq)
        .where(
            AuditLogEntry.event_type == "policy",
            AuditLogEntry.policy_revision == revision,
            AuditLogEntry.decision == "allow",
        )
        .order_by(AuditLogEntry.seq.desc())
        .limit(1)
    )
    with map_database_errors():
        async with services.sessions() as db:
            activated = (await db.execute(statement)).first()
    results = await _case_results(services)
    return render(
        request,
        "policy.html",
        viewer=viewer,
        revision=revision,
        engine=services.policy.engine_name,
        activated=activated,
        total=len(results),
        results=results[(page - 1) * TABLE_PAGE : page * TABLE_PAGE],
        failed=sum(1 for r in results if not r.passed),
        page=page,
        pages=_pages(len(results)),
    )


# The last results, keyed by what decides them: the revision, the engine and the cases'
# files. Running every case costs hundreds of evaluations (seconds on a busy machine), and
# the same inputs give the same decisions; the page reruns them only when one of those
# changes, so an admin paging through the table does not re-run the policy each time.
_case_results_cache: dict[tuple[str, str, str], list[CaseResult]] = {}


async def _case_results(services: Services) -> list[CaseResult]:
    cases_dir = services.settings.policy_dir / CASES_DIR
    files = await asyncio.to_thread(
        lambda: hashlib.sha256(
            b"".join(p.read_bytes() for p in sorted(cases_dir.glob("*.yaml")))
        ).hexdigest()
    )
    key = (services.policy.revision, services.policy.engine_name, files)
    cached = _case_results_cache.get(key)
    if cached is not None:
        return cached
    cases = await asyncio.to_thread(load_cases, cases_dir)
    # The decision cases run on the engine serving now: what this page shows is what
    # the gateway decides, not what a copy of the policy would.
    results = await run_cases(services.policy.decide, cases)
    results.sort(key=lambda r: r.passed)  # failures first: they are what an admin acts on
    _case_results_cache.clear()  # one revision's results at a time
    _case_results_cache[key] = results
    return results


def _pages(count: int) -> int:
    return max(1, -(-count // TABLE_PAGE))
