"""The audit records of leads, reviews, actions and authorisations: the one place each is
built (a sibling of admin.action_record). The fields are a shared contract: disclosure
packets and reports recompute from them alone (docs/architecture.md, "Leads")."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from gateway.admin import Actor
from gateway.audit.records import AuditRecord, EventType
from gateway.leads.models import AuthorisationRow, LeadRow

# The search's case fields a lead carries into every record about it.
CASE_FIELDS = ("purpose", "case_number", "offense", "legal_basis", "warrant_id")


def candidate_digest(candidate_id: str, salt: str) -> str:
    """The salted SHA-256 the log keeps of a candidate id: deleting the id and its salt
    from the leads table leaves nothing to recover it from, and every proof intact."""
    return hashlib.sha256(f"{salt}\0{candidate_id}".encode()).hexdigest()


def _lead_case(lead: LeadRow) -> dict[str, Any]:
    return {
        "purpose": lead.purpose,
        "case_number": lead.case_number,
        "offense": lead.offense,
        "legal_basis": lead.legal_basis,
        "warrant_id": lead.warrant_id,
        "vendor": lead.vendor,
        "operation": lead.operation,
        "collection": lead.collection,
    }


def lead_opened(
    lead: LeadRow, *, search: dict[str, Any], policy_revision: str | None
) -> AuditRecord:
    """One candidate of an identification, beside the search's outcome record. `search` is
    the search's own common fields (its request id, agency, officer, key, case fields)."""
    return AuditRecord(
        **(search | {"time": datetime.now(UTC)}),
        event_type=EventType.LEAD,
        decision="allow",
        policy_revision=policy_revision,
        top_similarity=lead.similarity,
        match_count=1,
        detail={
            "lead_id": lead.id,
            "search_request_id": lead.search_request_id,
            "rank": lead.rank,
            "similarity": lead.similarity,
            "candidate_digest": lead.candidate_digest,
            "status": lead.status,
        },
    )


def _by(actor: Actor) -> dict[str, Any]:
    return {
        "time": datetime.now(UTC),
        "request_id": uuid.uuid4().hex,
        "agency": actor.agency,
        "officer": actor.officer,
        "key_id": actor.key_id,
        "client_address": actor.client_address,
    }


def review_record(
    lead: LeadRow,
    *,
    actor: Actor,
    allowed: bool,
    reasons: Sequence[str],
    policy_revision: str | None,
    verdict: str,
    rationale: str,
    status_before: str,
    status_after: str,
) -> AuditRecord:
    """A verdict recorded (allow) or a review refused (deny); `officer` is the reviewer."""
    return AuditRecord(
        **_by(actor),
        **_lead_case(lead),
        event_type=EventType.LEAD_REVIEW,
        decision="allow" if allowed else "deny",
        reason_codes=list(reasons),
        policy_revision=policy_revision,
        top_similarity=lead.similarity,
        detail=_via(actor)
        | {
            "lead_id": lead.id,
            "verdict": verdict,
            "rationale": rationale,
            "status_before": status_before,
            "status_after": status_after,
        },
    )


def action_record(
    lead: LeadRow,
    *,
    actor: Actor,
    allowed: bool,
    reasons: Sequence[str],
    policy_revision: str | None,
    kind: str,
    note: str,
) -> AuditRecord:
    """An action taken (allow) or refused (deny) on a lead; `officer` is who acts."""
    return AuditRecord(
        **_by(actor),
        **_lead_case(lead),
        event_type=EventType.LEAD_ACTION,
        decision="allow" if allowed else "deny",
        reason_codes=list(reasons),
        policy_revision=policy_revision,
        detail=_via(actor)
        | {"lead_id": lead.id, "kind": kind, "note": note, "lead_status": lead.status},
    )


def authorisation_record(
    authorisation: AuthorisationRow,
    *,
    state: str,
    case: dict[str, Any],
    actor: Actor | None = None,
    search: dict[str, Any] | None = None,
    voided_leads: Sequence[str] = (),
) -> AuditRecord:
    """An authorisation opened (attributed to the search: `search` is its common fields),
    decided or found overdue (attributed to `actor`). `case` holds the search's case fields."""
    who = search | {"time": datetime.now(UTC)} if search is not None else _by(actor or _NOBODY)
    detail: dict[str, Any] = {
        "authorisation_id": authorisation.id,
        "state": state,
        "basis": authorisation.basis,
        "deadline": authorisation.deadline.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "authority": authorisation.authority,
        "reference": authorisation.reference,
        "search_request_id": authorisation.search_request_id,
    }
    if state == "refused":
        detail["voided_leads"] = list(voided_leads)
    return AuditRecord(
        **(who | {k: v for k, v in case.items() if k not in who or who[k] is None}),
        event_type=EventType.AUTHORISATION,
        decision="allow",
        detail=(_via(actor) if actor is not None else {}) | detail,
    )


_NOBODY = Actor(officer="facegate")


def _via(actor: Actor) -> dict[str, Any]:
    return {"via": actor.via} if actor.via is not None else {}
