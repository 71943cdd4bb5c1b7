"""One exception tree for the gateway. Vendor adapters map it to each vendor's error format.

FacegateError
├── RequestError              the caller sent something we cannot accept (HTTP 400)
│   ├── MalformedRequest      bad JSON, bad base64, missing or wrong-typed field
│   │   ├── RequestTimeout    the body stopped arriving before the read deadline
│   │   ├── ClientDisconnected  the client hung up before its body had all arrived
│   │   └── InvalidQuery      an audit query's cursor or limit (gateway.audit.query)
│   ├── PayloadTooLarge       body or image over the configured cap (bytes or pixels)
│   ├── InvalidImage          a probe that is not a decodable JPEG or PNG
│   ├── UnsupportedOperation  an operation the adapter does not know: never forwarded
│   │   └── BackendNotConfigured  a protocol with no backend in the inventory
│   │                             (gateway.vendors.base): refused on record
│   └── NotFound              a lead or authorisation the caller named does not exist (404)
├── AuthenticationError       no, unknown, expired or wrongly signed credentials
│   ├── MissingCredentials
│   ├── UnknownAccessKey
│   ├── ExpiredCredentials
│   ├── InvalidSignature
│   │   └── ReplayedRequest   a signature already accepted once, sent again
│   └── ClockSkew
├── PermissionDenied          an authenticated principal lacks the role for an action
│   └── ConsoleRoleMissing    signed in, but no role any console page serves
│                             (gateway.console.sessions)
├── PolicyDenied              the policy decided no; carries the reasons
├── PolicyUnavailable         the engine raised, timed out or gave no decision (a deny)
│   └── PolicyLoadError       a policy bundle that cannot be loaded (gateway.policy.bundle)
├── ServiceUnavailable        a store the gateway depends on failed: fail closed (HTTP 503)
│   ├── AuditUnavailable      the audit log could not be written or read
│   ├── StorageUnavailable    the database could not be read or written (sessions, warrants,
│   │                         principals): raised at the storage edge, `gateway.db`
│   ├── ReplayCacheUnavailable  the replay cache cannot tell a spent signature (gateway.auth.replay)
│   ├── ActivityUnavailable   the activity windows' store failed
│   │                         (gateway.context.activity.store)
│   └── FaceSourcesUnavailable  the face-source store failed (gateway.context.face_sources)
├── UpstreamError             the vendor could not be reached or answered garbage
│   └── VendorRefused         the vendor answered with an error (its own text is not passed on)
├── AnswerWithheld            the vendor's answer holds more than the policy allowed: withheld
├── ConfigurationError        a file or setting the gateway cannot start with: startup stops
│   ├── DatabaseNotReady      the database a command names is missing or not migrated,
│   │                         exit code 3, nothing created (gateway.cli.runtime)
│   ├── InventoryError        a vendors file that cannot be used, naming the key
│   │                         (gateway.vendors.inventory)
│   ├── TemplateError         a report template or settings file that cannot be used, naming
│   │                         file and key (gateway.reports.templates); also a ValueError
│   └── QueryError            a report query outside the vocabulary (gateway.reports.query);
│                             also a ValueError: inside a template, a TemplateError
└── VerificationError         evidence about the log that does not verify; also a ValueError
    │                         (it is bad input to whoever reads it: verifiers of exports and
    │                         rows catch a ValueError for any line that does not hold up)
    ├── CheckpointError       a signed note, key or checkpoint that does not open
    │                         (gateway.audit.checkpoint)
    └── ProofError            an inclusion or consistency proof that does not verify, or one
                              asked outside the tree (gateway.audit.merkle)

Each error of a module's own domain is defined in that module (where it is raised, so its
import path is the module's), subclassing its branch here. A store's outage
(ActivityUnavailable, FaceSourcesUnavailable) is a ServiceUnavailable: before the decision
the pipeline refuses the request with it; after the vendor answered, a count or a face
source it could not write withholds the answer, on record (gateway/pipeline.py).

Database errors never leave the storage edge raw: ``gateway.db.map_database_errors`` turns
them into StorageUnavailable, and the audit stores' edge
(``gateway.audit.stores.map_database_errors``) into AuditUnavailable. The management API
answers every FacegateError in its JSON shape, ``{"error": {"code", "message"}}`` with the
error's status: a database outage is a 503 there, never a bare 500.
"""

from __future__ import annotations

from dataclasses import dataclass


class FacegateError(Exception):
    """Base of every error the gateway raises on purpose."""

    status_code = 500
    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RequestError(FacegateError):
    status_code = 400
    code = "bad_request"


class MalformedRequest(RequestError):
    code = "malformed_request"


class RequestTimeout(MalformedRequest):
    """A body that did not arrive in full within the read deadline. A 400 in each vendor's
    format, as a malformed body is: what was received cannot be judged."""

    code = "request_timeout"


class ClientDisconnected(MalformedRequest):
    """A client that hung up before its body had all arrived. Nothing can be decided of a
    part of a request, but the attempt is recorded like any malformed one; the answer, in
    the vendor's format, goes nowhere. Not the gateway's failure: no 500, no traceback."""

    code = "client_disconnected"


class PayloadTooLarge(RequestError):
    status_code = 413
    code = "payload_too_large"


class InvalidImage(RequestError):
    code = "invalid_image"


class UnsupportedOperation(RequestError):
    code = "unsupported_operation"


class NotFound(RequestError):
    status_code = 404
    code = "not_found"


class AuthenticationError(FacegateError):
    status_code = 403
    code = "authentication_failed"


class MissingCredentials(AuthenticationError):
    code = "missing_credentials"


class UnknownAccessKey(AuthenticationError):
    code = "unknown_access_key"


class ExpiredCredentials(AuthenticationError):
    code = "expired_credentials"


class InvalidSignature(AuthenticationError):
    code = "invalid_signature"


class ReplayedRequest(InvalidSignature):
    code = "replayed_request"


class ClockSkew(AuthenticationError):
    code = "clock_skew"


class PermissionDenied(FacegateError):
    status_code = 403
    code = "permission_denied"


@dataclass(frozen=True)
class Reason:
    """A stable reason code with a human explanation, as the policy returns it."""

    code: str
    message: str


class PolicyDenied(FacegateError):
    status_code = 403
    code = "policy_denied"

    def __init__(self, reasons: list[Reason]) -> None:
        self.reasons = reasons
        text = "; ".join(f"{r.code}: {r.message}" for r in reasons) or "denied by policy"
        super().__init__(f"facegate policy denied this request: {text}")


class PolicyUnavailable(FacegateError):
    status_code = 403
    code = "policy_unavailable"


class ServiceUnavailable(FacegateError):
    status_code = 503
    code = "service_unavailable"


class AuditUnavailable(ServiceUnavailable):
    code = "audit_unavailable"


class StorageUnavailable(ServiceUnavailable):
    """The database failed on a read or write outside the audit log. Its code stays
    ``service_unavailable``: callers see the same 503 as before the edge was drawn."""


class UpstreamError(FacegateError):
    status_code = 502
    code = "upstream_error"


class VendorRefused(UpstreamError):
    """The vendor answered with an error status. What the client sees is facegate's message
    in the vendor's shape: the vendor's status, and its error code only when it is one the
    vendor documents (`vendor_code`, else None); the vendor's own text never passes."""

    code = "vendor_refused"

    def __init__(self, message: str, *, status: int, vendor_code: str | None) -> None:
        super().__init__(message)
        self.status = status
        self.vendor_code = vendor_code


class AnswerWithheld(FacegateError):
    """The vendor answered, but its answer holds more faces than the policy allowed, and
    cutting it would mislead (it would hide a crowd): the client gets this instead, on record.
    `reason` is the stable code the outcome record and the x-facegate-reasons header carry."""

    status_code = 403
    code = "answer_withheld"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class ConfigurationError(FacegateError):
    """A file or setting the gateway cannot start with; the message names the key."""

    code = "configuration_error"


class VerificationError(FacegateError, ValueError):
    """A note, checkpoint or proof that does not verify. Also a ValueError: to a verifier it
    is input that does not hold up, as a malformed line of an export is."""

    code = "verification_failed"
