"""What an audit record says. The fields follow EU AI Act Art. 12(3), FBI CJIS 5.4.1.1 and
the Law Enforcement Directive Art. 25: when, who, what, on which reference database, why,
under which authority, what was decided and what came back. Images appear only as digests.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

# The most characters of any one text the log keeps. Key ids, header values, names and ids
# come from requests, before or without authentication: a 1 MB `Credential=` key id was
# stored whole. Longer texts are cut, and say so (they end with TRUNCATED).
MAX_FIELD_CHARS = 256
TRUNCATED = "...[truncated]"
_MAX_DETAIL_DEPTH = 8


def cap(value: Any, *, depth: int = 0) -> Any:
    """`value` with every text in it cut to MAX_FIELD_CHARS, lists and objects walked."""
    return _cap(value, depth)


# Values that hold no text: returned as they are, before any isinstance check (most of a
# record's values are these, or short texts; the cap runs on every field of every record).
_NO_TEXT: frozenset[type] = frozenset({type(None), bool, int, float, datetime})


def _cap(value: Any, depth: int) -> Any:
    if type(value) in _NO_TEXT:
        return value
    if isinstance(value, str):
        if len(value) <= MAX_FIELD_CHARS:
            return value
        return value[: MAX_FIELD_CHARS - len(TRUNCATED)] + TRUNCATED
    if depth >= _MAX_DETAIL_DEPTH:
        return value
    if isinstance(value, list | tuple):
        return [_cap(item, depth + 1) for item in value]
    if isinstance(value, dict):
        return {_cap(k, 0): _cap(v, depth + 1) for k, v in value.items()}
    return value


class EventType(StrEnum):
    DECISION = "decision"  # the policy's answer, committed before anything is forwarded
    OUTCOME = "outcome"  # what the vendor answered, after filtering
    REJECTED = "rejected"  # a request refused before a decision: malformed, too large, unknown op
    AUTH_FAILURE = "auth_failure"
    ADMIN_ACTION = "admin_action"  # principals, sessions, warrants changed
    AUDIT_READ = "audit_read"  # an auditor read or exported the log
    POLICY = "policy"  # a policy revision activated, or refused (gateway/policy/revisions.py)
    REPORT = "report"  # a report made, or refused (gateway/reports/): template, period, digest
    # Leads (gateway/leads/): one per candidate an identification produced, a reviewer's
    # verdict or refused attempt, an action on a lead, an after-the-fact authorisation.
    LEAD = "lead"
    LEAD_REVIEW = "lead_review"
    LEAD_ACTION = "lead_action"
    AUTHORISATION = "authorisation"


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

    @model_validator(mode="before")
    @classmethod
    def _capped(cls, data: Any) -> Any:
        # Every field, whoever builds the record: no path into the log skips the cap. One
        # call a record rather than one a field (27 calls from the validator into Python):
        # each field's value is capped as it is given, as a field validator would.
        if not isinstance(data, dict):
            return data
        capped = {}
        for name, value in data.items():
            # Most values are absent or short texts: kept without a call.
            if value is None or (type(value) is str and len(value) <= MAX_FIELD_CHARS):
                capped[name] = value
            else:
                capped[name] = _cap(value, 0)
        return capped
