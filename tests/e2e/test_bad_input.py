"""Bad input gets a clear Rekognition-style error, is recorded, and never reaches the vendor."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from gateway.audit.query import RecordQuery
from gateway.audit.schemas import AuditQuery
from gateway.auth.sessions import IssuedCredentials
from gateway.db import create_engine, session_factory
from refvendor import samples
from tests.e2e.conftest import Stack, vendor_calls


def signed(
    stack: Stack,
    credentials: IssuedCredentials | None,
    *,
    target: str = "RekognitionService.DetectFaces",
    body: bytes = b"{}",
    secret: str | None = None,
    signed_at: datetime | None = None,
    extra_headers: dict[str, str] | None = None,
) -> dict[str, str]:
    """Headers for a request signed the way botocore signs it, with knobs to get it wrong."""
    request = AWSRequest(
        method="POST",
        url=f"{stack.url}/",
        data=body,
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": target,
            **(extra_headers or {}),
        },
    )
    if credentials is not None:
        signer = SigV4Auth(
            Credentials(credentials.access_key_id, secret or credentials.secret_access_key),
            "rekognition",
            "us-east-1",
        )
        if signed_at is None:
            signer.add_auth(request)
        else:
            # botocore signs with "now"; sign at another time to test clock skew.
            request.context["timestamp"] = signed_at.strftime("%Y%m%dT%H%M%SZ")
            request.headers["X-Amz-Date"] = request.context["timestamp"]
            canonical = signer.canonical_request(request)
            signature = signer.signature(signer.string_to_sign(request, canonical), request)
            request.headers["Authorization"] = (
                f"AWS4-HMAC-SHA256 Credential={credentials.access_key_id}/"
                f"{request.context['timestamp'][:8]}/us-east-1/rekognition/aws4_request, "
                f"SignedHeaders={signer.signed_headers(signer.headers_to_sign(request))}, "
                f"Signature={signature}"
            )
    return dict(request.headers.items())


def post(stack: Stack, headers: dict[str, str], body: Any) -> httpx.Response:
    return httpx.post(f"{stack.url}/", headers=headers, content=body, timeout=30)


async def records_of(stack: Stack, **filters: Any) -> list[Any]:
    engine = create_engine(stack.settings.database_url)
    try:
        page = await RecordQuery(session_factory(engine)).query(AuditQuery(**filters), limit=1000)
        return page.entries
    finally:
        await engine.dispose()


async def records_once_written(stack: Stack, **filters: Any) -> list[Any]:
    """`records_of`, once there are any: for a record written after the client has gone,
    which no answer tells the test about. Waits, asserting no time; [] if none come."""
    for _ in range(100):
        found = await records_of(stack, **filters)
        if found:
            return found
        await asyncio.sleep(0.1)
    return []


@pytest.fixture
def count_upstream(stack: Stack) -> Iterator[None]:
    """Every test in this file must leave the vendor untouched."""
    before = vendor_calls(stack.vendor)
    yield
    assert vendor_calls(stack.vendor) == before, "a bad request reached the vendor"


def image_body(encoded: str) -> bytes:
    return json.dumps({"Image": {"Bytes": encoded}}).encode()


GOOD_IMAGE = base64.b64encode(b"\xff\xd8 not inspected by the gateway").decode()

CASES = {
    "malformed_json": (
        b'{"Image": ',
        "RekognitionService.DetectFaces",
        "InvalidParameterException",
    ),
    "bad_base64": (
        image_body("@@not base64@@"),
        "RekognitionService.DetectFaces",
        "InvalidParameterException",
    ),
    "unknown_operation": (b"{}", "RekognitionService.DetectLabels", "UnknownOperationException"),
    "missing_image": (b"{}", "RekognitionService.SearchFacesByImage", "InvalidParameterException"),
    "s3_object": (
        json.dumps({"Image": {"S3Object": {"Bucket": "b", "Name": "n"}}}).encode(),
        "RekognitionService.DetectFaces",
        "InvalidParameterException",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_malformed_requests(stack: Stack, count_upstream: None, case: str) -> None:
    body, target, error_type = CASES[case]
    credentials = await stack.session()

    response = post(stack, signed(stack, credentials, target=target, body=body), body)

    assert response.status_code == 400
    assert response.json()["__type"] == error_type
    assert response.json()["Message"]
    [record] = await records_of(stack, event_type="rejected")
    assert record.key_id == credentials.access_key_id
    assert record.decision == "deny"


async def test_oversized_image_is_refused_before_decoding(
    stack: Stack, count_upstream: None
) -> None:
    credentials = await stack.session()
    body = image_body(base64.b64encode(b"\0" * (stack.settings.max_image_bytes + 10)).decode())

    response = post(stack, signed(stack, credentials, body=body), body)

    assert response.status_code == 400
    assert response.json()["__type"] == "ImageTooLargeException"
    assert len(await records_of(stack, event_type="rejected")) == 1


async def test_oversized_chunked_body_is_cut_off(stack: Stack, count_upstream: None) -> None:
    credentials = await stack.session()
    headers = signed(stack, credentials, body=b"{}")
    chunk = b" " * 65536
    limit = stack.settings.max_body_bytes

    def chunks() -> Iterator[bytes]:
        for _ in range(limit // len(chunk) + 2):
            yield chunk

    response = post(stack, headers, chunks())

    assert response.status_code == 400
    assert response.json()["__type"] == "ImageTooLargeException"
    assert len(await records_of(stack, event_type="rejected")) == 1


async def test_a_chunked_body_is_accepted(stack: Stack) -> None:
    credentials = await stack.session()
    body = image_body(base64.b64encode(samples.astronaut_jpeg()).decode())
    headers = signed(stack, credentials, body=body)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 10000):
            yield body[start : start + 10000]

    response = post(stack, headers, chunks())

    assert response.status_code == 200, response.text
    assert len(response.json()["FaceDetails"]) == 1


@pytest.mark.parametrize(
    ("problem", "error_type"),
    [
        ("unsigned", "MissingAuthenticationTokenException"),
        ("wrong_secret", "InvalidSignatureException"),
        ("unknown_key", "UnrecognizedClientException"),
        ("clock_skew", "InvalidSignatureException"),
        ("tampered_body", "InvalidSignatureException"),
        ("expired_session", "ExpiredTokenException"),
    ],
)
async def test_authentication_failures(
    stack: Stack, count_upstream: None, problem: str, error_type: str
) -> None:
    body = image_body(GOOD_IMAGE)
    credentials = await stack.session(
        ttl=timedelta(seconds=1) if problem == "expired_session" else timedelta(hours=1)
    )
    headers: dict[str, str]
    if problem == "unsigned":
        headers = signed(stack, None, body=body)
    elif problem == "wrong_secret":
        headers = signed(stack, credentials, body=body, secret="x" * 40)
    elif problem == "unknown_key":
        headers = signed(
            stack,
            credentials.model_copy(update={"access_key_id": "FGAKNOTAREALKEY00000"}),
            body=body,
        )
    elif problem == "clock_skew":
        headers = signed(
            stack, credentials, body=body, signed_at=datetime.now(UTC) - timedelta(minutes=16)
        )
    elif problem == "tampered_body":
        headers = signed(stack, credentials, body=body)
        body = image_body(base64.b64encode(b"another image").decode())
        headers.pop("Content-Length", None)
    else:
        await asyncio.sleep(1.2)  # the session lasted one second
        headers = signed(stack, credentials, body=body)

    response = post(stack, headers, body)

    assert response.status_code in (400, 403)
    assert response.json()["__type"] == error_type
    [record] = await records_of(stack, event_type="auth_failure")
    assert record.reason_codes
