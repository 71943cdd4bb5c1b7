"""The same identification through each vendor protocol gets the same decision.

Each adapter parses its own native request; the policy sees one normalised operation and
decides alike. (policies/cases/vendors.yaml states the same at the policy's level.)
"""

from __future__ import annotations

import json

from gateway.context.face_sources import MemoryFaceSourceStore, sources_of, with_face_sources
from gateway.policy.contract import Obligations, PolicyContext, PolicyInput, VendorFacts
from gateway.policy.engine import PolicyService
from gateway.vendors.base import UpstreamResponse
from gateway.vendors.inventory import Protocol
from tests.vendors.vendor_support import IMAGE, adapters, identify_requests, request

ATTESTED = {
    "demographic_accuracy_test": {"date": "2024-11-15T00:00:00Z", "source": "NIST FRTE 1:N"}
}


def _context(offense: str) -> PolicyContext:
    return PolicyContext.model_validate(
        {
            "purpose": "criminal_investigation",
            "case_number": "2025-000123",
            "offense": offense,
            "legal_basis": "warrant",
            "warrant_id": "W-1",
            "warrant": {
                "status": "active",
                "id": "W-1",
                "kind": "warrant",
                "case_number": "2025-000123",
                "operations": ["identify"],
                "collections": ["mugshots"],
                "agency": "dpd",
            },
        }
    )


async def _decisions(policy: PolicyService, offense: str) -> dict[Protocol, tuple[object, ...]]:
    built = adapters()
    # Azure identifies a faceId: the detect that produced it is seen first, as in real use.
    azure = built[Protocol.AZURE]
    detect = azure.parse(
        request(
            "POST",
            "/face/v1.2-preview.1/detect",
            body=IMAGE,
            headers={"content-type": "application/octet-stream"},
        )
    )
    answer = UpstreamResponse(200, {}, json.dumps([{"faceId": "f-1"}]).encode())
    azure.filter(detect, Obligations(), answer)
    issued = azure.issued_faces(detect, answer)
    assert issued is not None
    sources = MemoryFaceSourceStore()
    await sources.remember(sources_of(detect.operation, issued))
    decisions = {}
    for protocol, native in identify_requests(threshold=80, max_results=50).items():
        parsed = built[protocol].parse(native)
        operation = await with_face_sources(
            parsed.operation,
            store=sources,
            probe_faces=parsed.probe_faces,
            target_faces=parsed.target_faces,
        )
        assert operation.kind == "identify" and operation.collection == "mugshots"
        assert operation.max_results == 50
        assert operation.probe_digests == identify_requests_digest()
        decision = await policy.decide(
            PolicyInput.model_validate(
                {
                    "principal": {
                        "id": "officer-7",
                        "name": "O",
                        "agency": "dpd",
                        "roles": ["officer"],
                    },
                    "operation": operation,
                    "context": _context(offense),
                    "vendor": VendorFacts(
                        name=f"x-{protocol.value}", protocol=protocol.value, attestations=ATTESTED
                    ),
                    "now": "2025-03-01T12:00:00Z",
                }
            )
        )
        decisions[protocol] = (
            decision.allow,
            sorted(r.code for r in decision.reasons),
            decision.obligations.model_dump(),
        )
    return decisions


def identify_requests_digest() -> list[str]:
    import hashlib

    return ["sha256:" + hashlib.sha256(IMAGE).hexdigest()]


async def test_an_allowed_identification_is_allowed_alike(
    repository_policy: PolicyService,
) -> None:
    decisions = await _decisions(repository_policy, "robbery")
    assert len(set(map(repr, decisions.values()))) == 1, decisions
    allow, reasons, obligations = decisions[Protocol.REKOGNITION]
    assert allow is True and reasons == []
    assert obligations["min_threshold"] == 99 and obligations["max_results"] == 5  # type: ignore[index]


async def test_a_refused_identification_is_refused_alike(
    repository_policy: PolicyService,
) -> None:
    decisions = await _decisions(repository_policy, "burglary")
    assert len(set(map(repr, decisions.values()))) == 1, decisions
    assert decisions[Protocol.AZURE][:2] == (False, ["offense_not_serious_enough"])
