"""SigV4 verification against requests signed by botocore itself."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from gateway.auth.sigv4 import (
    SigV4Signer,
    check_clock_skew,
    parse_amz_date,
    parse_authorization,
    verify_signature,
)
from gateway.errors import ClockSkew, InvalidSignature, MissingCredentials
from gateway.vendors.rekognition import REQUIRED_SIGNED_HEADERS

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


# The verifier writes SigV4 out by hand; botocore's signer, run as the gateway once ran it,
# is the reference it must agree with on every request, accepted or not.
def botocore_signature(
    headers: dict[str, str], *, method: str, path: str, query: str, body: bytes
) -> str:
    authorization = parse_authorization(headers["authorization"])
    signed = {name: headers[name] for name in authorization.signed_headers}
    url = f"http://{headers['host']}{path}" + (f"?{query}" if query else "")
    request = AWSRequest(method=method, url=url, headers=signed, data=body)
    request.context["timestamp"] = headers["x-amz-date"]
    signer = SigV4Auth(
        Credentials(authorization.access_key_id, SECRET),
        authorization.service,
        authorization.region,
    )
    canonical = signer.canonical_request(request)
    return str(signer.signature(signer.string_to_sign(request, canonical), request))


def with_signature(headers: dict[str, str], signature: str) -> dict[str, str]:
    prefix = headers["authorization"].rsplit("Signature=", 1)[0]
    return {**headers, "authorization": f"{prefix}Signature={signature}"}


SIGNED_EXTRA = "content-type;host;user-agent;x-amz-date;x-amz-target;x-facegate-case-number"


@pytest.mark.parametrize("method", ["POST", "get"])
@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/", ""),
        ("", ""),
        ("/a/./b/../c", "b=2&a=1"),
        ("//double//slash/", "a=2&a=1&a"),
        ("/with space/é~%41", "x=%20y&z=&&k"),
        ("/face/detect", "returnFaceId=true&detectionModel=detection_03"),
    ],
)
@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"x-facegate-case-number": "  CASE   42 ", "user-agent": "Boto3/1.0"},
        {"x-amz-content-sha256": "<digest>"},
        {"content-type": "application/x-amz-json-1.1\t; charset=\u00e9"},
    ],
    ids=["plain", "spaces-and-blacklisted", "declared-digest", "latin-1"],
)
def test_the_hand_written_verifier_agrees_with_botocore(
    method: str, path: str, query: str, extra: dict[str, str]
) -> None:
    headers = boto_signed()
    extra = {
        name: hashlib.sha256(BODY).hexdigest() if value == "<digest>" else value
        for name, value in extra.items()
    }
    headers.update(extra)
    names = sorted({"host", "x-amz-date", "x-amz-target", *extra})
    scope, _, _ = headers["authorization"].partition(", SignedHeaders=")
    headers["authorization"] = f"{scope}, SignedHeaders={';'.join(names)}, Signature={'0' * 64}"
    reference = botocore_signature(headers, method=method, path=path, query=query, body=BODY)

    def check(signature: str) -> None:
        verify_signature(
            authorization=parse_authorization(with_signature(headers, signature)["authorization"]),
            secret_access_key=SECRET,
            method=method,
            path=path,
            query=query,
            headers=headers,
            body=BODY,
        )

    check(reference)
    with pytest.raises(InvalidSignature, match="does not match"):
        check(reference[::-1])


def test_a_boto3_signature_over_a_query_string_verifies() -> None:
    headers = boto_signed(url="http://gw:8080/face/v1.0/detect?returnFaceId=true&b=%2F")
    verify_signature(
        authorization=parse_authorization(headers["authorization"]),
        secret_access_key=SECRET,
        method="POST",
        path="/face/v1.0/detect",
        query="returnFaceId=true&b=%2F",
        headers=headers,
        body=BODY,
    )


def test_a_signed_header_missing_from_the_request_is_named() -> None:
    headers = boto_signed()
    headers["authorization"] = headers["authorization"].replace(
        "SignedHeaders=", "SignedHeaders=user-agent;"
    )
    with pytest.raises(InvalidSignature, match="'user-agent' is missing"):
        verify(headers)


def test_a_cached_signing_key_is_not_used_for_another_secret() -> None:
    verify(boto_signed())  # SECRET's key for the day is now cached
    with pytest.raises(InvalidSignature, match="does not match"):
        verify_signature(
            authorization=parse_authorization(boto_signed()["authorization"]),
            secret_access_key="t" * 40,
            method="POST",
            path="/",
            query="",
            headers=boto_signed(),
            body=BODY,
        )


@pytest.mark.parametrize("value", ["20261130T235959Z", "20240229T000000Z", "2026113T1234Z"])
def test_amz_dates_read_as_strptime_reads_them(value: str) -> None:
    expected = datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert parse_amz_date(value) == expected


@pytest.mark.parametrize("value", ["20261330T000000Z", "20261130T246000Z", "2026-11-30T00:00:00Z"])
def test_impossible_amz_dates_are_refused(value: str) -> None:
    with pytest.raises(InvalidSignature, match="YYYYMMDDTHHMMSSZ"):
        parse_amz_date(value)


# The forward to Rekognition is signed by SigV4Signer instead of botocore's add_auth: the
# vendor must receive exactly the headers botocore would have sent, Authorization included.
SIGNED_AT = datetime(2026, 11, 30, 23, 59, 58, tzinfo=UTC)


def botocore_add_auth(
    monkeypatch: pytest.MonkeyPatch, url: str, headers: dict[str, str], body: bytes
) -> list[tuple[str, str]]:
    monkeypatch.setattr(
        "botocore.auth.get_current_datetime", lambda: SIGNED_AT.replace(tzinfo=None)
    )
    request = AWSRequest(method="POST", url=url, data=body, headers=headers)
    SigV4Auth(Credentials(KEY, SECRET), "rekognition", "eu-west-1").add_auth(request)
    return list(request.headers.items())


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9090/",
        "https://rekognition.eu-west-1.amazonaws.com/",
        "https://Rekognition.EU-West-1.amazonaws.com:443/",
        "http://vendor.example:80/",
        "https://vendor.example:8443/prefix/./a//b/",
        "http://[::1]:9090/",
        "https://vendor.example/?b=2&a=1",
        "http://user:pw@vendor.example:8080/with space/é~",
    ],
)
@pytest.mark.parametrize(
    "headers",
    [
        {
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": "RekognitionService.SearchFacesByImage",
        },
        {"X-Amz-Target": "  RekognitionService.ListFaces\t ", "User-Agent": "facegate"},
        {},
    ],
    ids=["forward", "spaces-and-blacklisted", "none"],
)
@pytest.mark.parametrize("body", [b"", BODY, '{"Name": "é"}'.encode()])
def test_the_signer_writes_the_headers_botocore_writes(
    monkeypatch: pytest.MonkeyPatch, url: str, headers: dict[str, str], body: bytes
) -> None:
    signer = SigV4Signer(
        access_key_id=KEY, secret_access_key=SECRET, region="eu-west-1", service="rekognition"
    )
    signed = signer.sign("POST", url, headers, body, now=SIGNED_AT)
    assert list(signed.items()) == botocore_add_auth(monkeypatch, url, headers, body)


def test_a_signed_forward_verifies() -> None:
    signer = SigV4Signer(
        access_key_id=KEY, secret_access_key=SECRET, region="eu-west-1", service="rekognition"
    )
    signed = signer.sign(
        "POST", "https://vendor.example:8443/", {"X-Amz-Target": "RekognitionService.X"}, BODY
    )
    headers = {name.lower(): value for name, value in signed.items()}
    verify(headers | {"host": "vendor.example:8443"}, required_headers=REQUIRED_SIGNED_HEADERS)
    with pytest.raises(InvalidSignature, match="does not match"):
        verify(headers | {"host": "vendor.example"})


def test_the_signers_secret_is_not_in_its_repr() -> None:
    signer = SigV4Signer(
        access_key_id=KEY, secret_access_key=SECRET, region="eu-west-1", service="rekognition"
    )
    assert SECRET not in repr(signer)


def test_the_signing_time_is_written_in_utc() -> None:
    signer = SigV4Signer(
        access_key_id=KEY, secret_access_key=SECRET, region="eu-west-1", service="rekognition"
    )
    paris = SIGNED_AT.astimezone(timezone(timedelta(hours=1)))
    assert signer.sign("POST", "http://gw/", {}, BODY, now=paris) == signer.sign(
        "POST", "http://gw/", {}, BODY, now=SIGNED_AT
    )
