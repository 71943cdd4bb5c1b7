"""SigV4 verification against requests signed by botocore's real signer."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from refvendor.errors import (
    IncompleteSignatureException,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    RekognitionError,
    UnrecognizedClientException,
)
from refvendor.sigv4 import SigV4Verifier, parse_authorization

KEY, SECRET, REGION = "AKIDREFVENDOR", "s3cr3t", "us-east-1"
BODY = json.dumps({"CollectionId": "people"}).encode()


def _verifier() -> SigV4Verifier:
    return SigV4Verifier(
        access_key_id=KEY, secret_access_key=SECRET, region=REGION, service="rekognition"
    )


def _signed(
    *,
    key: str = KEY,
    secret: str = SECRET,
    region: str = REGION,
    service: str = "rekognition",
    body: bytes = BODY,
    url: str = "http://127.0.0.1:9090/",
    signer: type[SigV4Auth] = SigV4Auth,
) -> AWSRequest:
    request = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": "RekognitionService.CreateCollection",
            "User-Agent": "Boto3/test",
        },
    )
    signer(Credentials(key, secret), service, region).add_auth(request)
    return request


def _verify(
    request: AWSRequest,
    *,
    body: bytes | None = None,
    now: datetime | None = None,
    skew: timedelta = timedelta(0),
    drop: tuple[str, ...] = (),
    replace: dict[str, str] | None = None,
    add: tuple[tuple[str, str], ...] = (),
) -> None:
    """Present the request as the server receives it, optionally altered on the way."""
    headers = {name.lower(): value for name, value in request.headers.items()}
    headers.setdefault("host", "127.0.0.1:9090")
    headers.update({k.lower(): v for k, v in (replace or {}).items()})
    received = [(name, value) for name, value in headers.items() if name not in drop]
    _verifier().verify(
        method="POST",
        path="/",
        query=request.url.partition("?")[2],
        headers=[*received, *add],
        body=BODY if body is None else body,
        # Read here, when the test runs: a time taken at collection goes stale.
        now=now or datetime.now(UTC) + skew,
    )


def test_a_request_signed_with_the_vendor_credentials_verifies() -> None:
    _verify(_signed())


def test_a_query_string_is_part_of_what_is_verified() -> None:
    request = _signed(url="http://127.0.0.1:9090/?b=2&a=1")
    _verify(request)
    request.url = "http://127.0.0.1:9090/?a=1&b=3"
    with pytest.raises(InvalidSignatureException):
        _verify(request)


MISMATCH = "signature we calculated"


@pytest.mark.parametrize(
    ("alteration", "expected", "message"),
    [
        ({"body": b'{"CollectionId": "other"}'}, InvalidSignatureException, MISMATCH),
        (
            {"replace": {"X-Amz-Target": "RekognitionService.DeleteCollection"}},
            InvalidSignatureException,
            MISMATCH,
        ),
        ({"replace": {"Host": "vendor.example:9090"}}, InvalidSignatureException, MISMATCH),
        ({"drop": ("x-amz-target",)}, InvalidSignatureException, "not sent: x-amz-target"),
        ({"skew": timedelta(minutes=20)}, InvalidSignatureException, "Signature expired"),
        ({"skew": -timedelta(minutes=20)}, InvalidSignatureException, "Signature expired"),
        (
            {"add": (("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),)},
            InvalidSignatureException,
            "x-amz-content-sha256",
        ),
        ({"add": (("x-amz-security-token", "token"),)}, UnrecognizedClientException, "token"),
        ({"drop": ("authorization",)}, MissingAuthenticationTokenException, "Missing"),
        ({"replace": {"Authorization": "Bearer abc"}}, IncompleteSignatureException, "AWS4"),
        (
            {"replace": {"Authorization": f"AWS4-HMAC-SHA256 Credential={KEY}/x"}},
            IncompleteSignatureException,
            "missing SignedHeaders, Signature",
        ),
        ({"replace": {"X-Amz-Date": "yesterday"}}, IncompleteSignatureException, "X-Amz-Date"),
    ],
    ids=[
        "body",
        "signed-header",
        "host",
        "signed-header-missing",
        "future",
        "expired",
        "unsigned-payload",
        "session-token",
        "no-authorization",
        "other-scheme",
        "short-credential",
        "bad-date",
    ],
)
def test_an_altered_request_is_refused(
    alteration: dict[str, object], expected: type[RekognitionError], message: str
) -> None:
    with pytest.raises(expected, match=message):
        _verify(_signed(), **alteration)  # type: ignore[arg-type]


def test_headers_outside_signed_headers_may_change() -> None:
    _verify(_signed(), replace={"User-Agent": "something else"}, add=(("x-forwarded-for", "1"),))


def test_wrong_secret_is_an_invalid_signature() -> None:
    with pytest.raises(InvalidSignatureException, match=MISMATCH):
        _verify(_signed(secret="not-the-secret"))


def test_unknown_access_key_is_an_unrecognized_client() -> None:
    with pytest.raises(UnrecognizedClientException):
        _verify(_signed(key="AKIDSOMEONEELSE"))


@pytest.mark.parametrize(
    ("scope", "message"),
    [({"region": "eu-west-1"}, "region"), ({"service": "s3"}, "service")],
)
def test_a_signature_scoped_elsewhere_is_invalid(scope: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidSignatureException, match=message):
        _verify(_signed(**scope))


def test_headers_another_sdk_signs_are_verified_too() -> None:
    class SignsEverything(SigV4Auth):
        # botocore never signs User-Agent; other SDKs may. The verifier must
        # rebuild from SignedHeaders, not from botocore's own choice.
        def headers_to_sign(self, request: AWSRequest) -> object:
            headers = super().headers_to_sign(request)
            headers["user-agent"] = request.headers["User-Agent"]
            return headers

    request = _signed(signer=SignsEverything)
    assert "user-agent" in parse_authorization(request.headers["Authorization"]).signed_headers

    _verify(request)
    with pytest.raises(InvalidSignatureException):
        _verify(request, replace={"User-Agent": "tampered"})


def test_parse_authorization_reads_every_part() -> None:
    auth = parse_authorization(
        "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/rekognition/aws4_request,"
        " SignedHeaders=host;x-amz-date, Signature=abc123"
    )
    assert (auth.access_key_id, auth.date, auth.region, auth.service, auth.terminator) == (
        "AKID",
        "20260101",
        "us-east-1",
        "rekognition",
        "aws4_request",
    )
    assert auth.signed_headers == ("host", "x-amz-date")
    assert auth.signature == "abc123"
