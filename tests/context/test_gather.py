"""Which case context a request is judged under: the session's, completed by headers."""

from __future__ import annotations

import pytest

from gateway.case import CaseContext, LegalBasis
from gateway.context.gather import merge_case_context
from gateway.errors import MalformedRequest

BOUND = CaseContext(purpose="criminal_investigation", case_number="2026-1", offense=None)


def test_headers_fill_what_the_session_left_empty() -> None:
    context, conflicts = merge_case_context(
        BOUND, {"x-facegate-offense": "robbery", "x-facegate-legal-basis": "exigent"}
    )
    assert context.offense == "robbery"
    assert context.legal_basis is LegalBasis.EXIGENT
    assert conflicts == []


def test_the_session_wins_and_a_contradiction_is_reported() -> None:
    context, conflicts = merge_case_context(BOUND, {"x-facegate-case": "2026-999"})
    assert context.case_number == "2026-1"
    assert conflicts == ["case_number"]


def test_a_header_repeating_the_session_is_no_conflict() -> None:
    _, conflicts = merge_case_context(BOUND, {"x-facegate-case": "2026-1"})
    assert conflicts == []


def test_an_unknown_legal_basis_is_a_clear_error() -> None:
    with pytest.raises(MalformedRequest, match="X-Facegate-Legal-Basis must be one of"):
        merge_case_context(BOUND, {"x-facegate-legal-basis": "hunch"})


def test_each_inspected_image_gets_its_role_digest_identity_and_faces() -> None:
    from gateway.context.gather import image_facts
    from gateway.context.inspection import ImageFindings, ProbeInspection
    from gateway.operations import FaceOperation, OperationKind

    found = ProbeInspection(
        faces_in_probe=16,
        images=(
            ImageFindings(faces=1, width=9, height=9, digest="sha256:a", identity="phash:1"),
            ImageFindings(faces=16, width=9, height=9, digest="sha256:b", identity="phash:2"),
        ),
    )
    compare = FaceOperation(vendor="rekognition", name="CompareFaces", kind=OperationKind.VERIFY)
    assert [(i.role, i.digest, i.identity, i.faces) for i in image_facts(compare, found)] == [
        ("source", "sha256:a", "phash:1", 1),
        ("target", "sha256:b", "phash:2", 16),
    ]
    index = FaceOperation(vendor="rekognition", name="IndexFaces", kind=OperationKind.ENROLL)
    one = ProbeInspection(faces_in_probe=16, images=found.images[1:])
    assert [i.role for i in image_facts(index, one)] == ["enrolment"]
    search = FaceOperation(vendor="rekognition", name="SearchFacesByImage", kind="identify")
    assert [i.role for i in image_facts(search, one)] == ["probe"]


def test_every_case_field_has_its_header_and_reaches_the_policy() -> None:
    from gateway.case import CaseFields
    from gateway.context.gather import CONTEXT_HEADERS
    from gateway.policy.contract import PolicyContext

    assert set(CONTEXT_HEADERS) == set(CaseFields.model_fields)
    assert set(CaseFields.model_fields) <= set(PolicyContext.model_fields)
    assert "location" not in PolicyContext.model_fields


def test_a_backends_facts_are_validated_once_and_are_its_own() -> None:
    from gateway.context.gather import vendor_facts
    from gateway.vendors.inventory import Credentials, VendorBackend

    def backend(name: str) -> VendorBackend:
        return VendorBackend(
            name=name,
            protocol="azure",
            base_url="https://east.api.cognitive.microsoft.com",
            credentials=Credentials(secret_env="FACEGATE_TEST_SECRET"),
        )

    east, west = backend("east"), backend("west")
    assert vendor_facts(east) is vendor_facts(east)
    assert vendor_facts(west).name == "west"
    # An equal backend loaded anew (a reloaded inventory) is read anew.
    again = backend("east")
    assert vendor_facts(again) is not vendor_facts(east)
    assert vendor_facts(again) == vendor_facts(east)
