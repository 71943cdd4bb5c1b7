"""Classification by effect, end to end (issue 10, detours 1 and 5).

Detour 1: list a collection's entries, then verify the probe against each one: a loop of
1:1 checks is a 1:N search. Detour 5: enrol or detect a crowd, then search its faces by id a
few at a time: a crowd scan split up. Each test asserts what the caller learns, accepting a
refusal at whichever step refuses it, and lawful use beside it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from azure.ai.vision.face.models import FaceDetectionModel, FaceRecognitionModel
from azure.core.exceptions import HttpResponseError
from botocore.exceptions import ClientError

from gateway.app import create_app
from gateway.audit.query import RecordQuery
from gateway.audit.schemas import AuditQuery
from gateway.case import LegalBasis
from gateway.context.face_sources import FaceSourcesUnavailable, SourceRecord
from gateway.db import create_engine, session_factory
from gateway.migrate import upgrade_async
from gateway.operations import OperationKind
from gateway.serving import BackgroundServer
from refvendor import samples
from tests.conftest import REDIS_URL
from tests.e2e.conftest import (
    CASE,
    Stack,
    gateway_settings,
    policy_without_rate_limits,
    vendor_calls,
    vendor_client,
)


@pytest.fixture
def stack(unlimited_stack: Stack) -> Stack:
    """Loops of calls within seconds: the burst and rate limits are lifted so that only the
    rules under test can refuse (test_patterns.py tests those limits)."""
    return unlimited_stack


DETECT = {
    "detection_model": FaceDetectionModel.DETECTION03,
    "recognition_model": FaceRecognitionModel.RECOGNITION04,
    "return_face_id": True,
}
# A burglary on consent: verification is allowed, identification is not.
NO_IDENTIFICATION = {
    "offense": "burglary",
    "legal_basis": LegalBasis.CONSENT,
    "warrant_id": None,
}
# crowd_jpeg's faces are distinct_lfw_indices() in order; the first three are references.
REFERENCES = samples.distinct_lfw_indices()[:3]


# -- detour 1: 1:N by many 1:1 checks ----------------------------------------------------


async def test_compreface_verifying_a_probe_against_every_example_is_refused_after_one(
    stack: Stack,
) -> None:
    collection = stack.compreface(await stack.session(**NO_IDENTIFICATION)).recognition
    examples = collection.get_face_collection().list()["faces"]
    assert len(examples) >= 5
    before = vendor_calls(stack.vendor)

    answers = [
        collection.get_face_collection().verify(samples.astronaut_variant_jpeg(), e["image_id"])
        for e in examples
    ]

    # One stated identity is a verification; every further identity is identification,
    # which a burglary on consent may not do.
    assert "result" in answers[0]
    for refused in answers[1:]:
        assert refused["code"] == 403
        assert "warrant_required" in refused["message"]
    assert vendor_calls(stack.vendor) == before + 1


async def test_azure_verifying_a_probe_against_every_person_is_refused_after_one(
    stack: Stack, azure_mugshots: dict[str, str]
) -> None:
    face, admin = stack.azure(await stack.session(**NO_IDENTIFICATION))
    persons = admin.large_person_group.get_persons("mugshots")
    assert len(persons) >= 5
    [probe] = face.detect(samples.astronaut_variant_jpeg(), **DETECT)
    before = vendor_calls(stack.vendor)

    answered, refused = [], []
    for person in persons:
        try:
            answered.append(
                face.verify_from_large_person_group(
                    face_id=probe.face_id,
                    large_person_group_id="mugshots",
                    person_id=person.person_id,
                )
            )
        except HttpResponseError as exc:
            assert exc.status_code == 403
            assert exc.error is not None and "warrant_required" in exc.error.message
            refused.append(person)

    assert len(answered) == 1 and len(refused) == len(persons) - 1
    assert vendor_calls(stack.vendor) == before + 1


async def test_one_verification_against_one_stated_identity_is_lawful_and_repeatable(
    stack: Stack, azure_mugshots: dict[str, str]
) -> None:
    face, _ = stack.azure(await stack.session(**NO_IDENTIFICATION))
    [probe] = face.detect(samples.astronaut_variant_jpeg(), **DETECT)
    [again] = face.detect(samples.astronaut_jpeg(), **DETECT)

    # The same stated identity checked twice (two photos) is still one identity.
    for face_id in (probe.face_id, again.face_id):
        result = face.verify_from_large_person_group(
            face_id=face_id,
            large_person_group_id="mugshots",
            person_id=azure_mugshots["astronaut"],
        )
        assert result.is_identical


async def test_compreface_one_example_verification_is_lawful(stack: Stack) -> None:
    collection = stack.compreface(await stack.session(**NO_IDENTIFICATION)).recognition
    [example] = [
        e for e in collection.get_face_collection().list()["faces"] if e["subject"] == "astronaut"
    ]

    answer = collection.get_face_collection().verify(
        samples.astronaut_variant_jpeg(), example["image_id"]
    )

    assert answer["result"][0]["similarity"] >= 0.99


async def test_a_loop_of_verifications_under_a_warrant_meets_the_identification_rules(
    stack: Stack, azure_mugshots: dict[str, str]
) -> None:
    # Under a warrant that covers identification, a homicide may compare against many
    # persons: the comparisons are identifications, and the warrant authorises them.
    await stack.warrant("W-1")
    face, _ = stack.azure(await stack.session())
    [probe] = face.detect(samples.astronaut_variant_jpeg(), **DETECT)

    results = {
        name: face.verify_from_large_person_group(
            face_id=probe.face_id, large_person_group_id="mugshots", person_id=person_id
        ).is_identical
        for name, person_id in azure_mugshots.items()
    }

    assert [name for name, same in results.items() if same] == ["astronaut"]


# -- detour 5: a crowd split up ----------------------------------------------------------


@pytest.fixture
def suspects(vendor: BackgroundServer) -> Iterator[str]:
    """A reference collection of three people, set up at the vendor by the agency."""
    client = vendor_client(vendor)
    client.create_collection(CollectionId="suspects")
    for index in REFERENCES:
        client.index_faces(
            CollectionId="suspects",
            Image={"Bytes": samples.lfw_face_jpeg(index)},
            ExternalImageId=f"ref-{index}",
        )
    yield "suspects"
    client.delete_collection(CollectionId="suspects")


def _identified(matches: list[dict[str, Any]]) -> set[str]:
    return {m["Face"].get("ExternalImageId", "") for m in matches} & {
        f"ref-{i}" for i in REFERENCES
    }


async def test_rekognition_a_crowd_enrolled_then_searched_by_face_id_identifies_no_one(
    stack: Stack, suspects: str
) -> None:
    await stack.warrant(
        "W-1", operations=(OperationKind.IDENTIFY, OperationKind.ENROLL), collections=(suspects,)
    )
    client = stack.rekognition(await stack.session())
    crowd = samples.crowd_jpeg(8)
    with pytest.raises(client.exceptions.AccessDeniedException):
        # The crowd itself, as a probe, is refused.
        client.search_faces_by_image(CollectionId=suspects, Image={"Bytes": crowd})

    identified: set[str] = set()
    refusals: list[str] = []
    try:
        records = client.index_faces(
            CollectionId=suspects, Image={"Bytes": crowd}, ExternalImageId="crowd"
        )["FaceRecords"]
    except client.exceptions.AccessDeniedException:  # refusing a crowd's enrolment will do
        records = []
    for record in records:
        try:
            found = client.search_faces(CollectionId=suspects, FaceId=record["Face"]["FaceId"])
            identified |= _identified(found["FaceMatches"])
        except ClientError as exc:
            refusals.append(exc.response["Error"]["Message"])

    assert identified == set()
    assert all("crowd_scan" in r for r in refusals) and len(refusals) == len(records)


async def test_rekognition_a_search_by_the_face_id_of_a_booking_photo_is_lawful(
    stack: Stack, suspects: str
) -> None:
    await stack.warrant(
        "W-1", operations=(OperationKind.IDENTIFY, OperationKind.ENROLL), collections=(suspects,)
    )
    client = stack.rekognition(await stack.session())
    [record] = client.index_faces(
        CollectionId=suspects,
        Image={"Bytes": samples.lfw_face_jpeg(REFERENCES[0])},
        ExternalImageId="booking",
    )["FaceRecords"]

    found = client.search_faces(CollectionId=suspects, FaceId=record["Face"]["FaceId"])

    assert _identified(found["FaceMatches"]) == {f"ref-{REFERENCES[0]}"}


async def test_rekognition_a_face_id_facegate_never_handed_out_cannot_identify(
    stack: Stack, suspects: str
) -> None:
    await stack.warrant("W-1", collections=(suspects,))
    # A FaceId enrolled around the gateway (here: by the agency's own set-up script).
    [face] = vendor_client(stack.vendor).list_faces(CollectionId=suspects, MaxResults=1)["Faces"]
    client = stack.rekognition(await stack.session())
    before = vendor_calls(stack.vendor)

    with pytest.raises(client.exceptions.AccessDeniedException) as raised:
        client.search_faces(CollectionId=suspects, FaceId=face["FaceId"])

    assert vendor_calls(stack.vendor) == before
    assert "face_source_unknown" in raised.value.response["Error"]["Message"]


async def test_azure_a_detected_crowd_identified_a_few_faces_at_a_time_identifies_no_one(
    stack: Stack, azure_mugshots: dict[str, str]
) -> None:
    await stack.warrant("W-1")
    face, _ = stack.azure(await stack.session())
    refusals: list[str] = []
    try:
        crowd = [f.face_id for f in face.detect(samples.crowd_jpeg(6), **DETECT)]
    except HttpResponseError:  # refusing to detect a crowd (or cutting its answer) will do
        crowd = []

    identified = []
    for start in range(0, len(crowd), 3):
        try:
            results = face.identify_from_large_person_group(
                face_ids=crowd[start : start + 3], large_person_group_id="mugshots"
            )
            identified += [r.face_id for r in results if r.candidates]
        except HttpResponseError as exc:
            assert exc.error is not None
            refusals.append(exc.error.message)

    assert identified == []
    assert all("crowd_scan" in r for r in refusals)


async def test_azure_identifying_one_face_of_a_two_person_photo_is_lawful(
    stack: Stack, azure_mugshots: dict[str, str]
) -> None:
    await stack.warrant("W-1")
    face, _ = stack.azure(await stack.session())
    pair = face.detect(samples.crowd_jpeg(2), **DETECT)
    assert len(pair) == 2

    results = face.identify_from_large_person_group(
        face_ids=[pair[0].face_id], large_person_group_id="mugshots"
    )

    assert len(results) == 1


async def test_azure_the_same_suspect_photo_detected_again_and_again_is_one_face(
    stack: Stack, azure_mugshots: dict[str, str]
) -> None:
    # Every detect hands out a new faceId for the same face: searched five times in a day,
    # the photo is still one face of its source, not five faces of a crowd.
    await stack.warrant("W-1")
    face, _ = stack.azure(await stack.session())
    for _ in range(5):
        [probe] = face.detect(samples.astronaut_variant_jpeg(), **DETECT)
        [result] = face.identify_from_large_person_group(
            face_ids=[probe.face_id], large_person_group_id="mugshots"
        )
        assert [c.person_id for c in result.candidates] == [azure_mugshots["astronaut"]]


# -- the face-source store fails closed ----------------------------------------------------


class _Unreachable:
    """A face-source store whose backend is down."""

    name = "unreachable"

    async def remember(self, sources: Mapping[str, SourceRecord]) -> None:
        raise FaceSourcesUnavailable("down")

    async def lookup(self, face_ids: Sequence[str]) -> dict[str, SourceRecord]:
        raise FaceSourcesUnavailable("down")

    async def aclose(self) -> None:
        return None


async def test_face_ids_that_cannot_be_traced_are_withheld_and_searches_by_id_refused(
    stack: Stack, suspects: str, tmp_path: Path
) -> None:
    await stack.warrant(
        "W-1", operations=(OperationKind.IDENTIFY, OperationKind.ENROLL), collections=(suspects,)
    )
    credentials = await stack.session()
    settings = stack.settings  # a second gateway like the first, on the same database
    app = create_app(settings)
    with BackgroundServer(app) as gateway:
        app.state.services.pipeline.face_sources = _Unreachable()
        client = Stack(settings=settings, url=gateway.url, vendor=stack.vendor).rekognition(
            credentials
        )
        before = vendor_calls(stack.vendor)
        with pytest.raises(ClientError) as enrolled:
            client.index_faces(
                CollectionId=suspects, Image={"Bytes": samples.lfw_face_jpeg(REFERENCES[0])}
            )
        # The vendor enrolled the face, but its FaceId never reached the caller.
        assert vendor_calls(stack.vendor) == before + 1
        assert enrolled.value.response["Error"]["Code"] == "ServiceUnavailableException"
        assert "FaceRecords" not in enrolled.value.response

        with pytest.raises(ClientError) as searched:
            client.search_faces(
                CollectionId=suspects, FaceId="0" * 8 + "-0000-0000-0000-" + "0" * 12
            )
        assert vendor_calls(stack.vendor) == before + 1
        assert searched.value.response["Error"]["Code"] == "ServiceUnavailableException"

    engine = create_engine(stack.settings.database_url)
    try:
        page = await RecordQuery(session_factory(engine)).query(AuditQuery(case_number=CASE))
    finally:
        await engine.dispose()
    assert [(e.operation, e.event_type, e.decision) for e in page.entries] == [
        ("IndexFaces", "decision", "allow"),
        ("IndexFaces", "outcome", "error"),
    ]
    assert "could not record where its faces came from" in page.entries[1].detail["error"]


async def test_a_face_id_is_judged_by_the_source_facegate_recorded_for_it(
    stack: Stack, suspects: str
) -> None:
    """The source mechanism on its own: whatever the enrolment step decides, a face id whose
    recorded source is a crowd is refused, and one whose source is a single face is not."""
    await stack.warrant("W-1", collections=(suspects,))
    credentials = await stack.session()
    faces = vendor_client(stack.vendor).list_faces(CollectionId=suspects)["Faces"]
    crowd_face, single_face = faces[0]["FaceId"], faces[1]["FaceId"]
    app = create_app(stack.settings)
    with BackgroundServer(app) as gateway:
        await app.state.services.pipeline.face_sources.remember(
            {
                f"rekognition:face:{crowd_face}": SourceRecord("sha256:crowd", 8),
                f"rekognition:face:{single_face}": SourceRecord("sha256:booking", 1),
            }
        )
        client = Stack(settings=stack.settings, url=gateway.url, vendor=stack.vendor).rekognition(
            credentials
        )
        before = vendor_calls(stack.vendor)
        with pytest.raises(client.exceptions.AccessDeniedException) as raised:
            client.search_faces(CollectionId=suspects, FaceId=crowd_face)
        assert vendor_calls(stack.vendor) == before
        assert "comes from an image of 8 faces" in raised.value.response["Error"]["Message"]

        found = client.search_faces(CollectionId=suspects, FaceId=single_face)
        assert vendor_calls(stack.vendor) == before + 1
        assert "FaceMatches" in found


# -- replicas share the face sources ---------------------------------------------------------


@pytest.mark.postgres
async def test_a_crowd_detected_through_one_replica_is_a_crowd_at_the_other(
    postgres_url: str,
    tmp_path: Path,
    vendor: BackgroundServer,
    redis_prefix: str,
    azure_mugshots: dict[str, str],
) -> None:
    await upgrade_async(postgres_url)
    settings = gateway_settings(
        postgres_url,
        tmp_path,
        vendor.url,
        policy_dir=policy_without_rate_limits(tmp_path),
        redis_url=REDIS_URL,
        activity_key_prefix=redis_prefix + "activity:",
        face_source_key_prefix=redis_prefix + "faces:",
    )
    with (
        BackgroundServer(create_app(settings)) as one,
        BackgroundServer(create_app(settings)) as two,
    ):
        first = Stack(settings=settings, url=one.url, vendor=vendor)
        second = Stack(settings=settings, url=two.url, vendor=vendor)
        await first.warrant("W-1")
        credentials = await first.session()
        detect_one, _ = first.azure(credentials)
        identify_two, _ = second.azure(credentials)
        crowd = detect_one.detect(samples.crowd_jpeg(6), **DETECT)
        [single] = detect_one.detect(samples.astronaut_variant_jpeg(), **DETECT)

        with pytest.raises(HttpResponseError) as raised:
            identify_two.identify_from_large_person_group(
                face_ids=[crowd[0].face_id], large_person_group_id="mugshots"
            )
        assert raised.value.error is not None
        assert "comes from an image of 6 faces" in raised.value.error.message

        [result] = identify_two.identify_from_large_person_group(
            face_ids=[single.face_id], large_person_group_id="mugshots"
        )
        assert [c.person_id for c in result.candidates] == [azure_mugshots["astronaut"]]
