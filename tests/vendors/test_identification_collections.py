"""The collection each identification names, as the warrant registry sees it (issue 10,
detour 6): an identification is in a warrant's scope only if it names a collection the
warrant covers, and one that names none is out of every warrant's scope. So every
identification operation of the three protocols must report the collection it searches,
and None only where it truly searches no collection."""

from __future__ import annotations

import base64
import json

import pytest

from gateway.errors import MalformedRequest
from gateway.operations import OperationKind
from gateway.vendors import azure, compreface, rekognition
from gateway.vendors.inventory import Protocol
from tests.vendors.vendor_support import IMAGE, adapters, multipart, request

REKOGNITION_IMAGE = {"Image": {"Bytes": base64.b64encode(IMAGE).decode()}}
REKOGNITION = {
    "SearchFacesByImage": REKOGNITION_IMAGE,
    "SearchFaces": {"FaceId": "f-1"},
    "SearchUsersByImage": REKOGNITION_IMAGE,
    "SearchUsers": {"UserId": "u-1"},
}


def rekognition_collection(name: str, body: dict[str, object]) -> str | None:
    parsed = adapters()[Protocol.REKOGNITION].parse(
        request(
            "POST",
            "/",
            body=json.dumps(body).encode(),
            headers={"x-amz-target": f"RekognitionService.{name}"},
        )
    )
    assert parsed.operation.kind is OperationKind.IDENTIFY
    collection: str | None = parsed.operation.collection
    return collection


def azure_collection(path: str, body: dict[str, object]) -> str | None:
    parsed = adapters()[Protocol.AZURE].parse(
        request(
            "POST",
            f"/face/v1.2-preview.1{path}",
            body=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
        )
    )
    assert parsed.operation.kind is OperationKind.IDENTIFY
    collection: str | None = parsed.operation.collection
    return collection


def test_every_identification_operation_is_checked_here() -> None:
    identify = OperationKind.IDENTIFY
    identifications = {
        "rekognition": {n for n, s in rekognition.OPERATIONS.items() if s.kind is identify},
        "azure": {r.name for r in azure.ROUTES if r.kind is identify},
        "compreface": {r.name for r in compreface.ROUTES if r.kind is identify},
    }
    assert identifications == {
        "rekognition": set(REKOGNITION),
        "azure": {"Identify", "FindSimilar"},
        "compreface": {"Recognize"},
    }


@pytest.mark.parametrize("name", sorted(REKOGNITION))
def test_rekognition_searches_name_their_collection(name: str) -> None:
    body = REKOGNITION[name]
    assert rekognition_collection(name, {"CollectionId": "mugshots", **body}) == "mugshots"
    try:
        unnamed = rekognition_collection(name, body)
    except MalformedRequest:
        return
    assert unnamed is None  # out of every warrant's scope (tests/context/test_warrants.py)


@pytest.mark.parametrize("key", ["largePersonGroupId", "personGroupId", "dynamicPersonGroupId"])
def test_azure_identify_names_its_group(key: str) -> None:
    assert azure_collection("/identify", {"faceIds": ["f-1"], key: "mugshots"}) == "mugshots"


def test_azure_identify_without_a_group_is_refused() -> None:
    with pytest.raises(MalformedRequest):
        azure_collection("/identify", {"faceIds": ["f-1"]})


def test_azure_find_similar_names_its_face_list_or_none() -> None:
    for key in ("largeFaceListId", "faceListId"):
        assert azure_collection("/findsimilars", {"faceId": "f-1", key: "lineup"}) == "lineup"
    # Over faceIds named ad hoc: no collection, so no warrant's scope covers it.
    assert azure_collection("/findsimilars", {"faceId": "f-1", "faceIds": ["f-2", "f-3"]}) is None


def test_compreface_recognition_names_the_services_collection() -> None:
    body, content_type = multipart(file=IMAGE)
    parsed = adapters()[Protocol.COMPREFACE].parse(
        request(
            "POST",
            "/api/v1/recognition/recognize",
            body=body,
            headers={"content-type": content_type},
        )
    )
    assert parsed.operation.kind is OperationKind.IDENTIFY
    assert parsed.operation.collection == "mugshots"  # the inventory's, required for CompreFace
