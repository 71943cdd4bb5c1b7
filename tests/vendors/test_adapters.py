"""Each adapter on its own: obligations on the vendor's scale, answers checked against them,
paths built from the route table only, and refusals in the vendor's error shape."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.errors import (
    AnswerWithheld,
    MalformedRequest,
    PayloadTooLarge,
    PolicyDenied,
    Reason,
    UnknownAccessKey,
    UnsupportedOperation,
    VendorRefused,
)
from gateway.policy.contract import Obligations
from gateway.vendors.base import UpstreamResponse
from gateway.vendors.inventory import Protocol
from gateway.vendors.scale import from_wire, to_wire
from tests.vendors.vendor_support import IMAGE, adapters, identify_requests, multipart, request

OBLIGED = Obligations(min_threshold=99, max_results=2, remove_attributes=["age", "gender"])
# Scores on the normalised scale: two over the floor of 99, three under it.
SCORES = [99.9, 99.5, 99.2, 98.0, 40.0]


def ok(document: object) -> UpstreamResponse:
    return UpstreamResponse(
        200, {"content-type": "application/json"}, json.dumps(document).encode()
    )


def test_the_threshold_scale_is_0_100_normalised_and_vendor_native_on_the_wire() -> None:
    assert to_wire(99, Protocol.REKOGNITION) == 99
    assert to_wire(99, Protocol.AZURE) == pytest.approx(0.99)
    assert to_wire(99, Protocol.COMPREFACE) == pytest.approx(0.99)
    assert from_wire(0.995, Protocol.AZURE) == pytest.approx(99.5)


def test_requests_are_rewritten_to_the_obligations_on_each_vendors_scale() -> None:
    built = adapters()
    parsed = {p: built[p].parse(r) for p, r in identify_requests(80, 50).items()}

    rekognition = built[Protocol.REKOGNITION].apply_obligations(
        parsed[Protocol.REKOGNITION], OBLIGED
    )
    assert rekognition["FaceMatchThreshold"] == 99 and rekognition["MaxFaces"] == 2

    body, _ = built[Protocol.AZURE].apply_obligations(parsed[Protocol.AZURE], OBLIGED)
    azure = json.loads(body)
    assert azure["confidenceThreshold"] == pytest.approx(0.99)
    assert azure["maxNumOfCandidatesReturned"] == 2

    query = dict(built[Protocol.COMPREFACE].apply_obligations(parsed[Protocol.COMPREFACE], OBLIGED))
    assert query == {"limit": "0", "prediction_count": "2", "status": "True"}


def test_azure_identify_answers_are_floored_and_capped() -> None:
    adapter = adapters()[Protocol.AZURE]
    parsed = adapter.parse(identify_requests(80, 50)[Protocol.AZURE])
    candidates = [{"personId": f"p{i}", "confidence": s / 100} for i, s in enumerate(SCORES)]

    outcome = adapter.filter(parsed, OBLIGED, ok([{"faceId": "f-1", "candidates": candidates}]))

    [result] = json.loads(outcome.response.body)
    assert [c["personId"] for c in result["candidates"]] == ["p0", "p1"]
    assert outcome.dropped == {"below_threshold": 2, "over_result_cap": 1}
    assert outcome.match_count == 2 and outcome.top_similarity == pytest.approx(99.9)


def test_azure_verification_under_the_floor_is_not_identical() -> None:
    adapter = adapters()[Protocol.AZURE]
    parsed = adapter.parse(
        request(
            "POST",
            "/face/v1.0/verify",
            body=b'{"faceId1": "a", "faceId2": "b"}',
            headers={"content-type": "application/json"},
        )
    )

    outcome = adapter.filter(parsed, OBLIGED, ok({"isIdentical": True, "confidence": 0.7}))

    assert json.loads(outcome.response.body) == {"isIdentical": False, "confidence": 0.7}
    assert outcome.match_count == 0 and outcome.dropped == {"below_threshold": 1}


def test_compreface_recognition_answers_are_floored_capped_and_stripped() -> None:
    adapter = adapters()[Protocol.COMPREFACE]
    parsed = adapter.parse(identify_requests(80, 50)[Protocol.COMPREFACE])
    subjects = [{"subject": f"s{i}", "similarity": s / 100} for i, s in enumerate(SCORES)]
    face = {"box": {"probability": 1.0}, "age": {"low": 30}, "gender": {"value": "x"}}

    outcome = adapter.filter(parsed, OBLIGED, ok({"result": [{**face, "subjects": subjects}]}))

    [result] = json.loads(outcome.response.body)["result"]
    assert [s["subject"] for s in result["subjects"]] == ["s0", "s1"]
    assert "age" not in result and "gender" not in result
    assert outcome.dropped == {
        "below_threshold": 2,
        "over_result_cap": 1,
        "forbidden_attributes": 2,
    }
    assert outcome.top_similarity == pytest.approx(99.9)


def test_compreface_verification_keeps_only_matches_over_the_floor() -> None:
    adapter = adapters()[Protocol.COMPREFACE]
    body, content_type = multipart(source_image=IMAGE, target_image=IMAGE)
    parsed = adapter.parse(
        request(
            "POST", "/api/v1/verification/verify", body=body, headers={"content-type": content_type}
        )
    )
    assert parsed.operation.kind == "verify" and len(parsed.operation.probe_digests) == 2
    matches = [{"similarity": s / 100} for s in SCORES]

    outcome = adapter.filter(parsed, OBLIGED, ok({"result": [{"face_matches": matches}]}))

    # Over the floor, the best matches up to the cap are kept (data: one for a verification).
    [pair] = json.loads(outcome.response.body)["result"]
    assert [m["similarity"] for m in pair["face_matches"]] == pytest.approx([0.999, 0.995])
    assert outcome.match_count == 2
    assert outcome.dropped == {"below_threshold": 2, "over_result_cap": 1}
    assert outcome.faces == 5


@pytest.mark.parametrize(
    ("protocol", "method", "path", "query", "error"),
    [
        (Protocol.AZURE, "POST", "/face/v1.0/snapshots", "", UnsupportedOperation),
        (Protocol.AZURE, "GET", "/face/v9/largepersongroups", "", UnsupportedOperation),
        (Protocol.AZURE, "GET", "/face/v1.0/largepersongroups/..", "", MalformedRequest),
        (Protocol.AZURE, "GET", "/face/v1.0/largepersongroups", "url=http://x", MalformedRequest),
        (Protocol.COMPREFACE, "GET", "/api/v1/recognition/faces/abc/img", "", UnsupportedOperation),
        (
            Protocol.COMPREFACE,
            "GET",
            "/api/v1/recognition/faces",
            "page=1&page=2",
            MalformedRequest,
        ),
        (Protocol.COMPREFACE, "GET", "/api/v1/static/../../etc", "", UnsupportedOperation),
    ],
)
def test_only_the_route_table_is_reachable(
    protocol: Protocol, method: str, path: str, query: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        adapters()[protocol].parse(request(method, path, query=query))


def test_upstream_paths_are_rebuilt_from_quoted_segments() -> None:
    adapter = adapters()[Protocol.COMPREFACE]
    parsed = adapter.parse(request("DELETE", "/api/v1/recognition/subjects/José & co;x=1"))
    assert parsed.upstream_path == "/api/v1/recognition/subjects/Jos%C3%A9%20%26%20co%3Bx%3D1"
    assert parsed.operation.collection == "mugshots"
    # A decoded ? or # (sent as %3F, %23) is refused outright rather than re-quoted.
    with pytest.raises(MalformedRequest):
        adapter.parse(request("DELETE", "/api/v1/recognition/subjects/a?b"))


def test_azure_refuses_images_by_url_and_oversized_images() -> None:
    adapter = adapters()[Protocol.AZURE]
    with pytest.raises(MalformedRequest, match="does not fetch URLs"):
        adapter.parse(
            request(
                "POST",
                "/face/v1.0/detect",
                body=b'{"url": "http://169.254.169.254/latest"}',
                headers={"content-type": "application/json"},
            )
        )
    with pytest.raises(PayloadTooLarge):
        adapter.parse(
            request(
                "POST",
                "/face/v1.0/detect",
                body=b"x" * (1024 * 1024 + 1),
                headers={"content-type": "application/octet-stream"},
            )
        )


@pytest.mark.parametrize(
    ("protocol", "status", "shape"),
    [
        (Protocol.AZURE, 403, {"error": {"code": "PermissionDenied"}}),
        (Protocol.COMPREFACE, 403, {"code": 403}),
    ],
)
def test_refusals_come_back_in_the_vendors_error_shape(
    protocol: Protocol, status: int, shape: dict[str, object]
) -> None:
    adapter = adapters()[protocol]
    denied = PolicyDenied([Reason(code="warrant_required", message="no warrant")])

    response = adapter.error_response(denied, request_id="r-1")

    body = json.loads(response.body)
    assert response.status_code == status
    assert response.headers["x-facegate-reasons"] == "warrant_required"
    if protocol is Protocol.AZURE:
        assert body["error"]["code"] == "PermissionDenied"
        assert "warrant_required" in body["error"]["message"]
    else:
        assert body["code"] == 403 and "warrant_required" in body["message"]
    auth = json.loads(adapter.error_response(UnknownAccessKey("no"), request_id="r").body)
    assert auth.get("code", auth.get("error", {}).get("code")) in (401, "401")


# One answer per vendor, in its own words: five matches for one face searched (SCORES).
IDENTIFY_ANSWERS: dict[Protocol, object] = {
    Protocol.REKOGNITION: {
        "FaceMatches": [
            {"Similarity": s, "Face": {"FaceId": f"f{i}"}} for i, s in enumerate(SCORES)
        ]
    },
    Protocol.AZURE: [
        {
            "faceId": "f-1",
            "candidates": [
                {"personId": f"p{i}", "confidence": s / 100} for i, s in enumerate(SCORES)
            ],
        }
    ],
    Protocol.COMPREFACE: {
        "result": [
            {
                "subjects": [
                    {"subject": f"s{i}", "similarity": s / 100} for i, s in enumerate(SCORES)
                ]
            }
        ]
    },
}


@pytest.mark.parametrize("status", [201, 203, 206, 299])
@pytest.mark.parametrize("protocol", list(Protocol))
def test_every_2xx_answer_is_held_to_the_obligations(protocol: Protocol, status: int) -> None:
    adapter = adapters()[protocol]
    parsed = adapter.parse(identify_requests(80, 50)[protocol])
    body = json.dumps(IDENTIFY_ANSWERS[protocol]).encode()

    outcome = adapter.filter(parsed, OBLIGED, UpstreamResponse(status, {}, body))

    assert outcome.withheld is None and outcome.response.status_code == status
    assert outcome.match_count == 2 and outcome.faces == 1
    assert outcome.dropped == {"below_threshold": 2, "over_result_cap": 1}


@pytest.mark.parametrize(
    ("protocol", "answer", "status", "shape"),
    [
        (
            Protocol.REKOGNITION,
            {"__type": "ResourceNotFoundException", "Message": "booking-1138"},
            400,
            lambda b: (b["__type"], b["Message"]),
        ),
        (
            Protocol.AZURE,
            {"error": {"code": "PersonNotFound", "message": "booking-1138"}},
            404,
            lambda b: (b["error"]["code"], b["error"]["message"]),
        ),
        (
            Protocol.COMPREFACE,
            {"code": 24, "message": "booking-1138"},
            404,
            lambda b: (str(b["code"]), b["message"]),
        ),
    ],
)
def test_a_vendors_error_is_replaced_by_facegates_in_the_vendors_shape(
    protocol: Protocol, answer: object, status: int, shape: Any
) -> None:
    adapter = adapters()[protocol]
    parsed = adapter.parse(identify_requests(80, 50)[protocol])
    vendor_error = UpstreamResponse(status, {"x-amzn-secret": "x"}, json.dumps(answer).encode())

    outcome = adapter.filter(parsed, OBLIGED, vendor_error)

    assert isinstance(outcome.withheld, VendorRefused)
    response = adapter.error_response(outcome.withheld, request_id="r1")
    code, message = shape(json.loads(response.body))
    assert response.status_code == status
    assert (
        code
        == {
            Protocol.REKOGNITION: "ResourceNotFoundException",
            Protocol.AZURE: "PersonNotFound",
            Protocol.COMPREFACE: "24",
        }[protocol]
    )
    assert "booking-1138" not in message and "x-amzn-secret" not in response.headers


# Rekognition searches the largest face only, so its answers hold one face searched.
@pytest.mark.parametrize(
    ("protocol", "crowd"),
    [
        (Protocol.AZURE, [{"faceId": f"f-{i}", "candidates": []} for i in range(4)]),
        (Protocol.COMPREFACE, {"result": [{"subjects": []} for _ in range(4)]}),
    ],
)
def test_an_identification_of_more_faces_than_allowed_is_withheld(
    protocol: Protocol, crowd: object
) -> None:
    adapter = adapters()[protocol]
    parsed = adapter.parse(identify_requests(80, 50)[protocol])
    obliged = OBLIGED.model_copy(update={"max_faces": 3})

    outcome = adapter.filter(parsed, obliged, ok(crowd))

    assert isinstance(outcome.withheld, AnswerWithheld) and outcome.faces == 4
    response = adapter.error_response(outcome.withheld, request_id="r1")
    assert response.headers["x-facegate-reasons"] == "too_many_faces"
