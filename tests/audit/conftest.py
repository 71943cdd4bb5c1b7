"""Fixtures for the audit log: an engine on a migrated database and the log over it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta, timezone
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


def every_field_record(**overrides: Any) -> AuditRecord:
    """An outcome record that sets every field, with values whose stored form a careless
    conversion would change: a time in another zone with microseconds, floats at the edge
    of their digits, JSON with non-ASCII text, nested nulls and an empty object."""
    fields: dict[str, Any] = {
        "time": datetime(2026, 3, 1, 11, 30, 0, 654321, tzinfo=timezone(timedelta(hours=2))),
        "request_id": "req-full",
        "event_type": EventType.OUTCOME,
        "key_id": "AKIAFACEGATE0001",
        "client_address": "2001:db8::7",
        "collection": "mugshots-2026",
        "purpose": "investigation",
        "offense": "robbery",
        "legal_basis": "StPO § 98c",
        "warrant_id": "W-42",
        "reason_codes": ["warrant_valid", "within_limits"],
        "obligations": {"threshold_floor": 0.9, "max_results": 5, "strip": ["age"]},
        "policy_revision": "sha256:abc",
        "probe_digests": ["a" * 64, "b" * 64],
        "upstream_status": 200,
        "match_count": 3,
        "top_similarity": 0.9712345678901234,
        "latency_ms": 1e-7,
        "detail": {"note": "Zoë 👮", "nested": {"k": [1, 2.5, None, True, 1e20]}, "empty": {}},
    }
    fields.update(overrides)
    return make_record(**fields)


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
