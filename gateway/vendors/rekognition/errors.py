"""Rekognition's error shape: `{"__type", "Message"}` with the HTTP status boto3 expects, so
that it raises its typed exceptions; a vendor's own error code passes only when documented."""

from __future__ import annotations

import functools
import json
from typing import Any

import botocore.session
from starlette.responses import Response

from gateway.errors import (
    AnswerWithheld,
    AuthenticationError,
    ClockSkew,
    ExpiredCredentials,
    FacegateError,
    InvalidImage,
    InvalidSignature,
    MalformedRequest,
    MissingCredentials,
    PayloadTooLarge,
    PermissionDenied,
    PolicyDenied,
    PolicyUnavailable,
    ServiceUnavailable,
    UnknownAccessKey,
    UnsupportedOperation,
    UpstreamError,
    VendorRefused,
)
from gateway.vendors.base import native_error, reason_headers

CONTENT_TYPE = "application/x-amz-json-1.1"


# How each error surfaces in Rekognition's protocol: (HTTP status, __type).
_ERROR_TYPES: list[tuple[type[FacegateError], int, str]] = [
    (PayloadTooLarge, 400, "ImageTooLargeException"),
    (InvalidImage, 400, "InvalidImageFormatException"),
    (UnsupportedOperation, 400, "UnknownOperationException"),
    (MalformedRequest, 400, "InvalidParameterException"),
    (MissingCredentials, 403, "MissingAuthenticationTokenException"),
    (UnknownAccessKey, 400, "UnrecognizedClientException"),
    (ExpiredCredentials, 400, "ExpiredTokenException"),
    (ClockSkew, 400, "InvalidSignatureException"),
    (InvalidSignature, 400, "InvalidSignatureException"),
    (AuthenticationError, 400, "UnrecognizedClientException"),
    (PolicyDenied, 400, "AccessDeniedException"),
    (PolicyUnavailable, 400, "AccessDeniedException"),
    (PermissionDenied, 400, "AccessDeniedException"),
    (ServiceUnavailable, 503, "ServiceUnavailableException"),
    (VendorRefused, 500, "InternalServerError"),
    (UpstreamError, 500, "InternalServerError"),
    (AnswerWithheld, 400, "AccessDeniedException"),
]


# The error types Rekognition documents (botocore's service model): a vendor's error code is
# passed on only when it is one of these, never its message.
@functools.cache
def _known_errors() -> frozenset[str]:
    model = botocore.session.get_session().get_service_model("rekognition")
    return frozenset(shape.name for shape in model.error_shapes) | {"ServiceUnavailableException"}


def rekognition_error_type(document: Any) -> object:
    return document.get("__type", "").rsplit("#", 1)[-1] if isinstance(document, dict) else None


def known_error(code: str) -> bool:
    return code in _known_errors()


def error_response(error: FacegateError, request_id: str) -> Response:
    """`error` as Rekognition's JSON 1.1 error, which boto3 raises as its typed exception."""
    status, error_type = native_error(_ERROR_TYPES, error, default=(500, "InternalServerError"))
    if isinstance(error, VendorRefused):
        status, error_type = error.status, error.vendor_code or error_type
    headers = {"x-amzn-RequestId": request_id, "x-amzn-ErrorType": error_type}
    headers |= reason_headers(error)
    body = json.dumps({"__type": error_type, "Message": error.message})
    return Response(body, status_code=status, media_type=CONTENT_TYPE, headers=headers)
