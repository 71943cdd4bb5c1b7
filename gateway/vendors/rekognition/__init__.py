"""Amazon Rekognition: the AWS JSON 1.1 protocol, SigV4 in and out.

Requests arrive as `POST /` with `X-Amz-Target: RekognitionService.<Operation>` and a JSON
body; errors go back as HTTP 4xx/5xx with `{"__type": ..., "Message": ...}` so that boto3
raises its typed exceptions (e.g. `client.exceptions.AccessDeniedException`).

The vendor, whole: here its authenticator, adapter and descriptor; its operation table in
`operations.py`; its error shape in `errors.py`.
"""

from __future__ import annotations

import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr
from starlette.responses import Response

from gateway import strict_json
from gateway.auth.authenticator import SigV4Authenticator, claimed_access_key_id
from gateway.auth.sessions import BoundSession
from gateway.auth.sigv4 import ALWAYS_SIGNED, SigV4Signer
from gateway.config import Settings
from gateway.context.face_sources import IssuedFaces
from gateway.errors import (
    FacegateError,
    MalformedRequest,
    PayloadTooLarge,
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
from gateway.vendors.b64 import b64decode
from gateway.vendors.base import (
    AuthDeps,
    Candidate,
    Outcome,
    ParsedRequest,
    UpstreamResponse,
    VendorDescriptor,
)
from gateway.vendors.http import UpstreamClient
from gateway.vendors.inventory import Credentials as BackendCredentials
from gateway.vendors.inventory import InventoryError, VendorBackend
from gateway.vendors.rekognition.errors import (
    CONTENT_TYPE,
    error_response,
    known_error,
    rekognition_error_type,
)
from gateway.vendors.rekognition.operations import (
    _PROBE_FACE_FIELDS,
    _RESPONSE_ATTRIBUTES,
    OPERATIONS,
    VENDOR,
    OperationSpec,
    _dig,
    _faces,
    _list,
    _similarity,
    _with_value,
    face_key,
    issued_faces,
    normalise_attribute,
)
from gateway.vendors.rest import add_counts
from gateway.vendors.scale import PERCENT

__all__ = [
    "DESCRIPTOR",
    "OPERATIONS",
    "RekognitionAdapter",
    "RekognitionAuthenticator",
    "error_response",
    "face_key",
    "issued_faces",
]

TARGET_PREFIX = "RekognitionService."
REQUIRED_SIGNED_HEADERS = ALWAYS_SIGNED | {"x-amz-target"}


@dataclass(frozen=True)
class RekognitionAuthenticator:
    """SigV4, as boto3 signs: X-Amz-Target signed too, and each signature spent once."""

    sigv4: SigV4Authenticator

    async def authenticate(self, request: IncomingRequest) -> BoundSession:
        return await self.sigv4.authenticate(request, required_headers=REQUIRED_SIGNED_HEADERS)

    def claimed_key_id(self, request: IncomingRequest) -> str | None:
        return claimed_access_key_id(request)

    async def claim(self, request: IncomingRequest, operation: FaceOperation) -> None:
        # Management operations are idempotent at the vendor: replaying one adds nothing,
        # and clients poll them (gateway/auth/replay.py).
        if operation.kind is not OperationKind.MANAGE:
            await self.sigv4.spend(request)


class RekognitionAdapter:
    name = VENDOR

    def __init__(
        self,
        *,
        backend: VendorBackend,
        max_image_bytes: int,
        timeout_seconds: float,
    ) -> None:
        self.backend = backend
        self._url = f"{backend.base_url}/"
        access_key_id = backend.credentials.access_key_id
        if not access_key_id:  # refused when the inventory is read (`_check_backend`)
            raise InventoryError("credentials.access_key_id is required for rekognition")
        # Signs as botocore's SigV4Auth would, without its per-request AWSRequest and header
        # map (gateway/auth/sigv4.py).
        self._signer = SigV4Signer(
            access_key_id=access_key_id,
            secret_access_key=backend.secret.get_secret_value(),
            region=backend.region,
            service=VENDOR,
        )
        self._max_image_bytes = max_image_bytes
        self._client = UpstreamClient(vendor="Rekognition", timeout_seconds=timeout_seconds)

    # -- parse ---------------------------------------------------------------------------

    def parse(self, request: IncomingRequest) -> ParsedRequest:
        if request.method != "POST" or request.path != "/":
            raise UnsupportedOperation(
                f"{request.method} {request.path}: Rekognition requests are POST /"
            )
        target = request.headers.get("x-amz-target", "")
        if not target.startswith(TARGET_PREFIX):
            raise UnsupportedOperation("missing or foreign X-Amz-Target header")
        name = target[len(TARGET_PREFIX) :]
        spec = OPERATIONS.get(name)
        if spec is None:
            # Never forwarded blindly: an operation we cannot classify cannot be judged.
            raise UnsupportedOperation(f"operation {name!r} is not supported by facegate")
        payload = strict_json.load_object(request.body)
        images = [self._image_bytes(payload, field) for field in spec.images]
        operation = FaceOperation(
            vendor=VENDOR,
            name=name,
            kind=spec.kind,
            collection=self._string(payload, spec.collection),
            threshold=self._number(payload, spec.threshold),
            max_results=self._integer(payload, spec.max_results),
            attributes=self._attributes(payload, spec.attributes),
            probe_digests=["sha256:" + hashlib.sha256(raw).hexdigest() for raw in images],
        )
        probe_faces: tuple[str, ...] = ()
        if name in _PROBE_FACE_FIELDS and payload.get(_PROBE_FACE_FIELDS[name]) is not None:
            face_id = self._string(payload, (_PROBE_FACE_FIELDS[name],))
            if not face_id:
                raise MalformedRequest(f"{_PROBE_FACE_FIELDS[name]} must be a non-empty string")
            probe_faces = (face_key(face_id),)
        # The body forwarded is the parsed payload written again, never the bytes received:
        # the vendor reads exactly the document that was judged and recorded. When that is
        # byte for byte what was received, the signature check's digest is its digest too.
        body = _json_body(payload, spec.images)
        return ParsedRequest(
            operation=operation,
            payload=payload,
            body=body,
            body_sha256=request.body_sha256 if body == request.body else None,
            images=tuple(images),
            probe_faces=probe_faces,
        )

    @staticmethod
    def _string(payload: dict[str, Any], path: tuple[str, ...]) -> str | None:
        if not path:
            return None
        value = _dig(payload, path)
        if value is not None and not isinstance(value, str):
            raise MalformedRequest(f"{'.'.join(path)} must be a string")
        return value

    @staticmethod
    def _number(payload: dict[str, Any], dotted: str | None) -> float | None:
        if dotted is None:
            return None
        value = _dig(payload, tuple(dotted.split(".")))
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise MalformedRequest(f"{dotted} must be a number")
        if not 0 <= value <= 100:
            raise MalformedRequest(f"{dotted} must be between 0 and 100")
        return float(value)

    @staticmethod
    def _integer(payload: dict[str, Any], field: str | None) -> int | None:
        if field is None or payload.get(field) is None:
            return None
        value = payload[field]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise MalformedRequest(f"{field} must be a positive integer")
        return value

    @staticmethod
    def _attributes(payload: dict[str, Any], field: str | None) -> list[str]:
        if field is None or payload.get(field) is None:
            return []
        value = payload[field]
        if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
            raise MalformedRequest(f"{field} must be a list of attribute names")
        return sorted({normalise_attribute(a) for a in value})

    def _image_bytes(self, payload: dict[str, Any], field: str) -> bytes:
        image = payload.get(field)
        if not isinstance(image, dict):
            raise MalformedRequest(f"{field} is required and must be an Image structure")
        if "S3Object" in image:
            # Refused with Bytes too: a vendor reading the S3Object would search another
            # image than the one digested and judged.
            raise MalformedRequest(
                f"{field}.S3Object is not supported: facegate needs the image bytes to "
                "record a digest of every probe"
            )
        if set(image) != {"Bytes"}:
            raise MalformedRequest(f"{field} may hold only Bytes")
        encoded = image.get("Bytes")
        if not isinstance(encoded, str):
            raise MalformedRequest(f"{field}.Bytes must be base64-encoded image bytes")
        # Cheap bound before decoding: base64 is 4 characters for every 3 bytes.
        if len(encoded) // 4 * 3 > self._max_image_bytes + 2:
            raise PayloadTooLarge(
                f"{field} is larger than the {self._max_image_bytes} bytes Rekognition accepts"
            )
        try:
            raw = b64decode(encoded)
        except (binascii.Error, ValueError) as exc:
            raise MalformedRequest(f"{field}.Bytes is not valid base64") from exc
        if not raw:
            raise MalformedRequest(f"{field}.Bytes is empty")
        if len(raw) > self._max_image_bytes:
            raise PayloadTooLarge(
                f"{field} is larger than the {self._max_image_bytes} bytes Rekognition accepts"
            )
        return raw

    # -- forward -------------------------------------------------------------------------

    def apply_obligations(
        self, parsed: ParsedRequest, obligations: Obligations
    ) -> dict[str, Any] | None:
        """The payload rewritten to meet the obligations, or None when it already does."""
        spec = OPERATIONS[parsed.operation.name]
        payload = parsed.payload
        changes: dict[str, Any] = {}
        if spec.threshold and obligations.min_threshold is not None:
            current = parsed.operation.threshold
            if current is None or current < obligations.min_threshold:
                path = spec.threshold.split(".")
                if len(path) == 1:
                    changes[spec.threshold] = obligations.min_threshold
                elif isinstance(_dig(payload, tuple(path[:-1])), dict):
                    # A nested threshold (a stream processor's Settings.FaceSearch), where the
                    # request has a face search to floor: the objects on its path are copied,
                    # never changed in place.
                    changes[path[0]] = _with_value(
                        payload.get(path[0]), path[1:], obligations.min_threshold
                    )
        if spec.max_faces and obligations.max_faces is not None:
            asked = payload.get(spec.max_faces)
            if (
                not isinstance(asked, int)
                or isinstance(asked, bool)
                or asked > obligations.max_faces
            ):
                changes[spec.max_faces] = obligations.max_faces
        if spec.max_results and obligations.max_results is not None:
            current_max = parsed.operation.max_results
            if current_max is None or current_max > obligations.max_results:
                changes[spec.max_results] = obligations.max_results
        if spec.attributes and obligations.remove_attributes and payload.get(spec.attributes):
            removed = set(obligations.remove_attributes)
            kept = [a for a in payload[spec.attributes] if normalise_attribute(a) not in removed]
            if kept != payload[spec.attributes]:
                changes[spec.attributes] = kept
        return {**payload, **changes} if changes else None

    async def forward(self, parsed: ParsedRequest, obligations: Obligations) -> UpstreamResponse:
        rewritten = self.apply_obligations(parsed, obligations)
        # An obligation changes no image field: they are still the ones `parse` checked.
        spec = OPERATIONS[parsed.operation.name]
        body = parsed.body if rewritten is None else _json_body(rewritten, spec.images)
        # Signed with the gateway's vendor credentials: the caller's never reach the vendor.
        headers = self._signer.sign(
            "POST",
            self._url,
            {"Content-Type": CONTENT_TYPE, "X-Amz-Target": TARGET_PREFIX + parsed.operation.name},
            body,
            body_sha256=parsed.body_sha256 if rewritten is None else None,
        )
        # UpstreamError when the vendor cannot be reached (gateway/vendors/http.py).
        reply = await self._client.request("POST", self._url, body=body, headers=headers)
        return UpstreamResponse(
            status_code=reply.status,
            headers={
                name.lower(): value
                for name, value in reply.headers.items()
                if name.lower().startswith("x-amzn-")
            },
            body=reply.body,
        )

    # -- filter --------------------------------------------------------------------------

    def filter(
        self, parsed: ParsedRequest, obligations: Obligations, response: UpstreamResponse
    ) -> Outcome:
        if not is_success(response):
            return refused(
                response, "Rekognition", code_of=rekognition_error_type, known=known_error
            )
        spec = OPERATIONS[parsed.operation.name]
        document = read_answer(response, "Rekognition")
        if document is None:
            return Outcome(response=response)
        try:
            if not isinstance(document, dict):
                raise TypeError("an answer is an object")
            return self._check(parsed, spec, obligations, response, document)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise UpstreamError("Rekognition answered with a body facegate cannot read") from exc

    def _check(
        self,
        parsed: ParsedRequest,
        spec: OperationSpec,
        obligations: Obligations,
        response: UpstreamResponse,
        document: dict[str, Any],
    ) -> Outcome:
        dropped: dict[str, int] = {}
        # Attributes the policy forbids are removed wherever they appear (FaceDetails,
        # FaceRecords[].FaceDetail, ...), asked for or not: the vendor is checked, not trusted.
        forbidden = {
            _RESPONSE_ATTRIBUTES[a]
            for a in obligations.remove_attributes
            if a in _RESPONSE_ATTRIBUTES
        }
        add_counts(dropped, {"forbidden_attributes": strip_keys(document, forbidden)})
        add_counts(dropped, {"face_template": strip_templates(document)})

        # Counted before any match is cut: the faces the vendor found, not those kept.
        faces, enrolled = _faces(parsed.operation.name, document)
        kept: list[float] = []
        candidates: tuple[Candidate, ...] | None = None
        if spec.matches == "Persons":
            # GetFaceSearch: the people tracked in a video, each with its own matches.
            for person in _list(document, "Persons"):
                matches, why = keep_best(
                    _list(person, "FaceMatches"),
                    _similarity,
                    floor=obligations.min_threshold,
                    cap=obligations.max_results,
                )
                person["FaceMatches"] = matches
                add_counts(dropped, why)
                kept += [_similarity(m) for m in matches]
        elif spec.matches is not None:
            matches, why = keep_best(
                _list(document, spec.matches),
                _similarity,
                floor=obligations.min_threshold,
                cap=obligations.max_results,
            )
            document[spec.matches] = matches
            add_counts(dropped, why)
            kept = [_similarity(m) for m in matches]
            if spec.kind is OperationKind.IDENTIFY:
                candidates = tuple(
                    Candidate(id=_candidate_id(m), similarity=_similarity(m))
                    for m in sorted(matches, key=_similarity, reverse=True)
                )

        withheld = over_faces(
            enrolled if enrolled is not None else faces,
            obligations.max_faces,
            what="faces enrolled" if enrolled is not None else "faces",
        )
        return Outcome(
            response=rendered(response, document),
            match_count=None if spec.matches is None else len(kept),
            top_similarity=max(kept, default=None),
            candidates=candidates,
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
        # boto3 reads the request id from x-amzn-RequestId; the body is always JSON 1.1.
        return answer_response(
            outcome, headers={"x-amzn-RequestId": request_id}, media_type=CONTENT_TYPE
        )

    def error_response(self, error: FacegateError, *, request_id: str) -> Response:
        return error_response(error, request_id)

    async def aclose(self) -> None:
        await self._client.aclose()


def _json_body(payload: dict[str, Any], image_fields: tuple[str, ...]) -> bytes:
    """`json.dumps(payload).encode()`, byte for byte, for a payload `parse` has checked:
    each of `image_fields` holds exactly {"Bytes": text}, text that `_image_bytes` decoded
    as strict base64. Such text is letters, digits, "+", "/" and "=", which JSON writes as
    they are, so it is put between quotes instead of through json's escaper (which spent
    about 50 us on a 20 KB image, the most of writing the body). Everything else is written
    by json.dumps, with its separators (", " and ": ") and in the payload's order."""
    if not image_fields:
        return json.dumps(payload).encode()
    members = [
        f'{json.dumps(key)}: {{"Bytes": "{value["Bytes"]}"}}'
        if key in image_fields
        else f"{json.dumps(key)}: {json.dumps(value)}"
        for key, value in payload.items()
    ]
    return ("{" + ", ".join(members) + "}").encode()


def _recognises(method: str, path: str) -> bool:
    # The AWS JSON 1.1 protocol: boto3 with endpoint_url pointed here posts to /.
    return method == "POST" and path == "/"


def _authenticator(deps: AuthDeps) -> RekognitionAuthenticator:
    return RekognitionAuthenticator(
        SigV4Authenticator(
            reads=deps.reads,
            master_key=deps.master_key,
            max_clock_skew=deps.settings.max_clock_skew,
            replays=deps.replays,
        )
    )


def _adapter(backend: VendorBackend, settings: Settings) -> RekognitionAdapter:
    return RekognitionAdapter(
        backend=backend,
        max_image_bytes=settings.max_image_bytes,
        timeout_seconds=settings.upstream_timeout_seconds,
    )


def _check_backend(backend: VendorBackend) -> str | None:
    if not backend.credentials.access_key_id:
        return "credentials.access_key_id is required for rekognition"
    return None


def _settings_backend(settings: Settings) -> VendorBackend | None:
    """The FACEGATE_REKOGNITION_* backend, used when there is no vendors file: only when
    its credentials are given (there is no default secret)."""
    secret = settings.rekognition_secret_access_key
    if secret is None or not secret.get_secret_value():
        return None
    if not settings.rekognition_access_key_id:
        raise InventoryError(
            "rekognition_access_key_id is required with rekognition_secret_access_key"
        )
    return VendorBackend(
        name=VENDOR,
        protocol=VENDOR,
        base_url=settings.rekognition_endpoint,
        region=settings.rekognition_region,
        credentials=BackendCredentials(
            access_key_id=settings.rekognition_access_key_id,
            secret_env="FACEGATE_REKOGNITION_SECRET_ACCESS_KEY",  # noqa: S106 (a name)
        ),
        secret=SecretStr(secret.get_secret_value()),
    )


DESCRIPTOR = VendorDescriptor(
    protocol=VENDOR,
    recognises=_recognises,
    scale=PERCENT,
    authenticator=_authenticator,
    adapter=_adapter,
    error_response=error_response,
    check_backend=_check_backend,
    settings_backend=_settings_backend,
    uses_region=True,
    operation_names=frozenset(OPERATIONS),
)


def _candidate_id(match: dict[str, Any]) -> str:
    """The id a match names: a face's FaceId (SearchFaces*) or a user's UserId (SearchUsers*)."""
    found = match.get("Face") or match.get("User") or {}
    candidate = found.get("FaceId") or found.get("UserId")
    if not isinstance(candidate, str) or not candidate:
        raise TypeError("a match names no face or user id")
    return candidate
