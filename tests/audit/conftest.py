"""Fixtures for the audit log: an engine on a migrated database and the log over it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit.fsck import LogChecker
from gateway.audit.log import AuditLog
from gateway.audit.query import RecordQuery
from gateway.audit.reads import LogReader
from gateway.audit.records import AuditRecord, EventType
from gateway.db import session_factory

BASE_TIME = datetime(2026, 3, 1, 9, 30, 0, 123456, tzinfo=UTC)


def make_record(**overrides: Any) -> AuditRecord:
    """A plausible decision record; any field can be overridden."""
    fields: dict[str, Any] = {
        "time": BASE_TIME,
        "request_id": "req-0001",
        "event_type": EventType.DECISION,
        "agency": "metro-pd",
        "officer": "officer-17",
        "vendor": "rekognition",
        "operation": "SearchFacesByImage",
        "operation_kind": "identify",
        "case_number": "2026-000123",
        "decision": "allow",
    }
    fields.update(overrides)
    return AuditRecord(**fields)


def reader_of(log: AuditLog) -> LogReader:
    """Reads of the log ``log`` writes (checkpoints, proofs, entries)."""
    return LogReader(log.sessions)


def records_of(log: AuditLog) -> RecordQuery:
    """Record queries of the log ``log`` writes."""
    return RecordQuery(log.sessions)


def checker_of(log: AuditLog) -> LogChecker:
    """Whole-log checks and export of the log ``log`` writes."""
    return LogChecker(log.sessions)


@pytest.fixture
def record_factory() -> Callable[..., AuditRecord]:
    return make_record


@pytest.fixture
async def audit_log(engine: AsyncEngine) -> AsyncIterator[AuditLog]:
    log = AuditLog(session_factory(engine))
    try:
        yield log
    finally:
        await log.aclose()  # its own connection on PostgreSQL, which the engine does not own
