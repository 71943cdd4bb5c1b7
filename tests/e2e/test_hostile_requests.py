"""A hostile client: requests that two parsers could read differently, or that no parser can
read to the end. Each is a clear 400 in the vendor's own format, recorded as `rejected`,
and never reaches the vendor (its calls are counted before and after)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gateway.audit.records import MAX_FIELD_CHARS
from gateway.auth.key_header import vendor_key
from gateway.auth.sessions import IssuedCredentials
from refvendor import samples
from tests.e2e.conftest import Stack, vendor_calls
from tests.e2e.test_bad_input import post, records_of, signed

IMAGE = base64.b64encode(samples.astronaut_jpeg()).decode()
OTHER = base64.b64encode(samples.crowd_jpeg(16)).decode()


@pytest.fixture
def untouched_vendor(stack: Stack) -> Iterator[None]:
    before = vendor_calls(stack.vendor)
    yield
    assert vendor_calls(stack.vendor) == before, "a hostile request reached the vendor"


async def refused_on_record(stack: Stack, credentials: IssuedCredentials) -> Any:
    [record] = await records_of(stack, event_type="rejected")
    assert record.key_id == credentials.access_key_id
    assert record.decision == "deny"
    return record


# -- Amazon Rekognition -----------------------------------------------------------------------

SEARCH = "RekognitionService.SearchFacesByImage"
DETECT = "RekognitionService.DetectFaces"

REKOGNITION = {
    # Python keeps the last key, a vendor may keep the first: another collection searched
    # than the one judged and recorded.
    "duplicate_collection": (
        SEARCH,
        '{"CollectionId": "mugshots", "CollectionId": "everyone", "Image": {"Bytes": "A"}}',
    ),
    # ... or another probe than the one digested and inspected.
    "duplicate_image_bytes": (
        SEARCH,
        '{"CollectionId": "mugshots", "Image": {"Bytes": "B", "Bytes": "A"}}',
    ),
    "duplicate_image": (
        SEARCH,
        '{"CollectionId": "mugshots", "Image": {"Bytes": "B"}, "Image": {"Bytes": "A"}}',
    ),
    "bytes_and_s3_object": (
        DETECT,
        json.dumps({"Image": {"Bytes": IMAGE, "S3Object": {"Bucket": "crowds", "Name": "x.jpg"}}}),
    ),
    "deep_nesting": (DETECT, '{"Image": ' + "[" * 100_000 + "]" * 100_000 + "}"),
    "lone_surrogate": (
        SEARCH,
        '{"CollectionId": "mug\\ud800shots", "Image": {"Bytes": "A"}}',
    ),
    "infinite_threshold": (
        SEARCH,
        '{"CollectionId": "mugshots", "FaceMatchThreshold": 1e999, "Image": {"Bytes": "A"}}',
    ),
}


@pytest.mark.parametrize("case", sorted(REKOGNITION))
async def test_rekognition_refuses_what_two_readers_could_read_apart(
    stack: Stack, untouched_vendor: None, case: str
) -> None:
    await stack.warrant("W-1")
    credentials = await stack.session()
    target, text = REKOGNITION[case]
    # "A" is the probe judged, "B" a crowd photo a first-key reader would search instead.
    body = text.replace('"A"', f'"{IMAGE}"').replace('"B"', f'"{OTHER}"').encode()

    response = post(stack, signed(stack, credentials, target=target, body=body), body)

    assert response.status_code == 400, response.text
    assert response.json()["__type"] == "InvalidParameterException"
    record = await refused_on_record(stack, credentials)
    assert record.reason_codes == ["malformed_request"]


# -- Azure AI Face ------------------------------------------------------------------------------

AZURE = {
    "duplicate_group": (
        '{"faceIds": ["f1"], "largePersonGroupId": "mugshots", "largePersonGroupId": "everyone"}'
    ),
    "duplicate_face_ids": (
        '{"faceIds": ["f1"], "faceIds": ["f1", "f2", "f3", "f4", "f5", "f6", "f7", "f8"],'
        ' "largePersonGroupId": "mugshots"}'
    ),
    "deep_nesting": '{"faceIds": ' + "[" * 100_000 + "]" * 100_000 + "}",
    "lone_surrogate": '{"faceIds": ["f1"], "largePersonGroupId": "mug\\ud800shots"}',
}


@pytest.mark.parametrize("case", sorted(AZURE))
async def test_azure_refuses_what_two_readers_could_read_apart(
    stack: Stack, untouched_vendor: None, case: str
) -> None:
    await stack.warrant("W-1")
    credentials = await stack.session()
    key = vendor_key(credentials.access_key_id, credentials.secret_access_key)

    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            f"{stack.url}/face/v1.2-preview.1/identify",
            headers={"ocp-apim-subscription-key": key, "content-type": "application/json"},
            content=AZURE[case].encode(),
        )

    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "BadArgument"
    await refused_on_record(stack, credentials)


# -- CompreFace ---------------------------------------------------------------------------------


def form(*parts: tuple[bytes, bytes], boundary: bytes = b"XyZ") -> bytes:
    """A multipart body from (headers, content) pairs, written by hand as an attacker would."""
    body = b"".join(b"--" + boundary + b"\r\n" + h + b"\r\n\r\n" + c + b"\r\n" for h, c in parts)
    return body + b"--" + boundary + b"--\r\n"


FILE = b'Content-Disposition: form-data; name="file"; filename="probe.jpg"'
JPEG = samples.astronaut_jpeg()
CROWD = samples.crowd_jpeg(16)


def nested(depth: int) -> bytes:
    body = JPEG
    for level in range(depth):
        inner = b"b%d" % level
        body = (
            b"--" + inner + b"\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (level + 1)
            + body + b"\r\n--" + inner + b"--"
        )  # fmt: skip
    return body


COMPREFACE = {
    # Decoded by the gateway (one face), read as the raw text by a standard form parser.
    "transfer_encoding": (
        "multipart/form-data; boundary=XyZ",
        form((FILE + b"\r\nContent-Transfer-Encoding: base64", base64.b64encode(CROWD))),
    ),
    # The gateway took the first boundary; another parser takes the last.
    "two_boundaries": (
        "multipart/form-data; boundary=XyZ; boundary=AbC",
        form((FILE, JPEG)) + form((FILE, CROWD), boundary=b"AbC"),
    ),
    "duplicate_field": (
        "multipart/form-data; boundary=XyZ",
        form((FILE, JPEG), (FILE, CROWD)),
    ),
    "duplicate_name_parameter": (
        "multipart/form-data; boundary=XyZ",
        form((b'Content-Disposition: form-data; name="file"; name="other"', JPEG)),
    ),
    "nested_multipart": (
        "multipart/form-data; boundary=XyZ",
        form((FILE + b"\r\nContent-Type: multipart/mixed; boundary=b0", nested(2000))),
    ),
    "sixty_thousand_parts": (
        "multipart/form-data; boundary=XyZ",
        form(
            *[(b'Content-Disposition: form-data; name="f%d"' % i, b"x" * 16) for i in range(60_000)]
        ),
    ),
    "no_closing_boundary": (
        "multipart/form-data; boundary=XyZ",
        form((FILE, JPEG))[: -len(b"--XyZ--\r\n")],
    ),
}


@pytest.mark.parametrize("case", sorted(COMPREFACE))
async def test_compreface_refuses_an_ambiguous_form(
    stack: Stack, untouched_vendor: None, case: str
) -> None:
    credentials = await stack.session()
    key = vendor_key(credentials.access_key_id, credentials.secret_access_key)
    content_type, body = COMPREFACE[case]

    async with httpx.AsyncClient(timeout=60) as client:
        response = await client.post(
            f"{stack.url}/api/v1/detection/detect",
            headers={"x-api-key": key, "content-type": content_type},
            content=body,
        )

    assert response.status_code == 400, response.text
    assert response.json()["code"] == 400
    await refused_on_record(stack, credentials)


# -- What a request names is capped before it is recorded ------------------------------------


async def test_a_megabyte_sigv4_key_id_is_recorded_capped(
    stack: Stack, untouched_vendor: None
) -> None:
    key_id = "AKIA" + "K" * 1_000_000
    headers = {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": DETECT,
        "X-Amz-Date": "20260101T000000Z",
        "Authorization": f"AWS4-HMAC-SHA256 Credential={key_id}/20260101/us-east-1/"
        f"rekognition/aws4_request, SignedHeaders=host;x-amz-date, Signature={'0' * 64}",
    }

    response = post(stack, headers, b"{}")

    assert response.status_code == 400
    [record] = await records_of(stack, event_type="auth_failure")
    assert record.key_id is not None and record.key_id.startswith("AKIAKKKK")
    assert len(record.key_id) <= MAX_FIELD_CHARS


async def test_a_megabyte_case_header_is_recorded_capped(stack: Stack) -> None:
    credentials = await stack.session(case_number=None)
    body = json.dumps({"Image": {"Bytes": IMAGE}}).encode()
    case = {"X-Facegate-Case": "C" * 1_000_000}
    headers = signed(stack, credentials, body=body, extra_headers=case)

    post(stack, headers, body)

    # A case number is an identifier of at most 100 characters: the header is refused as
    # malformed, on record, and nothing of the megabyte is kept whole.
    [record] = await records_of(stack, event_type="rejected")
    assert "X-Facegate-Case" in record.detail["message"]

    def texts(value: Any) -> list[str]:
        if isinstance(value, str):
            return [value]
        if isinstance(value, dict):
            return [t for v in value.values() for t in texts(v)]
        if isinstance(value, list):
            return [t for v in value for t in texts(v)]
        return []

    assert max(len(t) for t in texts(record.model_dump(mode="json"))) <= MAX_FIELD_CHARS
