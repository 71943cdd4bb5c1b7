"""Azure Face's operations: the route table both SDKs' path families share, the ids its
answers hand out, and the attribute names the policy reads."""

from __future__ import annotations

import json
from typing import Any

from gateway.context.face_sources import IssuedFaces
from gateway.errors import UpstreamError
from gateway.operations import OperationKind
from gateway.vendors.answers import score
from gateway.vendors.rest import Route, route

VENDOR = "azure"


_I, _V, _D, _E, _M = (
    OperationKind.IDENTIFY,
    OperationKind.VERIFY,
    OperationKind.DETECT,
    OperationKind.ENROLL,
    OperationKind.MANAGE,
)
_DETECT_PARAMS = (
    "returnFaceId", "returnFaceLandmarks", "returnFaceAttributes", "recognitionModel",
    "returnRecognitionModel", "detectionModel", "faceIdTimeToLive",
)  # fmt: skip
_G, _P, _F = r"(?P<group>[^/]+)", r"(?P<person>[^/]+)", r"(?P<face>[^/]+)"


def _group_routes(collection: str, title: str) -> tuple[Route, ...]:
    base = f"/{collection}"
    return (
        route("GET", base, f"List{title}s", _M, ("start", "top", "returnRecognitionModel")),
        route("PUT", f"{base}/{_G}", f"Create{title}", _M),
        route("GET", f"{base}/{_G}", f"Get{title}", _M, ("returnRecognitionModel",)),
        route("PATCH", f"{base}/{_G}", f"Update{title}", _M),
        route("DELETE", f"{base}/{_G}", f"Delete{title}", _M),
        route("POST", f"{base}/{_G}/train", f"Train{title}", _M),
        route("GET", f"{base}/{_G}/training", f"Get{title}TrainingStatus", _M),
        route("POST", f"{base}/{_G}/persons", f"Create{title}Person", _M),
        route("GET", f"{base}/{_G}/persons", f"List{title}Persons", _M, ("start", "top")),
        route("GET", f"{base}/{_G}/persons/{_P}", f"Get{title}Person", _M),
        route("PATCH", f"{base}/{_G}/persons/{_P}", f"Update{title}Person", _M),
        route("DELETE", f"{base}/{_G}/persons/{_P}", f"Delete{title}Person", _M),
        route(
            "POST",
            f"{base}/{_G}/persons/{_P}/persistedfaces",
            f"Add{title}PersonFace",
            _E,
            ("userData", "targetFace", "detectionModel"),
            images=("body",),
        ),
        route("GET", f"{base}/{_G}/persons/{_P}/persistedfaces/{_F}", f"Get{title}PersonFace", _M),
        route(
            "PATCH", f"{base}/{_G}/persons/{_P}/persistedfaces/{_F}", f"Update{title}PersonFace", _M
        ),
        route(
            "DELETE",
            f"{base}/{_G}/persons/{_P}/persistedfaces/{_F}",
            f"Delete{title}PersonFace",
            _M,
        ),
    )


ROUTES: tuple[Route, ...] = (
    route("POST", "/detect", "Detect", _D, _DETECT_PARAMS, images=("body",)),
    route("POST", "/verify", "Verify", _V),
    route("POST", "/identify", "Identify", _I),
    route("POST", "/findsimilars", "FindSimilar", _I),
    *_group_routes("largepersongroups", "LargePersonGroup"),
    *_group_routes("persongroups", "PersonGroup"),
)

_PERSON_GROUP_KEYS = ("largePersonGroupId", "personGroupId", "dynamicPersonGroupId")


def face_key(face_id: str) -> str:
    """An Azure faceId (a detection's, 24 hours), namespaced for the face-source store."""
    return f"{VENDOR}:face:{face_id}"


def issued_faces(name: str, body: bytes) -> IssuedFaces | None:
    """The ids an answer hands out: a detect's faceIds (and every face it found), or the
    persistedFaceId of a face added to a person."""
    adds_face = name.startswith("Add") and name.endswith("PersonFace")
    if name != "Detect" and not adds_face:
        return None
    try:
        document = json.loads(body)
        if adds_face:
            persisted = f"{VENDOR}:persistedface:{document['persistedFaceId']}"
            return IssuedFaces(face_ids=(persisted,), faces_in_answer=1)
        ids = tuple(face_key(f["faceId"]) for f in document if f.get("faceId") is not None)
        return IssuedFaces(face_ids=ids, faces_in_answer=len(document))
    except (json.JSONDecodeError, AttributeError, KeyError, TypeError) as exc:
        raise UpstreamError("Azure Face answered with a body facegate cannot read") from exc


# Azure's attribute names, normalised for the policy.
_ATTRIBUTE_NAMES = {"emotion": "emotions"}
_RESPONSE_FIELDS = {"age": "age", "gender": "gender", "emotions": "emotion"}


def _confidence(item: dict[str, Any]) -> float:
    return score(item["confidence"], maximum=1.0)


def _faces_list(document: Any) -> list[Any]:
    if not isinstance(document, list) or not all(isinstance(f, dict) for f in document):
        raise TypeError("the answer is not a list of faces")
    return document


def normalise_attribute(name: str) -> str:
    name = name.strip().lower()
    return _ATTRIBUTE_NAMES.get(name, name)
