"""What an audit record says. The fields follow EU AI Act Art. 12(3), FBI CJIS 5.4.1.1 and
the Law Enforcement Directive Art. 25: when, who, what, on which reference database, why,
under which authority, what was decided and what came back. Images appear only as digests.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class EventType(StrEnum):
    DECISION = "decision"  # the policy's answer, committed before anything is forwarded
    OUTCOME = "outcome"  # what the vendor answered, after filtering
    REJECTED = "rejected"  # a request refused before a decision: malformed, too large, unknown op
    AUTH_FAILURE = "auth_failure"
    ADMIN_ACTION = "admin_action"  # principals, sessions, warrants changed
    AUDIT_READ = "audit_read"  # an auditor read or exported the log
    POLICY = "policy"  # a policy revision activated, or refused (gateway/policy/revisions.py)


class AuditRecord(BaseModel):
    """One record's content, before the log gives it a sequence number and a chain hash."""

    model_config = ConfigDict(frozen=True)

    time: datetime  # UTC, timezone-aware
    request_id: str
    event_type: EventType
    agency: str | None = None
    officer: str | None = None  # principal id
    key_id: str | None = None
    client_address: str | None = None
    vendor: str | None = None
    operation: str | None = None  # native name
    operation_kind: str | None = None
    collection: str | None = None
    purpose: str | None = None
    case_number: str | None = None
    offense: str | None = None
    legal_basis: str | None = None
    warrant_id: str | None = None
    decision: str | None = None  # "allow" | "deny" | "error"
    reason_codes: list[str] = Field(default_factory=list)
    obligations: dict[str, Any] = Field(default_factory=dict)
    policy_revision: str | None = None
    probe_digests: list[str] = Field(default_factory=list)
    upstream_status: int | None = None
    match_count: int | None = None
    top_similarity: float | None = None
    latency_ms: float | None = None
    detail: dict[str, Any] = Field(default_factory=dict)  # event-specific, never images or secrets
