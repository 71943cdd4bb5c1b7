"""Verification of AWS Signature Version 4 on incoming requests.

The verifier recomputes the signature the way a client computes it, with
botocore's own ``SigV4Auth`` over a rebuilt request made of exactly what the
client signed: the method, path and query, the headers named in
``SignedHeaders``, the body, and the time in ``X-Amz-Date``. The signatures
are then compared in constant time. So a request verifies only if it was
signed with this vendor's secret, for this region and service, within
``MAX_CLOCK_SKEW`` of now, and neither its signed headers nor its body were
changed on the way.

Errors are Rekognition's (``refvendor.errors``): no Authorization header →
MissingAuthenticationTokenException; a malformed one →
IncompleteSignatureException; another access key id →
UnrecognizedClientException; anything that does not verify →
InvalidSignatureException.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

from refvendor.errors import (
    IncompleteSignatureException,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    UnrecognizedClientException,
)

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_CLOCK_SKEW = timedelta(minutes=15)
_TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True, slots=True)
class Authorization:
    """The parts of an ``Authorization: AWS4-HMAC-SHA256 ...`` header."""

    access_key_id: str
    date: str
    region: str
    service: str
    terminator: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(value: str) -> Authorization:
    """Split the header into its credential scope, signed headers and signature."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise IncompleteSignatureException(f"Authorization header must use {ALGORITHM}")
    fields: dict[str, str] = {}
    for item in rest.split(","):
        key, sep, field_value = item.strip().partition("=")
        if not sep:
            raise IncompleteSignatureException(f"Authorization header field {key!r} has no value")
        fields[key] = field_value
    missing = [key for key in ("Credential", "SignedHeaders", "Signature") if key not in fields]
    if missing:
        raise IncompleteSignatureException(f"Authorization header is missing {', '.join(missing)}")
    scope = fields["Credential"].split("/")
    if len(scope) != 5:
        raise IncompleteSignatureException(
            "Credential must be <access key id>/<date>/<region>/<service>/aws4_request"
        )
    signed_headers = tuple(fields["SignedHeaders"].split(";"))
    return Authorization(
        access_key_id=scope[0],
        date=scope[1],
        region=scope[2],
        service=scope[3],
        terminator=scope[4],
        signed_headers=signed_headers,
        signature=fields["Signature"],
    )


class _ExactlySignedHeaders(SigV4Auth):  # type: ignore[misc]  # botocore is untyped
    """SigV4Auth that signs the headers the client listed, no more, no fewer.

    botocore's own choice leaves out headers it never signs itself (such as
    User-Agent); another SDK may sign them, and the rebuilt request already
    holds exactly the signed ones.
    """

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        return request.headers


class SigV4Verifier:
    """Checks requests against one access key id, secret and region for one service."""

    def __init__(
        self, *, access_key_id: str, secret_access_key: str, region: str, service: str
    ) -> None:
        self._access_key_id = access_key_id
        self._region = region
        self._service = service
        self._signer = _ExactlySignedHeaders(
            Credentials(access_key_id, secret_access_key), service, region
        )

    def verify(
        self,
        *,
        method: str,
        path: str,
        query: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
        now: datetime,
    ) -> None:
        """Return if the request is signed by this vendor's credentials; raise otherwise.

        ``headers`` are all the request's headers as (name, value) pairs,
        repeated names included; ``now`` is an aware datetime.
        """
        received: dict[str, list[str]] = {}
        for name, value in headers:
            received.setdefault(name.lower(), []).append(value)

        values = received.get("authorization")
        if not values:
            raise MissingAuthenticationTokenException("Missing Authentication Token")
        auth = parse_authorization(values[0])

        if auth.access_key_id != self._access_key_id:
            raise UnrecognizedClientException(
                "The security token included in the request is invalid."
            )
        if "x-amz-security-token" in received:
            # Only the configured long-term key exists here; a session token
            # belongs to credentials this vendor never issued.
            raise UnrecognizedClientException(
                "The security token included in the request is invalid."
            )
        for required in ("host", "x-amz-date"):
            if required not in auth.signed_headers:
                raise IncompleteSignatureException(
                    f"'{required}' must be a 'SignedHeader' in the AWS Authorization."
                )
        unsent = [name for name in auth.signed_headers if name not in received]
        if unsent:
            raise InvalidSignatureException(f"Signed headers were not sent: {', '.join(unsent)}")

        timestamp = received["x-amz-date"][0]
        self._check_scope(auth, timestamp, now)
        self._check_payload_hash(received, body)

        request = AWSRequest(method=method, url=f"http://{received['host'][0]}{path}", data=body)
        if query:
            request.url += f"?{query}"
        signed = HTTPHeaders()
        for name in auth.signed_headers:
            for value in received[name]:
                signed[name] = value  # HTTPHeaders appends: repeated headers stay repeated
        request.headers = signed
        request.context["timestamp"] = timestamp

        canonical_request = self._signer.canonical_request(request)
        string_to_sign = self._signer.string_to_sign(request, canonical_request)
        expected = self._signer.signature(string_to_sign, request)
        if not hmac.compare_digest(expected.encode(), auth.signature.encode()):
            raise InvalidSignatureException(
                "The request signature we calculated does not match the signature you"
                " provided. Check your AWS Secret Access Key and signing method."
            )

    def _check_scope(self, auth: Authorization, timestamp: str, now: datetime) -> None:
        try:
            signed_at = datetime.strptime(timestamp, _TIMESTAMP_FORMAT).replace(tzinfo=UTC)
        except ValueError as exc:
            raise IncompleteSignatureException(
                f"X-Amz-Date must be in the format YYYYMMDDTHHMMSSZ, not {timestamp!r}"
            ) from exc
        if auth.date != timestamp[:8]:
            raise InvalidSignatureException(
                f"Date in Credential scope does not match YYYYMMDD from X-Amz-Date: {auth.date}"
            )
        if auth.region != self._region:
            raise InvalidSignatureException(
                f"Credential should be scoped to a valid region, not '{auth.region}'."
            )
        if auth.service != self._service:
            raise InvalidSignatureException(
                f"Credential should be scoped to correct service: '{self._service}'."
            )
        if auth.terminator != "aws4_request":
            raise InvalidSignatureException(
                "Credential should be scoped with a valid terminator: 'aws4_request'."
            )
        # Without a window a captured request could be replayed forever.
        if abs(now - signed_at) > MAX_CLOCK_SKEW:
            raise InvalidSignatureException(
                f"Signature expired: {timestamp} is not within {MAX_CLOCK_SKEW} of"
                f" {now.strftime(_TIMESTAMP_FORMAT)}"
            )

    @staticmethod
    def _check_payload_hash(received: dict[str, list[str]], body: bytes) -> None:
        # botocore signs a declared X-Amz-Content-SHA256 instead of hashing the
        # body, so a declared hash (or UNSIGNED-PAYLOAD) must match the body or
        # the signature would not cover it.
        declared = received.get("x-amz-content-sha256")
        if declared is not None and declared[0] != hashlib.sha256(body).hexdigest():
            raise InvalidSignatureException(
                "The provided 'x-amz-content-sha256' header does not match what was computed."
            )
