"""The policy contract: what goes into the engine and what comes out.

The input is built by the pipeline from the principal, the normalised operation and the
gathered context; the engine evaluates `data.facegate.decision` over it. Field names here
are the names the Rego policy reads, so changing one is a change of the policy contract.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gateway.auth.principals import Principal
from gateway.errors import Reason
from gateway.operations import FaceOperation


class WarrantStatus(StrEnum):
    NONE = "none"  # the request named no warrant
    ACTIVE = "active"  # found, in force and covering this operation
    EXPIRED = "expired"  # found, but now is outside valid_from..valid_until
    REVOKED = "revoked"
    OUT_OF_SCOPE = "out_of_scope"  # in force, but does not cover this kind, collection or case
    UNKNOWN = "unknown"  # named, but not in the registry


class WarrantFinding(BaseModel):
    """The warrant as found in the registry for this request."""

    status: WarrantStatus
    id: str | None = None
    kind: str | None = None  # "warrant" | "court_order"
    issuing_court: str | None = None
    case_number: str | None = None
    operations: list[str] = Field(default_factory=list)  # operation kinds it authorises
    collections: list[str] = Field(default_factory=list)  # empty: any collection
    realtime: bool = False  # authorises real-time / stream use
    valid_from: str | None = None  # RFC 3339
    valid_until: str | None = None  # RFC 3339
    # Whose it is: the policy refuses it to any other agency, to officers it does not name
    # (when it names any), and to the principal that registered it.
    agency: str | None = None  # None: registered before warrants were bound to an agency
    officers: list[str] = Field(default_factory=list)  # principal ids; empty: any of agency
    created_by: str | None = None  # the principal id (or "cli") that registered it


class PolicyContext(BaseModel):
    purpose: str | None = None
    case_number: str | None = None
    offense: str | None = None
    legal_basis: str | None = None
    warrant_id: str | None = None
    warrant: WarrantFinding = Field(
        default_factory=lambda: WarrantFinding(status=WarrantStatus.NONE)
    )
    conflicts: list[str] = Field(default_factory=list)  # header fields that contradict the session
    location: dict[str, float] | None = None  # {"lat": .., "lon": ..} when known
    # Every position stated for the probes (EXIF GPS first, then X-Facegate-Location);
    # `location` is the first of them.
    locations: list[dict[str, float]] = Field(default_factory=list)


class AttestationFacts(BaseModel):
    date: str  # RFC 3339, midnight UTC of the attested day
    source: str
    url: str | None = None


class VendorFacts(BaseModel):
    """The backend a request goes to, from the vendor inventory (`input.vendor`)."""

    name: str
    protocol: str  # rekognition | azure | compreface
    attestations: dict[str, AttestationFacts] = Field(default_factory=dict)


class PolicyInput(BaseModel):
    principal: Principal
    operation: FaceOperation
    context: PolicyContext
    vendor: VendorFacts | None = None  # None: no inventory entry, so nothing is attested
    activity: dict[str, Any] = Field(default_factory=dict)  # sliding-window counts
    now: str  # RFC 3339, UTC


class Obligations(BaseModel):
    """What the adapter must do to an allowed request (and check on its response)."""

    model_config = ConfigDict(extra="allow")

    # Raise the match threshold to at least this, on the normalised 0-100 scale; each adapter
    # converts it to its vendor's own (see gateway/vendors/scale.py).
    min_threshold: float | None = None
    max_results: int | None = None  # cap the number of matches asked for and returned
    remove_attributes: list[str] = Field(default_factory=list)
    flags: list[str] = Field(default_factory=list)  # e.g. "exigent_needs_authorisation"


class Decision(BaseModel):
    allow: bool
    reasons: list[Reason] = Field(default_factory=list)
    obligations: Obligations = Field(default_factory=Obligations)
    policy_revision: str
    engine: str

    @classmethod
    def deny(cls, *, code: str, message: str, policy_revision: str, engine: str) -> Decision:
        return cls(
            allow=False,
            reasons=[Reason(code=code, message=message)],
            policy_revision=policy_revision,
            engine=engine,
        )
