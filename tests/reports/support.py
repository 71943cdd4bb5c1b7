"""Audit logs for report tests: records appended straight to a real log (as the pipeline and
the leads contract write them, /tmp/issues/LEAD-CONTRACT.md), reports made and exported."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gateway.admin import Actor, action_record
from gateway.audit.checkpoint import Signer
from gateway.audit.log import AuditLog
from gateway.audit.records import AuditRecord, EventType
from gateway.reports.document import Report
from gateway.reports.service import make_report

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "policies"


def at(month: int, day: int = 1, hour: int = 12) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


@dataclass
class Log:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    audit: AuditLog
    signer: Signer
    written: list[AuditRecord] = field(default_factory=list)

    async def add(self, records: Iterable[AuditRecord]) -> list[int]:
        seqs = []
        for record in records:
            seqs.append((await self.audit.append(record)).seq)
            self.written.append(record)
        return seqs

    async def report(
        self, template: str, period: str = "2026", audience: str = "oversight", **kw: Any
    ) -> Report:
        async def record(action: str, **detail: Any) -> None:
            await self.audit.append(
                action_record(EventType.REPORT, actor=Actor.cli(), action=action, detail=detail)
            )

        return await make_report(
            template_id=template,
            period=period,
            audience=audience,
            policy_dir=kw.get("policy_dir", POLICIES),
            audit=self.audit,
            sessions=self.sessions,
            generated_by="test",
            now=datetime.now(UTC),
            record=record,
        )


def search(
    *,
    when: datetime,
    officer: str = "officer-1",
    agency: str = "Metro PD",
    case: str | None = "2026-HOM-0001",
    offense: str = "homicide",
    legal_basis: str = "warrant",
    vendor: str = "rekognition",
    collection: str = "mugshots",
    allow: bool = True,
    reasons: tuple[str, ...] = (),
    matches: int = 1,
    probe: str | None = None,
) -> list[AuditRecord]:
    """A search's decision record and, if allowed, its outcome record."""
    request_id = uuid.uuid4().hex
    common: dict[str, Any] = {
        "time": when,
        "request_id": request_id,
        "agency": agency,
        "officer": officer,
        "vendor": vendor,
        "operation": "SearchFacesByImage",
        "operation_kind": "identify",
        "collection": collection,
        "purpose": "criminal_investigation",
        "case_number": case,
        "offense": offense,
        "legal_basis": legal_basis,
        "probe_digests": [probe or "sha256:" + uuid.uuid4().hex],
    }
    decision = AuditRecord(
        **common,
        event_type=EventType.DECISION,
        decision="allow" if allow else "deny",
        reason_codes=list(reasons),
    )
    if not allow:
        return [decision]
    outcome = AuditRecord(
        **common,
        event_type=EventType.OUTCOME,
        decision="allow",
        match_count=matches,
        top_similarity=99.0 if matches else None,
        detail={"leads": [], "negative_result": matches == 0},
    )
    return [decision, outcome]


def contract_record(
    event: EventType, *, when: datetime, detail: dict[str, Any], **fields: Any
) -> AuditRecord:
    """A record of the leads contract (lead, lead_review, lead_action, authorisation), as
    the leads service writes it (/tmp/issues/LEAD-CONTRACT.md)."""
    return AuditRecord(
        time=when, request_id=uuid.uuid4().hex, event_type=event, detail=detail, **fields
    )


def lead(
    search_records: list[AuditRecord], *, rank: int = 1, similarity: float = 99.0
) -> AuditRecord:
    """One candidate of an allowed search, as the contract's `lead` record."""
    outcome = search_records[-1]
    case_fields = outcome.model_dump(
        include={
            "agency",
            "officer",
            "vendor",
            "operation",
            "operation_kind",
            "collection",
            "purpose",
            "case_number",
            "offense",
            "legal_basis",
            "warrant_id",
            "probe_digests",
        }
    )
    return contract_record(
        EventType.LEAD,
        when=outcome.time,
        top_similarity=similarity,
        match_count=1,
        detail={
            "lead_id": uuid.uuid4().hex,
            "search_request_id": outcome.request_id,
            "rank": rank,
            "similarity": similarity,
            "candidate_digest": "sha256:" + uuid.uuid4().hex,
            "status": "pending",
        },
        **case_fields,
    )


def review(
    lead_record: AuditRecord,
    verdict: str,
    *,
    when: datetime,
    reviewer: str = "reviewer-1",
    allow: bool = True,
) -> AuditRecord:
    return contract_record(
        EventType.LEAD_REVIEW,
        when=when,
        officer=reviewer,
        agency=lead_record.agency,
        case_number=lead_record.case_number,
        vendor=lead_record.vendor,
        collection=lead_record.collection,
        offense=lead_record.offense,
        legal_basis=lead_record.legal_basis,
        decision="allow" if allow else "deny",
        reason_codes=[] if allow else ["reviewer_is_searcher"],
        detail={
            "lead_id": lead_record.detail["lead_id"],
            "verdict": verdict,
            "rationale": "compared by hand",
            "status_before": "pending",
            "status_after": "verified" if verdict == "confirmed" else "rejected",
        },
    )


def action(
    lead_record: AuditRecord, kind: str, *, when: datetime, allow: bool = True
) -> AuditRecord:
    return contract_record(
        EventType.LEAD_ACTION,
        when=when,
        officer=lead_record.officer,
        agency=lead_record.agency,
        case_number=lead_record.case_number,
        vendor=lead_record.vendor,
        collection=lead_record.collection,
        offense=lead_record.offense,
        legal_basis=lead_record.legal_basis,
        decision="allow" if allow else "deny",
        reason_codes=[] if allow else ["lead_not_verified"],
        detail={
            "lead_id": lead_record.detail["lead_id"],
            "kind": kind,
            "note": "",
            "lead_status": "verified",
        },
    )


def authorisation(
    state: str,
    *,
    when: datetime,
    officer: str = "officer-1",
    agency: str = "Metro PD",
    case: str = "2026-HOM-0001",
    basis: str = "exigent",
    authorisation_id: str | None = None,
) -> AuditRecord:
    return contract_record(
        EventType.AUTHORISATION,
        when=when,
        officer=officer,
        agency=agency,
        case_number=case,
        detail={
            "authorisation_id": authorisation_id or uuid.uuid4().hex,
            "state": state,
            "basis": basis,
            "deadline": "2026-12-31T00:00:00Z",
            "authority": None,
            "reference": None,
            "search_request_id": uuid.uuid4().hex,
            "voided_leads": [],
        },
    )
