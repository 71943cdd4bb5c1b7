"""The adapter interface every vendor protocol implements, and what flows through it.

An adapter is as narrow as httpx's transports: it turns a native request into a
`ParsedRequest`, forwards one with obligations applied, filters the answer, and renders any
FacegateError in the vendor's own error format. No httpx or SDK exception leaves an adapter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from starlette.responses import Response

from gateway.auth.sessions import BoundSession
from gateway.context.face_sources import IssuedFaces
from gateway.errors import AnswerWithheld, FacegateError, PolicyDenied
from gateway.operations import FaceOperation
from gateway.policy.contract import Obligations
from gateway.requests import IncomingRequest
from gateway.vendors.inventory import VendorBackend


@dataclass(frozen=True)
class ParsedRequest:
    operation: FaceOperation
    # The native request parameters, decoded: the JSON body (Rekognition, Azure); for
    # CompreFace, whose parameters travel in the query string, {"query": those parameters}.
    payload: dict[str, Any]
    # The body to forward when no obligation rewrites it: rebuilt by `parse` from exactly
    # what it parsed and inspected (JSON written again, a form encoded again, the image
    # bytes digested), never the bytes as received, which another parser might read as
    # another request than the one judged.
    body: bytes
    # Where a REST request goes upstream: the method, a path built by the adapter from
    # checked segments (never the client's URL), the query parameters it accepted, and the
    # body's content type. Rekognition's defaults: POST / with a JSON 1.1 body.
    method: str = "POST"
    upstream_path: str = "/"
    query: tuple[tuple[str, str], ...] = ()
    content_type: str | None = None
    # The probe images, decoded from the native encoding, for step 3's inspection. Held in
    # memory for the request only: never logged, never recorded (digests are).
    images: tuple[bytes, ...] = ()
    # Faces named by an id a vendor handed out earlier, namespaced (see
    # gateway/context/face_sources.py): those searched for, and those searched among.
    probe_faces: tuple[str, ...] = ()
    target_faces: tuple[str, ...] = ()


@dataclass(frozen=True)
class UpstreamResponse:
    status_code: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Outcome:
    """What the audit log keeps of a vendor's answer: counts and scores, never faces."""

    response: UpstreamResponse
    match_count: int | None = None
    top_similarity: float | None = None  # normalised 0-100 (see vendors/scale.py)
    dropped: dict[str, int] = field(default_factory=dict)  # what filtering removed, by why
    # Faces the answer holds, before any cut: detected (detect), searched (identify), in the
    # comparison target (verify), enrolled (enroll). None where an answer holds no faces.
    faces: int | None = None
    enrolled: int | None = None  # faces the vendor says it enrolled (enrolment operations)
    # Set when the client must not get the answer: the error it gets instead, in the
    # vendor's shape (an unreadable answer, a vendor's error, too many faces).
    withheld: FacegateError | None = None


class VendorAdapter(Protocol):
    name: str
    backend: VendorBackend  # its inventory entry: where it forwards, what the policy reads

    async def authenticate(self, request: IncomingRequest) -> BoundSession:
        """The case session whose credentials signed the request; raises AuthenticationError."""
        ...

    def claimed_key_id(self, request: IncomingRequest) -> str | None:
        """The key a request claims to be signed with, for auditing a failed authentication."""
        ...

    def parse(self, request: IncomingRequest) -> ParsedRequest:
        """Raises RequestError for anything malformed, too large or unknown."""
        ...

    async def claim(self, request: IncomingRequest, parsed: ParsedRequest) -> None:
        """Called once the request is allowed, before it is forwarded: raise an
        AuthenticationError (ReplayedRequest) if this very request was forwarded already.
        Key-header protocols sign nothing, so they have nothing to claim."""
        ...

    async def forward(self, parsed: ParsedRequest, obligations: Obligations) -> UpstreamResponse:
        """Apply the obligations, sign with the gateway's credentials, send; or UpstreamError."""
        ...

    def filter(
        self, parsed: ParsedRequest, obligations: Obligations, response: UpstreamResponse
    ) -> Outcome:
        """Check the answer against the obligations, dropping what violates them."""
        ...

    def issued_faces(self, parsed: ParsedRequest, response: UpstreamResponse) -> IssuedFaces | None:
        """The face ids the vendor's answer hands out, namespaced, and the faces it found.

        Read from the vendor's answer as received (before filtering: an id filtered out is
        never seen by the caller, and the vendor's count is the whole image's). None when
        the operation hands out no face ids or the answer is not a success.
        """
        ...

    def error_response(self, error: FacegateError, *, request_id: str) -> Response: ...

    async def aclose(self) -> None: ...


NativeCode = TypeVar("NativeCode")


def native_error(
    table: list[tuple[type[FacegateError], int, NativeCode]],
    error: FacegateError,
    *,
    default: tuple[int, NativeCode],
) -> tuple[int, NativeCode]:
    """The HTTP status and vendor error code of the first row whose class `error` is.

    Each adapter's table lists subclasses before their parents, so the most specific
    row wins.
    """
    for error_class, status, code in table:
        if isinstance(error, error_class):
            return status, code
    return default


def reason_headers(error: FacegateError) -> dict[str, str]:
    """The reason codes of a policy refusal, for clients that read headers."""
    if isinstance(error, PolicyDenied):
        return {"x-facegate-reasons": ",".join(r.code for r in error.reasons)}
    if isinstance(error, AnswerWithheld):
        return {"x-facegate-reasons": error.reason}
    return {}
