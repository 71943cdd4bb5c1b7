"""The audit records the pipeline builds, in the log's canonical bytes, pinned.

The bytes were taken from the records as built before the builder shared a request's common
fields between its records and the text cap ran once a record rather than once a field
(issue 17): a record built now must hash as one built then would have.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.audit.chain import canonical_bytes
from gateway.audit.records import MAX_FIELD_CHARS, TRUNCATED, AuditRecord, EventType
from gateway.auth.principals import Principal, Role
from gateway.auth.sessions import BoundSession
from gateway.case import CaseContext
from gateway.errors import AuthenticationError, MalformedRequest, UpstreamError, VendorRefused
from gateway.operations import FaceOperation, FaceSource, OperationKind
from gateway.pipeline import _RecordBuilder
from gateway.policy.contract import (
    Decision,
    Obligations,
    PolicyContext,
    PolicyInput,
    WarrantFinding,
    WarrantStatus,
)
from gateway.requests import IncomingRequest
from gateway.vendors.base import Outcome, ParsedRequest, UpstreamResponse

NOW = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC)
LONG = "x" * (MAX_FIELD_CHARS + 100)
PRINCIPAL = Principal(
    id="officer-1", name="Officer", agency="Metro PD", roles=(Role.OFFICER,), key_id="AKID1"
)
SESSION = BoundSession(
    access_key_id="AKID1",
    principal=PRINCIPAL,
    context=CaseContext(purpose="criminal_investigation", case_number="2026-1"),
    expires_at=NOW + timedelta(days=3),
    revoked=False,
)
PARSED_OPERATION = FaceOperation(
    vendor="rekognition",
    name="SearchFacesByImage",
    kind=OperationKind.IDENTIFY,
    collection="mugshots",
    threshold=80.0,
    probe_digests=["sha256:" + "a" * 64],
)
GATHERED_OPERATION = PARSED_OPERATION.model_copy(
    update={
        "faces_in_probe": 2,
        "probe_digests": ["sha256:" + "a" * 64, "sha256:" + "b" * 64],
        "compared_identities": ["id-1"],
        "face_sources": [FaceSource(face="rekognition:face:f1", probe=True, source="src-1")],
    }
)
POLICY_INPUT = PolicyInput(
    principal=PRINCIPAL,
    operation=GATHERED_OPERATION,
    context=PolicyContext(
        purpose="criminal_investigation",
        case_number="2026-1",
        legal_basis="warrant",
        warrant_id="W-1",
        warrant=WarrantFinding(status=WarrantStatus.ACTIVE, id="W-1"),
        locations=[{"lat": 1.5, "lon": 2.5}],
    ),
    activity={"officer": {"searches": {"day": 3}}},
    now="2026-11-30T12:00:00Z",
)
DECISION = Decision(
    allow=True,
    obligations=Obligations(min_threshold=90.0, max_results=5, flags=["f", LONG]),
    policy_revision="rev-1",
    engine="regorus",
)
DENIAL = Decision.deny(code="no_warrant", message="m", policy_revision="rev-1", engine="opa")
UPSTREAM = UpstreamResponse(status_code=200, headers={}, body=b"{}")


def builder(stage: str) -> _RecordBuilder:
    request = IncomingRequest(
        request_id="req-1",
        received_at=NOW,
        method="POST",
        path="/",
        query="",
        headers={},
        body=b"",
        client_address="10.0.0." + LONG,
    )
    record = _RecordBuilder(request=request, vendor="rekognition")
    if stage in ("session", "parsed", "gathered"):
        record.session = SESSION
    if stage in ("parsed", "gathered"):
        record.parsed = ParsedRequest(operation=PARSED_OPERATION, payload={}, body=b"")
    if stage == "gathered":
        record.policy_input = POLICY_INPUT
    return record


def records() -> dict[str, AuditRecord]:
    """Every kind of record the pipeline builds, each stage's refusals included."""
    built: dict[str, AuditRecord] = {
        "auth_failure": builder("none").refusal(
            EventType.AUTH_FAILURE, AuthenticationError(LONG), key_id="K" + LONG
        ),
        "rejected_parse": builder("session").refusal(EventType.REJECTED, MalformedRequest("bad")),
        "rejected_gather": builder("parsed").refusal(EventType.REJECTED, MalformedRequest("h")),
    }
    record = builder("gathered")
    built["decision"] = record.decision(DECISION)
    built["outcome"] = record.outcome(
        Outcome(response=UPSTREAM, match_count=2, top_similarity=93.5, faces=1, dropped={"a": 1}),
        DECISION,
        0.0,
    )
    built["outcome_leads"] = record.outcome(
        Outcome(response=UPSTREAM, match_count=0), DECISION, 0.0, leads=[]
    )
    withheld = VendorRefused("refused " + LONG, vendor_code="ThrottlingException", status=429)
    built["outcome_withheld"] = record.outcome(
        Outcome(response=UPSTREAM, withheld=withheld), DECISION, 0.0
    )
    built["outcome_unreached"] = record.outcome(
        None, DECISION, 0.0, error=UpstreamError("unreachable")
    )
    built["refused_claim"] = record.refusal(EventType.AUTH_FAILURE, AuthenticationError("spent"))
    built["denial"] = builder("gathered").decision(DENIAL)
    # `time` is the clock's and `latency_ms` the request's: fixed to compare the rest.
    return {
        name: r.model_copy(update={"time": NOW, "latency_ms": 1.5 if r.latency_ms else None})
        for name, r in built.items()
    }


# sha256 of canonical_bytes(7, record), as built before issue 17's changes.
PINNED = {
    "auth_failure": "69deaf54eb69c64255a68c9c9f68c2ce78022cab5e63f918ee4386087c671567",
    "decision": "b30f37c2be2c810a9032813f742999e634416daa20f9b1506e35b3e79fd68528",
    "denial": "87297f327521ac4c87a6994e30f2c8bc962dd669ae4148edb498765b1781091c",
    "outcome": "cf9bdd2342d475d6c47527075367309650d22409295c229d0e60ec421bd601c8",
    "outcome_leads": "5ce933082f2f6bfd762e9dbbc318df47391bf017d8666c23166ce4f5833b36d1",
    "outcome_unreached": "11b7133138811a028f8346c4759e1867d2b4886f07f5bd9419ea755138dc3042",
    "outcome_withheld": "c4d1996b2fab5f2a41c783fe54c243863b873e582ddcd277322b60c73b346df0",
    "refused_claim": "674e68dc02d45ded0ed04c9a04120cb5a538d8df9d4f76b7d9e4a0872f32ed61",
    "rejected_gather": "f86f7e02270583ea87c2f401b6f35818c83c9b6250400b8cd7e4bcdee9862665",
    "rejected_parse": "70e240d11606f18362a26588172597a6fabb2dab99d448f1364543d95ca0f8a3",
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_records_encode_as_before(name: str) -> None:
    encoded = canonical_bytes(7, records()[name])
    assert hashlib.sha256(encoded).hexdigest() == PINNED[name], encoded.decode()


def test_every_record_kind_is_pinned() -> None:
    assert set(records()) == set(PINNED)


def test_records_of_a_request_each_have_their_own_time_and_lists() -> None:
    record = builder("gathered")
    first, second = record.common(), record.common()
    assert first["time"] <= second["time"]
    assert first["probe_digests"] == second["probe_digests"]
    assert first["probe_digests"] is not second["probe_digests"]
    first["probe_digests"].append("changed")
    assert "changed" not in record.common()["probe_digests"]


def test_common_fields_follow_the_stage() -> None:
    record = builder("none")
    assert "officer" not in record.common()
    record.session = SESSION
    assert record.common()["officer"] == "officer-1"
    record.parsed = ParsedRequest(operation=PARSED_OPERATION, payload={}, body=b"")
    assert record.common()["probe_digests"] == list(PARSED_OPERATION.probe_digests)
    record.policy_input = POLICY_INPUT
    assert record.common()["probe_digests"] == list(GATHERED_OPERATION.probe_digests)
    assert record.common()["warrant_id"] == "W-1"


def _old_cap(value: Any, *, depth: int = 0) -> Any:
    """The cap as a per-field validator applied it before issue 17."""
    if isinstance(value, str):
        if len(value) <= MAX_FIELD_CHARS:
            return value
        return value[: MAX_FIELD_CHARS - len(TRUNCATED)] + TRUNCATED
    if depth >= 8:
        return value
    if isinstance(value, list | tuple):
        return [_old_cap(item, depth=depth + 1) for item in value]
    if isinstance(value, dict):
        return {_old_cap(k): _old_cap(v, depth=depth + 1) for k, v in value.items()}
    return value


def _nested(depth: int) -> Any:
    node: Any = LONG
    for level in range(depth):
        node = {LONG if level % 2 else "k": [node, (LONG, 1, 2.5, None, True)]}
    return node


@pytest.mark.parametrize("depth", [0, 1, 3, 7, 8, 9, 12])
def test_the_cap_cuts_what_it_cut_before(depth: int) -> None:
    fields: dict[str, Any] = {
        "time": NOW,
        "request_id": LONG,
        "event_type": EventType.DECISION,
        "officer": "o",
        "reason_codes": [LONG, "short"],
        "obligations": {"nested": _nested(depth)},
        "probe_digests": (LONG,),
        "upstream_status": 200,
        "top_similarity": 93.5,
        "detail": {LONG: _nested(depth), "n": 1},
    }
    expected = AuditRecord.model_construct(**{k: _old_cap(v) for k, v in fields.items()})
    built = AuditRecord(**fields)
    assert canonical_bytes(1, built) == canonical_bytes(1, expected)
    assert built.model_dump() == AuditRecord.model_validate(expected.model_dump()).model_dump()
