"""CompreFace's REST protocol over the same face engine, for the SDK ``compreface-sdk``.

One recognition service, whose key is the ``x-api-key`` header, holds one face collection:
subjects and their example faces. Similarities are on CompreFace's 0-1 scale (the engine's
0-100 similarity / 100). Errors come back as CompreFace sends them: ``{"message", "code"}``.

Computed, and so returned: boxes, detection probability, similarities, and the
``landmarks`` and ``calculator`` (embedding) plugins. The ``age``, ``gender`` and ``mask``
plugins would need models this vendor does not have, and are refused rather than made up.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import json
from collections.abc import Callable
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qsl

import anyio.to_thread
import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from refvendor.errors import RekognitionError
from refvendor.faces import FaceEngine, distances, similarity
from refvendor.operations import _Analysis, _analyze_image
from refvendor.received import Received
from refvendor.store import Collection

DEFAULT_KEY = "refvendor-compreface-key"
PLUGINS = ("landmarks", "calculator")
NOT_COMPUTED = ("age", "gender", "mask", "pose")
JSON = dict[str, Any]


class CompreFaceError(Exception):
    def __init__(self, message: str, *, code: int, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.code, self.status = message, code, status


def _no_face() -> CompreFaceError:
    return CompreFaceError("No face is found in the given image", code=28)


def read_multipart_files(content_type: str, body: bytes) -> dict[str, bytes]:
    """The file parts of a multipart/form-data body, by field name."""
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        return {}
    files: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            files[name] = payload
    return files


class CompreFace:
    def __init__(self, *, key: str) -> None:
        self.key = key
        self.examples = Collection(collection_id="compreface", arn="compreface")
        self.subjects: set[str] = set()
        self.engine: FaceEngine | None = None

    # -- plumbing ------------------------------------------------------------------------

    async def _analyze(self, data: bytes, describe: int) -> _Analysis:
        assert self.engine is not None
        work = functools.partial(_analyze_image, self.engine, data, describe)
        try:
            return await anyio.to_thread.run_sync(work)
        except RekognitionError as exc:
            raise CompreFaceError(exc.message or "invalid image", code=25) from exc

    @staticmethod
    def _params(request: Request) -> dict[str, str]:
        return dict(parse_qsl(request.url.query))

    @staticmethod
    async def _image(request: Request, field: str = "file") -> bytes:
        body = await request.body()
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            data = read_multipart_files(content_type, body).get(field)
        elif content_type.startswith("application/json"):
            encoded = json.loads(body or b"{}").get(field)
            try:
                data = base64.b64decode(encoded, validate=True) if encoded else None
            except (binascii.Error, ValueError, TypeError):
                data = None
        else:
            data = None
        if not data:
            raise CompreFaceError(f"Required request part '{field}' is not present", code=26)
        return data

    @staticmethod
    def _number(params: dict[str, str], name: str, default: float) -> float:
        try:
            return float(params[name]) if name in params else default
        except ValueError as exc:
            raise CompreFaceError(f"{name} must be a number", code=26) from exc

    @staticmethod
    def _plugins(params: dict[str, str]) -> list[str]:
        plugins = [p.strip() for p in params.get("face_plugins", "").split(",") if p.strip()]
        refused = [p for p in plugins if p not in PLUGINS]
        if refused:
            raise CompreFaceError(
                f"the reference vendor cannot compute plugins {', '.join(refused)}", code=26
            )
        return plugins

    @staticmethod
    def _status(params: dict[str, str]) -> bool:
        # The SDK sends Python's `True`; CompreFace's server parses booleans without case.
        return params.get("status", "false").lower() == "true"

    def _faces(self, analysis: _Analysis, params: dict[str, str]) -> list[int]:
        threshold = self._number(params, "det_prob_threshold", 0.8)
        limit = int(self._number(params, "limit", 0))
        kept = [i for i, f in enumerate(analysis.faces) if f.confidence / 100 >= threshold]
        return kept[:limit] if limit > 0 else kept

    def _face(self, analysis: _Analysis, index: int, plugins: list[str]) -> JSON:
        face = analysis.faces[index]
        document: JSON = {
            "box": {
                "probability": round(face.confidence / 100, 5),
                "x_min": max(face.box.left, 0),
                "y_min": max(face.box.top, 0),
                "x_max": min(face.box.left + face.box.width, analysis.width),
                "y_max": min(face.box.top + face.box.height, analysis.height),
            }
        }
        if "landmarks" in plugins:
            document["landmarks"] = [[round(m.x), round(m.y)] for m in face.landmarks]
        if "calculator" in plugins and index < len(analysis.descriptors):
            document["embedding"] = [float(v) for v in analysis.descriptors[index]]
        return document

    # -- operations ----------------------------------------------------------------------

    async def recognize(self, request: Request) -> JSON:
        params = self._params(request)
        plugins = self._plugins(params)
        count = int(self._number(params, "prediction_count", 1))
        analysis = await self._analyze(await self._image(request), describe=100)
        indices = self._faces(analysis, params)
        if not indices:
            raise _no_face()
        result = []
        for index in indices:
            document = self._face(analysis, index, plugins)
            best: dict[str, float] = {}
            for face, distance in self.examples.nearest(analysis.descriptors[index]):
                subject = face.external_image_id or ""
                best.setdefault(subject, round(similarity(distance) / 100, 5))
            ranked = sorted(best.items(), key=lambda item: item[1], reverse=True)[:count]
            document["subjects"] = [{"subject": s, "similarity": v} for s, v in ranked]
            result.append(document)
        return {"result": result}

    async def detect(self, request: Request) -> JSON:
        params = self._params(request)
        plugins = self._plugins(params)
        analysis = await self._analyze(await self._image(request), describe=100)
        indices = self._faces(analysis, params)
        if not indices:
            raise _no_face()
        return {"result": [self._face(analysis, i, plugins) for i in indices]}

    async def verify(self, request: Request) -> JSON:
        params = self._params(request)
        plugins = self._plugins(params)
        source = await self._analyze(await self._image(request, "source_image"), describe=1)
        target = await self._analyze(await self._image(request, "target_image"), describe=100)
        if not source.faces or not target.faces:
            raise _no_face()
        found = distances(source.descriptors[0], np.asarray(target.descriptors))
        matches = [
            {**self._face(target, i, plugins), "similarity": round(similarity(float(d)) / 100, 5)}
            for i, d in enumerate(found)
        ]
        matches.sort(key=lambda m: float(m["similarity"]), reverse=True)
        return {
            "result": [
                {"source_image_face": self._face(source, 0, plugins), "face_matches": matches}
            ]
        }

    async def verify_example(self, request: Request, image_id: str) -> JSON:
        params = self._params(request)
        plugins = self._plugins(params)
        example = self.examples.get(image_id)
        if example is None:
            raise CompreFaceError(f"Image with id {image_id} not found", code=24, status=404)
        analysis = await self._analyze(await self._image(request), describe=100)
        indices = self._faces(analysis, params)
        if not indices:
            raise _no_face()
        result = []
        for index in indices:
            [distance] = distances(
                analysis.descriptors[index], np.asarray([example.descriptor])
            ).tolist()
            result.append(
                {
                    **self._face(analysis, index, plugins),
                    "subject": example.external_image_id,
                    "similarity": round(similarity(distance) / 100, 5),
                }
            )
        return {"result": result}

    async def add_example(self, request: Request) -> JSON:
        params = self._params(request)
        subject = params.get("subject", "")
        if not subject:
            raise CompreFaceError("subject is required", code=26)
        analysis = await self._analyze(await self._image(request), describe=1)
        indices = self._faces(analysis, params)
        if not indices or indices[0] != 0:
            raise _no_face()
        face = analysis.faces[0]
        stored = self.examples.add(
            image_id="",
            external_image_id=subject,
            bounding_box={},
            confidence=face.confidence,
            descriptor=analysis.descriptors[0],
        )
        self.subjects.add(subject)
        return {"image_id": stored.face_id, "subject": subject}

    def list_examples(self, request: Request) -> JSON:
        subject = self._params(request).get("subject")
        faces = [
            {"image_id": f.face_id, "subject": f.external_image_id}
            for f in self.examples.faces()
            if subject is None or f.external_image_id == subject
        ]
        return {
            "faces": faces,
            "page_number": 0,
            "page_size": len(faces),
            "total_pages": 1,
            "total_elements": len(faces),
        }

    def delete_examples(self, request: Request) -> JSON:
        subject = self._params(request).get("subject")
        doomed = [
            f.face_id
            for f in self.examples.faces()
            if subject is None or f.external_image_id == subject
        ]
        deleted, _ = self.examples.delete(doomed)
        return {"deleted": len(deleted)}

    def delete_example(self, image_id: str) -> JSON:
        face = self.examples.get(image_id)
        if face is None:
            raise CompreFaceError(f"Image with id {image_id} not found", code=24, status=404)
        self.examples.delete([image_id])
        return {"image_id": image_id, "subject": face.external_image_id}

    async def subjects_call(self, request: Request, subject: str | None) -> JSON:
        if request.method == "GET":
            return {"subjects": sorted(self.subjects)}
        if request.method == "POST":
            name = json.loads(await request.body() or b"{}").get("subject")
            if not isinstance(name, str) or not name:
                raise CompreFaceError("subject is required", code=26)
            self.subjects.add(name)
            return {"subject": name}
        if request.method == "PUT" and subject is not None:
            name = json.loads(await request.body() or b"{}").get("subject")
            if subject not in self.subjects or not isinstance(name, str) or not name:
                raise CompreFaceError(f"Subject {subject} not found", code=24, status=404)
            self.subjects.discard(subject)
            self.subjects.add(name)
            for face in self.examples.faces():
                if face.external_image_id == subject:
                    self.examples.delete([face.face_id])
                    self.examples.add(
                        image_id="",
                        external_image_id=name,
                        bounding_box={},
                        confidence=face.confidence,
                        descriptor=face.descriptor,
                    )
            return {"updated": True}
        if request.method == "DELETE":
            doomed = [subject] if subject is not None else sorted(self.subjects)
            for name in doomed:
                self.subjects.discard(name)
                ids = [f.face_id for f in self.examples.faces() if f.external_image_id == name]
                self.examples.delete(ids)
            return {"subject": subject} if subject is not None else {"deleted": len(doomed)}
        raise CompreFaceError("method not allowed", code=1, status=405)


def compreface_router(
    vendor: CompreFace, count: Callable[[str], None], received: Received | None = None
) -> APIRouter:
    router = APIRouter(prefix="/api/v1")

    async def run(request: Request, name: str, call: Callable[[], Any]) -> Response:
        count(f"compreface:{name}")
        if received is not None:
            body = await request.body()
            content_type = request.headers.get("content-type", "")
            files = []
            if content_type.startswith("multipart/form-data"):
                files = list(read_multipart_files(content_type, body).values())
            received.compreface(name, query=CompreFace._params(request), files=files)
        presented = request.headers.get("x-api-key", "")
        if not hmac.compare_digest(presented.encode(), vendor.key.encode()):
            return JSONResponse({"message": "API key is not valid", "code": 10}, status_code=401)
        try:
            result = call()
            if hasattr(result, "__await__"):
                result = await result
        except CompreFaceError as exc:
            return JSONResponse({"message": exc.message, "code": exc.code}, exc.status)
        except (ValueError, AttributeError) as exc:
            return JSONResponse({"message": f"bad request: {type(exc).__name__}", "code": 26}, 400)
        return JSONResponse(result)

    @router.post("/recognition/recognize")
    async def recognize(request: Request) -> Response:
        return await run(request, "Recognize", lambda: vendor.recognize(request))

    @router.post("/detection/detect")
    async def detect(request: Request) -> Response:
        return await run(request, "Detect", lambda: vendor.detect(request))

    @router.post("/verification/verify")
    async def verify(request: Request) -> Response:
        return await run(request, "Verify", lambda: vendor.verify(request))

    @router.post("/recognition/faces/{image_id}/verify")
    async def verify_example(request: Request, image_id: str) -> Response:
        return await run(request, "VerifyExample", lambda: vendor.verify_example(request, image_id))

    @router.post("/recognition/faces")
    async def add_example(request: Request) -> Response:
        return await run(request, "AddExample", lambda: vendor.add_example(request))

    @router.get("/recognition/faces")
    async def list_examples(request: Request) -> Response:
        return await run(request, "ListExamples", lambda: vendor.list_examples(request))

    @router.delete("/recognition/faces")
    async def delete_examples(request: Request) -> Response:
        return await run(request, "DeleteExamples", lambda: vendor.delete_examples(request))

    @router.delete("/recognition/faces/{image_id}")
    async def delete_example(request: Request, image_id: str) -> Response:
        return await run(request, "DeleteExample", lambda: vendor.delete_example(image_id))

    @router.api_route("/recognition/subjects", methods=["GET", "POST", "DELETE"])
    async def subjects(request: Request) -> Response:
        return await run(request, "Subjects", lambda: vendor.subjects_call(request, None))

    @router.api_route("/recognition/subjects/{subject}", methods=["PUT", "DELETE"])
    async def subject(request: Request, subject: str) -> Response:
        return await run(request, "Subject", lambda: vendor.subjects_call(request, subject))

    return router
