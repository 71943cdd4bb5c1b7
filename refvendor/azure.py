"""Azure AI Face's REST protocol over the same face engine.

Both path families answer: ``/face/v1.0/...`` (``azure-cognitiveservices-vision-face``)
and ``/face/v1.2-preview.1/...`` (``azure-ai-vision-face``); they differ only in the
version segment. The key is the ``Ocp-Apim-Subscription-Key`` header. Confidences are on
Azure's 0-1 scale (the engine's 0-100 similarity / 100); errors are
``{"error": {"code", "message"}}``, which both SDKs raise as their own exceptions.

Detected faces are cached by faceId for identify, verify and findsimilars, like Azure's
24-hour face cache. Person groups (``persongroups`` and ``largepersongroups``) train at once.
Detection from a URL is refused: this vendor fetches nothing. Face attributes are not
computed, so asking for any is a BadArgument rather than a made-up answer.
"""

from __future__ import annotations

import functools
import hmac
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import anyio.to_thread
import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from refvendor.errors import RekognitionError
from refvendor.faces import Descriptor, FaceEngine, distances, similarity
from refvendor.operations import _Analysis, _analyze_image
from refvendor.received import Received

DEFAULT_KEY = "refvendor-azure-key"
FACE_CACHE_LIMIT = 10_000
JSON = dict[str, Any]


class AzureError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _bad(message: str, code: str = "BadArgument") -> AzureError:
    return AzureError(400, code, message)


def _not_found(what: str) -> AzureError:
    return AzureError(404, f"{what}NotFound", f"{what} is not found.")


@dataclass
class Person:
    name: str
    user_data: str | None
    faces: dict[str, Descriptor] = field(default_factory=dict)


@dataclass
class Group:
    name: str
    user_data: str | None
    recognition_model: str
    created: datetime
    persons: dict[str, Person] = field(default_factory=dict)


def _confidence(a: Descriptor, others: list[Descriptor]) -> float:
    if not others:
        return 0.0
    found = distances(a, np.asarray(others, dtype=np.float64))
    return round(similarity(float(found.min())) / 100, 5)


class AzureFace:
    def __init__(self, *, key: str) -> None:
        self.key = key
        self.engine: FaceEngine | None = None
        self.faces: dict[str, Descriptor] = {}  # the face cache, by faceId
        self.groups: dict[tuple[str, str], Group] = {}  # (kind, id)

    async def _analyze(self, data: bytes, describe: int) -> _Analysis:
        assert self.engine is not None
        work = functools.partial(_analyze_image, self.engine, data, describe)
        try:
            return await anyio.to_thread.run_sync(work)
        except RekognitionError as exc:
            raise _bad(exc.message or "Invalid image", "InvalidImage") from exc

    @staticmethod
    async def _image(request: Request) -> bytes:
        if not request.headers.get("content-type", "").startswith("application/octet-stream"):
            raise _bad("The reference vendor fetches no URLs; send the image bytes", "InvalidURL")
        body = await request.body()
        if not body:
            raise _bad("Image size is too small.", "InvalidImageSize")
        return body

    @staticmethod
    async def _json(request: Request) -> JSON:
        try:
            document = json.loads(await request.body() or b"{}")
        except ValueError as exc:
            raise _bad("Request body is invalid.") from exc
        if not isinstance(document, dict):
            raise _bad("Request body is invalid.")
        return document

    def _cached(self, face_id: object) -> Descriptor:
        descriptor = self.faces.get(face_id) if isinstance(face_id, str) else None
        if descriptor is None:
            raise _bad(f"Face {face_id} is not found or expired.", "FaceNotFound")
        return descriptor

    def _group(self, kind: str, group_id: str) -> Group:
        group = self.groups.get((kind, group_id))
        if group is None:
            raise _not_found("LargePersonGroup" if kind == "large" else "PersonGroup")
        return group

    def _group_of(self, document: JSON) -> Group:
        if isinstance(document.get("largePersonGroupId"), str):
            return self._group("large", document["largePersonGroupId"])
        if isinstance(document.get("personGroupId"), str):
            return self._group("small", document["personGroupId"])
        raise _bad("largePersonGroupId or personGroupId is required.")

    # -- face operations -----------------------------------------------------------------

    async def detect(self, request: Request) -> Any:
        params = dict(parse_qsl(request.url.query))
        if params.get("returnFaceAttributes"):
            raise _bad("The reference vendor computes no face attributes.")
        analysis = await self._analyze(await self._image(request), describe=100)
        faces = []
        return_id = params.get("returnFaceId", "true").lower() == "true"
        for face, descriptor in zip(analysis.faces, analysis.descriptors, strict=False):
            document: JSON = {
                "faceRectangle": {
                    "top": max(face.box.top, 0),
                    "left": max(face.box.left, 0),
                    "width": face.box.width,
                    "height": face.box.height,
                }
            }
            if return_id:
                face_id = str(uuid.uuid4())
                if len(self.faces) >= FACE_CACHE_LIMIT:
                    self.faces.pop(next(iter(self.faces)))
                self.faces[face_id] = descriptor
                document = {"faceId": face_id, **document}
            if params.get("returnRecognitionModel", "false").lower() == "true":
                document["recognitionModel"] = params.get("recognitionModel", "recognition_01")
            faces.append(document)
        return faces

    async def verify(self, request: Request) -> Any:
        document = await self._json(request)
        if "faceId1" in document:
            a = self._cached(document["faceId1"])
            confidence = _confidence(a, [self._cached(document.get("faceId2"))])
        else:
            a = self._cached(document.get("faceId"))
            person = self._group_of(document).persons.get(str(document.get("personId")))
            if person is None:
                raise _not_found("Person")
            confidence = _confidence(a, list(person.faces.values()))
        return {"isIdentical": confidence >= 0.5, "confidence": confidence}

    async def identify(self, request: Request) -> Any:
        document = await self._json(request)
        face_ids = document.get("faceIds")
        if not isinstance(face_ids, list) or not 1 <= len(face_ids) <= 10:
            raise _bad("faceIds must hold 1 to 10 face ids.")
        group = self._group_of(document)
        count = document.get("maxNumOfCandidatesReturned", 1)
        threshold = document.get("confidenceThreshold", 0.5)
        if not isinstance(count, int) or not 1 <= count <= 100:
            raise _bad("maxNumOfCandidatesReturned must be 1 to 100.")
        if not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
            raise _bad("confidenceThreshold must be 0 to 1.")
        results = []
        for face_id in face_ids:
            probe = self._cached(face_id)
            ranked = sorted(
                (
                    (pid, _confidence(probe, list(p.faces.values())))
                    for pid, p in group.persons.items()
                    if p.faces
                ),
                key=lambda item: item[1],
                reverse=True,
            )
            candidates = [
                {"personId": pid, "confidence": c} for pid, c in ranked if c >= threshold
            ][:count]
            results.append({"faceId": face_id, "candidates": candidates})
        return results

    async def find_similar(self, request: Request) -> Any:
        document = await self._json(request)
        probe = self._cached(document.get("faceId"))
        face_ids = document.get("faceIds")
        if not isinstance(face_ids, list):
            raise _bad("The reference vendor finds similar faces among faceIds only.")
        count = document.get("maxNumOfCandidatesReturned", 20)
        if not isinstance(count, int) or not 1 <= count <= 1000:
            raise _bad("maxNumOfCandidatesReturned must be 1 to 1000.")
        ranked = sorted(
            (
                {"faceId": fid, "confidence": _confidence(probe, [self._cached(fid)])}
                for fid in face_ids
            ),
            key=lambda m: float(m["confidence"]),
            reverse=True,
        )
        return ranked[:count]

    # -- person groups -------------------------------------------------------------------

    async def groups_call(
        self, request: Request, kind: str, group_id: str | None, tail: list[str]
    ) -> Any:
        id_key = "largePersonGroupId" if kind == "large" else "personGroupId"
        method = request.method

        def describe(gid: str, g: Group) -> JSON:
            return {
                id_key: gid,
                "name": g.name,
                "userData": g.user_data,
                "recognitionModel": g.recognition_model,
            }

        if group_id is None:
            if method != "GET":
                raise AzureError(405, "MethodNotAllowed", "Method not allowed.")
            return [describe(gid, g) for (k, gid), g in sorted(self.groups.items()) if k == kind]
        if not tail:
            if method == "PUT":
                if (kind, group_id) in self.groups:
                    raise AzureError(409, "PersonGroupExists", "The group already exists.")
                body = await self._json(request)
                self.groups[(kind, group_id)] = Group(
                    name=str(body.get("name", group_id)),
                    user_data=body.get("userData"),
                    recognition_model=str(body.get("recognitionModel", "recognition_01")),
                    created=datetime.now(UTC),
                )
                return None
            group = self._group(kind, group_id)
            if method == "GET":
                return describe(group_id, group)
            if method == "DELETE":
                del self.groups[(kind, group_id)]
                return None
            raise AzureError(405, "MethodNotAllowed", "Method not allowed.")
        group = self._group(kind, group_id)
        if tail == ["train"] and method == "POST":
            return 202  # trained already: every face is searchable as soon as it is added
        if tail == ["training"] and method == "GET":
            now = group.created.isoformat().replace("+00:00", "Z")
            return {
                "status": "succeeded",
                "createdDateTime": now,
                "lastActionDateTime": now,
                "lastSuccessfulTrainingDateTime": now,
                "message": None,
            }
        if tail == ["persons"]:
            if method == "POST":
                body = await self._json(request)
                person_id = str(uuid.uuid4())
                group.persons[person_id] = Person(str(body.get("name", "")), body.get("userData"))
                return {"personId": person_id}
            if method == "GET":
                return [
                    {
                        "personId": pid,
                        "name": p.name,
                        "userData": p.user_data,
                        "persistedFaceIds": list(p.faces),
                    }
                    for pid, p in group.persons.items()
                ]
        if len(tail) >= 2 and tail[0] == "persons":
            person = group.persons.get(tail[1])
            if person is None:
                raise _not_found("Person")
            if len(tail) == 2 and method == "GET":
                return {
                    "personId": tail[1],
                    "name": person.name,
                    "userData": person.user_data,
                    "persistedFaceIds": list(person.faces),
                }
            if len(tail) == 2 and method == "DELETE":
                del group.persons[tail[1]]
                return None
            if tail[2:] == ["persistedfaces"] and method == "POST":
                analysis = await self._analyze(await self._image(request), describe=1)
                if not analysis.faces:
                    raise _bad("There is no face in the image.", "InvalidImage")
                face_id = str(uuid.uuid4())
                person.faces[face_id] = analysis.descriptors[0]
                return {"persistedFaceId": face_id}
            if len(tail) == 4 and tail[2] == "persistedfaces" and method == "DELETE":
                if person.faces.pop(tail[3], None) is None:
                    raise _not_found("PersistedFace")
                return None
        raise AzureError(404, "404", "Resource not found")


def azure_router(
    vendor: AzureFace, count: Callable[[str], None], received: Received | None = None
) -> APIRouter:
    router = APIRouter()
    face_calls = {
        "detect": vendor.detect,
        "verify": vendor.verify,
        "identify": vendor.identify,
        "findsimilars": vendor.find_similar,
    }

    @router.api_route("/face/{version}/{rest:path}", methods=["GET", "POST", "PUT", "DELETE"])
    async def face(request: Request, version: str, rest: str) -> Response:
        segments = [s for s in rest.split("/") if s]
        count(f"azure:{'/'.join(segments[:1]) or 'root'}")
        presented = request.headers.get("ocp-apim-subscription-key", "")
        if not hmac.compare_digest(presented.encode(), vendor.key.encode()):
            return _error(AzureError(401, "401", "Access denied due to invalid subscription key."))
        if received is not None:
            group = segments[1] if len(segments) > 1 and "groups" in segments[0] else None
            received.azure(
                "/".join(segments[:1]) or "root",
                path_group=group,
                query=dict(parse_qsl(request.url.query)),
                body=await request.body(),
            )
        try:
            if len(segments) == 1 and segments[0] in face_calls and request.method == "POST":
                result = await face_calls[segments[0]](request)
            elif segments and segments[0] in ("largepersongroups", "persongroups"):
                kind = "large" if segments[0] == "largepersongroups" else "small"
                group_id = segments[1] if len(segments) > 1 else None
                result = await vendor.groups_call(request, kind, group_id, segments[2:])
            else:
                raise AzureError(404, "404", "Resource not found")
        except AzureError as exc:
            return _error(exc)
        if result == 202:
            return Response(status_code=202)
        if result is None:
            return Response(status_code=200)
        return JSONResponse(result)

    return router


def _error(error: AzureError) -> Response:
    return JSONResponse(
        {"error": {"code": error.code, "message": error.message}}, status_code=error.status
    )
