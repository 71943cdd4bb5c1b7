"""Rekognition's operations: where each keeps the fields the policy reads, which ids its
answers hand out, and how many faces an answer holds."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gateway.context.face_sources import IssuedFaces
from gateway.errors import UpstreamError
from gateway.operations import OperationKind
from gateway.vendors.answers import score

VENDOR = "rekognition"


@dataclass(frozen=True)
class OperationSpec:
    """Where one Rekognition operation keeps the fields the policy cares about."""

    kind: OperationKind
    collection: tuple[str, ...] = ()  # path to the collection id in the body
    threshold: str | None = None  # field holding the match threshold (0-100)
    max_results: str | None = None  # field capping the matches returned
    images: tuple[str, ...] = ()  # fields holding an Image structure
    attributes: str | None = None  # field listing requested face attributes
    matches: str | None = None  # response field listing matches
    max_faces: str | None = None  # field capping the faces acted on (IndexFaces: enrolled)


_I, _V, _D, _E, _M, _S, _C = (
    OperationKind.IDENTIFY,
    OperationKind.VERIFY,
    OperationKind.DETECT,
    OperationKind.ENROLL,
    OperationKind.MANAGE,
    OperationKind.STREAM,
    OperationKind.CELEBRITY,
)
_COLLECTION = ("CollectionId",)

OPERATIONS: dict[str, OperationSpec] = {
    "DetectFaces": OperationSpec(_D, images=("Image",), attributes="Attributes"),
    "CompareFaces": OperationSpec(
        _V,
        threshold="SimilarityThreshold",
        images=("SourceImage", "TargetImage"),
        matches="FaceMatches",
    ),
    "SearchFacesByImage": OperationSpec(
        _I,
        collection=_COLLECTION,
        threshold="FaceMatchThreshold",
        max_results="MaxFaces",
        images=("Image",),
        matches="FaceMatches",
    ),
    "SearchFaces": OperationSpec(
        _I,
        collection=_COLLECTION,
        threshold="FaceMatchThreshold",
        max_results="MaxFaces",
        matches="FaceMatches",
    ),
    "SearchUsersByImage": OperationSpec(
        _I,
        collection=_COLLECTION,
        threshold="UserMatchThreshold",
        max_results="MaxUsers",
        images=("Image",),
        matches="UserMatches",
    ),
    "SearchUsers": OperationSpec(
        _I,
        collection=_COLLECTION,
        threshold="UserMatchThreshold",
        max_results="MaxUsers",
        matches="UserMatches",
    ),
    "IndexFaces": OperationSpec(
        _E,
        collection=_COLLECTION,
        images=("Image",),
        attributes="DetectionAttributes",
        max_faces="MaxFaces",
    ),
    "CreateCollection": OperationSpec(_M, collection=_COLLECTION),
    "DeleteCollection": OperationSpec(_M, collection=_COLLECTION),
    "DescribeCollection": OperationSpec(_M, collection=_COLLECTION),
    "ListCollections": OperationSpec(_M),
    "ListFaces": OperationSpec(_M, collection=_COLLECTION),
    "DeleteFaces": OperationSpec(_M, collection=_COLLECTION),
    "RecognizeCelebrities": OperationSpec(_C, images=("Image",)),
    "GetCelebrityInfo": OperationSpec(_C),
    "StartFaceSearch": OperationSpec(_S, collection=_COLLECTION, threshold="FaceMatchThreshold"),
    "GetFaceSearch": OperationSpec(_S, matches="Persons"),
    "StartFaceDetection": OperationSpec(_S),
    "CreateStreamProcessor": OperationSpec(
        _S,
        collection=("Settings", "FaceSearch", "CollectionId"),
        threshold="Settings.FaceSearch.FaceMatchThreshold",
    ),
    "StartStreamProcessor": OperationSpec(_S),
}

# Operations that name a face by the FaceId an earlier IndexFaces handed out, searching for
# it: the face's source is looked up in step 3 (gateway/context/face_sources.py).
_PROBE_FACE_FIELDS = {"SearchFaces": "FaceId", "SearchUsers": "FaceId"}


def face_key(face_id: str) -> str:
    """A Rekognition FaceId, namespaced for the face-source store."""
    return f"{VENDOR}:face:{face_id}"


def issued_faces(name: str, body: bytes) -> IssuedFaces | None:
    """The FaceIds an IndexFaces answer hands out, and every face the vendor found.

    A face Rekognition found but did not index (UnindexedFaces) was still in the image.
    """
    if name != "IndexFaces":
        return None
    try:
        document = json.loads(body)
        records = document.get("FaceRecords") or []
        ids = tuple(face_key(r["Face"]["FaceId"]) for r in records)
        found = len(records) + len(document.get("UnindexedFaces") or [])
    except (json.JSONDecodeError, AttributeError, KeyError, TypeError) as exc:
        raise UpstreamError("Rekognition answered with a body facegate cannot read") from exc
    return IssuedFaces(face_ids=ids, faces_in_answer=found)


# Rekognition's attribute names, normalised for the policy.
_ATTRIBUTE_NAMES = {
    "AGE_RANGE": "age",
    "EMOTIONS": "emotions",
    "GENDER": "gender",
}

# Where each normalised attribute appears in Rekognition's answers (FaceDetail fields).
_RESPONSE_ATTRIBUTES = {"age": "AgeRange", "gender": "Gender", "emotions": "Emotions"}


def _list(document: dict[str, Any], key: str) -> list[Any]:
    value = document.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise TypeError(f"{key} is not a list")
    return value


def _similarity(match: dict[str, Any]) -> float:
    return score(match["Similarity"], maximum=100.0)


def _faces(operation: str, document: dict[str, Any]) -> tuple[int | None, int | None]:
    """(faces the answer holds, faces enrolled) for the operations whose answers hold faces.

    Faces are those the policy's max_faces counts for the operation's kind: detected,
    searched (Rekognition searches the largest face only), in the comparison target, or
    enrolled. Unindexed faces of an IndexFaces were detected but not enrolled.
    """
    if operation == "DetectFaces":
        return len(_list(document, "FaceDetails")), None
    if operation == "CompareFaces":
        return len(_list(document, "FaceMatches")) + len(_list(document, "UnmatchedFaces")), None
    if operation in ("SearchFacesByImage", "SearchFaces", "SearchUsersByImage", "SearchUsers"):
        return 1, None
    if operation == "IndexFaces":
        enrolled = len(_list(document, "FaceRecords"))
        return enrolled, enrolled
    if operation == "GetFaceSearch":
        return len(_list(document, "Persons")), None
    return None, None


def normalise_attribute(name: str) -> str:
    return _ATTRIBUTE_NAMES.get(name, name.lower())


def _with_value(container: object, path: list[str], value: object) -> dict[str, Any]:
    """A copy of `container` (an object, or a new one) with `value` at `path`."""
    copy = dict(container) if isinstance(container, dict) else {}
    if len(path) == 1:
        copy[path[0]] = value
    else:
        copy[path[0]] = _with_value(copy.get(path[0]), path[1:], value)
    return copy


def _dig(payload: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = payload
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value
