"""Azure AI Face: REST under /face/<version>, the key in `Ocp-Apim-Subscription-Key`.

Both path families are served by one route table: `/face/v1.0/...` (the
azure-cognitiveservices-vision-face SDK, which sends image streams chunked, with no
Content-Length) and `/face/v1.2-preview.1/...` (azure-ai-vision-face); they differ only in
the version segment.

Images arrive as `application/octet-stream` bodies. Detection or enrolment from a URL
(`{"url": ...}`) is refused: the gateway must digest every probe it records, and it does
not fetch addresses a caller names (nor ask the vendor to).

Identify, verify and findsimilars name faces by the faceId an earlier detect returned.
Each faceId a detect hands out is remembered with the image it came from and the faces that
image held (gateway/context/face_sources.py, shared by replicas), so a later search is judged
by, and records, the probe that led to it. A verification against a person
(`personId`) compares the probe with a stored identity: it names it in
`compared_identities`, and more such identities in a case than a verification confirms is
identification (see the policy).

Confidences are on Azure's 0-1 scale; the policy's 0-100 floor is divided by 100 (see
scale.py): identify's `confidenceThreshold` is raised to it, `maxNumOfCandidatesReturned`
capped, and the answer checked: candidates under the floor or past the cap are dropped,
and a verification under the floor is reported as not identical. Refusals use Azure's
error shape, `{"error": {"code", "message"}}`, which both SDKs raise as their own errors.

The vendor, whole: here its adapter and descriptor; its route table in `routes.py`; its
error shape in `errors.py`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.responses import Response

from gateway.auth.key_header import KeyHeaderAuthenticator
from gateway.config import Settings
from gateway.context.face_sources import IssuedFaces
from gateway.errors import (
    FacegateError,
    MalformedRequest,
    UnsupportedOperation,
    UpstreamError,
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
    strip_keys,
    strip_templates,
)
from gateway.vendors.azure.errors import (
    _KNOWN_ERRORS,
    _error_code,
    _request_id_headers,
    error_response,
)
from gateway.vendors.azure.routes import (
    _PERSON_GROUP_KEYS,
    _RESPONSE_FIELDS,
    ROUTES,
    VENDOR,
    _confidence,
    _faces_list,
    face_key,
    issued_faces,
    normalise_attribute,
)
from gateway.vendors.base import (
    AuthDeps,
    Candidate,
    Outcome,
    ParsedRequest,
    UpstreamResponse,
    VendorDescriptor,
)
from gateway.vendors.inventory import VendorBackend
from gateway.vendors.rest import (
    RestForwarder,
    Route,
    add_counts,
    image_digest,
    json_object,
    match_route,
    parse_query,
    quoted,
)
from gateway.vendors.scale import UNIT

__all__ = [
    "DESCRIPTOR",
    "KEY_HEADER",
    "ROUTES",
    "AzureFaceAdapter",
    "error_response",
    "face_key",
    "issued_faces",
]

KEY_HEADER = "ocp-apim-subscription-key"
PATH_PREFIX = "/face/"
_VERSION = rf"^{PATH_PREFIX}(?P<version>v1\.[0-9]+(?:-preview(?:\.[0-9]+)?)?)(?P<rest>/.*)$"


class AzureFaceAdapter:
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
            vendor="Azure Face",
        )

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
        probe_faces: tuple[str, ...] = ()
        target_faces: tuple[str, ...] = ()
        compared: list[str] = []
        if spec.name in ("Identify", "Verify", "FindSimilar"):
            collection = self._collection(payload, spec.name)
            probe_faces, target_faces = self._named_faces(payload, spec.name)
            compared = self._compared_identities(payload, spec.name)
        if spec.name == "Identify":
            # Azure identifies faces detected earlier, named by faceId: the faces searched
            # at once are the faceIds, so a crowd is counted here rather than in an image.
            faces_in_probe = len(payload["faceIds"])
        if spec.name == "Identify":
            confidence = payload.get("confidenceThreshold")
            if confidence is not None:
                threshold = UNIT.from_wire(self._unit(confidence, "confidenceThreshold"))
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
            compared_identities=compared,
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
            probe_faces=probe_faces,
            target_faces=target_faces,
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

    @staticmethod
    def _named_faces(payload: dict[str, Any], name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The faceIds searched for (probes) and searched among (targets), namespaced."""
        targets: list[Any] = []
        if name == "Identify":
            probes = payload.get("faceIds")
            if not isinstance(probes, list) or not probes:
                raise MalformedRequest("faceIds must be a non-empty list of face ids")
        elif name == "Verify" and "faceId1" in payload:
            probes = [payload.get("faceId1"), payload.get("faceId2")]
        else:
            probes = [payload.get("faceId")]
            if name == "FindSimilar" and payload.get("faceIds") is not None:
                targets = payload["faceIds"]
                if not isinstance(targets, list):
                    raise MalformedRequest("faceIds must be a list of face ids")
        if not all(isinstance(f, str) and f for f in [*probes, *targets]):
            raise MalformedRequest("face ids must be non-empty strings")
        return tuple(map(face_key, probes)), tuple(map(face_key, targets))

    @staticmethod
    def _compared_identities(payload: dict[str, Any], name: str) -> list[str]:
        """The stored person a verification compares the probe with, namespaced."""
        if name != "Verify" or "personId" not in payload:
            return []
        person = payload["personId"]
        if not isinstance(person, str) or not person:
            raise MalformedRequest("personId must be a non-empty string")
        groups = [(k, payload[k]) for k in _PERSON_GROUP_KEYS if payload.get(k) is not None]
        if not groups:
            raise MalformedRequest(
                "verifying against a person needs largePersonGroupId or personGroupId"
            )
        key, group = groups[0]
        return [f"{VENDOR}:{key.removesuffix('Id').lower()}:{group}/person:{person}"]

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

    def apply_obligations(
        self, parsed: ParsedRequest, obligations: Obligations
    ) -> tuple[bytes, list[tuple[str, str]]]:
        """The body and query to send: the caller's, with the obligations applied."""
        name = parsed.operation.name
        changes: dict[str, Any] = {}
        if name == "Identify" and obligations.min_threshold is not None:
            floor = UNIT.to_wire(obligations.min_threshold)
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
        )

    # -- filter --------------------------------------------------------------------------

    def filter(
        self, parsed: ParsedRequest, obligations: Obligations, response: UpstreamResponse
    ) -> Outcome:
        if not is_success(response):
            return refused(
                response, "Azure Face", code_of=_error_code, known=_KNOWN_ERRORS.__contains__
            )
        document = read_answer(response, "Azure Face")
        if document is None:
            return Outcome(response=response)
        try:
            return self._check(parsed, obligations, response, document)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise UpstreamError("Azure Face answered with a body facegate cannot read") from exc

    def _check(
        self,
        parsed: ParsedRequest,
        obligations: Obligations,
        response: UpstreamResponse,
        document: Any,
    ) -> Outcome:
        name = parsed.operation.name
        floor = None
        if obligations.min_threshold is not None:
            floor = UNIT.to_wire(obligations.min_threshold)
        dropped: dict[str, int] = {}
        removed = {
            _RESPONSE_FIELDS[a] for a in obligations.remove_attributes if a in _RESPONSE_FIELDS
        }
        # Attributes the policy forbids are removed wherever they appear, asked for or not.
        add_counts(dropped, {"forbidden_attributes": strip_keys(document, removed)})
        add_counts(dropped, {"face_template": strip_templates(document)})

        scores: list[float] = []
        faces: int | None = None
        enrolled: int | None = None
        found: list[tuple[str, float]] = []  # identification candidates, (id, wire score)
        if name == "Detect":
            faces = len(_faces_list(document))
        elif name == "Identify":
            faces = len(_faces_list(document))
            for result in document:
                kept, why = keep_best(
                    list(result.get("candidates") or []),
                    _confidence,
                    floor=floor,
                    cap=obligations.max_results,
                )
                result["candidates"] = kept
                add_counts(dropped, why)
                scores += [_confidence(c) for c in kept]
                found += [(_person_id(c), _confidence(c)) for c in kept]
        elif name == "FindSimilar":
            faces = 1
            document, why = keep_best(
                _faces_list(document), _confidence, floor=floor, cap=obligations.max_results
            )
            add_counts(dropped, why)
            scores += [_confidence(c) for c in document]
            found += [(_similar_face_id(c), _confidence(c)) for c in document]
        elif name == "Verify":
            if not isinstance(document, dict):
                raise TypeError("a verification is an object")
            faces = 1
            confidence = _confidence(document)
            if document.get("isIdentical") and floor is not None and confidence < floor:
                document["isIdentical"] = False
                dropped["below_threshold"] = 1
            if document.get("isIdentical"):
                scores.append(confidence)
        elif name.endswith("PersonFace") and name.startswith("Add"):
            if not isinstance(document, dict):
                raise TypeError("an added face is an object")
            faces = enrolled = 1 if isinstance(document.get("persistedFaceId"), str) else 0
        withheld = over_faces(
            faces, obligations.max_faces, what="faces enrolled" if enrolled is not None else "faces"
        )
        return Outcome(
            response=rendered(response, document),
            match_count=len(scores) if name in ("Identify", "FindSimilar", "Verify") else None,
            top_similarity=max((UNIT.from_wire(s) for s in scores), default=None),
            candidates=(
                tuple(
                    Candidate(id=i, similarity=UNIT.from_wire(c))
                    for i, c in sorted(found, key=lambda f: f[1], reverse=True)
                )
                if parsed.operation.kind is OperationKind.IDENTIFY
                else None
            ),
            dropped={k: v for k, v in dropped.items() if v},
            faces=faces,
            enrolled=enrolled,
            withheld=withheld,
        )

    def issued_faces(self, parsed: ParsedRequest, response: UpstreamResponse) -> IssuedFaces | None:
        if not is_success(response):
            return None
        return issued_faces(parsed.operation.name, response.body)

    # -- answers and errors --------------------------------------------------------------

    def render(self, outcome: Outcome, *, request_id: str) -> Response:
        return answer_response(
            outcome, headers=_request_id_headers(request_id), media_type="application/json"
        )

    def error_response(self, error: FacegateError, *, request_id: str) -> Response:
        return error_response(error, request_id)

    async def aclose(self) -> None:
        await self._forwarder.aclose()


_KEY_HEADER_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})


def _recognises(method: str, path: str) -> bool:
    # Both SDKs' path families; a version facegate does not serve is still Azure's, and is
    # refused by parse in Azure's shape, on record.
    return method in _KEY_HEADER_METHODS and path.startswith(PATH_PREFIX)


def _authenticator(deps: AuthDeps) -> KeyHeaderAuthenticator:
    return KeyHeaderAuthenticator(reads=deps.reads, master_key=deps.master_key, header=KEY_HEADER)


def _adapter(backend: VendorBackend, settings: Settings) -> AzureFaceAdapter:
    return AzureFaceAdapter(
        backend=backend,
        max_image_bytes=settings.max_image_bytes,
        timeout_seconds=settings.upstream_timeout_seconds,
    )


DESCRIPTOR = VendorDescriptor(
    protocol=VENDOR,
    recognises=_recognises,
    scale=UNIT,
    authenticator=_authenticator,
    adapter=_adapter,
    error_response=error_response,
    operation_names=frozenset(r.name for r in ROUTES),
)


def _person_id(candidate: dict[str, Any]) -> str:
    person = candidate["personId"]
    if not isinstance(person, str) or not person:
        raise TypeError("a candidate names no personId")
    return person


def _similar_face_id(face: dict[str, Any]) -> str:
    found = face.get("persistedFaceId") or face.get("faceId")
    if not isinstance(found, str) or not found:
        raise TypeError("a similar face names no id")
    return found
