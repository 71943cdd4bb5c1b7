"""Verification of AWS Signature Version 4, the way AWS SDKs sign requests.

The signature is recomputed with botocore's own signer over exactly the headers the client
signed, so canonicalisation matches what boto3 produced byte for byte.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from gateway.errors import ClockSkew, InvalidSignature, MissingCredentials

_ALGORITHM = "AWS4-HMAC-SHA256"
_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256\s+"
    r"Credential=(?P<key>[^/\s,]+)/(?P<date>\d{8})/(?P<region>[^/\s,]+)/(?P<service>[^/\s,]+)/aws4_request,\s*"
    r"SignedHeaders=(?P<headers>[a-z0-9\-;]+),\s*"
    r"Signature=(?P<signature>[0-9a-f]{64})$"
)
_AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
# Headers a signature must cover, or a captured request could be replayed with them changed.
ALWAYS_SIGNED = frozenset({"host", "x-amz-date"})
# Headers that state the case context (gateway/context/gather.py): they change what the
# policy judges, so every one present must be signed. Unsigned, one added to a captured
# request turned a `warrant_required` refusal into an allowed search.
CONTEXT_HEADER_PREFIX = "x-facegate-"


def context_headers(headers: Mapping[str, str]) -> frozenset[str]:
    """The X-Facegate-* headers a request carries (lower-case names)."""
    return frozenset(name for name in headers if name.startswith(CONTEXT_HEADER_PREFIX))


@dataclass(frozen=True)
class SigV4Authorization:
    access_key_id: str
    date: str  # YYYYMMDD of the credential scope
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(value: str | None) -> SigV4Authorization:
    if not value:
        raise MissingCredentials("the request is not signed: no Authorization header")
    if not value.startswith(_ALGORITHM):
        raise MissingCredentials(f"only {_ALGORITHM} signatures are accepted")
    match = _AUTHORIZATION.match(value.strip())
    if match is None:
        raise InvalidSignature("the Authorization header is not a well-formed SigV4 header")
    return SigV4Authorization(
        access_key_id=match["key"],
        date=match["date"],
        region=match["region"],
        service=match["service"],
        signed_headers=tuple(match["headers"].split(";")),
        signature=match["signature"],
    )


def parse_amz_date(value: str | None) -> datetime:
    if not value:
        raise InvalidSignature("the request has no X-Amz-Date header")
    try:
        return datetime.strptime(value, _AMZ_DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError as exc:
        raise InvalidSignature(f"X-Amz-Date {value!r} is not YYYYMMDDTHHMMSSZ") from exc


def check_clock_skew(signed_at: datetime, *, now: datetime, max_skew: timedelta) -> None:
    if abs(now - signed_at) > max_skew:
        raise ClockSkew(
            f"the request was signed at {signed_at:%Y-%m-%dT%H:%M:%SZ}, more than "
            f"{int(max_skew.total_seconds() // 60)} minutes from the gateway's clock"
        )


def verify_signature(
    *,
    authorization: SigV4Authorization,
    secret_access_key: str,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    required_headers: frozenset[str] = ALWAYS_SIGNED,
) -> None:
    """Raise InvalidSignature unless the request was signed with `secret_access_key`, over
    `required_headers` and every X-Facegate-* header it carries."""
    missing = (required_headers | context_headers(headers)) - set(authorization.signed_headers)
    if missing:
        raise InvalidSignature(
            f"the signature must cover the headers: {', '.join(sorted(missing))}"
        )
    amz_date = headers.get("x-amz-date", "")
    if amz_date[:8] != authorization.date:
        raise InvalidSignature("the credential scope date does not match X-Amz-Date")
    body_sha256 = hashlib.sha256(body).hexdigest()
    declared = headers.get("x-amz-content-sha256")
    if declared is not None and declared != body_sha256:
        # Covers UNSIGNED-PAYLOAD too: the body is what the policy judges, so it must be signed.
        raise InvalidSignature("X-Amz-Content-SHA256 does not match the request body")

    signed = {}
    for name in authorization.signed_headers:
        if name not in headers:
            raise InvalidSignature(f"signed header {name!r} is missing from the request")
        signed[name] = headers[name]
    # An http:// URL makes botocore hash the payload, whatever scheme the client used.
    url = f"http://{headers['host']}{path}" + (f"?{query}" if query else "")
    request = AWSRequest(method=method, url=url, headers=signed, data=body)
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(
        Credentials(authorization.access_key_id, secret_access_key),
        authorization.service,
        authorization.region,
    )
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, authorization.signature):
        raise InvalidSignature(
            "the request signature we calculated does not match the signature you provided"
        )
