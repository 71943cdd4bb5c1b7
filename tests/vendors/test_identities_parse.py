"""What each adapter says a request compares, and which face ids an answer hands out
(issue 10: classification by effect, faces traced to their source)."""

from __future__ import annotations

import json

import pytest

from gateway.errors import MalformedRequest, UpstreamError
from gateway.vendors.base import ParsedRequest, UpstreamResponse
from gateway.vendors.inventory import Protocol
from tests.vendors.vendor_support import IMAGE, adapters, multipart, request

JSON = {"content-type": "application/json"}


def _azure(path: str, document: object, method: str = "POST") -> ParsedRequest:
    body = b"" if document is None else json.dumps(document).encode()  # a DELETE has none
    return adapters()[Protocol.AZURE].parse(
        request(method, f"/face/v1.2-preview.1{path}", body=body, headers=JSON)
    )


def _rekognition(operation: str, document: object) -> ParsedRequest:
    return adapters()[Protocol.REKOGNITION].parse(
        request(
            "POST",
            "/",
            body=json.dumps(document).encode(),
            headers={"x-amz-target": f"RekognitionService.{operation}"},
        )
    )


def ok(document: object) -> UpstreamResponse:
    return UpstreamResponse(200, {}, json.dumps(document).encode())


def test_azure_verification_against_a_person_names_the_stored_identity() -> None:
    parsed = _azure(
        "/verify", {"faceId": "f-1", "largePersonGroupId": "mugshots", "personId": "p-9"}
    )
    assert parsed.operation.kind == "verify"
    assert parsed.operation.collection == "mugshots"
    assert parsed.operation.compared_identities == ["azure:largepersongroup:mugshots/person:p-9"]
    assert parsed.probe_faces == ("azure:face:f-1",)
    small = _azure("/verify", {"faceId": "f-1", "personGroupId": "g", "personId": "p-9"})
    assert small.operation.compared_identities == ["azure:persongroup:g/person:p-9"]


def test_azure_verification_of_two_faces_names_no_stored_identity() -> None:
    parsed = _azure("/verify", {"faceId1": "a", "faceId2": "b"})
    assert parsed.operation.compared_identities == []
    assert parsed.probe_faces == ("azure:face:a", "azure:face:b")


@pytest.mark.parametrize(
    "document",
    [
        {"faceId": "f-1", "personId": "p-9"},  # which group?
        {"faceId": "f-1", "largePersonGroupId": "mugshots", "personId": ""},
        {"faceId": "f-1", "largePersonGroupId": "mugshots", "personId": ["p-1", "p-2"]},
    ],
)
def test_azure_verification_against_a_person_must_name_one_person_in_one_group(
    document: object,
) -> None:
    with pytest.raises(MalformedRequest):
        _azure("/verify", document)


def test_azure_identify_and_find_similar_name_probe_and_target_faces() -> None:
    identify = _azure("/identify", {"faceIds": ["a", "b"], "largePersonGroupId": "mugshots"})
    assert identify.probe_faces == ("azure:face:a", "azure:face:b")
    similar = _azure("/findsimilars", {"faceId": "p", "faceIds": ["t1", "t2"]})
    assert similar.probe_faces == ("azure:face:p",)
    assert similar.target_faces == ("azure:face:t1", "azure:face:t2")
    with pytest.raises(MalformedRequest):
        _azure("/findsimilars", {"faceId": "p", "faceIds": "t1"})


def test_compreface_example_verification_names_the_example() -> None:
    body, content_type = multipart(file=IMAGE)
    parsed = adapters()[Protocol.COMPREFACE].parse(
        request(
            "POST",
            "/api/v1/recognition/faces/ex-7/verify",
            body=body,
            headers={"content-type": content_type},
        )
    )
    assert parsed.operation.kind == "verify"
    assert parsed.operation.compared_identities == ["compreface:mugshots/example:ex-7"]
    assert parsed.target_faces == ("compreface:mugshots:example:ex-7",)
    assert parsed.probe_faces == ()


def test_rekognition_searches_by_face_id_name_the_face() -> None:
    for operation in ("SearchFaces", "SearchUsers"):
        parsed = _rekognition(operation, {"CollectionId": "mugshots", "FaceId": "f-1"})
        assert parsed.probe_faces == ("rekognition:face:f-1",)
    by_user = _rekognition("SearchUsers", {"CollectionId": "mugshots", "UserId": "u-1"})
    assert by_user.probe_faces == ()
    with pytest.raises(MalformedRequest):
        _rekognition("SearchFaces", {"CollectionId": "mugshots", "FaceId": 7})


def test_rekognition_index_faces_hands_out_face_ids_and_counts_unindexed_faces() -> None:
    adapter = adapters()[Protocol.REKOGNITION]
    parsed = _rekognition(
        "IndexFaces",
        {"CollectionId": "mugshots", "Image": {"Bytes": "/9j/cHJvYmU="}},
    )
    answer = {
        "FaceRecords": [{"Face": {"FaceId": "f-1"}}, {"Face": {"FaceId": "f-2"}}],
        "UnindexedFaces": [{"Reasons": ["EXCEEDS_MAX_FACES"]}] * 6,
    }
    issued = adapter.issued_faces(parsed, ok(answer))
    assert issued.face_ids == ("rekognition:face:f-1", "rekognition:face:f-2")
    assert issued.faces_in_answer == 8
    assert adapter.issued_faces(parsed, UpstreamResponse(400, {}, b"{}")) is None
    with pytest.raises(UpstreamError):
        adapter.issued_faces(parsed, ok({"FaceRecords": [{"Face": {}}]}))
    search = _rekognition("SearchFaces", {"CollectionId": "mugshots", "FaceId": "f-1"})
    assert adapter.issued_faces(search, ok({"FaceMatches": []})) is None


def test_azure_detect_and_add_face_hand_out_ids() -> None:
    adapter = adapters()[Protocol.AZURE]
    detect = adapter.parse(
        request(
            "POST",
            "/face/v1.2-preview.1/detect",
            body=IMAGE,
            headers={"content-type": "application/octet-stream"},
        )
    )
    issued = adapter.issued_faces(detect, ok([{"faceId": "a"}, {"faceId": "b"}, {}]))
    assert issued.face_ids == ("azure:face:a", "azure:face:b")
    assert issued.faces_in_answer == 3  # a face returned without an id was still there
    add = adapter.parse(
        request(
            "POST",
            "/face/v1.2-preview.1/largepersongroups/g/persons/p/persistedfaces",
            body=IMAGE,
            headers={"content-type": "application/octet-stream"},
        )
    )
    added = adapter.issued_faces(add, ok({"persistedFaceId": "pf-1"}))
    assert added.face_ids == ("azure:persistedface:pf-1",)
    delete = _azure("/largepersongroups/g", None, method="DELETE")
    assert adapter.issued_faces(delete, UpstreamResponse(200, {}, b"")) is None


def test_compreface_add_example_hands_out_its_image_id() -> None:
    adapter = adapters()[Protocol.COMPREFACE]
    body, content_type = multipart(file=IMAGE)
    add = adapter.parse(
        request(
            "POST",
            "/api/v1/recognition/faces",
            query="subject=suspect",
            body=body,
            headers={"content-type": content_type},
        )
    )
    issued = adapter.issued_faces(add, ok({"image_id": "ex-1", "subject": "suspect"}))
    assert issued.face_ids == ("compreface:mugshots:example:ex-1",)
    with pytest.raises(UpstreamError):
        adapter.issued_faces(add, ok({"subject": "suspect"}))
