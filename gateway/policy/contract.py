"""The policy contract: what goes into the engine and what comes out.

The input is built by the pipeline from the principal, the normalised operation and the
gathered context; the engine evaluates `data.facegate.decision` over it. Field names here
are the names the Rego policy reads, so changing one is a change of the policy contract.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, Strict

from gateway.auth.principals import Principal
from gateway.case import CODE_SYNTAX, IDENTIFIER_SYNTAX, CaseFields, is_code, is_identifier
from gateway.errors import MalformedRequest, Reason
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


class PolicyContext(CaseFields):
    """The case context the request is judged under (CaseFields: the session's, completed
    by headers), and what step 3 found for it."""

    warrant: WarrantFinding = Field(
        default_factory=lambda: WarrantFinding(status=WarrantStatus.NONE)
    )
    conflicts: list[str] = Field(default_factory=list)  # header fields that contradict the session
    # Every position stated for the probes (EXIF GPS first, then X-Facegate-Location), each
    # {"lat": .., "lon": ..}.
    locations: list[dict[str, float]] = Field(default_factory=list)
    # The bases (e.g. exigent) of this case's after-the-fact authorisations that an
    # authority refused: the case's next search on such a basis is refused (gateway/leads/).
    refused_authorisations: list[str] = Field(default_factory=list)


class AttestationFacts(BaseModel):
    date: str  # RFC 3339, midnight UTC of the attested day
    source: str
    url: str | None = None


class VendorFacts(BaseModel):
    """The backend a request goes to, from the vendor inventory (`input.vendor`)."""

    name: str
    protocol: str  # rekognition | azure | compreface
    attestations: dict[str, AttestationFacts] = Field(default_factory=dict)


# A sliding-window count: an integer, never "6", 6.0 or true (the engines part ways on them).
Count = Annotated[int, Strict(), Field(ge=0)]
# scope -> stream -> window -> count, those the policy declares it reads (activity_reads);
# see gateway/context/activity/.
ActivityCounts = dict[str, dict[str, dict[str, Count]]]


class PolicyInput(BaseModel):
    """What the engines evaluate. Only a strict input is evaluated: see STRICT_FIELDS.

    Built once, complete, by step 3 (gateway/context/gather.py) and frozen from then on:
    what the decision record says was judged is what the engines were given.
    """

    model_config = ConfigDict(frozen=True)

    principal: Principal
    operation: FaceOperation
    context: PolicyContext
    vendor: VendorFacts | None = None  # None: no inventory entry, so nothing is attested
    activity: ActivityCounts = Field(default_factory=dict)  # sliding-window counts
    now: str  # RFC 3339, UTC


class Obligations(BaseModel):
    """What the adapter must do to an allowed request (and check on its response)."""

    model_config = ConfigDict(extra="allow")

    # Raise the match threshold to at least this, on the normalised 0-100 scale; each adapter
    # converts it to its vendor's own (see gateway/vendors/scale.py).
    min_threshold: float | None = None
    max_results: int | None = None  # cap the number of matches asked for and returned
    # The most faces an answer may hold (searched, compared, enrolled); more withholds it.
    max_faces: int | None = None
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


# --- The strict input ------------------------------------------------------------------
#
# OPA and regorus agree on a policy's decision only where their builtins agree: `lower` and
# `trim_space` on ASCII, `format_int` and comparisons on integers, `time.parse_rfc3339_ns`
# on a plain UTC timestamp. The gateway builds every input to that syntax (codes are made
# canonical where an officer states them: gateway/case.py), and PolicyService
# refuses any input that is not (policy_input_invalid) before an engine sees it: a value
# that slipped past the doors (model_copy validates nothing) is refused, never judged two
# ways.


@dataclass(frozen=True)
class Syntax:
    description: str
    accepts: Callable[[Any], bool]


_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z")


def _is_timestamp(value: Any) -> bool:
    if not isinstance(value, str) or _TIMESTAMP.fullmatch(value) is None:
        return False
    try:
        datetime.fromisoformat(value)  # a real date and time, not 2025-02-30T25:00:00Z
    except ValueError:
        return False
    return True


def _is_number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


CODE = Syntax(f"a code of {CODE_SYNTAX}, in lower case", is_code)
IDENTIFIER = Syntax(IDENTIFIER_SYNTAX, is_identifier)
# Below 2**53, so that every engine holds it exactly.
COUNT = Syntax("a non-negative integer", lambda v: type(v) is int and 0 <= v < 2**53)
NUMBER = Syntax("a finite number", _is_number)
LATITUDE = Syntax("a latitude in degrees", lambda v: _is_number(v) and -90 <= v <= 90)
LONGITUDE = Syntax("a longitude in degrees", lambda v: _is_number(v) and -180 <= v <= 180)
TIMESTAMP = Syntax("an RFC 3339 time in UTC (YYYY-MM-DDThh:mm:ss[.ffffff]Z)", _is_timestamp)
# Compared as text with now's first ten characters, which is date order only in this form.
DATE = Syntax(
    "a date (YYYY-MM-DD)",
    lambda v: isinstance(v, str) and _is_timestamp(f"{v}T00:00:00Z") and len(v) == 10,
)

# Every value the policy lower-cases, trims, parses, counts or computes with, by its path
# in the JSON document the engines are sent ("*" is every key's value, or every item). A
# null or absent value at a named key passes (the policy reads it as not given); an item
# under "*" must pass. A new input field the policy reads that way: add its path here.
STRICT_FIELDS: tuple[tuple[str, Syntax], ...] = (
    ("now", TIMESTAMP),
    ("context.purpose", CODE),
    ("context.offense", CODE),
    ("context.legal_basis", CODE),
    ("context.case_number", IDENTIFIER),
    ("context.warrant_id", IDENTIFIER),
    ("context.conflicts.*", CODE),
    ("context.locations.*.lat", LATITUDE),
    ("context.locations.*.lon", LONGITUDE),
    ("operation.attributes.*", CODE),
    ("operation.faces_in_probe", COUNT),
    ("operation.max_results", COUNT),
    ("operation.threshold", NUMBER),
    ("vendor.attestations.*.date", TIMESTAMP),
    ("activity.*.*.*", COUNT),
    ("context.refused_authorisations.*", CODE),
    # A lead's review or action (gateway/policy/lead_input.py).
    ("kind", CODE),
    ("trained_until", DATE),
    ("verdict", CODE),
    ("action", CODE),
    ("lead.status", CODE),
    ("lead.similarity", NUMBER),
    ("lead.reviews.*.verdict", CODE),
    ("lead.authorisation.state", CODE),
    ("lead.authorisation.basis", CODE),
    ("lead.authorisation.deadline", TIMESTAMP),
)


def _accepts_all_at(parts: list[str], accepts: Callable[[Any], bool]) -> Callable[[Any], bool]:
    """A check of a document: whether _values_at(document, parts) yields only values that
    `accepts` accepts (a null or absent value at a named key passes, as there). Built once
    per STRICT_FIELDS path as nested closures, one per part: a walk that re-read the path
    and its position at every node cost more than the checks (issue 17)."""
    check = accepts
    for head in reversed(parts):
        check = _every_item(check) if head == "*" else _at_key(head, check)
    return check


def _every_item(inner: Callable[[Any], bool]) -> Callable[[Any], bool]:
    def check(node: Any) -> bool:
        # A dict first: isinstance of a union, and of the Mapping ABC, cost more than the
        # checks under them.
        if type(node) is dict:
            return all(map(inner, node.values()))
        if node is None:
            return True
        if isinstance(node, Mapping):
            return all(map(inner, node.values()))
        if isinstance(node, list):
            return all(map(inner, node))
        return False

    return check


def _at_key(head: str, inner: Callable[[Any], bool]) -> Callable[[Any], bool]:
    def check(node: Any) -> bool:
        if type(node) is not dict and not isinstance(node, Mapping):
            return node is None
        child = node.get(head)
        return child is None or inner(child)

    return check


_STRICT_CHECKS = tuple(
    _accepts_all_at(path.split("."), syntax.accepts) for path, syntax in STRICT_FIELDS
)


def strict_input_problems(document: Mapping[str, Any]) -> list[str]:
    """What in `document` (a PolicyInput as the engines receive it, JSON) is not of the
    syntax STRICT_FIELDS gives it, one "path: what it must be" line each; empty when it
    is strict."""
    # Every decision checks a few dozen values (a hundred-odd when the policy declares no
    # activity_reads and every count is sent) and nearly every input is strict: a walk that
    # only says yes or no comes first, and the one that names each problem runs only when it
    # says no (issue 17: 0.12 ms a decision before).
    if all(check(document) for check in _STRICT_CHECKS):
        return []
    problems = []
    for path, syntax in STRICT_FIELDS:
        for where, value in _values_at(document, path.split("."), ""):
            if value is _NOT_A_CONTAINER:
                problems.append(f"{where}: must be an object or a list")
            elif not syntax.accepts(value):
                shown = repr(value)
                shown = shown if len(shown) <= 40 else shown[:37] + "..."
                problems.append(f"{where}: must be {syntax.description}, not {shown}")
    return problems


_NOT_A_CONTAINER = object()


def require_attribute_codes(operation: FaceOperation) -> None:
    """Refuse, where a request is parsed, face attributes that are not codes (the adapters
    fold them to lower case; "EMOTİONS" lowers to no code). Raises MalformedRequest, which
    the adapter renders as its vendor's parameter error."""
    for attribute in operation.attributes:
        if not is_code(attribute):
            raise MalformedRequest(
                f"face attribute {attribute!r} is not one facegate accepts: attribute names"
                f" are {CODE_SYNTAX}"
            )


def _values_at(node: Any, parts: list[str], where: str) -> Iterator[tuple[str, Any]]:
    if not parts:
        yield where, node
        return
    head, rest = parts[0], parts[1:]
    if head == "*":
        if node is None:
            return
        if isinstance(node, Mapping):
            items: Iterator[tuple[Any, Any]] = iter(node.items())
        elif isinstance(node, list):
            items = enumerate(node)
        else:
            yield where, _NOT_A_CONTAINER
            return
        for key, child in items:
            yield from _values_at(child, rest, f"{where}.{key}" if where else str(key))
        return
    if not isinstance(node, Mapping):
        if node is not None:
            yield where, _NOT_A_CONTAINER
        return
    child = node.get(head)
    if child is not None:
        yield from _values_at(child, rest, f"{where}.{head}" if where else head)
