"""A fourth vendor protocol, written as a new vendor would be: one module, one descriptor.

It touches no product file: tests register it in `gateway.vendors.REGISTRY` (the one line a
product vendor would add there) and drive it through the real gateway. The protocol is
small on purpose: `POST /toy/v1/detect` with `{"image": "<base64>"}`, the caller's case
session as `<access key id>.<secret>` in `x-toy-key`, faces counted in the answer's
`faces`, scores on a 0-10 wire scale, errors as `{"toy_error": code, "message"}`.
"""

from __future__ import annotations

import json

from starlette.responses import Response

from gateway import strict_json
from gateway.auth.key_header import KeyHeaderAuthenticator
from gateway.config import Settings
from gateway.context.face_sources import IssuedFaces
from gateway.errors import (
    AuthenticationError,
    FacegateError,
    PolicyDenied,
    RequestError,
    ServiceUnavailable,
    UnsupportedOperation,
    UpstreamError,
)
from gateway.operations import FaceOperation, OperationKind
from gateway.policy.contract import Obligations
from gateway.requests import IncomingRequest
from gateway.vendors.answers import (
    answer_response,
    is_success,
    over_faces,
    read_answer,
    refused,
    rendered,
    strip_templates,
)
from gateway.vendors.base import (
    Outcome,
    ParsedRequest,
    UpstreamResponse,
    VendorDescriptor,
    native_error,
    reason_headers,
)
from gateway.vendors.http import UpstreamClient
from gateway.vendors.inventory import VendorBackend
from gateway.vendors.rest import b64_image, image_digest
from gateway.vendors.scale import WireScale

VENDOR = "toy"
PREFIX = "/toy/v1/"
KEY_HEADER = "x-toy-key"
REQUEST_ID_HEADER = "x-toy-request-id"

_ERRORS: list[tuple[type[FacegateError], int, str]] = [
    (UnsupportedOperation, 404, "no_such_call"),
    (RequestError, 400, "bad_call"),
    (AuthenticationError, 401, "who_are_you"),
    (PolicyDenied, 403, "not_allowed"),
    (ServiceUnavailable, 503, "come_back_later"),
    (UpstreamError, 502, "upstream_broke"),
]


def error_response(error: FacegateError, request_id: str) -> Response:
    status, code = native_error(_ERRORS, error, default=(500, "oops"))
    headers = {REQUEST_ID_HEADER: request_id} | reason_headers(error)
    body = json.dumps({"toy_error": code, "message": error.message})
    return Response(body, status_code=status, media_type="application/json", headers=headers)


class ToyAdapter:
    name = VENDOR

    def __init__(self, *, backend: VendorBackend, settings: Settings) -> None:
        self.backend = backend
        self._max_image_bytes = settings.max_image_bytes
        self._client = UpstreamClient(
            vendor="toy", timeout_seconds=settings.upstream_timeout_seconds
        )

    def parse(self, request: IncomingRequest) -> ParsedRequest:
        if (request.method, request.path) != ("POST", PREFIX + "detect"):
            raise UnsupportedOperation(f"{request.method} {request.path} is not a toy call")
        payload = strict_json.load_object(request.body)
        image = b64_image(
            payload.get("image"), field="image", max_image_bytes=self._max_image_bytes
        )
        digest = image_digest(image, field="image", max_image_bytes=self._max_image_bytes)
        operation = FaceOperation(
            vendor=VENDOR, name="Detect", kind=OperationKind.DETECT, probe_digests=[digest]
        )
        return ParsedRequest(
            operation=operation,
            payload=payload,
            body=json.dumps(payload).encode(),
            images=(image,),
        )

    async def forward(self, parsed: ParsedRequest, obligations: Obligations) -> UpstreamResponse:
        reply = await self._client.request(
            "POST",
            self.backend.base_url + "/detect",
            body=parsed.body,
            headers={
                "content-type": "application/json",
                "x-toy-vendor-key": self.backend.secret.get_secret_value(),
            },
        )
        return UpstreamResponse(
            status_code=reply.status, headers={"content-type": "application/json"}, body=reply.body
        )

    def filter(
        self, parsed: ParsedRequest, obligations: Obligations, response: UpstreamResponse
    ) -> Outcome:
        if not is_success(response):
            return refused(response, "toy", code_of=lambda d: None, known=lambda c: False)
        document = read_answer(response, "toy")
        if not isinstance(document, dict) or not isinstance(document.get("faces"), list):
            raise UpstreamError("toy answered with a body facegate cannot read")
        dropped = {"face_template": strip_templates(document)}
        faces = len(document["faces"])
        return Outcome(
            response=rendered(response, document),
            dropped={k: v for k, v in dropped.items() if v},
            faces=faces,
            withheld=over_faces(faces, obligations.max_faces, what="faces"),
        )

    def issued_faces(self, parsed: ParsedRequest, response: UpstreamResponse) -> IssuedFaces | None:
        return None

    def render(self, outcome: Outcome, *, request_id: str) -> Response:
        return answer_response(
            outcome, headers={REQUEST_ID_HEADER: request_id}, media_type="application/json"
        )

    def error_response(self, error: FacegateError, *, request_id: str) -> Response:
        return error_response(error, request_id)

    async def aclose(self) -> None:
        await self._client.aclose()


DESCRIPTOR = VendorDescriptor(
    protocol=VENDOR,
    recognises=lambda method, path: method == "POST" and path.startswith(PREFIX),
    scale=WireScale(10.0),
    authenticator=lambda deps: KeyHeaderAuthenticator(
        reads=deps.reads, master_key=deps.master_key, header=KEY_HEADER
    ),
    adapter=lambda backend, settings: ToyAdapter(backend=backend, settings=settings),
    error_response=error_response,
)
