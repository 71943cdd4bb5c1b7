"""The dashboard's figures, counted from the audit records alone (as reports must be), so
each figure can be recomputed from an export. ``tally`` is pure; ``dashboard_figures``
reads the columns it needs, a batch at a time, in seq order.

Lead figures follow the shared contract for ``lead`` and ``lead_review`` records (issue
13); until those records exist they are simply zero.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.audit.models import AuditLogEntry
from gateway.audit.stores import map_database_errors

BATCH: Final = 5000
IDENTIFY: Final = "identify"
# Event types of the shared contract (LEAD-CONTRACT.md), as strings: they need not be in
# EventType on this branch for the dashboard to count them.
LEAD: Final = "lead"
LEAD_REVIEW: Final = "lead_review"
AUTHORISATION: Final = "authorisation"
TOP_REASONS: Final = 12
# Refusals for patterns that amount to surveillance: the reason codes of the
# "mass-surveillance patterns" section of policies/facegate.rego (a test keeps this set
# equal to that section's codes).
MISUSE_CODES: Final = frozenset(
    {
        "burst",
        "crowd_scan",
        "probe_across_cases",
        "protected_place",
        "rate_limit_exceeded",
        "sweep_across_cases",
        "watchlist_building",
    }
)


@dataclass(frozen=True, slots=True)
class Row:
    """The columns of one record the dashboard counts."""

    seq: int
    time: datetime
    event_type: str
    decision: str | None
    reason_codes: list[str]
    legal_basis: str | None
    agency: str | None
    officer: str | None
    vendor: str | None
    operation_kind: str | None
    detail: dict[str, Any]


@dataclass
class Figures:
    records: int = 0
    searches: int = 0  # identifications judged (decision records)
    searches_refused: int = 0
    searches_by_week: dict[str, Counter[str]] = field(default_factory=dict)  # week -> allow/deny
    refusals_by_reason: Counter[str] = field(default_factory=Counter)
    identifications_by_basis: Counter[str] = field(default_factory=Counter)
    searches_by_agency: Counter[str] = field(default_factory=Counter)
    searches_by_vendor: Counter[str] = field(default_factory=Counter)
    leads: int = 0
    leads_by_outcome: Counter[str] = field(default_factory=Counter)
    authorisations_by_state: Counter[str] = field(default_factory=Counter)
    misuse_by_code: Counter[str] = field(default_factory=Counter)
    misuse_by_officer: Counter[str] = field(default_factory=Counter)

    def charts(self) -> dict[str, Any]:
        """The chart data the dashboard's script draws, as plain JSON."""
        weeks = sorted(self.searches_by_week)
        reasons = self.refusals_by_reason.most_common(TOP_REASONS)
        return {
            "searches_by_week": {
                "labels": weeks,
                "series": {
                    "allowed": [self.searches_by_week[w]["allow"] for w in weeks],
                    "refused": [self.searches_by_week[w]["deny"] for w in weeks],
                },
            },
            "refusals_by_reason": _bars(reasons),
            "identifications_by_basis": _bars(self.identifications_by_basis.most_common()),
            "leads_by_outcome": _bars(self.leads_by_outcome.most_common()),
            "searches_by_agency": _bars(self.searches_by_agency.most_common()),
            "searches_by_vendor": _bars(self.searches_by_vendor.most_common()),
        }


def _bars(pairs: list[tuple[str, int]]) -> dict[str, Any]:
    return {"labels": [p[0] for p in pairs], "series": {"count": [p[1] for p in pairs]}}


def week_of(time: datetime) -> str:
    year, week, _ = time.isocalendar()
    return f"{year}-W{week:02d}"


def tally(rows: Iterable[Row]) -> Figures:
    """Count ``rows``: every record once, whatever order the batches come in."""
    figures = Figures()
    latest_state: dict[str, str] = {}
    for row in rows:
        figures.records += 1
        if row.decision == "deny":
            figures.refusals_by_reason.update(row.reason_codes or ["(no reason given)"])
            misuse = MISUSE_CODES.intersection(row.reason_codes)
            if misuse:
                figures.misuse_by_code.update(misuse)
                figures.misuse_by_officer[f"{row.officer} ({row.agency})"] += 1
        if row.event_type == "decision" and row.operation_kind == IDENTIFY:
            figures.searches += 1
            decision = "allow" if row.decision == "allow" else "deny"
            figures.searches_by_week.setdefault(week_of(row.time), Counter())[decision] += 1
            figures.searches_by_agency[row.agency or "(none)"] += 1
            figures.searches_by_vendor[row.vendor or "(none)"] += 1
            if decision == "allow":
                figures.identifications_by_basis[row.legal_basis or "(none)"] += 1
            else:
                figures.searches_refused += 1
        elif row.event_type == LEAD:
            figures.leads += 1
        elif row.event_type == LEAD_REVIEW and row.decision == "allow":
            figures.leads_by_outcome[str(row.detail.get("verdict", "(unstated)"))] += 1
        elif row.event_type == AUTHORISATION:
            ident = str(row.detail.get("authorisation_id", row.seq))
            latest_state[ident] = str(row.detail.get("state", "(unstated)"))
    figures.leads_by_outcome["not yet reviewed"] = max(
        0, figures.leads - sum(figures.leads_by_outcome.values())
    )
    if not figures.leads_by_outcome["not yet reviewed"]:
        del figures.leads_by_outcome["not yet reviewed"]
    figures.authorisations_by_state.update(latest_state.values())
    return figures


async def dashboard_figures(sessions: async_sessionmaker[AsyncSession]) -> Figures:
    """Figures over the whole log. Raises AuditUnavailable if the database fails."""
    columns = (
        AuditLogEntry.seq,
        AuditLogEntry.time,
        AuditLogEntry.event_type,
        AuditLogEntry.decision,
        AuditLogEntry.reason_codes,
        AuditLogEntry.legal_basis,
        AuditLogEntry.agency,
        AuditLogEntry.officer,
        AuditLogEntry.vendor,
        AuditLogEntry.operation_kind,
        AuditLogEntry.detail,
    )
    rows: list[Row] = []
    last = 0
    with map_database_errors():
        async with sessions() as session:
            while True:
                batch = (
                    await session.execute(
                        select(*columns)
                        .where(AuditLogEntry.seq > last)
                        .order_by(AuditLogEntry.seq)
                        .limit(BATCH)
                    )
                ).all()
                rows.extend(Row(*values) for values in batch)
                if len(batch) < BATCH:
                    break
                last = batch[-1].seq
    return tally(rows)
