"""CompreFace: REST under /api/v1, the key in `x-api-key`, images as multipart parts.

A CompreFace key belongs to one recognition service, which holds one face collection; the
inventory names it (`collection`), and that is the reference database the policy and the
audit log see for recognition, example verification, enrolment and subject management.

Similarities are on CompreFace's 0-1 scale; the policy's 0-100 floor is divided by 100
(see scale.py). Recognize takes no threshold, so the floor is enforced on the answer only:
subjects under it are dropped, as are predictions past the result cap (which is also sent
as `prediction_count`). Refusals use CompreFace's error shape, `{"message", "code"}`; the
SDK returns that body to its caller as it does CompreFace's own errors.
"""

from __future__ import annotations

import base64
import json
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
    add_counts,
    b64_image,
    encode_multipart,
    image_digest,
    json_object,
    keep_scored,
    match_route,
    multipart_form,
    parse_query,
    quoted,
    route,
)
from gateway.vendors.scale import from_wire, to_wire

VENDOR = "compreface"
PREFIX = "/api/v1"
KEY_HEADER = "x-api-key"

_I, _V, _D, _E, _M = (
    OperationKind.IDENTIFY,
    OperationKind.VERIFY,
    OperationKind.DETECT,
    OperationKind.ENROLL,
    OperationKind.MANAGE,
)
_FACE_OPTIONS = ("limit", "det_prob_threshold", "face_plugins", "status")
_ID = r"(?P<image_id>[^/]+)"
_SUBJECT = r"(?P<subject>[^/]+)"

ROUTES = (
    route("POST", "/recognition/recognize", "Recognize", _I,
          (*_FACE_OPTIONS, "prediction_count"), images=("file",)),
    route("POST", "/detection/detect", "Detect", _D, _FACE_OPTIONS, images=("file",)),
    route("POST", "/verification/verify", "Verify", _V, _FACE_OPTIONS,
          images=("source_image", "target_image")),
    route("POST", f"/recognition/faces/{_ID}/verify", "VerifyExample", _V, _FACE_OPTIONS,
          images=("file",)),
    route("POST", "/recognition/faces", "AddExample", _E,
          ("subject", "det_prob_threshold"), images=("file",)),
    route("GET", "/recognition/faces", "ListExamples", _M, ("page", "size", "subject")),
    route("DELETE", "/recognition/faces", "DeleteSubjectExamples", _M, ("subject",)),
    route("DELETE", f"/recognition/faces/{_ID}", "DeleteExample", _M),
    route("GET", "/recognition/subjects", "ListSubjects", _M),
    route("POST", "/recognition/subjects", "AddSubject", _M),
    route("DELETE", "/recognition/subjects", "DeleteAllSubjects", _M),
    route("PUT", f"/recognition/subjects/{_SUBJECT}", "RenameSubject", _M),
    route("DELETE", f"/recognition/subjects/{_SUBJECT}", "DeleteSubject", _M),
)  # fmt: skip
# Operations on the service's own collection; detection and 1:1 verification use none.
_ON_COLLECTION = {"Recognize", "VerifyExample", "AddExample"} | {
    r.name for r in ROUTES if r.kind is _M
}

# CompreFace's face plugins, normalised for the policy; `calculator` returns the template.
_PLUGIN_NAMES = {"calculator": "embedding"}
# What a response carries for each normalised attribute, so a removed one can be stripped.
_RESPONSE_FIELDS = {"age": "age", "gender": "gender", "embedding": "embedding", "mask": "mask"}

# How each error surfaces: (HTTP status, CompreFace-style numeric code).
_ERROR_CODES: list[tuple[type[FacegateError], int, int]] = [
    (PayloadTooLarge, 413, 413),
    (UnsupportedOperation, 404, 404),
    (RequestError, 400, 400),
    (AuthenticationError, 401, 401),
    (PolicyDenied, 403, 403),
    (PolicyUnavailable, 403, 403),
    (PermissionDenied, 403, 403),
    (ServiceUnavailable, 503, 503),
    (UpstreamError, 502, 502),
]


def normalise_plugin(name: str) -> str:
    name = name.strip().lower()
    return _PLUGIN_NAMES.get(name, name)


class CompreFaceAdapter:
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

    async def authenticate(self, request: IncomingRequest) -> BoundSession:
        return await self._authenticator.authenticate(request)

    def claimed_key_id(self, request: IncomingRequest) -> str | None:
        return self._authenticator.claimed_key_id(request)

    # -- parse ---------------------------------------------------------------------------

    def parse(self, request: IncomingRequest) -> ParsedRequest:
        if not request.path.startswith(PREFIX + "/"):
            raise UnsupportedOperation(f"{request.path} is not a CompreFace path")
        spec, segments = match_route(ROUTES, request.method, request.path[len(PREFIX) :])
        params = parse_query(request.query, spec.params)
        attributes = sorted(
            {normalise_plugin(p) for p in params.get("face_plugins", "").split(",") if p.strip()}
        )
        max_results = None
        if "prediction_count" in params:
            max_results = self._positive(params["prediction_count"], "prediction_count")
        images, body, content_type = self._body(request, spec.images)
        operation = FaceOperation(
            vendor=VENDOR,
            name=spec.name,
            kind=spec.kind,
            collection=self.backend.collection if spec.name in _ON_COLLECTION else None,
            max_results=max_results,
            attributes=attributes,
            probe_digests=[
                image_digest(images.get(f), field=f, max_image_bytes=self._max_image_bytes)
                for f in spec.images
            ],
        )
        upstream_path = PREFIX + spec.pattern
        for name, value in segments.items():
            upstream_path = upstream_path.replace(f"(?P<{name}>[^/]+)", quoted(value))
        return ParsedRequest(
            operation=operation,
            payload={"query": params},
            body=body,
            images=tuple(images[field] for field in spec.images if field in images),
            method=request.method,
            upstream_path=upstream_path,
            query=tuple(params.items()),
            content_type=content_type,
        )

    @staticmethod
    def _positive(value: str, name: str) -> int:
        if not value.isdigit() or int(value) < 1:
            raise MalformedRequest(f"{name} must be a positive integer")
        return int(value)

    def _body(
        self, request: IncomingRequest, fields: tuple[str, ...]
    ) -> tuple[dict[str, bytes], bytes, str | None]:
        """The images a request carries, and the body to forward, rebuilt from exactly what
        was parsed (never the client's bytes, which a second parser might read otherwise)."""
        content_type = request.headers.get("content-type", "")
        if not fields:
            if request.method in ("POST", "PUT") and request.body:
                # Subject management: {"subject": ...}, read strictly and written again.
                document = json_object(request.body)
                return {}, json.dumps(document).encode(), "application/json"
            return {}, b"", None
        if content_type.startswith("multipart/form-data"):
            form = multipart_form(content_type, request.body)
            unknown = sorted(set(form) - set(fields))
            if unknown:
                raise MalformedRequest(f"multipart field {unknown[0]!r} is not accepted here")
            parts = [form[f] for f in fields if f in form]
            body, content_type = encode_multipart(parts)
            return {part.name: part.data for part in parts}, body, content_type
        if content_type.startswith("application/json"):
            # CompreFace also takes {"file": "<base64>"} (and source_image/target_image).
            document = json_object(request.body)
            unknown = sorted(set(document) - set(fields))
            if unknown:
                raise MalformedRequest(f"field {unknown[0]!r} is not accepted here")
            images = {
                f: b64_image(document.get(f), field=f, max_image_bytes=self._max_image_bytes)
                for f in fields
            }
            rebuilt = {f: base64.b64encode(data).decode("ascii") for f, data in images.items()}
            return images, json.dumps(rebuilt).encode(), "application/json"
        raise MalformedRequest("images must be sent as multipart/form-data or base64 JSON")

    # -- forward -------------------------------------------------------------------------

    async def claim(self, request: IncomingRequest, parsed: ParsedRequest) -> None:
        """Nothing to claim: a bearer key signs no request, so a resent one cannot be told
        from a new one (README: the key goes over TLS only, and the session wins)."""
        return None

    def apply_obligations(
        self, parsed: ParsedRequest, obligations: Obligations
    ) -> list[tuple[str, str]]:
        """The query parameters to send: the caller's, with the obligations applied."""
        params = dict(parsed.query)
        if parsed.operation.name == "Recognize" and obligations.max_results is not None:
            asked = parsed.operation.max_results or 1  # CompreFace's default
            params["prediction_count"] = str(min(asked, obligations.max_results))
        if "face_plugins" in params and obligations.remove_attributes:
            removed = set(obligations.remove_attributes)
            kept = [
                p for p in params["face_plugins"].split(",")
                if p.strip() and normalise_plugin(p) not in removed
            ]  # fmt: skip
            if kept:
                params["face_plugins"] = ",".join(kept)
            else:
                del params["face_plugins"]
        return list(params.items())

    async def forward(self, parsed: ParsedRequest, obligations: Obligations) -> UpstreamResponse:
        return await self._forwarder.send(
            method=parsed.method,
            path=parsed.upstream_path,
            query=self.apply_obligations(parsed, obligations),
            body=parsed.body,
            content_type=parsed.content_type,
            vendor="CompreFace",
        )

    # -- filter --------------------------------------------------------------------------

    def filter(
        self, parsed: ParsedRequest, obligations: Obligations, response: UpstreamResponse
    ) -> Outcome:
        name = parsed.operation.name
        if response.status_code != 200 or name not in (
            "Recognize", "Verify", "VerifyExample", "Detect"
        ):  # fmt: skip
            return Outcome(response=response)
        try:
            document = json.loads(response.body)
            faces = document["result"]
            if not isinstance(faces, list) or not all(isinstance(f, dict) for f in faces):
                raise TypeError("result is not a list of faces")
            outcome = self._filter_faces(name, faces, obligations)
        except (json.JSONDecodeError, KeyError, AttributeError, TypeError, ValueError) as exc:
            raise UpstreamError("CompreFace answered with a body facegate cannot read") from exc
        kept, scores, dropped = outcome
        document["result"] = kept
        return Outcome(
            response=UpstreamResponse(
                status_code=response.status_code,
                headers=response.headers,
                body=json.dumps(document).encode(),
            ),
            match_count=None if name == "Detect" else len(scores),
            top_similarity=max(scores, default=None),
            dropped=dropped,
        )

    def _filter_faces(
        self, name: str, faces: list[dict[str, Any]], obligations: Obligations
    ) -> tuple[list[dict[str, Any]], list[float], dict[str, int]]:
        floor = None
        if obligations.min_threshold is not None:
            floor = to_wire(obligations.min_threshold, Protocol.COMPREFACE)
        removed = {
            _RESPONSE_FIELDS[a] for a in obligations.remove_attributes if a in _RESPONSE_FIELDS
        }
        dropped: dict[str, int] = {}
        scores: list[float] = []

        def similarity(item: dict[str, Any]) -> float:
            return float(item["similarity"])

        kept_faces = []
        for face in faces:
            face = {k: v for k, v in face.items() if k not in removed}
            if name == "Recognize":
                subjects, why = keep_scored(
                    list(face.get("subjects") or []), similarity,
                    floor=floor, cap=obligations.max_results,
                )  # fmt: skip
                face["subjects"] = subjects
                add_counts(dropped, why)
                scores += [similarity(s) for s in subjects]
            elif name == "Verify":
                matches, why = keep_scored(
                    list(face.get("face_matches") or []), similarity, floor=floor, cap=None
                )
                face["face_matches"] = [
                    {k: v for k, v in m.items() if k not in removed} for m in matches
                ]
                add_counts(dropped, why)
                scores += [similarity(m) for m in matches]
            elif name == "VerifyExample":
                if floor is not None and similarity(face) < floor:
                    add_counts(dropped, {"below_threshold": 1})
                    continue
                scores.append(similarity(face))
            kept_faces.append(face)
        return kept_faces, [from_wire(s, Protocol.COMPREFACE) for s in scores], dropped

    # -- errors --------------------------------------------------------------------------

    def error_response(self, error: FacegateError, *, request_id: str) -> Response:
        status, code = native_error(_ERROR_CODES, error, default=(500, 500))
        headers = {"x-facegate-request-id": request_id}
        headers |= reason_headers(error)
        body = json.dumps({"message": error.message, "code": code})
        return Response(body, status_code=status, media_type="application/json", headers=headers)

    async def aclose(self) -> None:
        await self._forwarder.aclose()
