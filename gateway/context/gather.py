"""Step 3: everything the policy needs besides the request itself."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.auth.sessions import BoundSession
from gateway.context.case import CaseContext, LegalBasis, canonical
from gateway.context.inspection import ProbeInspection
from gateway.context.warrants import find_warrant
from gateway.db import map_database_errors
from gateway.errors import MalformedRequest
from gateway.operations import FaceOperation, ImageFacts, image_roles
from gateway.policy.contract import PolicyContext, PolicyInput

# Clients that can add headers may state the case context per request.
CONTEXT_HEADERS = {
    "purpose": "x-facegate-purpose",
    "case_number": "x-facegate-case",
    "offense": "x-facegate-offense",
    "legal_basis": "x-facegate-legal-basis",
    "warrant_id": "x-facegate-warrant",
}


def merge_case_context(
    bound: CaseContext, headers: Mapping[str, str]
) -> tuple[CaseContext, list[str]]:
    """The session's context completed by headers, and the fields where they disagree.

    The session wins: its context was stated when the credentials were issued and is what
    they are bound to. A header may fill a field the session left empty; a header that
    contradicts the session is reported as a conflict for the policy to refuse. A header
    whose value is not of its field's syntax (gateway/context/case.py) is a MalformedRequest
    naming the header; a value is compared in its canonical form ("Homicide" is "homicide").
    """
    stated_values: dict[str, object] = {}
    conflicts = []
    for field, header in CONTEXT_HEADERS.items():
        raw = headers.get(header, "")
        try:
            stated = canonical(field, raw, what=_header_name(header))
        except ValueError as exc:
            raise MalformedRequest(str(exc)) from exc
        if stated is None:
            continue
        value: object = LegalBasis(stated) if field == "legal_basis" else stated
        current = getattr(bound, field)
        if current is None:
            stated_values[field] = value
        elif current != value:
            conflicts.append(field)
    # model_copy: the session's own values were checked when it was opened, and the stated
    # ones just now; the policy input is checked again before any engine reads it.
    return bound.model_copy(update=stated_values), conflicts


def _header_name(header: str) -> str:
    return "-".join(part.capitalize() for part in header.split("-"))


def image_facts(operation: FaceOperation, inspection: ProbeInspection) -> list[ImageFacts]:
    """Each inspected image of the request with its role, digest, identity and faces."""
    roles = image_roles(operation.kind, len(inspection.images))
    return [
        ImageFacts(role=role, digest=found.digest, identity=found.identity, faces=found.faces)
        for role, found in zip(roles, inspection.images, strict=True)
    ]


async def gather_policy_input(
    reads: AsyncEngine,
    *,
    session: BoundSession,
    operation: FaceOperation,
    headers: Mapping[str, str],
    now: datetime,
    inspection: ProbeInspection | None = None,
) -> PolicyInput:
    context, conflicts = merge_case_context(session.context, headers)
    with map_database_errors("the warrant registry could not be read"):
        async with reads.connect() as db:
            warrant = await find_warrant(
                db,
                warrant_id=context.warrant_id,
                operation=operation,
                case_number=context.case_number,
                now=now,
            )
    locations = [loc.as_policy() for loc in inspection.locations] if inspection else []
    if inspection is not None and inspection.faces_in_probe is not None:
        operation = operation.model_copy(update={"faces_in_probe": inspection.faces_in_probe})
    if inspection is not None and inspection.images:
        operation = operation.model_copy(update={"images": image_facts(operation, inspection)})
    return PolicyInput(
        principal=session.principal,
        operation=operation,
        context=PolicyContext(
            purpose=context.purpose,
            case_number=context.case_number,
            offense=context.offense,
            legal_basis=context.legal_basis.value if context.legal_basis else None,
            warrant_id=context.warrant_id,
            warrant=warrant,
            conflicts=conflicts,
            location=locations[0] if locations else None,
            locations=locations,
        ),
        now=now.isoformat().replace("+00:00", "Z"),
    )
