"""Azure Face's error shape, `{"error": {"code", "message"}}`, which both SDKs raise as their
own errors; a vendor's own error code passes only when Azure documents it."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from gateway.errors import (
    AnswerWithheld,
    AuthenticationError,
    FacegateError,
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
from gateway.vendors.base import native_error, reason_headers

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
    (AnswerWithheld, 403, "PermissionDenied"),
]


# The error codes Azure Face documents: a vendor's error code is passed on only when it is
# one of these, never its message.
_KNOWN_ERRORS = frozenset(
    {
        "BadArgument", "InvalidImage", "InvalidImageSize", "InvalidURL", "InvalidRequest",
        "NotFound", "FaceNotFound", "PersonNotFound", "PersistedFaceNotFound",
        "PersonGroupNotFound", "LargePersonGroupNotFound", "FaceListNotFound",
        "LargeFaceListNotFound", "PersonGroupNotTrained", "LargePersonGroupNotTrained",
        "LargeFaceListNotTrained", "PersonGroupTrainingNotFinished",
        "LargePersonGroupTrainingNotFinished", "PersonGroupExists", "LargePersonGroupExists",
        "FaceListExists", "LargeFaceListExists", "QuotaExceeded", "RateLimitExceeded",
        "ConcurrentOperationConflict", "MethodNotAllowed", "UnsupportedMediaType",
        "Unspecified", "PermissionDenied", "InternalServerError", "ServiceUnavailable",
    }
)  # fmt: skip


def _error_code(document: Any) -> object:
    error = document.get("error") if isinstance(document, dict) else None
    return error.get("code") if isinstance(error, dict) else None


def _request_id_headers(request_id: str) -> dict[str, str]:
    # Azure names a request by apim-request-id (API Management's header).
    return {"x-facegate-request-id": request_id, "apim-request-id": request_id}


def error_response(error: FacegateError, request_id: str) -> Response:
    """`error` in Azure's shape, `{"error": {"code", "message"}}`, which both SDKs raise."""
    status, code = native_error(_ERROR_CODES, error, default=(500, "InternalServerError"))
    if isinstance(error, VendorRefused):
        status, code = error.status, error.vendor_code or code
    headers = _request_id_headers(request_id) | reason_headers(error)
    body = json.dumps({"error": {"code": code, "message": error.message}})
    return Response(body, status_code=status, media_type="application/json", headers=headers)
