"""What leaves in an answer: only what the policy allowed, and every failure on record.

Answers the reference vendor cannot give (a 203, 40 matches, garbage, Infinity, templates, a
vendor's error text) come from a stub vendor that says what each test wants and records what
it received; the rest go through the reference vendor. Each test checks what the client got
through its vendor's own SDK and the outcome record in the audit log.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from botocore.exceptions import ClientError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.app import create_app
from gateway.auth.principals import Role
from gateway.case import LegalBasis
from gateway.context.activity import ActivityEvent, ActivityUnavailable, MemoryActivityStore
from gateway.context.warrants import WarrantKind
from gateway.migrate import upgrade_async
from gateway.operations import OperationKind
from gateway.serving import BackgroundServer
from gateway.vendors.inventory import Protocol
from refvendor import samples
from tests.e2e.conftest import (
    Stack,
    gateway_settings,
    policy_without_rate_limits,
    vendor_calls,
    vendor_client,
)
from tests.e2e.test_azure_sdk import DETECT
from tests.e2e.test_bad_input import records_of

SECRET = "booking-1138 John Q. Doe"  # text a vendor must not get through to a client
TEMPLATE = [0.125] * 128

# Enrolment changes reference data: it needs the custodian role (policies/data/roles.yaml).
CUSTODIAN = (Role.OFFICER, Role.CUSTODIAN)


@dataclass
class StubVendor:
    """Answers each operation as told: `answers` maps a Rekognition operation name, or the
    end of an Azure or CompreFace path, to (status, body); bodies are JSON or raw bytes."""

    answers: dict[str, tuple[int, Any]]
    received: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> Starlette:
        async def endpoint(request: Request) -> Response:
            body = await request.body()
            operation = request.headers.get("x-amz-target", "").rsplit(".", 1)[-1]
            # The longest key the path ends with: "/detection/detect" before "/detect".
            endings = [k for k in self.answers if request.url.path.endswith(k)]
            key = operation or max(endings, key=len, default=request.url.path)
            self.received.append({"key": key, "query": dict(request.query_params), "body": body})
            status, answer = self.answers.get(key, (200, {}))
            content = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
            media = "application/x-amz-json-1.1" if operation else "application/json"
            return Response(content, status_code=status, media_type=media)

        methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
        return Starlette(routes=[Route("/{path:path}", endpoint, methods=methods)])

    def json_sent(self, key: str) -> Any:
        [body] = [r["body"] for r in self.received if r["key"] == key]
        return json.loads(body)


@pytest.fixture
async def sqlite_database(sqlite_url: str) -> str:
    await upgrade_async(sqlite_url)
    return sqlite_url


@contextmanager
def gateway(
    database_url: str, tmp_path: Path, vendor_url: str, vendor: BackgroundServer, **overrides: Any
) -> Iterator[Stack]:
    overrides.setdefault("policy_dir", policy_without_rate_limits(tmp_path))
    settings = gateway_settings(database_url, tmp_path, vendor_url, **overrides)
    with BackgroundServer(create_app(settings)) as server:
        yield Stack(settings=settings, url=server.url, vendor=vendor)


@contextmanager
def stubbed(
    database_url: str, tmp_path: Path, vendor: BackgroundServer, stub: StubVendor, **overrides: Any
) -> Iterator[Stack]:
    """A gateway whose every backend is the stub (`vendor` stays the reference vendor, only
    for the Stack's bookkeeping)."""
    with (
        BackgroundServer(stub.app()) as upstream,
        gateway(database_url, tmp_path, upstream.url, vendor, **overrides) as stack,
    ):
        yield stack


def error_of(client_error: ClientError) -> tuple[str, str, int]:
    error = client_error.response["Error"]
    return (
        error["Code"],
        error["Message"],
        client_error.response["ResponseMetadata"]["HTTPStatusCode"],
    )


async def outcome_of(stack: Stack) -> Any:
    [outcome] = await records_of(stack, event_type="outcome")
    return outcome


def raw_answers(client: Any) -> list[bytes]:
    """The bodies the gateway sent to `client`, as received: botocore drops members its
    service model does not know, so what was stripped is checked on the wire."""
    bodies: list[bytes] = []

    def keep(http_response: Any, **_: Any) -> None:
        bodies.append(http_response.content)

    client.meta.events.register("after-call.rekognition.*", keep)
    return bodies


def match(i: int, similarity: float) -> dict[str, Any]:
    face = {
        "FaceId": f"f-{i}",
        "ExternalImageId": f"person-{i}",
        "AgeRange": {"Low": 20, "High": 30},
        "Gender": {"Value": "Male", "Confidence": 99.0},
        "Emotions": [{"Type": "FEAR", "Confidence": 90.0}],
    }
    return {"Similarity": similarity, "Face": face}


def search(client: Any) -> Any:
    return client.search_faces_by_image(
        CollectionId="mugshots", Image={"Bytes": samples.astronaut_variant_jpeg()}
    )


# -- every 2xx is filtered ----------------------------------------------------------------


async def test_a_203_answer_is_held_to_the_obligations_like_a_200(
    sqlite_database: str, tmp_path: Path, vendor: BackgroundServer
) -> None:
    matches = [match(i, 99.9 - i / 100) for i in range(50)]
    stub = StubVendor({"SearchFacesByImage": (203, {"FaceMatches": matches})})
    with stubbed(sqlite_database, tmp_path, vendor, stub) as stack:
        await stack.warrant("W-1")
        client = stack.rekognition(await stack.session())
        raw = raw_answers(client)
        found = search(client)

        assert [m["Face"]["FaceId"] for m in found["FaceMatches"]] == [f"f-{i}" for i in range(5)]
        [body] = raw
        assert b"AgeRange" not in body and b"Gender" not in body and b"Emotions" not in body
        outcome = await outcome_of(stack)
    assert outcome.decision == "allow" and outcome.upstream_status == 203
    assert outcome.match_count == 5
    assert outcome.detail["dropped"] == {"over_result_cap": 45, "forbidden_attributes": 150}


# -- a vendor's error is facegate's, in the vendor's shape ---------------------------------


async def test_a_rekognition_error_reaches_the_client_without_the_vendors_text(
    sqlite_database: str, tmp_path: Path, vendor: BackgroundServer
) -> None:
    error = {"__type": "InvalidParameterException", "Message": SECRET}
    stub = StubVendor(
        {"SearchFacesByImage": (400, error), "DetectFaces": (400, {"__type": SECRET})}
    )
    with stubbed(sqlite_database, tmp_path, vendor, stub) as stack:
        await stack.warrant("W-1")
        client = stack.rekognition(await stack.session())
        with pytest.raises(ClientError) as raised:
            search(client)
        code, message, status = error_of(raised.value)
        assert (code, status) == ("InvalidParameterException", 400)
        assert "John" not in message and "Rekognition refused the request" in message

        # An error code the vendor does not document is not passed on either.
        with pytest.raises(ClientError) as raised:
            client.detect_faces(Image={"Bytes": samples.astronaut_jpeg()})
        code, message, status = error_of(raised.value)
        assert (code, status) == ("InternalServerError", 400) and "John" not in message

        outcomes = await records_of(stack, event_type="outcome")
    assert [(o.decision, o.upstream_status) for o in outcomes] == [("error", 400)] * 2
    assert outcomes[0].detail["vendor_error"] == "InvalidParameterException"
    assert all(o.detail["withheld"] == "vendor_refused" for o in outcomes)
    assert SECRET not in json.dumps([o.detail for o in outcomes])


async def test_azure_and_compreface_errors_reach_the_client_without_the_vendors_text(
    sqlite_database: str, tmp_path: Path, vendor: BackgroundServer
) -> None:
    stub = StubVendor(
        {
            "/detect": (404, {"error": {"code": "FaceNotFound", "message": SECRET}}),
            "/detection/detect": (400, {"message": SECRET, "code": 28}),
        }
    )
    with stubbed(sqlite_database, tmp_path, vendor, stub) as stack:
        credentials = await stack.session()
        face, _ = stack.azure(credentials)
        with pytest.raises(HttpResponseError) as raised:
            face.detect(samples.astronaut_jpeg(), **DETECT)
        assert raised.value.status_code == 404
        assert raised.value.error is not None and raised.value.error.code == "FaceNotFound"
        assert "John" not in str(raised.value)

        answer = stack.compreface(credentials).detection.detect(samples.astronaut_jpeg())
        assert answer["code"] == 28 and "John" not in answer["message"]

        outcomes = await records_of(stack, event_type="outcome")
    assert [(o.vendor, o.decision, o.upstream_status) for o in outcomes] == [
        ("azure", "error", 404),
        ("compreface", "error", 400),
    ]


# -- an answer that cannot be read is an error on record -----------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"<html>502 Bad Gateway</html>",
        b'{"FaceMatches": [{"Similarity": Infinity, "Face": {"FaceId": "f"}}]}',
        b'{"FaceMatches": [{"Similarity": NaN, "Face": {"FaceId": "f"}}]}',
        b'{"FaceMatches": [{"Similarity": 1e999, "Face": {"FaceId": "f"}}]}',
        b'{"FaceMatches": [{"Similarity": "high", "Face": {"FaceId": "f"}}]}',
        b'{"FaceMatches": {"Similarity": 99}}',
        b"[" * 100_000,
    ],
    ids=["garbage", "infinity", "nan", "overflow", "string", "not_a_list", "deep"],
)
async def test_an_answer_that_cannot_be_checked_is_withheld_on_record(
    sqlite_database: str, tmp_path: Path, vendor: BackgroundServer, body: bytes
) -> None:
    stub = StubVendor({"SearchFacesByImage": (200, body)})
    with stubbed(sqlite_database, tmp_path, vendor, stub) as stack:
        await stack.warrant("W-1")
        with pytest.raises(ClientError) as raised:
            search(stack.rekognition(await stack.session()))
        code, message, status = error_of(raised.value)
        assert (code, status) == ("InternalServerError", 500)
        assert "cannot read" in message or "could not check" in message
        # The request's own records (the gateway's start also records its policy revision).
        records = [r for r in await records_of(stack) if r.event_type != "policy"]
    assert [(r.event_type, r.decision) for r in records] == [
        ("decision", "allow"),
        ("outcome", "error"),
    ]
    assert records[1].upstream_status == 200 and records[1].match_count is None


# -- templates never leave -----------------------------------------------------------------


async def test_compreface_templates_are_refused_before_the_vendor(unlimited_stack: Stack) -> None:
    stack = unlimited_stack
    detection = stack.compreface(await stack.session()).detection
    before = vendor_calls(stack.vendor)

    answer = detection.detect(samples.crowd_jpeg(4), {"face_plugins": "calculator"})

    assert vendor_calls(stack.vendor) == before
    assert answer["code"] == 403 and "face_template_requested" in answer["message"]
    [decision] = await records_of(stack, event_type="decision")
    assert decision.decision == "deny" and decision.reason_codes == ["face_template_requested"]


async def test_templates_are_stripped_from_every_vendors_answer(
    sqlite_database: str, tmp_path: Path, vendor: BackgroundServer
) -> None:
    box = {"Width": 0.5, "Height": 0.5, "Left": 0.2, "Top": 0.2}
    stub = StubVendor(
        {
            "DetectFaces": (
                200,
                {"FaceDetails": [{"BoundingBox": box, "Embedding": TEMPLATE, "X": TEMPLATE}]},
            ),
            "/detect": (
                200,
                [{"faceId": str(uuid.uuid4()), "faceRectangle": {}, "faceTemplate": "AAAA"}],
            ),
            "/detection/detect": (
                200,
                {"result": [{"box": {"probability": 1.0}, "embedding": TEMPLATE}]},
            ),
        }
    )
    with stubbed(sqlite_database, tmp_path, vendor, stub) as stack:
        credentials = await stack.session()
        client = stack.rekognition(credentials)
        raw = raw_answers(client)
        [detail] = client.detect_faces(Image={"Bytes": samples.astronaut_jpeg()})["FaceDetails"]
        assert set(detail) == {"BoundingBox"}
        assert json.loads(raw[0]) == {"FaceDetails": [{"BoundingBox": box}]}

        face, _ = stack.azure(credentials)
        [detected] = face.detect(samples.astronaut_jpeg(), **DETECT)
        assert "faceTemplate" not in detected.as_dict()

        answer = stack.compreface(credentials).detection.detect(samples.astronaut_jpeg())
        assert answer["result"] == [{"box": {"probability": 1.0}}]

        outcomes = await records_of(stack, event_type="outcome")
    assert [o.detail["dropped"] for o in outcomes] == [
        {"face_template": 2},
        {"face_template": 1},
        {"face_template": 1},
    ]
    assert [o.detail["faces_in_answer"] for o in outcomes] == [1, 1, 1]


# -- faces and matches past the obligations -----------------------------------------------


async def test_a_verification_against_a_crowd_answer_is_withheld(
    sqlite_database: str, tmp_path: Path, vendor: BackgroundServer
) -> None:
    stub = StubVendor({"CompareFaces": (200, {"FaceMatches": [match(i, 99.5) for i in range(40)]})})
    with stubbed(sqlite_database, tmp_path, vendor, stub) as stack:
        client = stack.rekognition(await stack.session(legal_basis=LegalBasis.CONSENT))
        with pytest.raises(ClientError) as raised:
            client.compare_faces(
                SourceImage={"Bytes": samples.astronaut_jpeg()},
                TargetImage={"Bytes": samples.astronaut_variant_jpeg()},
            )
        code, message, _ = error_of(raised.value)
        assert code == "AccessDeniedException" and "holds 40 faces" in message
        assert raised.value.response["ResponseMetadata"]["HTTPHeaders"]["x-facegate-reasons"] == (
            "too_many_faces"
        )
        outcome = await outcome_of(stack)
    assert outcome.decision == "error" and outcome.detail["withheld"] == "too_many_faces"
    assert outcome.detail["faces_in_answer"] == 40 and outcome.match_count is None


async def test_a_crowd_as_the_comparison_target_is_withheld_at_the_reference_vendor(
    sqlite_database: str, tmp_path: Path, vendor: BackgroundServer
) -> None:
    """Detour 3 on the answer side: with probe inspection off, nothing counts the target's
    faces before the forward; the vendor's answer shows the crowd, and is withheld."""
    crowd = samples.crowd_jpeg(16)
    with gateway(sqlite_database, tmp_path, vendor.url, vendor, probe_inspection=False) as stack:
        credentials = await stack.session(legal_basis=LegalBasis.CONSENT, offense="burglary")
        with pytest.raises(ClientError) as raised:
            stack.rekognition(credentials).compare_faces(
                SourceImage={"Bytes": samples.lfw_face_jpeg(samples.distinct_lfw_indices()[0])},
                TargetImage={"Bytes": crowd},
                SimilarityThreshold=0,
            )
        code, message, _ = error_of(raised.value)
        assert code == "AccessDeniedException" and "too_many_faces" not in message
        assert "at most 3 may be returned" in message

        answer = stack.compreface(credentials).verification.verify(
            samples.lfw_face_jpeg(samples.distinct_lfw_indices()[0]), crowd
        )
        # Asked for limit=4; the reference vendor compares every face of the target anyway.
        assert answer["code"] == 403 and "at most 3 may be returned" in answer["message"]
        assert "result" not in answer

        outcomes = await records_of(stack, event_type="outcome")
    assert [(o.vendor, o.decision, o.detail["withheld"]) for o in outcomes] == [
        ("rekognition", "error", "too_many_faces"),
        ("compreface", "error", "too_many_faces"),
    ]
    assert outcomes[0].detail["faces_in_answer"] >= 12  # what the vendor's detector found


async def test_a_verification_keeps_its_one_best_match(
    sqlite_database: str, tmp_path: Path, vendor: BackgroundServer
) -> None:
    answer = {"FaceMatches": [match(0, 99.2), match(1, 99.8)], "UnmatchedFaces": []}
    stub = StubVendor({"CompareFaces": (200, answer)})
    with stubbed(sqlite_database, tmp_path, vendor, stub) as stack:
        client = stack.rekognition(await stack.session(legal_basis=LegalBasis.CONSENT))
        found = client.compare_faces(
            SourceImage={"Bytes": samples.astronaut_jpeg()},
            TargetImage={"Bytes": samples.astronaut_variant_jpeg()},
        )
        assert [m["Similarity"] for m in found["FaceMatches"]] == [99.8]
        outcome = await outcome_of(stack)
    assert outcome.match_count == 1 and outcome.top_similarity == 99.8
    assert outcome.detail["dropped"]["over_result_cap"] == 1
    assert outcome.detail["faces_in_answer"] == 2


async def test_azure_candidates_past_the_cap_are_cut_to_the_best(
    sqlite_database: str, tmp_path: Path, vendor: BackgroundServer
) -> None:
    candidates = [
        {"personId": str(uuid.uuid4()), "confidence": 0.991 + i / 10000} for i in range(40)
    ]
    face_id = str(uuid.uuid4())
    box = {"top": 10, "left": 10, "width": 100, "height": 100}
    stub = StubVendor(
        {
            # The probe's faceId is one facegate saw a detect hand out (an untraced one is
            # refused as face_source_unknown before the vendor is asked).
            "/detect": (200, [{"faceId": face_id, "faceRectangle": box}]),
            "/identify": (200, [{"faceId": face_id, "candidates": candidates}]),
        }
    )
    with stubbed(sqlite_database, tmp_path, vendor, stub) as stack:
        await stack.warrant("W-1")
        face, _ = stack.azure(await stack.session())
        face.detect(samples.astronaut_jpeg(), **DETECT)
        [result] = face.identify_from_large_person_group(
            face_ids=[face_id], large_person_group_id="mugshots"
        )
        best = sorted(candidates, key=lambda c: float(c["confidence"]), reverse=True)[:5]
        assert {c.person_id for c in result.candidates} == {c["personId"] for c in best}
        assert stub.json_sent("/identify")["maxNumOfCandidatesReturned"] == 1
        _, outcome = await records_of(stack, event_type="outcome")  # the detect's, then this
    assert outcome.operation == "Identify"
    assert outcome.match_count == 5 and outcome.detail["dropped"] == {"over_result_cap": 35}


async def test_a_compreface_recognition_of_a_crowd_is_withheld_and_asked_for_less(
    sqlite_database: str, tmp_path: Path, vendor: BackgroundServer
) -> None:
    faces = [
        {"box": {"probability": 1.0}, "subjects": [{"subject": f"s{i}", "similarity": 0.995}]}
        for i in range(16)
    ]
    stub = StubVendor({"/recognition/recognize": (200, {"result": faces})})
    with stubbed(sqlite_database, tmp_path, vendor, stub) as stack:
        await stack.warrant("W-1")
        recognition = stack.compreface(await stack.session()).recognition
        answer = recognition.recognize(samples.astronaut_variant_jpeg(), {"limit": 0})
        assert answer["code"] == 403 and "holds 16 faces" in answer["message"]
        # Asked for one face more than allowed, so that a crowd shows as one.
        [sent] = stub.received
        assert sent["query"]["limit"] == "4"
        outcome = await outcome_of(stack)
    assert (
        outcome.detail["faces_in_answer"] == 16 and outcome.detail["withheld"] == "too_many_faces"
    )


# -- enrolment counts the faces the vendor enrolled ---------------------------------------


async def test_crowds_enrol_one_face_each_at_the_reference_vendor(
    sqlite_database: str, tmp_path: Path, vendor: BackgroundServer
) -> None:
    """Three crowd photos of 16 faces, with probe inspection off (nothing counts the faces
    before the forward): IndexFaces is asked for MaxFaces=1, so 3 faces are enrolled, not 48."""
    collection = f"enrol-{uuid.uuid4().hex[:8]}"
    vendor_client(vendor).create_collection(CollectionId=collection)
    with gateway(sqlite_database, tmp_path, vendor.url, vendor, probe_inspection=False) as stack:
        client = stack.rekognition(await stack.session(roles=CUSTODIAN))
        for first in (0, 16, 32):
            indexed = client.index_faces(
                CollectionId=collection, Image={"Bytes": samples.crowd_jpeg(16, first=first)}
            )
            # The vendor found the crowd (its detector misses a face here and there).
            assert len(indexed["FaceRecords"]) == 1 and len(indexed["UnindexedFaces"]) >= 12
        outcomes = await records_of(stack, event_type="outcome")

    assert len(vendor_client(vendor).list_faces(CollectionId=collection)["Faces"]) == 3
    assert [o.detail["faces_enrolled"] for o in outcomes] == [1, 1, 1]


async def test_faces_the_vendor_enrolled_count_towards_the_watchlist_limit(
    sqlite_database: str, tmp_path: Path, vendor: BackgroundServer
) -> None:
    """A vendor that enrols all 16 faces of each crowd photo, whatever MaxFaces says, with
    probe inspection off: only the answer counts them. The limit is 20 faces a day."""
    records = [{"Face": {"FaceId": str(uuid.uuid4())}, "FaceDetail": {}} for _ in range(16)]
    stub = StubVendor({"IndexFaces": (200, {"FaceRecords": records})})
    with stubbed(sqlite_database, tmp_path, vendor, stub, probe_inspection=False) as stack:
        client = stack.rekognition(await stack.session(roles=CUSTODIAN))

        def enrol() -> Any:
            # Each photo its own name: one signed request is forwarded once (replay cache).
            return client.index_faces(
                CollectionId="case-photos",
                Image={"Bytes": samples.crowd_jpeg(16)},
                ExternalImageId=uuid.uuid4().hex,
            )

        for _ in range(2):  # 16 enrolled, then 17 counted at the decision: under 20
            with pytest.raises(ClientError) as raised:
                enrol()
            assert "holds 16 faces enrolled" in error_of(raised.value)[1]
        assert [json.loads(r["body"])["MaxFaces"] for r in stub.received] == [1, 1]

        with pytest.raises(ClientError) as raised:
            enrol()
        assert "watchlist_building" in error_of(raised.value)[1]
        assert "has enrolled 33 faces" in error_of(raised.value)[1]
        assert len(stub.received) == 2, "the refused enrolment reached the vendor"
        outcomes = await records_of(stack, event_type="outcome")
    assert [o.detail["faces_enrolled"] for o in outcomes] == [16, 16]


async def test_azure_and_compreface_enrolments_are_counted_from_the_answer(
    sqlite_database: str, tmp_path: Path, vendor: BackgroundServer
) -> None:
    from azure.ai.vision.face.models import FaceDetectionModel, FaceRecognitionModel

    group = f"enrol-{uuid.uuid4().hex[:8]}"
    face_image = samples.lfw_face_jpeg(samples.detectable_lfw_indices()[6])
    with gateway(sqlite_database, tmp_path, vendor.url, vendor, probe_inspection=False) as stack:
        credentials = await stack.session(roles=CUSTODIAN)
        _, admin = stack.azure(credentials)
        admin.large_person_group.create(
            group, name="Case", recognition_model=FaceRecognitionModel.RECOGNITION04
        )
        person = admin.large_person_group.create_person(group, name="suspect")
        admin.large_person_group.add_face(
            group, person.person_id, face_image, detection_model=FaceDetectionModel.DETECTION03
        )
        collection = stack.compreface(credentials).recognition.get_face_collection()
        added = collection.add(face_image, f"suspect-{group}")
        assert added["image_id"]
        outcomes = [
            o for o in await records_of(stack, event_type="outcome") if o.operation_kind == "enroll"
        ]
        collection.delete(added["image_id"])
        admin.large_person_group.delete(group)
    assert [(o.vendor, o.detail["faces_enrolled"]) for o in outcomes] == [
        ("azure", 1),
        ("compreface", 1),
    ]


class EnrolmentsUncountable(MemoryActivityStore):
    """Counts as usual until the faces an enrolment added are to be counted: then fails, as
    a Redis that went away between the decision and the answer would."""

    async def record_after(self, event: ActivityEvent, *, stream: str, count: int) -> None:
        raise ActivityUnavailable("injected: the store went away")


async def test_enrolled_faces_that_cannot_be_counted_withhold_the_answer_on_record(
    sqlite_database: str, tmp_path: Path, vendor: BackgroundServer
) -> None:
    collection = f"enrol-{uuid.uuid4().hex[:8]}"
    vendor_client(vendor).create_collection(CollectionId=collection)
    settings = gateway_settings(
        sqlite_database, tmp_path, vendor.url, policy_dir=policy_without_rate_limits(tmp_path)
    )
    app = create_app(settings)
    with BackgroundServer(app) as server:
        app.state.services.pipeline.activity = EnrolmentsUncountable()
        stack = Stack(settings=settings, url=server.url, vendor=vendor)
        client = stack.rekognition(await stack.session(roles=CUSTODIAN))
        with pytest.raises(ClientError) as raised:
            client.index_faces(CollectionId=collection, Image={"Bytes": samples.astronaut_jpeg()})
        code, message, status = error_of(raised.value)
        assert (code, status) == ("ServiceUnavailableException", 503)
        assert "could not be counted" in message
        outcome = await outcome_of(stack)
    assert outcome.decision == "error" and outcome.detail["withheld"] == "service_unavailable"
    assert outcome.detail["faces_enrolled"] == 1


async def test_a_check_that_fails_withholds_the_answer_on_record(
    sqlite_database: str, tmp_path: Path, vendor: BackgroundServer
) -> None:
    """A bug in a filter (here: one that raises KeyError) is not a 500 without a record."""
    settings = gateway_settings(
        sqlite_database, tmp_path, vendor.url, policy_dir=policy_without_rate_limits(tmp_path)
    )
    app = create_app(settings)
    with BackgroundServer(app) as server:

        def broken(*_: Any) -> Any:
            raise KeyError("a field no check foresaw")

        app.state.services.adapters[Protocol.REKOGNITION].filter = broken
        stack = Stack(settings=settings, url=server.url, vendor=vendor)
        client = stack.rekognition(await stack.session())
        with pytest.raises(ClientError) as raised:
            client.detect_faces(Image={"Bytes": samples.astronaut_jpeg()})
        code, message, status = error_of(raised.value)
        assert (code, status) == ("InternalServerError", 500)
        assert message == "facegate could not check the vendor's answer"
        outcome = await outcome_of(stack)
    assert (outcome.decision, outcome.upstream_status) == ("error", 200)
    assert outcome.detail["withheld"] == "upstream_error"


# -- streams get their floor, and their answers are filtered -------------------------------


async def test_stream_searches_are_floored_and_their_answers_filtered(
    sqlite_database: str, tmp_path: Path, vendor: BackgroundServer
) -> None:
    persons = [
        {
            "Timestamp": t,
            "Person": {"Index": t, "Face": {"AgeRange": {"Low": 1, "High": 2}}},
            "FaceMatches": [match(i, 99.9 - i / 10) for i in range(40)],
        }
        for t in range(2)
    ]
    stub = StubVendor(
        {
            "CreateStreamProcessor": (200, {"StreamProcessorArn": "arn:sp"}),
            "StartFaceSearch": (200, {"JobId": "job-1"}),
            "GetFaceSearch": (200, {"JobStatus": "SUCCEEDED", "Persons": persons}),
        }
    )
    with stubbed(sqlite_database, tmp_path, vendor, stub) as stack:
        await stack.warrant(
            "CO-1",
            kind=WarrantKind.COURT_ORDER,
            operations=(OperationKind.STREAM,),
            realtime=True,
            valid_until=None,
        )
        client = stack.rekognition(
            await stack.session(
                offense="kidnapping",
                legal_basis=LegalBasis.COURT_ORDER,
                warrant_id="CO-1",
            )
        )
        client.create_stream_processor(
            Input={"KinesisVideoStream": {"Arn": "arn:aws:kinesisvideo:us-east-1:1:stream/c/1"}},
            Output={"KinesisDataStream": {"Arn": "arn:aws:kinesis:us-east-1:1:stream/out"}},
            Name="cam",
            Settings={"FaceSearch": {"CollectionId": "mugshots", "FaceMatchThreshold": 50}},
            RoleArn="arn:aws:iam::1:role/r",
        )
        client.start_face_search(
            Video={"S3Object": {"Bucket": "evidence", "Name": "v.mp4"}},
            CollectionId="mugshots",
            FaceMatchThreshold=50,
        )
        found = client.get_face_search(JobId="job-1")

    sent = stub.json_sent("CreateStreamProcessor")["Settings"]["FaceSearch"]
    assert sent == {"CollectionId": "mugshots", "FaceMatchThreshold": 99}
    assert stub.json_sent("StartFaceSearch")["FaceMatchThreshold"] == 99
    for person in found["Persons"]:
        similarities = [m["Similarity"] for m in person["FaceMatches"]]
        assert similarities == pytest.approx([99.9, 99.8, 99.7, 99.6, 99.5])
        assert "AgeRange" not in person["Person"]["Face"]
        assert all(set(m["Face"]) == {"FaceId", "ExternalImageId"} for m in person["FaceMatches"])
