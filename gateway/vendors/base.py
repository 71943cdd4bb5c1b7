"""The interfaces every vendor protocol implements, and what flows through them.

A vendor is one module (or small package) under gateway/vendors/ that exports one
`VendorDescriptor`, listed in the registry (gateway/vendors/__init__.py). The descriptor
says how the vendor's requests are recognised, how its callers authenticate, its wire scale,
and how its adapter is built from an inventory entry; nothing outside the module branches
on the vendor.

Two narrow interfaces, kept apart as httpx keeps auth apart from its transports:

- an `Authenticator` answers "which case session sent this request" (SigV4 for Rekognition,
  a key header for the others) and spends what must be spent before a forward;
- a `VendorAdapter` parses a native request into a `ParsedRequest`, forwards one with
  obligations applied, filters the answer, and renders the answer or any FacegateError in
  the vendor's own format. No httpx or SDK exception leaves an adapter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from starlette.responses import Response

from gateway.auth.sessions import BoundSession
from gateway.context.face_sources import IssuedFaces
from gateway.errors import AnswerWithheld, FacegateError, PolicyDenied, UnsupportedOperation
from gateway.operations import FaceOperation
from gateway.policy.contract import Obligations
from gateway.requests import IncomingRequest
from gateway.vendors.inventory import VendorBackend
from gateway.vendors.scale import WireScale

if TYPE_CHECKING:
    from gateway.auth.replay import ReplayCache
    from gateway.auth.secrets import MasterKey
    from gateway.config import Settings
    from gateway.db import RequestReader


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
    # `body`'s SHA-256 in hex when it is known without hashing `body` again: the received
    # body's, when `parse` wrote the very bytes it received (boto3 writes JSON as
    # `json.dumps` does). None otherwise. A SigV4 forward signs it rather than hash 20 KB
    # twice (issue 17).
    body_sha256: str | None = None
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
class Candidate:
    """One candidate an identification's answer names: a lead once recorded (gateway/leads/)."""

    id: str  # the vendor's id of the person or face, as the caller sees it
    similarity: float  # normalised 0-100


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
    # An identification's candidates as handed out, best first (empty: a negative result);
    # None for an answer that identifies no one.
    candidates: tuple[Candidate, ...] | None = None
    # Set when the client must not get the answer: the error it gets instead, in the
    # vendor's shape (an unreadable answer, a vendor's error, too many faces).
    withheld: FacegateError | None = None


class Authenticator(Protocol):
    """How a vendor's callers prove which case session they act under."""

    async def authenticate(self, request: IncomingRequest) -> BoundSession:
        """The live case session that sent the request; raises AuthenticationError, or
        ServiceUnavailable when a store it needs cannot be read (fail closed)."""
        ...

    def claimed_key_id(self, request: IncomingRequest) -> str | None:
        """The key a request claims to be sent with, for auditing a refusal. Never raises."""
        ...

    async def claim(self, request: IncomingRequest, operation: FaceOperation) -> None:
        """Called once the request is allowed, before it is forwarded: raise an
        AuthenticationError (ReplayedRequest) if this very request was forwarded already,
        ServiceUnavailable if that cannot be told. Here, not on the adapter: what is spent
        is the credential's proof (a signature), which only authentication reads."""
        ...


class VendorAdapter(Protocol):
    name: str
    backend: VendorBackend  # its inventory entry: where it forwards, what the policy reads

    def parse(self, request: IncomingRequest) -> ParsedRequest:
        """Raises RequestError for anything malformed, too large or unknown."""
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
        the operation hands out no face ids or the answer is not a success. On the adapter:
        only the vendor's own answer format says where its ids are.
        """
        ...

    def render(self, outcome: Outcome, *, request_id: str) -> Response:
        """The checked answer as the vendor's client expects it: status, body, the vendor's
        own request-id header and content type. The pipeline adds facegate's headers only."""
        ...

    def error_response(self, error: FacegateError, *, request_id: str) -> Response: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class AuthDeps:
    """What an authenticator may be built from: the process's long-lived objects."""

    reads: RequestReader
    master_key: MasterKey
    settings: Settings
    replays: ReplayCache  # spent signatures, shared by replicas with Redis


def _no_settings_backend(settings: Settings) -> VendorBackend | None:
    return None


def _no_backend_check(backend: VendorBackend) -> str | None:
    return None


@dataclass(frozen=True)
class VendorDescriptor:
    """Everything facegate knows about one vendor protocol, exported by its module.

    A new vendor is a module exporting one of these and one line in the registry
    (gateway/vendors/__init__.py); services, routing, scale and inventory read it from there.
    """

    protocol: str  # the inventory's `protocol`, the audit log's `vendor`
    # Whether a request (method, path) speaks this protocol. The protocols' paths must not
    # overlap: the first match routes, and facegate's own routes match none.
    recognises: Callable[[str, str], bool]
    scale: WireScale  # its thresholds' and scores' wire scale
    authenticator: Callable[[AuthDeps], Authenticator]
    adapter: Callable[[VendorBackend, Settings], VendorAdapter]
    # Its error format, for a request refused before any adapter exists (no backend).
    error_response: Callable[[FacegateError, str], Response]
    # What its inventory entries must name beyond the common fields: an InventoryError
    # message naming the key, or None.
    check_backend: Callable[[VendorBackend], str | None] = _no_backend_check
    # The backend the settings describe when there is no vendors file (None: none).
    settings_backend: Callable[[Settings], VendorBackend | None] = _no_settings_backend
    uses_region: bool = False  # whether `region` means anything to it (listed if so)
    # Its native operation names: the bounded set a metric's `operation` label is drawn
    # from (gateway/observability/metrics.py); any other name is counted as "other".
    operation_names: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Vendor:
    """A registered vendor as one gateway process serves it."""

    descriptor: VendorDescriptor
    authenticator: Authenticator
    adapter: VendorAdapter | None  # None: the inventory has no backend for it

    @property
    def name(self) -> str:
        return self.descriptor.protocol

    def error_response(self, error: FacegateError, *, request_id: str) -> Response:
        if self.adapter is not None:
            return self.adapter.error_response(error, request_id=request_id)
        return self.descriptor.error_response(error, request_id)


class BackendNotConfigured(UnsupportedOperation):
    """A request in a protocol the inventory has no backend for: refused on record."""

    code = "no_backend"


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
