"""Azure AI Face: REST under /face/<version>, the key in `Ocp-Apim-Subscription-Key`.

Both path families are served by one route table: `/face/v1.0/...` (the
azure-cognitiveservices-vision-face SDK, which sends image streams chunked, with no
Content-Length) and `/face/v1.2-preview.1/...` (azure-ai-vision-face); they differ only in
the version segment.

Images arrive as `application/octet-stream` bodies. Detection or enrolment from a URL
(`{"url": ...}`) is refused: the gateway must digest every probe it records, and it does
not fetch addresses a caller names (nor ask the vendor to).

Identify, verify and findsimilars name faces by the faceId an earlier detect returned.
The adapter remembers, per faceId it saw come back from a detect, the digest of the image
it came from, so a later search records which probe led to it (held in memory, bounded, for
the 24 hours Azure keeps a faceId; a faceId detected elsewhere is recorded without one).

Confidences are on Azure's 0-1 scale; the policy's 0-100 floor is divided by 100 (see
scale.py): identify's `confidenceThreshold` is raised to it, `maxNumOfCandidatesReturned`
capped, and the answer checked: candidates under the floor or past the cap are dropped,
and a verification under the floor is reported as not identical. Refusals use Azure's
error shape, `{"error": {"code", "message"}}`, which both SDKs raise as their own errors.
"""

from __future__ import annotations

import json
import re
import time
from collections import OrderedDict
from typing import Any

from starlette.responses import Response

from gateway.auth.key_header import KeyHeaderAuthenticator
from gateway.auth.sessions import BoundSession
from gateway.errors import (
    AuthenticationError,
    FacegateError,
    MalformedRequest,
    PayloadTooLarge,
    PermissionDenied,
    PolicyDenied,
    PolicyUnavailable,
    RequestError,
    ServiceUnavailable,
    UnsupportedOperation,
    UpstreamError,
)
from gateway.operations import FaceOperation, OperationKind
from gateway.policy.contract import Obligations
from gateway.requests import IncomingRequest
from gateway.vendors.base import (
    Outcome,
    ParsedRequest,
    UpstreamResponse,
    native_error,
    reason_headers,
)
from gateway.vendors.inventory import Protocol, VendorBackend
from gateway.vendors.rest import (
    RestForwarder,
    Route,
    add_counts,
    image_digest,
    json_object,
    keep_scored,
    match_route,
    parse_query,
    quoted,
    route,
)
from gateway.vendors.scale import from_wire, to_wire

VENDOR = "azure"
KEY_HEADER = "ocp-apim-subscription-key"
_VERSION = r"^/face/(?P<version>v1\.[0-9]+(?:-preview(?:\.[0-9]+)?)?)(?P<rest>/.*)$"
FACE_ID_TTL_SECONDS = 24 * 3600
FACE_ID_MEMORY = 100_000

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

# Azure's attribute names, normalised for the policy.
_ATTRIBUTE_NAMES = {"emotion": "emotions"}
_RESPONSE_FIELDS = {"age": "age", "gender": "gender", "emotions": "emotion"}

_ERROR_CODES: list[tuple[type[FacegateError], int, str]] = [
    (PayloadTooLarge, 400, "InvalidImageSize"),
    (UnsupportedOperation, 404, "NotFound"),
    (RequestError, 400, "BadArgument"),
    (AuthenticationError, 401, "401"),
    (PolicyDenied, 403, "PermissionDenied"),
    (PolicyUnavailable, 403, "PermissionDenied"),
    (PermissionDenied, 403, "PermissionDenied"),
    (ServiceUnavailable, 503, "ServiceUnavailable"),
    (UpstreamError, 502, "BadGateway"),
]


def normalise_attribute(name: str) -> str:
    name = name.strip().lower()
    return _ATTRIBUTE_NAMES.get(name, name)


class AzureFaceAdapter:
    name = VENDOR

    def __init__(
        self,
        *,
        authenticator: KeyHeaderAuthenticator,
        backend: VendorBackend,
        max_image_bytes: int,
        timeout_seconds: float,
    ) -> None:
        self._authenticator = authenticator
        self.backend = backend
        self._max_image_bytes = max_image_bytes
        self._forwarder = RestForwarder(
            backend=backend, key_header=KEY_HEADER, timeout_seconds=timeout_seconds
        )
        # faceId -> (probe digest, when it was seen), oldest first.
        self._probes: OrderedDict[str, tuple[str, float]] = OrderedDict()

    async def authenticate(self, request: IncomingRequest) -> BoundSession:
        return await self._authenticator.authenticate(request)

    def claimed_key_id(self, request: IncomingRequest) -> str | None:
        return self._authenticator.claimed_key_id(request)

    # -- parse ---------------------------------------------------------------------------

    def parse(self, request: IncomingRequest) -> ParsedRequest:
        found = re.match(_VERSION, request.path)
        if found is None:
            raise UnsupportedOperation(f"{request.path} is not an Azure Face path")
        spec, segments = match_route(ROUTES, request.method, found["rest"])
        params = parse_query(request.query, spec.params)
        content_type = request.headers.get("content-type")
        # What is forwarded is rebuilt from what was parsed: the image bytes inspected, or
        # the JSON document judged, written again (never the client's bytes as sent).
        payload: dict[str, Any] = {}
        digests: list[str] = []
        body = b""
        if spec.images:
            digests.append(self._image_digest(request, content_type))
            body = request.body
        elif request.method in ("POST", "PUT", "PATCH") and request.body:
            payload = json_object(request.body)
            body, content_type = json.dumps(payload).encode(), "application/json"
        elif request.body:
            raise MalformedRequest(f"a {request.method} request carries no body")
        else:
            content_type = None

        collection = segments.get("group")
        threshold = max_results = None
        faces_in_probe: int | None = None
        if spec.name in ("Identify", "Verify", "FindSimilar"):
            collection = self._collection(payload, spec.name)
            digests = self._probe_digests(payload, spec.name)
        if spec.name == "Identify":
            # Azure identifies faces detected earlier, named by faceId: the faces searched
            # at once are the faceIds, so a crowd is counted here rather than in an image.
            faces_in_probe = len(payload["faceIds"])
        if spec.name == "Identify":
            confidence = payload.get("confidenceThreshold")
            if confidence is not None:
                threshold = from_wire(self._unit(confidence, "confidenceThreshold"), Protocol.AZURE)
            max_results = self._count(payload, "maxNumOfCandidatesReturned", 100)
        elif spec.name == "FindSimilar":
            max_results = self._count(payload, "maxNumOfCandidatesReturned", 1000)
        attributes = sorted(
            {
                normalise_attribute(a)
                for a in params.get("returnFaceAttributes", "").split(",")
                if a.strip()
            }
        )
        operation = FaceOperation(
            vendor=VENDOR,
            name=spec.name,
            kind=spec.kind,
            collection=collection,
            threshold=threshold,
            max_results=max_results,
            attributes=attributes,
            probe_digests=digests,
            faces_in_probe=faces_in_probe,
        )
        return ParsedRequest(
            operation=operation,
            payload=payload,
            body=body,
            images=(body,) if spec.images else (),
            method=request.method,
            upstream_path=self._upstream_path(found["version"], spec, segments),
            query=tuple(params.items()),
            content_type=content_type,
        )

    @staticmethod
    def _upstream_path(version: str, spec: Route, segments: dict[str, str]) -> str:
        path = spec.pattern
        for name, value in segments.items():
            path = path.replace(f"(?P<{name}>[^/]+)", quoted(value))
        return f"/face/{version}{path}"

    def _image_digest(self, request: IncomingRequest, content_type: str | None) -> str:
        if (content_type or "").startswith("application/json"):
            raise MalformedRequest(
                "images must be sent as application/octet-stream bytes: facegate records a "
                "digest of every probe, and does not fetch URLs"
            )
        if not (content_type or "").startswith("application/octet-stream"):
            raise MalformedRequest("images must be sent as application/octet-stream")
        return image_digest(request.body, field="the image", max_image_bytes=self._max_image_bytes)

    @staticmethod
    def _collection(payload: dict[str, Any], name: str) -> str | None:
        keys: tuple[str, ...] = ("largePersonGroupId", "personGroupId", "dynamicPersonGroupId")
        if name == "FindSimilar":
            keys = ("largeFaceListId", "faceListId")
        named = [payload[k] for k in keys if payload.get(k) is not None]
        if len(named) > 1:
            raise MalformedRequest(f"name at most one of {', '.join(keys)}")
        if named and not isinstance(named[0], str):
            raise MalformedRequest(f"{keys[0]} must be a string")
        if name == "Identify" and not named:
            raise MalformedRequest("identify needs largePersonGroupId or personGroupId")
        return named[0] if named else None

    def _probe_digests(self, payload: dict[str, Any], name: str) -> list[str]:
        if name == "Identify":
            face_ids = payload.get("faceIds")
            if not isinstance(face_ids, list) or not face_ids:
                raise MalformedRequest("faceIds must be a non-empty list of face ids")
        elif name == "Verify" and "faceId1" in payload:
            face_ids = [payload.get("faceId1"), payload.get("faceId2")]
        elif name == "Verify":
            face_ids = [payload.get("faceId")]
        else:
            face_ids = [payload.get("faceId")]
        if not all(isinstance(f, str) and f for f in face_ids):
            raise MalformedRequest("face ids must be non-empty strings")
        now = time.monotonic()
        digests = []
        for face_id in face_ids:
            seen = self._probes.get(face_id)
            if seen is not None and now - seen[1] < FACE_ID_TTL_SECONDS:
                digests.append(seen[0])
        return digests

    @staticmethod
    def _unit(value: object, name: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise MalformedRequest(f"{name} must be a number between 0 and 1")
        return float(value)

    @staticmethod
    def _count(payload: dict[str, Any], name: str, maximum: int) -> int | None:
        value = payload.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
            raise MalformedRequest(f"{name} must be an integer from 1 to {maximum}")
        return value

    # -- forward -------------------------------------------------------------------------

    async def claim(self, request: IncomingRequest, parsed: ParsedRequest) -> None:
        """Nothing to claim: a bearer key signs no request, so a resent one cannot be told
        from a new one (README: the key goes over TLS only, and the session wins)."""
        return None

    def apply_obligations(
        self, parsed: ParsedRequest, obligations: Obligations
    ) -> tuple[bytes, list[tuple[str, str]]]:
        """The body and query to send: the caller's, with the obligations applied."""
        name = parsed.operation.name
        changes: dict[str, Any] = {}
        if name == "Identify" and obligations.min_threshold is not None:
            floor = to_wire(obligations.min_threshold, Protocol.AZURE)
            if parsed.payload.get("confidenceThreshold", 0) < floor:
                changes["confidenceThreshold"] = floor
        if name in ("Identify", "FindSimilar") and obligations.max_results is not None:
            default = 1 if name == "Identify" else 20  # Azure's defaults
            asked = parsed.operation.max_results or default
            if asked > obligations.max_results or parsed.operation.max_results is None:
                changes["maxNumOfCandidatesReturned"] = min(asked, obligations.max_results)
        body = json.dumps({**parsed.payload, **changes}).encode() if changes else parsed.body
        params = dict(parsed.query)
        if params.get("returnFaceAttributes") and obligations.remove_attributes:
            removed = set(obligations.remove_attributes)
            kept = [
                a
                for a in params["returnFaceAttributes"].split(",")
                if a.strip() and normalise_attribute(a) not in removed
            ]
            if kept:
                params["returnFaceAttributes"] = ",".join(kept)
            else:
                del params["returnFaceAttributes"]
        return body, list(params.items())

    async def forward(self, parsed: ParsedRequest, obligations: Obligations) -> UpstreamResponse:
        body, query = self.apply_obligations(parsed, obligations)
        return await self._forwarder.send(
            method=parsed.method,
            path=parsed.upstream_path,
            query=query,
            body=body,
            content_type=parsed.content_type,
            vendor="Azure Face",
        )

    # -- filter --------------------------------------------------------------------------

    def filter(
        self, parsed: ParsedRequest, obligations: Obligations, response: UpstreamResponse
    ) -> Outcome:
        name = parsed.operation.name
        if response.status_code != 200 or name not in (
            "Detect", "Identify", "FindSimilar", "Verify"
        ):  # fmt: skip
            return Outcome(response=response)
        floor = None
        if obligations.min_threshold is not None:
            floor = to_wire(obligations.min_threshold, Protocol.AZURE)
        try:
            document = json.loads(response.body)
            document, scores, dropped = self._filter_document(
                name, document, parsed, obligations, floor
            )
        except (json.JSONDecodeError, KeyError, AttributeError, TypeError, ValueError) as exc:
            raise UpstreamError("Azure Face answered with a body facegate cannot read") from exc
        return Outcome(
            response=UpstreamResponse(
                status_code=response.status_code,
                headers=response.headers,
                body=json.dumps(document).encode(),
            ),
            match_count=None if name == "Detect" else len(scores),
            top_similarity=max((from_wire(s, Protocol.AZURE) for s in scores), default=None),
            dropped=dropped,
        )

    def _filter_document(
        self,
        name: str,
        document: Any,
        parsed: ParsedRequest,
        obligations: Obligations,
        floor: float | None,
    ) -> tuple[Any, list[float], dict[str, int]]:
        dropped: dict[str, int] = {}
        scores: list[float] = []

        def confidence(item: dict[str, Any]) -> float:
            return float(item["confidence"])

        if name == "Detect":
            removed = {
                _RESPONSE_FIELDS[a] for a in obligations.remove_attributes if a in _RESPONSE_FIELDS
            }
            for face in document:
                attributes = face.get("faceAttributes")
                if isinstance(attributes, dict):
                    face["faceAttributes"] = {
                        k: v for k, v in attributes.items() if k not in removed
                    }
                if isinstance(face.get("faceId"), str):
                    self._remember(face["faceId"], parsed.operation.probe_digests[0])
        elif name == "Identify":
            for result in document:
                kept, why = keep_scored(
                    list(result.get("candidates") or []),
                    confidence,
                    floor=floor,
                    cap=obligations.max_results,
                )
                result["candidates"] = kept
                add_counts(dropped, why)
                scores += [confidence(c) for c in kept]
        elif name == "FindSimilar":
            document, why = keep_scored(
                list(document), confidence, floor=floor, cap=obligations.max_results
            )
            add_counts(dropped, why)
            scores += [confidence(c) for c in document]
        elif name == "Verify":
            if not isinstance(document, dict):
                raise TypeError("a verification is an object")
            if document.get("isIdentical") and floor is not None and confidence(document) < floor:
                document["isIdentical"] = False
                dropped["below_threshold"] = 1
            if document.get("isIdentical"):
                scores.append(confidence(document))
        return document, scores, dropped

    def _remember(self, face_id: str, digest: str) -> None:
        self._probes[face_id] = (digest, time.monotonic())
        self._probes.move_to_end(face_id)
        while len(self._probes) > FACE_ID_MEMORY:
            self._probes.popitem(last=False)

    # -- errors --------------------------------------------------------------------------

    def error_response(self, error: FacegateError, *, request_id: str) -> Response:
        status, code = native_error(_ERROR_CODES, error, default=(500, "InternalServerError"))
        headers = {"x-facegate-request-id": request_id, "apim-request-id": request_id}
        headers |= reason_headers(error)
        body = json.dumps({"error": {"code": code, "message": error.message}})
        return Response(body, status_code=status, media_type="application/json", headers=headers)

    async def aclose(self) -> None:
        await self._forwarder.aclose()
