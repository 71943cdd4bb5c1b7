"""Reviews, actions and authorisation decisions: each written once, as a keyword-only
service the management API and the CLI call (as gateway/admin.py's actions are).

Each is decided by the policy (a review or an action is a LeadPolicyInput, see
gateway/policy/lead_input.py; an authorisation decision is an admin's, checked by the route's
role) and recorded with `record`, which writes the audit record in the caller's transaction:
the change and its record commit together. A refused review or action changes nothing but
is recorded all the same: the caller commits, then answers with the refusal (PolicyDenied).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.admin import Actor, Recorder
from gateway.audit.records import AuditRecord
from gateway.auth.models import PrincipalRow
from gateway.auth.principals import principal_from_row
from gateway.errors import MalformedRequest, NotFound, PermissionDenied
from gateway.leads import records
from gateway.leads.models import AuthorisationRow, LeadActionRow, LeadReviewRow, LeadRow
from gateway.policy.contract import Decision
from gateway.policy.lead_input import (
    LeadAuthorisationFacts,
    LeadFacts,
    LeadPolicyInput,
    LeadReviewFacts,
)

LeadRecorder = Callable[[AuditRecord], Awaitable[None]]
Decide = Callable[[LeadPolicyInput], Awaitable[Decision]]


@dataclass(frozen=True)
class LeadDecision:
    """What became of a review or an action: allowed or refused (with the policy's reasons),
    and the lead's status after it."""

    lead_id: str
    allowed: bool
    reasons: list[str]
    messages: list[str]
    status: str


async def review_lead(
    *,
    db: AsyncSession,
    decide: Decide,
    lead_id: str,
    actor: Actor,
    verdict: str,
    rationale: str,
    now: datetime,
    record: LeadRecorder,
) -> LeadDecision:
    """Record `actor`'s verdict on a lead (confirmed | rejected | inconclusive), or the
    refusal of it (reviewer_is_searcher, reviewer_already_reviewed, reviewer_not_qualified,
    reviewer_training_lapsed, lead_other_agency, lead_final, ...). `actor.officer` is the
    reviewer's principal id, whose roles and training the policy judges."""
    lead = await _lead(db, lead_id)
    row = await _principal(db, actor.officer)
    actor = _attributed(actor, row)
    policy_input = LeadPolicyInput(
        kind="lead_review",
        principal=principal_from_row(row, key_id=actor.key_id),
        trained_until=row.trained_until.isoformat() if row.trained_until else None,
        lead=await _facts(db, lead),
        verdict=verdict,
        now=_rfc3339(now),
    )
    decision = await decide(policy_input)
    before = lead.status
    after = _status_after(decision, before)
    if decision.allow:
        db.add(
            LeadReviewRow(
                lead_id=lead.id,
                reviewer=row.id,
                agency=row.agency,
                verdict=verdict,
                rationale=rationale,
                created_at=now,
            )
        )
        lead.status = after
        await db.flush()
    await record(
        records.review_record(
            lead,
            actor=actor,
            allowed=decision.allow,
            reasons=[r.code for r in decision.reasons],
            policy_revision=decision.policy_revision,
            verdict=verdict,
            rationale=rationale,
            status_before=before,
            status_after=lead.status,
        )
    )
    return _result(lead, decision)


async def reviewable(
    *, db: AsyncSession, decide: Decide, lead_ids: list[str], reviewer: str, now: datetime
) -> dict[str, LeadDecision]:
    """Ask the policy, without recording or changing anything, whether `reviewer` may
    confirm each lead: what a review queue offers. The same input review_lead builds, so
    the queue offers exactly what review_lead would allow (the verdict itself is judged
    again, and recorded, when it is given)."""
    row = await _principal(db, reviewer)
    principal = principal_from_row(row, key_id=None)
    trained = row.trained_until.isoformat() if row.trained_until else None
    answers: dict[str, LeadDecision] = {}
    for lead_id in lead_ids:
        lead = await db.get(LeadRow, lead_id)
        if lead is None:
            continue
        policy_input = LeadPolicyInput(
            kind="lead_review",
            principal=principal,
            trained_until=trained,
            lead=await _facts(db, lead),
            verdict="confirmed",
            now=_rfc3339(now),
        )
        answers[lead_id] = _result(lead, await decide(policy_input))
    return answers


async def act_on_lead(
    *,
    db: AsyncSession,
    decide: Decide,
    lead_id: str,
    actor: Actor,
    kind: str,
    note: str,
    now: datetime,
    record: LeadRecorder,
) -> LeadDecision:
    """Record an officer's action on a lead, or its refusal (lead_not_verified,
    authorisation_pending, authorisation_overdue, lead_void, action_kind_unknown, ...)."""
    lead = await _lead(db, lead_id)
    row = await _principal(db, actor.officer)
    actor = _attributed(actor, row)
    policy_input = LeadPolicyInput(
        kind="lead_action",
        principal=principal_from_row(row, key_id=actor.key_id),
        trained_until=row.trained_until.isoformat() if row.trained_until else None,
        lead=await _facts(db, lead),
        action=kind,
        now=_rfc3339(now),
    )
    decision = await decide(policy_input)
    if decision.allow:
        db.add(LeadActionRow(lead_id=lead.id, officer=row.id, kind=kind, note=note, created_at=now))
        await db.flush()
    await record(
        records.action_record(
            lead,
            actor=actor,
            allowed=decision.allow,
            reasons=[r.code for r in decision.reasons],
            policy_revision=decision.policy_revision,
            kind=kind,
            note=note,
        )
    )
    return _result(lead, decision)


@dataclass(frozen=True)
class AuthorisationDecided:
    authorisation_id: str
    state: str  # granted | refused
    voided_leads: list[str]


async def decide_authorisation(
    *,
    db: AsyncSession,
    authorisation_id: str,
    granted: bool,
    authority: str,
    reference: str,
    actor: Actor,
    now: datetime,
    record: LeadRecorder,
) -> AuthorisationDecided:
    """Record the authority's decision on an after-the-fact authorisation (an admin enters
    it; the API checks the role). Granted: its leads awaiting authorisation become pending.
    Refused: every lead of its search becomes void (their discarding is in the record), and
    the policy refuses the case's next search on that basis (authorisation_refused)."""
    authorisation = await db.get(AuthorisationRow, authorisation_id, with_for_update=True)
    if authorisation is None:
        raise NotFound(f"no authorisation {authorisation_id!r}")
    if authorisation.state != "pending":
        raise MalformedRequest(
            f"authorisation {authorisation_id!r} was decided already ({authorisation.state})"
        )
    if actor.agency is not None and actor.agency != authorisation.agency:
        raise PermissionDenied(f"authorisation {authorisation_id!r} is another agency's")
    authorisation.state = "granted" if granted else "refused"
    authorisation.decided_at = now
    authorisation.decided_by = actor.officer
    authorisation.authority = authority
    authorisation.reference = reference
    leads = select(LeadRow.id).where(LeadRow.authorisation_id == authorisation.id)
    if granted:
        await db.execute(
            update(LeadRow)
            .where(LeadRow.authorisation_id == authorisation.id)
            .where(LeadRow.status == "awaiting_authorisation")
            .values(status="pending")
        )
        voided: list[str] = []
    else:
        voided = sorted((await db.scalars(leads)).all())
        await db.execute(
            update(LeadRow)
            .where(LeadRow.authorisation_id == authorisation.id)
            .values(status="void")
        )
    await db.flush()
    case = await _search_case(db, authorisation)
    await record(
        records.authorisation_record(
            authorisation,
            state=authorisation.state,
            case=case,
            actor=actor,
            voided_leads=voided,
        )
    )
    return AuthorisationDecided(
        authorisation_id=authorisation.id, state=authorisation.state, voided_leads=voided
    )


async def record_overdue(*, db: AsyncSession, now: datetime, record: LeadRecorder) -> list[str]:
    """Put on record, once each, the authorisations whose clock ran out undecided (state
    `overdue`); returns their ids. Called before authorisations are listed, so what an
    auditor sees as overdue is in the log too. A decision after the deadline is still
    recorded: overdue is a fact about the clock, not a refusal."""
    query = (
        select(AuthorisationRow)
        .where(AuthorisationRow.state == "pending")
        .where(AuthorisationRow.deadline <= now)
        .where(AuthorisationRow.overdue_recorded_at.is_(None))
        .order_by(AuthorisationRow.deadline)
        .with_for_update()
    )
    found = list((await db.scalars(query)).all())
    for authorisation in found:
        authorisation.overdue_recorded_at = now
        case = await _search_case(db, authorisation)
        await record(
            records.authorisation_record(
                authorisation,
                state="overdue",
                case=case | {"agency": authorisation.agency, "officer": authorisation.officer},
                actor=Actor(officer="facegate", agency=authorisation.agency),
            )
        )
    await db.flush()
    return [a.id for a in found]


async def set_training(
    *, db: AsyncSession, principal_id: str, trained_until: date | None, record: Recorder
) -> None:
    """Record a principal's training, the last day it is valid (`principal.training`):
    reviewers need it current (policies/data/leads.yaml)."""
    row = await db.get(PrincipalRow, principal_id)
    if row is None:
        raise NotFound(f"no principal {principal_id!r}")
    row.trained_until = trained_until
    await db.flush()
    await record(
        "principal.training",
        principal_id=principal_id,
        trained_until=trained_until.isoformat() if trained_until else None,
    )


# --- helpers ---------------------------------------------------------------------------


async def _lead(db: AsyncSession, lead_id: str) -> LeadRow:
    # Locked: two reviewers confirming at once must not both see one confirmation.
    lead = await db.get(LeadRow, lead_id, with_for_update=True)
    if lead is None:
        raise NotFound(f"no lead {lead_id!r}")
    return lead


async def _principal(db: AsyncSession, principal_id: str) -> PrincipalRow:
    row = await db.get(PrincipalRow, principal_id)
    if row is None or row.disabled_at is not None:
        raise NotFound(f"no principal {principal_id!r}")
    return row


def _attributed(actor: Actor, row: PrincipalRow) -> Actor:
    return Actor(
        officer=row.id,
        agency=row.agency,
        key_id=actor.key_id,
        client_address=actor.client_address,
        via=actor.via,
    )


async def _facts(db: AsyncSession, lead: LeadRow) -> LeadFacts:
    reviews = await db.scalars(
        select(LeadReviewRow).where(LeadReviewRow.lead_id == lead.id).order_by(LeadReviewRow.id)
    )
    authorisation = None
    if lead.authorisation_id is not None:
        row = await db.get(AuthorisationRow, lead.authorisation_id)
        if row is not None:
            authorisation = LeadAuthorisationFacts(
                state=row.state, basis=row.basis, deadline=_rfc3339(row.deadline)
            )
    return LeadFacts(
        id=lead.id,
        agency=lead.agency,
        officer=lead.officer,
        case_number=lead.case_number,
        vendor=lead.vendor,
        similarity=lead.similarity,
        status=lead.status,
        reviews=[LeadReviewFacts(reviewer=r.reviewer, verdict=r.verdict) for r in reviews],
        authorisation=authorisation,
    )


async def _search_case(db: AsyncSession, authorisation: AuthorisationRow) -> dict[str, object]:
    """The case fields of the search an authorisation is about (from one of its leads)."""
    lead = await db.scalar(
        select(LeadRow).where(LeadRow.authorisation_id == authorisation.id).limit(1)
    )
    case: dict[str, object] = {
        "case_number": authorisation.case_number,
        "legal_basis": authorisation.legal_basis,
    }
    if lead is not None:
        case |= {field: getattr(lead, field) for field in records.CASE_FIELDS}
        case |= {"vendor": lead.vendor, "collection": lead.collection}
    return case


def _status_after(decision: Decision, before: str) -> str:
    after = getattr(decision.obligations, "lead_status", None)
    return after if decision.allow and isinstance(after, str) else before


def _result(lead: LeadRow, decision: Decision) -> LeadDecision:
    return LeadDecision(
        lead_id=lead.id,
        allowed=decision.allow,
        reasons=[r.code for r in decision.reasons],
        messages=[r.message for r in decision.reasons],
        status=lead.status,
    )


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
