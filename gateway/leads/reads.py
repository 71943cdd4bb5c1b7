"""What reviewers, officers and auditors read of leads: pending leads oldest first, one
lead as the log knows it, authorisations by state, and per-vendor outcome counts."""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy import literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from gateway import yaml_files
from gateway.db import UTCDateTime
from gateway.errors import MalformedRequest, NotFound
from gateway.leads.models import AuthorisationRow, LeadActionRow, LeadReviewRow, LeadRow

MAX_LIMIT = 500


class ReviewRead(BaseModel):
    reviewer: str
    verdict: str
    rationale: str
    created_at: datetime


class ActionRead(BaseModel):
    officer: str
    kind: str
    note: str
    created_at: datetime


class AuthorisationRead(BaseModel):
    id: str
    search_request_id: str
    agency: str
    officer: str
    case_number: str | None
    basis: str
    opened_at: datetime
    deadline: datetime
    state: str  # pending | overdue | granted | refused
    decided_by: str | None
    authority: str | None
    reference: str | None


class LeadRead(BaseModel):
    id: str
    status: str
    created_at: datetime
    search_request_id: str
    rank: int
    agency: str
    officer: str
    purpose: str | None
    case_number: str | None
    offense: str | None
    legal_basis: str | None
    warrant_id: str | None
    vendor: str
    operation: str
    collection: str | None
    candidate_id: str | None
    candidate_digest: str
    similarity: float
    probe_digests: list[str]
    authorisation: AuthorisationRead | None = None
    reviews: list[ReviewRead] = []
    actions: list[ActionRead] = []


class LeadPage(BaseModel):
    leads: list[LeadRead]
    next_cursor: str | None


def authorisation_read(row: AuthorisationRow, *, now: datetime) -> AuthorisationRead:
    overdue = row.state == "pending" and row.deadline <= now
    return AuthorisationRead(
        id=row.id,
        search_request_id=row.search_request_id,
        agency=row.agency,
        officer=row.officer,
        case_number=row.case_number,
        basis=row.basis,
        opened_at=row.opened_at,
        deadline=row.deadline,
        state="overdue" if overdue else row.state,
        decided_by=row.decided_by,
        authority=row.authority,
        reference=row.reference,
    )


async def list_leads(
    db: AsyncSession,
    *,
    agency: str | None,
    now: datetime,
    case_number: str | None = None,
    status: str | None = None,
    officer: str | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> LeadPage:
    """Leads oldest first (a reviewer works the queue from its head), of `agency` (None:
    every agency's, for auditors), a page at a time."""
    if not 1 <= limit <= MAX_LIMIT:
        raise MalformedRequest(f"limit must be 1..{MAX_LIMIT}")
    # A search's leads share its time: best first among them.
    order = (LeadRow.created_at, LeadRow.rank, LeadRow.id)
    query = select(LeadRow).order_by(*order).limit(limit + 1)
    if agency is not None:
        query = query.where(LeadRow.agency == agency)
    if case_number is not None:
        query = query.where(LeadRow.case_number == case_number)
    if status is not None:
        query = query.where(LeadRow.status == status)
    if officer is not None:
        query = query.where(LeadRow.officer == officer)
    if cursor is not None:
        after, rank, lead_id = _open_cursor(cursor)
        # Typed as the columns are: SQLite compares the stored UTC text.
        position = tuple_(literal(after, UTCDateTime()), literal(rank), literal(lead_id))
        query = query.where(tuple_(*order) > position)
    rows = list((await db.scalars(query)).all())
    page, more = rows[:limit], len(rows) > limit
    leads = [await _read(db, row, now=now) for row in page]
    return LeadPage(leads=leads, next_cursor=_cursor(page[-1]) if more else None)


async def get_lead(
    db: AsyncSession, lead_id: str, *, agency: str | None, now: datetime
) -> LeadRead:
    row = await db.get(LeadRow, lead_id)
    if row is None or (agency is not None and row.agency != agency):
        raise NotFound(f"no lead {lead_id!r}")
    return await _read(db, row, now=now)


async def list_authorisations(
    db: AsyncSession, *, agency: str | None, now: datetime, status: str | None = None
) -> list[AuthorisationRead]:
    """Authorisations by state, oldest deadline first; `overdue` is a pending one past it."""
    if status not in (None, "pending", "overdue", "granted", "refused"):
        raise MalformedRequest("status is one of pending, overdue, granted, refused")
    query = select(AuthorisationRow).order_by(AuthorisationRow.deadline, AuthorisationRow.id)
    if agency is not None:
        query = query.where(AuthorisationRow.agency == agency)
    if status in ("pending", "overdue"):
        query = query.where(AuthorisationRow.state == "pending")
        query = query.where(
            AuthorisationRow.deadline > now
            if status == "pending"
            else AuthorisationRow.deadline <= now
        )
    elif status is not None:
        query = query.where(AuthorisationRow.state == status)
    return [authorisation_read(row, now=now) for row in await db.scalars(query)]


class OutcomeCounts(BaseModel):
    vendor: str
    band: str  # "[80,90)", ..., "[99,100]", or "below"
    confirmed: int = 0  # verified
    rejected: int = 0
    unreviewed: int = 0  # pending or awaiting authorisation, no review yet
    in_review: int = 0  # reviewed, not final
    void: int = 0


def similarity_bands(policy_dir: Path) -> list[tuple[float, float]]:
    """The bands of policies/data/leads.yaml (`similarity_bands`): [from, to) each, the last
    including its upper bound."""
    leads_file = policy_dir / "data" / "leads.yaml"
    document = yaml_files.safe_load(leads_file.read_text(encoding="utf-8"))
    return [(float(low), float(high)) for low, high in document["similarity_bands"]]


def band_of(similarity: float, bands: Sequence[tuple[float, float]]) -> str:
    for index, (low, high) in enumerate(bands):
        last = index == len(bands) - 1
        if low <= similarity < high or (last and similarity == high):
            return f"[{low:g},{high:g}{']' if last else ')'}"
    return "below"


async def outcomes(
    db: AsyncSession, *, bands: Sequence[tuple[float, float]]
) -> list[OutcomeCounts]:
    """Per vendor and similarity band, how many leads were confirmed, rejected, left
    unreviewed: the signal of a vendor's false leads."""
    reviewed = set((await db.scalars(select(LeadReviewRow.lead_id).distinct())).all())
    counts: dict[tuple[str, str], Counter[str]] = {}
    rows = await db.execute(select(LeadRow.id, LeadRow.vendor, LeadRow.similarity, LeadRow.status))
    for lead_id, vendor, similarity, status in rows:
        bucket = counts.setdefault((vendor, band_of(similarity, bands)), Counter())
        if status == "verified":
            bucket["confirmed"] += 1
        elif status in ("rejected", "void"):
            bucket[status] += 1
        else:
            bucket["in_review" if lead_id in reviewed else "unreviewed"] += 1
    return [
        OutcomeCounts(vendor=vendor, band=band, **dict(counter))
        for (vendor, band), counter in sorted(counts.items())
    ]


async def _read(db: AsyncSession, row: LeadRow, *, now: datetime) -> LeadRead:
    reviews = await db.scalars(
        select(LeadReviewRow).where(LeadReviewRow.lead_id == row.id).order_by(LeadReviewRow.id)
    )
    actions = await db.scalars(
        select(LeadActionRow).where(LeadActionRow.lead_id == row.id).order_by(LeadActionRow.id)
    )
    authorisation = None
    if row.authorisation_id is not None:
        found = await db.get(AuthorisationRow, row.authorisation_id)
        authorisation = authorisation_read(found, now=now) if found is not None else None
    fields: dict[str, Any] = {
        name: getattr(row, name) for name in LeadRead.model_fields if hasattr(row, name)
    }
    return LeadRead(
        **(fields | {"authorisation": authorisation}),
        reviews=[ReviewRead.model_validate(r, from_attributes=True) for r in reviews],
        actions=[ActionRead.model_validate(a, from_attributes=True) for a in actions],
    )


def _cursor(row: LeadRow) -> str:
    text = f"{row.created_at.astimezone(UTC).isoformat()}|{row.rank}|{row.id}"
    return base64.urlsafe_b64encode(text.encode()).decode()


def _open_cursor(cursor: str) -> tuple[datetime, int, str]:
    try:
        when, rank, lead_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 2)
        return datetime.fromisoformat(when), int(rank), lead_id
    except ValueError as exc:
        raise MalformedRequest("the cursor is not one this API gave") from exc
