"""The policy contract's second input kind: a review of, or an action on, a lead.

The same Rego policy decides it (`data.facegate.decision`, branching on `kind`), on the same
engines, from the same strict syntax: its paths are in contract.STRICT_FIELDS too. What it
answers is a Decision whose obligations say what the lead becomes (`lead_status`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.auth.principals import Principal
from gateway.policy.contract import PolicyInput

LeadInputKind = Literal["lead_review", "lead_action"]


class LeadReviewFacts(BaseModel):
    model_config = ConfigDict(frozen=True)

    reviewer: str  # principal id
    verdict: str  # confirmed | rejected | inconclusive


class LeadAuthorisationFacts(BaseModel):
    """The after-the-fact authorisation the lead's search waits on, if any."""

    model_config = ConfigDict(frozen=True)

    state: str  # pending | granted | refused
    basis: str  # exigent | post_remote
    deadline: str  # RFC 3339 UTC: past it, a pending authorisation is overdue


class LeadFacts(BaseModel):
    """The lead as the log and the leads table know it."""

    model_config = ConfigDict(frozen=True)

    id: str
    agency: str
    officer: str  # who ran the search
    case_number: str | None = None
    vendor: str
    similarity: float
    status: str  # pending | awaiting_authorisation | verified | rejected | void
    reviews: list[LeadReviewFacts] = Field(default_factory=list)
    authorisation: LeadAuthorisationFacts | None = None


class LeadPolicyInput(BaseModel):
    """A reviewer's verdict (`review`) or an officer's action (`action`) on one lead."""

    model_config = ConfigDict(frozen=True)

    kind: LeadInputKind
    principal: Principal
    # The principal's training, as enrolled: "YYYY-MM-DD" or None (none on record).
    trained_until: str | None = None
    lead: LeadFacts
    verdict: str | None = None  # lead_review
    action: str | None = None  # lead_action: the action kind
    now: str  # RFC 3339 UTC


# What the engines and the decision cases accept: a vendor call or a lead's review/action.
AnyPolicyInput = PolicyInput | LeadPolicyInput
