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
from gateway.config import Settings
from gateway.context.face_sources import IssuedFaces
from gateway.errors import (
    AnswerWithheld,
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
    VendorRefused,
)
from gateway.operations import FaceOperation, OperationKind
from gateway.policy.contract import Obligations
from gateway.requests import IncomingRequest
from gateway.vendors.answers import (
    answer_response,
    is_success,
    keep_best,
    over_faces,
    read_answer,
    refused,
    rendered,
    score,
    strip_keys,
    strip_templates,
)
from gateway.vendors.base import (
    AuthDeps,
    Candidate,
    Outcome,
    ParsedRequest,
    UpstreamResponse,
    VendorDescriptor,
    native_error,
    reason_headers,
)
from gateway.vendors.inventory import VendorBackend
from gateway.vendors.rest import (
    RestForwarder,
    add_counts,
    b64_image,
    encode_multipart,
    image_digest,
    json_object,
    match_route,
    multipart_form,
    parse_query,
    quoted,
    route,
)
from gateway.vendors.scale import UNIT

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
_ROUTES_BY_NAME = {r.name: r for r in ROUTES}
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
    (AnswerWithheld, 403, 403),
]


def _similarity(item: dict[str, Any]) -> float:
    return score(item["similarity"], maximum=1.0)


def _error_code(document: Any) -> object:
    return document.get("code") if isinstance(document, dict) else None


def _known_error(code: str) -> bool:
    # CompreFace's error codes are small numbers; nothing else is passed on.
    return code.isdigit() and len(code) <= 3


def normalise_plugin(name: str) -> str:
    name = name.strip().lower()
    return _PLUGIN_NAMES.get(name, name)


class CompreFaceAdapter:
    name = VENDOR

    def __init__(
        self,
        *,
        backend: VendorBackend,
        max_image_bytes: int,
        timeout_seconds: float,
    ) -> None:
        self.backend = backend
        self._max_image_bytes = max_image_bytes
        self._forwarder = RestForwarder(
            backend=backend,
            key_header=KEY_HEADER,
            timeout_seconds=timeout_seconds,
            vendor="CompreFace",
        )

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
        collection = self.backend.collection if spec.name in _ON_COLLECTION else None
        compared: list[str] = []
        target_faces: tuple[str, ...] = ()
        if spec.name == "VerifyExample":
            # The probe against one stored example: a stored identity, counted per case.
            compared = [f"{VENDOR}:{self.backend.collection}/example:{segments['image_id']}"]
            target_faces = (self.example_key(segments["image_id"]),)
        operation = FaceOperation(
            vendor=VENDOR,
            name=spec.name,
            kind=spec.kind,
            collection=collection,
            max_results=max_results,
            attributes=attributes,
            probe_digests=[
                image_digest(images.get(f), field=f, max_image_bytes=self._max_image_bytes)
                for f in spec.images
            ],
            compared_identities=compared,
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
            target_faces=target_faces,
        )

    def example_key(self, image_id: str) -> str:
        """A CompreFace example's image_id, namespaced by the service's collection."""
        return f"{VENDOR}:{self.backend.collection}:example:{image_id}"

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

    def apply_obligations(
        self, parsed: ParsedRequest, obligations: Obligations
    ) -> list[tuple[str, str]]:
        """The query parameters to send: the caller's, with the obligations applied."""
        params = dict(parsed.query)
        if parsed.operation.name == "Recognize" and obligations.max_results is not None:
            asked = parsed.operation.max_results or 1  # CompreFace's default
            params["prediction_count"] = str(min(asked, obligations.max_results))
        if (
            obligations.max_faces is not None
            and "limit" in _ROUTES_BY_NAME[parsed.operation.name].params
        ):
            # One more than allowed, so that a crowd comes back as one (and is withheld)
            # rather than cut by the vendor to faces that look like a lawful answer.
            most = obligations.max_faces + 1
            limit = params.get("limit", "0")
            if not limit.isdigit() or int(limit) == 0 or int(limit) > most:
                params["limit"] = str(most)
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
        )

    # -- filter --------------------------------------------------------------------------

    def filter(
        self, parsed: ParsedRequest, obligations: Obligations, response: UpstreamResponse
    ) -> Outcome:
        if not is_success(response):
            return refused(response, "CompreFace", code_of=_error_code, known=_known_error)
        document = read_answer(response, "CompreFace")
        if document is None:
            return Outcome(response=response)
        try:
            if not isinstance(document, dict):
                raise TypeError("an answer is an object")
            return self._check(parsed.operation.name, obligations, response, document)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise UpstreamError("CompreFace answered with a body facegate cannot read") from exc

    def _check(
        self,
        name: str,
        obligations: Obligations,
        response: UpstreamResponse,
        document: dict[str, Any],
    ) -> Outcome:
        removed = {
            _RESPONSE_FIELDS[a] for a in obligations.remove_attributes if a in _RESPONSE_FIELDS
        }
        dropped: dict[str, int] = {}
        # Removed attributes and templates go wherever they appear (each face, a
        # verification's source face and matches), asked for or not.
        add_counts(dropped, {"forbidden_attributes": strip_keys(document, removed)})
        add_counts(dropped, {"face_template": strip_templates(document)})

        faces: int | None = None
        enrolled: int | None = None
        scores: list[float] = []
        if name in ("Recognize", "Verify", "VerifyExample", "Detect"):
            results = document["result"]
            if not isinstance(results, list) or not all(isinstance(f, dict) for f in results):
                raise TypeError("result is not a list of faces")
            faces, scores = self._check_faces(name, results, obligations, dropped)
        elif name == "AddExample":
            faces = enrolled = 1 if isinstance(document.get("image_id"), str) else 0
        withheld = over_faces(
            faces, obligations.max_faces, what="faces enrolled" if enrolled is not None else "faces"
        )
        return Outcome(
            response=rendered(response, document),
            match_count=None if name in ("Detect", "AddExample") or faces is None else len(scores),
            top_similarity=max((UNIT.from_wire(s) for s in scores), default=None),
            candidates=_candidates(document) if name == "Recognize" else None,
            dropped={k: v for k, v in dropped.items() if v},
            faces=faces,
            enrolled=enrolled,
            withheld=withheld,
        )

    @staticmethod
    def _check_faces(
        name: str,
        results: list[dict[str, Any]],
        obligations: Obligations,
        dropped: dict[str, int],
    ) -> tuple[int, list[float]]:
        """Floor and cap the matches in `results` in place; (faces counted, scores kept).

        Faces: searched (Recognize), in the target (Verify), in the probe compared with the
        example (VerifyExample), detected (Detect).
        """
        floor = None
        if obligations.min_threshold is not None:
            floor = UNIT.to_wire(obligations.min_threshold)
        cap = obligations.max_results
        scores: list[float] = []
        if name == "Recognize":
            for face in results:
                subjects, why = keep_best(
                    list(face.get("subjects") or []), _similarity, floor=floor, cap=cap
                )
                face["subjects"] = subjects
                add_counts(dropped, why)
                scores += [_similarity(s) for s in subjects]
            return len(results), scores
        if name == "Verify":
            faces = 0
            for pair in results:
                matches = list(pair.get("face_matches") or [])
                faces += len(matches)
                matches, why = keep_best(matches, _similarity, floor=floor, cap=cap)
                pair["face_matches"] = matches
                add_counts(dropped, why)
                scores += [_similarity(m) for m in matches]
            return faces, scores
        if name == "VerifyExample":
            faces = len(results)
            kept, why = keep_best(list(results), _similarity, floor=floor, cap=cap)
            results[:] = kept
            add_counts(dropped, why)
            return faces, [_similarity(f) for f in kept]
        return len(results), scores

    def issued_faces(self, parsed: ParsedRequest, response: UpstreamResponse) -> IssuedFaces | None:
        """AddExample's image_id: the one face CompreFace enrolled from the image."""
        if not is_success(response) or parsed.operation.name != "AddExample":
            return None
        try:
            image_id = json.loads(response.body)["image_id"]
            if not isinstance(image_id, str) or not image_id:
                raise TypeError("image_id is not a string")
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise UpstreamError("CompreFace answered with a body facegate cannot read") from exc
        return IssuedFaces(face_ids=(self.example_key(image_id),), faces_in_answer=1)

    # -- answers and errors --------------------------------------------------------------

    def render(self, outcome: Outcome, *, request_id: str) -> Response:
        return answer_response(
            outcome, headers={"x-facegate-request-id": request_id}, media_type="application/json"
        )

    def error_response(self, error: FacegateError, *, request_id: str) -> Response:
        return error_response(error, request_id)

    async def aclose(self) -> None:
        await self._forwarder.aclose()


def error_response(error: FacegateError, request_id: str) -> Response:
    """`error` in CompreFace's shape, `{"message", "code"}`, which its SDK hands back."""
    status, code = native_error(_ERROR_CODES, error, default=(500, 500))
    if isinstance(error, VendorRefused):
        status = error.status
        code = int(error.vendor_code) if error.vendor_code is not None else code
    headers = {"x-facegate-request-id": request_id}
    headers |= reason_headers(error)
    body = json.dumps({"message": error.message, "code": code})
    return Response(body, status_code=status, media_type="application/json", headers=headers)


_KEY_HEADER_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})


def _recognises(method: str, path: str) -> bool:
    return method in _KEY_HEADER_METHODS and path.startswith(PREFIX + "/")


def _authenticator(deps: AuthDeps) -> KeyHeaderAuthenticator:
    return KeyHeaderAuthenticator(reads=deps.reads, master_key=deps.master_key, header=KEY_HEADER)


def _adapter(backend: VendorBackend, settings: Settings) -> CompreFaceAdapter:
    return CompreFaceAdapter(
        backend=backend,
        max_image_bytes=settings.max_image_bytes,
        timeout_seconds=settings.upstream_timeout_seconds,
    )


def _check_backend(backend: VendorBackend) -> str | None:
    if not backend.collection:
        return (
            "collection is required for compreface: "
            "it names the face collection the key's recognition service holds"
        )
    return None


DESCRIPTOR = VendorDescriptor(
    protocol=VENDOR,
    recognises=_recognises,
    scale=UNIT,
    authenticator=_authenticator,
    adapter=_adapter,
    error_response=error_response,
    check_backend=_check_backend,
    operation_names=frozenset(r.name for r in ROUTES),
)


def _candidates(document: dict[str, Any]) -> tuple[Candidate, ...]:
    """Recognize's subjects, as kept, best first."""
    found = []
    for face in document["result"]:
        for subject in face.get("subjects") or []:
            name = subject["subject"]
            if not isinstance(name, str) or not name:
                raise TypeError("a subject has no name")
            found.append(Candidate(id=name, similarity=UNIT.from_wire(_similarity(subject))))
    return tuple(sorted(found, key=lambda c: c.similarity, reverse=True))
