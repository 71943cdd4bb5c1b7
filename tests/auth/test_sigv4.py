"""SigV4 verification against requests signed by botocore itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from gateway.auth.sigv4 import (
    check_clock_skew,
    parse_amz_date,
    parse_authorization,
    verify_signature,
)
from gateway.errors import ClockSkew, InvalidSignature, MissingCredentials

KEY, SECRET = "FGAKTESTTESTTESTTEST", "s" * 40
BODY = b'{"CollectionId": "mugshots"}'


def boto_signed(
    body: bytes = BODY, secret: str = SECRET, url: str = "http://gw:8080/"
) -> dict[str, str]:
    request = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": "RekognitionService.ListFaces",
        },
    )
    SigV4Auth(Credentials(KEY, secret), "rekognition", "eu-west-1").add_auth(request)
    headers = {k.lower(): v for k, v in request.headers.items()}
    headers["host"] = url.split("/")[2]
    return headers


def verify(headers: dict[str, str], body: bytes = BODY, **kwargs: object) -> None:
    verify_signature(
        authorization=parse_authorization(headers.get("authorization")),
        secret_access_key=SECRET,
        method="POST",
        path="/",
        query="",
        headers=headers,
        body=body,
        **kwargs,  # type: ignore[arg-type]
    )


def test_a_boto3_signature_verifies() -> None:
    verify(boto_signed())


def test_https_clients_are_verified_the_same_way() -> None:
    verify(boto_signed(url="https://gw:8443/"))


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h, b: (h, b + b" "),
        lambda h, b: ({**h, "x-amz-target": "RekognitionService.DeleteCollection"}, b),
        lambda h, b: ({**h, "host": "elsewhere:8080"}, b),
        lambda h, b: ({**h, "x-amz-date": "20200101T000000Z"}, b),
    ],
    ids=["body", "target", "host", "date"],
)
def test_any_change_after_signing_is_refused(tamper: object) -> None:
    headers, body = tamper(boto_signed(), BODY)  # type: ignore[operator]
    with pytest.raises(InvalidSignature):
        verify(headers, body)


def test_the_wrong_secret_is_refused() -> None:
    with pytest.raises(InvalidSignature, match="does not match"):
        verify(boto_signed(secret="t" * 40))


def test_the_target_header_must_be_signed() -> None:
    headers = boto_signed()
    headers["authorization"] = headers["authorization"].replace(";x-amz-target", "")
    with pytest.raises(InvalidSignature, match="x-amz-target"):
        verify(headers, required_headers=frozenset({"host", "x-amz-date", "x-amz-target"}))


def test_an_unsigned_payload_declaration_is_refused() -> None:
    headers = boto_signed()
    headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
    with pytest.raises(InvalidSignature, match="X-Amz-Content-SHA256"):
        verify(headers)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (None, MissingCredentials),
        ("Bearer abc", MissingCredentials),
        ("AWS4-HMAC-SHA256 Credential=garbage", InvalidSignature),
    ],
)
def test_malformed_authorization_headers(value: str | None, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_authorization(value)


def test_clock_skew_is_bounded_both_ways() -> None:
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    limit = timedelta(minutes=15)
    check_clock_skew(now - timedelta(minutes=14), now=now, max_skew=limit)
    check_clock_skew(now + timedelta(minutes=14), now=now, max_skew=limit)
    for offset in (timedelta(minutes=16), -timedelta(minutes=16)):
        with pytest.raises(ClockSkew):
            check_clock_skew(now + offset, now=now, max_skew=limit)


def test_amz_date_must_be_basic_iso8601() -> None:
    assert parse_amz_date("20261126T120000Z") == datetime(2026, 11, 26, 12, tzinfo=UTC)
    with pytest.raises(InvalidSignature):
        parse_amz_date("2026-11-26T12:00:00Z")
