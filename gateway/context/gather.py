"""Step 3: everything the policy needs besides the request itself, gathered once.

`gather` returns one complete, frozen PolicyInput: the operation with the sources of the
faces it names by id and what inspecting its images found, the case context and the
warrant as found, the vendor's inventory facts, and the activity counts with this request
counted provisionally (its reservation, which the caller then owns).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from gateway.auth.sessions import BoundSession
from gateway.case import CaseContext, LegalBasis, canonical
from gateway.context.activity import (
    ActivityEvent,
    ActivityReads,
    ActivityStore,
    ActivityUnavailable,
    Reservation,
)
from gateway.context.face_sources import (
    FaceSourceStore,
    FaceSourcesUnavailable,
    with_face_sources,
)
from gateway.context.inspection import (
    LOCATION_HEADER,
    ProbeInspection,
    ProbeInspector,
    parse_location_header,
)
from gateway.context.warrants import find_warrant
from gateway.db import RequestReader, map_database_errors
from gateway.errors import MalformedRequest, ServiceUnavailable
from gateway.leads.refusals import refused_bases
from gateway.operations import FaceOperation, ImageFacts, image_roles
from gateway.policy.contract import PolicyContext, PolicyInput, VendorFacts

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
    whose value is not of its field's syntax (gateway/case.py) is a MalformedRequest
    naming the header; a value is compared in its canonical form ("Homicide" is "homicide").
    """
    stated_values: dict[str, object] = {}
    conflicts = []
    for field, header in CONTEXT_HEADERS.items():
        raw = headers.get(header)
        if not raw:  # most requests state nothing by header
            continue
        try:
            stated = canonical(field, raw, what=_HEADER_NAMES[header])
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
    if not stated_values:  # the session's context as it is (frozen: shared, not copied)
        return bound, conflicts
    # model_copy: the session's own values were checked when it was opened, and the stated
    # ones just now; the policy input is checked again before any engine reads it.
    return bound.model_copy(update=stated_values), conflicts


def _header_name(header: str) -> str:
    return "-".join(part.capitalize() for part in header.split("-"))


# As error messages name them ("X-Facegate-Legal-Basis"), spelt once.
_HEADER_NAMES = {header: _header_name(header) for header in CONTEXT_HEADERS.values()}


def image_facts(operation: FaceOperation, inspection: ProbeInspection) -> list[ImageFacts]:
    """Each inspected image of the request with its role, digest, identity and faces."""
    roles = image_roles(operation.kind, len(inspection.images))
    return [
        ImageFacts(role=role, digest=found.digest, identity=found.identity, faces=found.faces)
        for role, found in zip(roles, inspection.images, strict=True)
    ]


class Inventoried(Protocol):
    """A backend as the vendor inventory describes it (gateway.vendors.inventory)."""

    def policy_view(self) -> dict[str, Any]: ...


# One entry per backend object, which it keeps alive so that its id is not reused; a
# reloaded inventory brings new objects, and the bound keeps old ones from piling up.
_VENDOR_FACTS: dict[int, tuple[Inventoried, VendorFacts]] = {}
_VENDOR_FACTS_KEPT = 64


def vendor_facts(backend: Inventoried) -> VendorFacts:
    """`input.vendor` for a backend, validated once per backend rather than per request.

    Backends are frozen once the inventory is loaded, so their facts are too; the one
    VendorFacts is shared by every policy input of its backend, which nothing writes to.
    """
    cached = _VENDOR_FACTS.get(id(backend))
    if cached is not None and cached[0] is backend:
        return cached[1]
    facts = VendorFacts.model_validate(backend.policy_view())
    if len(_VENDOR_FACTS) >= _VENDOR_FACTS_KEPT:
        _VENDOR_FACTS.clear()
    _VENDOR_FACTS[id(backend)] = (backend, facts)
    return facts


@dataclass(frozen=True)
class Gathered:
    """What step 3 found. `reservation` counts the request in the activity windows
    provisionally: whoever receives it owns it, and must release it unless the request is
    allowed and forwarded (the pipeline releases it when the decision is refused or fails).
    """

    policy_input: PolicyInput
    event: ActivityEvent  # the request as the activity windows count it
    reservation: Reservation
    # The activity counts policy_input holds: decide() is given them, and refuses if the
    # revision deciding reads others (a reload in between).
    activity_reads: ActivityReads = None


async def gather(
    *,
    reads: RequestReader,
    session: BoundSession,
    operation: FaceOperation,
    images: tuple[bytes, ...],
    probe_faces: tuple[str, ...],
    target_faces: tuple[str, ...],
    headers: Mapping[str, str],
    request_id: str,
    now: datetime,
    vendor: VendorFacts | None,
    face_sources: FaceSourceStore,
    activity: ActivityStore,
    activity_reads: ActivityReads = None,
    inspector: ProbeInspector | None = None,
) -> Gathered:
    """The complete policy input of one request, with its activity reservation.

    Raises RequestError for what the caller sent wrong (an image that is none, an
    X-Facegate-* header of the wrong syntax): the pipeline refuses it on record.
    Raises ServiceUnavailable when a store cannot be read (face sources, warrant registry,
    activity windows): nothing is judged without them. The activity windows are read
    last, so that when this raises no reservation is held, and when it returns the caller
    holds exactly one. Only the counts of `activity_reads` are read back (the policy's
    reads, taken by the caller before this started; None: every count).
    """
    try:
        operation = await with_face_sources(
            operation, store=face_sources, probe_faces=probe_faces, target_faces=target_faces
        )
    except FaceSourcesUnavailable as exc:
        raise ServiceUnavailable("the face-source store could not be read") from exc
    inspection = await _inspect(inspector, images, headers)
    operation, context = await _gather_context(
        reads,
        session=session,
        operation=operation,
        headers=headers,
        now=now,
        inspection=inspection,
    )
    event = _event(session, operation, context, request_id=request_id, now=now)
    try:
        reservation = await activity.reserve(event, reads=activity_reads)
    except ActivityUnavailable as exc:
        raise ServiceUnavailable("the activity windows could not be read") from exc
    policy_input = PolicyInput(
        principal=session.principal,
        operation=operation,
        context=context,
        vendor=vendor,
        activity=reservation.counts,
        now=now.isoformat().replace("+00:00", "Z"),
    )
    return Gathered(
        policy_input=policy_input,
        event=event,
        reservation=reservation,
        activity_reads=activity_reads,
    )


async def _inspect(
    inspector: ProbeInspector | None, images: tuple[bytes, ...], headers: Mapping[str, str]
) -> ProbeInspection:
    if inspector is not None:
        return await inspector.inspect(images, headers)
    header = headers.get(LOCATION_HEADER, "").strip()
    return ProbeInspection(locations=(parse_location_header(header),) if header else ())


async def _gather_context(
    reads: RequestReader,
    *,
    session: BoundSession,
    operation: FaceOperation,
    headers: Mapping[str, str],
    now: datetime,
    inspection: ProbeInspection,
) -> tuple[FaceOperation, PolicyContext]:
    """The operation completed by what inspection found, and the case context completed
    by headers with the warrant as found in the registry."""
    context, conflicts = merge_case_context(session.context, headers)
    with map_database_errors("the warrant registry could not be read"):
        warrant = await find_warrant(
            reads,
            warrant_id=context.warrant_id,
            operation=operation,
            case_number=context.case_number,
            now=now,
            prefetched=session.warrant,  # read with the session, when it names this one
        )
    refused: list[str] = []
    if context.legal_basis not in (None, LegalBasis.WARRANT, LegalBasis.COURT_ORDER):
        # A search without a warrant, in a case whose earlier one an authority refused.
        refused = await refused_bases(
            reads, case_number=context.case_number, agency=session.principal.agency
        )
    if inspection.faces_in_probe is not None:
        operation = operation.model_copy(update={"faces_in_probe": inspection.faces_in_probe})
    if inspection.images:
        operation = operation.model_copy(update={"images": image_facts(operation, inspection)})
    policy_context = PolicyContext(
        # The case fields as stated (model_dump: a context stored before codes were checked
        # is passed on as it is, for the strict-input check to refuse).
        **context.model_dump(mode="json"),
        warrant=warrant,
        conflicts=conflicts,
        locations=[loc.as_policy() for loc in inspection.locations],
        refused_authorisations=refused,
    )
    return operation, policy_context


def _event(
    session: BoundSession,
    operation: FaceOperation,
    context: PolicyContext,
    *,
    request_id: str,
    now: datetime,
) -> ActivityEvent:
    principal = session.principal
    return ActivityEvent(
        request_id=request_id,
        at=now,
        officer=principal.id,
        agency=principal.agency,
        case_number=context.case_number,
        kind=operation.kind,
        probe_digests=tuple(operation.probe_digests),
        faces_in_probe=operation.faces_in_probe,
        compared_identities=tuple(operation.compared_identities),
        face_sources=tuple(
            (f.source, str(f.index_in_source))
            for f in operation.face_sources
            if f.source is not None
        ),
        probe_identities=tuple(i.identity for i in operation.images if i.identity),
    )
