"""The case context a search is made under: why, for which case, on what legal basis."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class LegalBasis(StrEnum):
    WARRANT = "warrant"
    COURT_ORDER = "court_order"
    EXIGENT = "exigent"
    CONSENT = "consent"
    MISSING_PERSON = "missing_person"


class CaseContext(BaseModel):
    """Bound to a case session when it is opened; may be completed by X-Facegate-* headers.

    Every field is optional here: a missing one is the policy's to refuse, with a reason,
    so that the refusal is explained and recorded like any other.
    """

    model_config = ConfigDict(frozen=True)

    purpose: str | None = None
    case_number: str | None = None
    offense: str | None = None
    legal_basis: LegalBasis | None = None
    warrant_id: str | None = None
