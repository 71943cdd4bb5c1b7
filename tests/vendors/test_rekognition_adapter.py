"""The Rekognition adapter: parsing to a FaceOperation, obligations, response filtering."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.errors import (
    AuditUnavailable,
    MalformedRequest,
    PayloadTooLarge,
    PolicyDenied,
    Reason,
    UnsupportedOperation,
)
from gateway.operations import OperationKind
from gateway.policy.contract import Obligations
from gateway.requests import IncomingRequest
from gateway.vendors.base import UpstreamResponse
from gateway.vendors.http import UpstreamReply
from gateway.vendors.inventory import Protocol
from gateway.vendors.rekognition import OPERATIONS, RekognitionAdapter
from tests.vendors.vendor_support import backend

IMAGE = b"\xff\xd8\xff fake jpeg bytes"
ENCODED = base64.b64encode(IMAGE).decode()
DIGEST = "sha256:" + hashlib.sha256(IMAGE).hexdigest()
OBLIGATIONS = Obligations(min_threshold=99, max_results=5)


@pytest.fixture
def adapter() -> RekognitionAdapter:
    return RekognitionAdapter(
        backend=backend(Protocol.REKOGNITION),
        max_image_bytes=1024,
        timeout_seconds=1,
    )


def request(operation: str, body: Any) -> IncomingRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return IncomingRequest(
        request_id="r1",
        received_at=datetime.now(UTC),
        method="POST",
        path="/",
        query="",
        headers={"x-amz-target": f"RekognitionService.{operation}"},
        body=raw,
        client_address="127.0.0.1",
    )


def test_search_by_image_is_an_identification(adapter: RekognitionAdapter) -> None:
    parsed = adapter.parse(
        request(
            "SearchFacesByImage",
            {
                "CollectionId": "mugshots",
                "Image": {"Bytes": ENCODED},
                "FaceMatchThreshold": 80,
                "MaxFaces": 50,
            },
        )
    )
    operation = parsed.operation
    assert operation.kind is OperationKind.IDENTIFY
    assert (operation.collection, operation.threshold, operation.max_results) == (
        "mugshots",
        80,
        50,
    )
    assert operation.probe_digests == [DIGEST]


def test_compare_faces_digests_both_images(adapter: RekognitionAdapter) -> None:
    parsed = adapter.parse(
        request(
            "CompareFaces", {"SourceImage": {"Bytes": ENCODED}, "TargetImage": {"Bytes": ENCODED}}
        )
    )
    assert parsed.operation.kind is OperationKind.VERIFY
    assert parsed.operation.probe_digests == [DIGEST, DIGEST]


def test_attributes_are_normalised_for_the_policy(adapter: RekognitionAdapter) -> None:
    parsed = adapter.parse(
        request(
            "DetectFaces",
            {"Image": {"Bytes": ENCODED}, "Attributes": ["AGE_RANGE", "EMOTIONS", "SMILE"]},
        )
    )
    assert parsed.operation.attributes == ["age", "emotions", "smile"]


def test_stream_processor_collection_is_found_in_its_settings(adapter: RekognitionAdapter) -> None:
    parsed = adapter.parse(
        request(
            "CreateStreamProcessor",
            {
                "Name": "cam",
                "Settings": {"FaceSearch": {"CollectionId": "c", "FaceMatchThreshold": 90}},
            },
        )
    )
    assert parsed.operation.kind is OperationKind.STREAM
    assert (parsed.operation.collection, parsed.operation.threshold) == ("c", 90)


def test_a_stream_processors_nested_threshold_gets_the_floor(adapter: RekognitionAdapter) -> None:
    settings = {"FaceSearch": {"CollectionId": "c", "FaceMatchThreshold": 50}}
    payload = {"Name": "cam", "Settings": settings}
    parsed = adapter.parse(request("CreateStreamProcessor", payload))

    rewritten = adapter.apply_obligations(parsed, Obligations(min_threshold=99))

    assert rewritten is not None
    assert rewritten["Settings"] == {"FaceSearch": {"CollectionId": "c", "FaceMatchThreshold": 99}}
    assert settings["FaceSearch"]["FaceMatchThreshold"] == 50  # the parsed request is unchanged
    # A processor with no face search has no threshold to floor: nothing is added.
    other = adapter.parse(request("CreateStreamProcessor", {"Name": "cam", "Settings": {}}))
    assert adapter.apply_obligations(other, Obligations(min_threshold=99)) is None


def test_every_operation_in_the_table_parses_with_its_kind(adapter: RekognitionAdapter) -> None:
    for name, spec in OPERATIONS.items():
        body = {field: {"Bytes": ENCODED} for field in spec.images}
        assert adapter.parse(request(name, body)).operation.kind is spec.kind


@pytest.mark.parametrize(
    ("operation", "body", "error"),
    [
        ("DetectLabels", {}, UnsupportedOperation),
        ("DetectFaces", b"{not json", MalformedRequest),
        ("DetectFaces", b"[1, 2]", MalformedRequest),
        ("DetectFaces", {"Image": {"Bytes": "%%%"}}, MalformedRequest),
        ("DetectFaces", {"Image": {"Bytes": ""}}, MalformedRequest),
        (
            "DetectFaces",
            {"Image": {"Bytes": base64.b64encode(b"x" * 2000).decode()}},
            PayloadTooLarge,
        ),
        (
            "SearchFacesByImage",
            {"Image": {"Bytes": ENCODED}, "FaceMatchThreshold": 101},
            MalformedRequest,
        ),
        ("SearchFacesByImage", {"Image": {"Bytes": ENCODED}, "MaxFaces": 0}, MalformedRequest),
        ("SearchFacesByImage", {"Image": {"Bytes": ENCODED}, "CollectionId": 7}, MalformedRequest),
        ("DetectFaces", {"Image": {"Bytes": ENCODED}, "Attributes": "ALL"}, MalformedRequest),
    ],
)
def test_bad_requests_are_named(
    adapter: RekognitionAdapter, operation: str, body: Any, error: type[Exception]
) -> None:
    with pytest.raises(error):
        adapter.parse(request(operation, body))


def test_obligations_raise_the_threshold_and_cap_results(adapter: RekognitionAdapter) -> None:
    parsed = adapter.parse(
        request(
            "SearchFacesByImage",
            {
                "CollectionId": "m",
                "Image": {"Bytes": ENCODED},
                "FaceMatchThreshold": 80,
                "MaxFaces": 50,
            },
        )
    )
    rewritten = adapter.apply_obligations(parsed, OBLIGATIONS)
    assert rewritten is not None
    assert (rewritten["FaceMatchThreshold"], rewritten["MaxFaces"]) == (99, 5)


def test_missing_threshold_and_cap_get_the_obligations(adapter: RekognitionAdapter) -> None:
    parsed = adapter.parse(
        request("SearchFacesByImage", {"CollectionId": "m", "Image": {"Bytes": ENCODED}})
    )
    rewritten = adapter.apply_obligations(parsed, OBLIGATIONS)
    assert rewritten is not None
    assert (rewritten["FaceMatchThreshold"], rewritten["MaxFaces"]) == (99, 5)


def test_a_request_already_within_obligations_is_forwarded_unchanged(
    adapter: RekognitionAdapter,
) -> None:
    parsed = adapter.parse(
        request(
            "SearchFacesByImage",
            {
                "CollectionId": "m",
                "Image": {"Bytes": ENCODED},
                "FaceMatchThreshold": 99.5,
                "MaxFaces": 3,
            },
        )
    )
    assert adapter.apply_obligations(parsed, OBLIGATIONS) is None


Sent = list[tuple[str, str, bytes | None, dict[str, str]]]


def capture_forwards(adapter: RekognitionAdapter, monkeypatch: pytest.MonkeyPatch) -> Sent:
    """What the adapter sends upstream from now on, each answered with an empty 200."""
    sent: Sent = []

    async def capture(
        method: str, url: str, *, headers: dict[str, str], body: bytes | None = None
    ) -> UpstreamReply:
        sent.append((method, url, body, dict(headers)))
        return UpstreamReply(status=200, headers=CIMultiDictProxy(CIMultiDict()), body=b"{}")

    monkeypatch.setattr(adapter._client, "request", capture)
    return sent


def botocore_signed(body: bytes, amz_date: str, monkeypatch: pytest.MonkeyPatch) -> AWSRequest:
    """The forward of a SearchFacesByImage with `body` as botocore's SigV4Auth.add_auth signs
    it at `amz_date`, with the vendor credentials of `backend()`."""
    signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ")
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: signed_at)
    reference = AWSRequest(
        method="POST",
        url="http://vendor.invalid/",
        data=body,
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": "RekognitionService.SearchFacesByImage",
        },
    )
    SigV4Auth(Credentials("AK", "vendor-secret"), "rekognition", "us-east-1").add_auth(reference)
    return reference


async def test_the_forward_is_signed_as_botocore_signs_it(
    adapter: RekognitionAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What reaches the vendor: the URL and headers botocore's SigV4Auth.add_auth produced
    when it signed the forward (for the same body and X-Amz-Date), in the same order."""
    sent = capture_forwards(adapter, monkeypatch)
    parsed = adapter.parse(
        request("SearchFacesByImage", {"CollectionId": "m", "Image": {"Bytes": ENCODED}})
    )
    await adapter.forward(parsed, OBLIGATIONS)
    [(method, url, body, headers)] = sent
    # The payload as the obligations rewrote it, written as json.dumps writes it.
    assert body == json.dumps(adapter.apply_obligations(parsed, OBLIGATIONS)).encode()

    reference = botocore_signed(body, headers["X-Amz-Date"], monkeypatch)
    assert (method, url) == ("POST", reference.url)
    assert list(headers.items()) == list(reference.headers.items())


@pytest.mark.parametrize(
    "separators",
    [
        pytest.param((", ", ": "), id="as boto3 writes it, so forwarded as received"),
        pytest.param((",", ":"), id="compact, so written again"),
    ],
)
async def test_an_unrewritten_forward_signs_the_digest_of_the_bytes_sent(
    adapter: RekognitionAdapter, monkeypatch: pytest.MonkeyPatch, separators: tuple[str, str]
) -> None:
    """A request the obligations leave alone is forwarded as `parse` wrote it. Where those
    are the very bytes received, the caller's signature check has hashed them already and
    the forward signs that digest; where they are not, the digest of the bytes sent."""
    sent = capture_forwards(adapter, monkeypatch)
    payload = {
        "CollectionId": "m",
        "Image": {"Bytes": ENCODED},
        "FaceMatchThreshold": 99.5,
        "MaxFaces": 3,
    }
    incoming = request("SearchFacesByImage", json.dumps(payload, separators=separators).encode())
    received_digest = incoming.body_sha256  # as the caller's signature check hashes it
    parsed = adapter.parse(incoming)
    assert adapter.apply_obligations(parsed, OBLIGATIONS) is None

    await adapter.forward(parsed, OBLIGATIONS)

    [(_, _, body, headers)] = sent
    assert body == json.dumps(payload).encode()
    forwarded_as_received = body == incoming.body
    assert parsed.body_sha256 == (received_digest if forwarded_as_received else None)
    reference = botocore_signed(body, headers["X-Amz-Date"], monkeypatch)
    assert headers["Authorization"] == reference.headers["Authorization"]


def test_the_response_is_checked_against_the_obligations(adapter: RekognitionAdapter) -> None:
    parsed = adapter.parse(
        request("SearchFacesByImage", {"CollectionId": "m", "Image": {"Bytes": ENCODED}})
    )
    matches = [
        {"Similarity": s, "Face": {"FaceId": str(i)}}
        for i, s in enumerate([99.9, 99.8, 99.7, 99.6, 99.5, 99.4, 50.0])
    ]
    upstream = UpstreamResponse(200, {}, json.dumps({"FaceMatches": matches}).encode())

    outcome = adapter.filter(parsed, OBLIGATIONS, upstream)

    kept = json.loads(outcome.response.body)["FaceMatches"]
    assert [m["Face"]["FaceId"] for m in kept] == ["0", "1", "2", "3", "4"]
    assert outcome.dropped == {"below_threshold": 1, "over_result_cap": 1}
    assert (outcome.match_count, outcome.top_similarity) == (5, 99.9)


def test_errors_use_rekognitions_shape(adapter: RekognitionAdapter) -> None:
    denied = adapter.error_response(
        PolicyDenied([Reason(code="warrant_expired", message="W-1 expired")]), request_id="r1"
    )
    assert denied.status_code == 400
    assert json.loads(denied.body) == {
        "__type": "AccessDeniedException",
        "Message": "facegate policy denied this request: warrant_expired: W-1 expired",
    }
    assert denied.headers["x-facegate-reasons"] == "warrant_expired"
    unavailable = adapter.error_response(AuditUnavailable("down"), request_id="r1")
    assert unavailable.status_code == 503
    assert json.loads(unavailable.body)["__type"] == "ServiceUnavailableException"


def test_parse_keeps_the_probe_images_for_inspection(adapter: RekognitionAdapter) -> None:
    parsed = adapter.parse(
        request(
            "CompareFaces",
            {"SourceImage": {"Bytes": ENCODED}, "TargetImage": {"Bytes": ENCODED}},
        )
    )
    assert parsed.images == (IMAGE, IMAGE)
    assert parsed.operation.probe_digests == [DIGEST, DIGEST]


STRIPPING = Obligations(remove_attributes=["age", "emotions", "gender"])


def test_forbidden_attributes_are_stripped_from_every_face_detail(
    adapter: RekognitionAdapter,
) -> None:
    parsed = adapter.parse(
        request("IndexFaces", {"CollectionId": "m", "Image": {"Bytes": ENCODED}})
    )
    detail = {
        "BoundingBox": {"Width": 0.5},
        "AgeRange": {"Low": 20, "High": 30},
        "Gender": {"Value": "Female"},
        "Emotions": [{"Type": "FEAR", "Confidence": 90.0}],
        "Smile": {"Value": False},
    }
    body = {"FaceRecords": [{"Face": {"FaceId": "f1"}, "FaceDetail": detail}] * 2}
    upstream = UpstreamResponse(200, {}, json.dumps(body).encode())

    outcome = adapter.filter(parsed, STRIPPING, upstream)

    records = json.loads(outcome.response.body)["FaceRecords"]
    assert [set(r["FaceDetail"]) for r in records] == [{"BoundingBox", "Smile"}] * 2
    assert outcome.dropped == {"forbidden_attributes": 6}
    assert outcome.match_count is None


def test_a_clean_response_is_passed_on_as_it_was_checked(adapter: RekognitionAdapter) -> None:
    parsed = adapter.parse(request("DetectFaces", {"Image": {"Bytes": ENCODED}}))
    # A duplicate key: the client gets the one value that was checked, not both.
    raw = b'{"FaceDetails": [], "FaceDetails": [{"BoundingBox": {"Width": 0.5}}]}'

    outcome = adapter.filter(parsed, STRIPPING, UpstreamResponse(200, {}, raw))

    assert outcome.response.body == b'{"FaceDetails": [{"BoundingBox": {"Width": 0.5}}]}'
    assert outcome.dropped == {} and outcome.faces == 1


def test_an_unreadable_answer_is_an_upstream_error(adapter: RekognitionAdapter) -> None:
    from gateway.errors import UpstreamError

    parsed = adapter.parse(request("DetectFaces", {"Image": {"Bytes": ENCODED}}))
    with pytest.raises(UpstreamError):
        adapter.filter(parsed, STRIPPING, UpstreamResponse(200, {}, b"[1, 2]"))


def test_an_image_that_is_not_one_is_invalid_image_format(adapter: RekognitionAdapter) -> None:
    from gateway.errors import InvalidImage

    response = adapter.error_response(InvalidImage("not a JPEG or PNG"), request_id="r1")
    assert json.loads(response.body)["__type"] == "InvalidImageFormatException"


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    operation=st.sampled_from(["SearchFacesByImage", "CompareFaces", "DetectFaces"]),
    extra=st.dictionaries(st.text().map(lambda key: f"Extra{key}"), _JSON, max_size=5),
    images=st.lists(st.binary(min_size=1, max_size=300), min_size=2, max_size=2),
    at=st.integers(min_value=0, max_value=5),
    ascii_only=st.booleans(),
)
def test_the_body_forwarded_is_the_payload_as_json_dumps_writes_it(
    operation: str, extra: dict[str, Any], images: list[bytes], at: int, ascii_only: bool
) -> None:
    # parse writes the body with the images' base64 copied between quotes, not through
    # json's escaper: the bytes must be json.dumps's all the same, wherever the images are.
    adapter = RekognitionAdapter(
        backend=backend(Protocol.REKOGNITION), max_image_bytes=1024, timeout_seconds=1
    )
    fields = OPERATIONS[operation].images
    members = list(extra.items())
    for field, image in zip(fields, images, strict=False):
        members.insert(min(at, len(members)), (field, {"Bytes": base64.b64encode(image).decode()}))
    if operation != "DetectFaces":
        members.insert(0, ("SimilarityThreshold", 80.5))
    if operation == "SearchFacesByImage":
        members.append(("CollectionId", "m"))
    raw = json.dumps(dict(members), ensure_ascii=ascii_only).encode()
    parsed = adapter.parse(request(operation, raw))
    assert parsed.body == json.dumps(json.loads(raw)).encode()
