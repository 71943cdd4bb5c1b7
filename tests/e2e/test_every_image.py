"""Faces counted in every image of a request, and probes known by their picture (issue 10).

Detours 3, 4 and 9, end to end through each vendor's own SDK to the reference vendor: a
crowd photo as a verification's target, a crowd photo taken by a phone (4000 x 3000, faces
of 110 pixels) searched or enrolled, and one probe re-sent with a byte appended or
re-encoded under case after case. Each is refused before the vendor hears of it, and lawful
use (a one-face search under a warrant, a booking photo series enrolled) still goes through.
"""

from __future__ import annotations

import functools
import io
import uuid
from typing import Any

import pytest
from azure.ai.vision.face.models import FaceDetectionModel, FaceRecognitionModel
from azure.core.exceptions import HttpResponseError
from botocore.exceptions import ClientError
from PIL import Image

from gateway.auth.principals import Role
from gateway.operations import OperationKind
from refvendor import samples
from tests.e2e.conftest import Stack, vendor_calls, vendor_client
from tests.e2e.test_bad_input import records_of


@pytest.fixture
def stack(unlimited_stack: Stack) -> Stack:
    """Many calls within seconds: the burst and rate limits are lifted (not the crowd rule,
    nor the probe sweep: test_patterns.py tests the others)."""
    return unlimited_stack


@functools.cache
def phone_crowd() -> bytes:
    """16 different people, faces of 110 pixels, in a 4000 x 3000 phone photo."""
    frame = Image.new("RGB", (4000, 3000), "#808080")
    crowd = Image.open(io.BytesIO(samples.crowd_jpeg(16, side=110)))
    frame.paste(crowd, (1700, 1300))
    buffer = io.BytesIO()
    frame.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def reencoded(data: bytes, image_format: str, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(buffer, format=image_format, quality=quality)
    return buffer.getvalue()


def refused(stack: Stack, call: Any) -> ClientError:
    before = vendor_calls(stack.vendor)
    with pytest.raises(ClientError) as raised:
        call()
    assert vendor_calls(stack.vendor) == before, "a refused request reached the vendor"
    return raised.value


def reasons(error: ClientError) -> set[str]:
    return set(error.response["ResponseMetadata"]["HTTPHeaders"]["x-facegate-reasons"].split(","))


# -- detour 3: a crowd as the comparison target


async def test_compare_faces_against_a_crowd_target_is_a_crowd_scan(stack: Stack) -> None:
    client = stack.rekognition(await stack.session())

    error = refused(
        stack,
        lambda: client.compare_faces(
            SourceImage={"Bytes": samples.astronaut_jpeg()},
            TargetImage={"Bytes": samples.crowd_jpeg(16)},
        ),
    )

    assert reasons(error) == {"crowd_scan"}
    assert "the target image holds 16 faces" in error.response["Error"]["Message"]
    [record] = await records_of(stack, event_type="decision")
    assert record.reason_codes == ["crowd_scan"]
    # Comparing one face with another is still verification, and allowed.
    same = client.compare_faces(
        SourceImage={"Bytes": samples.astronaut_jpeg()},
        TargetImage={"Bytes": samples.astronaut_variant_jpeg()},
    )
    assert len(same["FaceMatches"]) == 1


async def test_compreface_verify_against_a_crowd_target_is_a_crowd_scan(stack: Stack) -> None:
    verification = stack.compreface(await stack.session()).verification
    before = vendor_calls(stack.vendor)

    answer = verification.verify(samples.astronaut_jpeg(), samples.crowd_jpeg(16))

    assert vendor_calls(stack.vendor) == before
    assert answer["code"] == 403
    assert "crowd_scan: the target image holds 16 faces" in answer["message"]


# -- detour 4: a phone photo of a crowd, searched and enrolled


async def test_a_phone_photo_of_a_crowd_is_not_searched(stack: Stack) -> None:
    await stack.warrant("W-1")
    client = stack.rekognition(await stack.session())

    error = refused(
        stack,
        lambda: client.search_faces_by_image(
            CollectionId="mugshots", Image={"Bytes": phone_crowd()}
        ),
    )

    assert reasons(error) == {"crowd_scan"}
    assert "the probe holds 16 faces" in error.response["Error"]["Message"]
    [record] = await records_of(stack, event_type="decision")
    assert record.detail["faces_in_probe"] == 16


async def test_a_phone_photo_of_a_crowd_is_not_enrolled_on_any_vendor(stack: Stack) -> None:
    collection = f"watch-{uuid.uuid4().hex[:8]}"
    vendor_client(stack.vendor).create_collection(CollectionId=collection)
    credentials = await stack.session(roles=(Role.OFFICER, Role.CUSTODIAN))  # may enrol

    client = stack.rekognition(credentials)
    error = refused(
        stack,
        lambda: client.index_faces(CollectionId=collection, Image={"Bytes": phone_crowd()}),
    )
    assert reasons(error) == {"crowd_scan"}
    assert "the enrolment image holds 16 faces" in error.response["Error"]["Message"]

    faces = stack.compreface(credentials).recognition.get_face_collection()
    before = vendor_calls(stack.vendor)
    answer = faces.add(phone_crowd(), "crowd")
    assert vendor_calls(stack.vendor) == before
    assert answer["code"] == 403
    assert "crowd_scan: the enrolment image holds 16 faces" in answer["message"]

    _, admin = stack.azure(credentials)
    group = f"watch-{uuid.uuid4().hex[:8]}"
    admin.large_person_group.create(
        group, name="Watch", recognition_model=FaceRecognitionModel.RECOGNITION04
    )
    person = admin.large_person_group.create_person(group, name="crowd")
    before = vendor_calls(stack.vendor)
    with pytest.raises(HttpResponseError) as raised:
        admin.large_person_group.add_face(
            group,
            person.person_id,
            phone_crowd(),
            detection_model=FaceDetectionModel.DETECTION03,
        )
    assert vendor_calls(stack.vendor) == before
    assert "crowd_scan: the enrolment image holds 16 faces" in str(raised.value)
    admin.large_person_group.delete(group)


async def test_a_booking_photo_series_of_single_faces_is_enrolled(stack: Stack) -> None:
    collection = f"booking-{uuid.uuid4().hex[:8]}"
    vendor_client(stack.vendor).create_collection(CollectionId=collection)
    await stack.warrant(
        "W-E", operations=(OperationKind.IDENTIFY, OperationKind.ENROLL), collections=(collection,)
    )
    client = stack.rekognition(await stack.session(warrant_id="W-E"))

    # Three booking photos, one face in each.
    series = [samples.lfw_face_jpeg(i) for i in samples.detectable_lfw_indices()[:3]]
    enrolled = [
        client.index_faces(
            CollectionId=collection, Image={"Bytes": photo}, ExternalImageId=f"booking-{n}"
        )
        for n, photo in enumerate(series)
    ]

    assert [len(answer["FaceRecords"]) for answer in enrolled] == [1, 1, 1]


# -- detour 9: one probe, re-sent in other bytes under case after case


async def search_in_case(stack: Stack, case: str, probe: bytes) -> Any:
    warrant = f"W-{case}"
    client = stack.rekognition(await stack.session(case_number=case, warrant_id=warrant))
    return lambda: client.search_faces_by_image(CollectionId="mugshots", Image={"Bytes": probe})


@pytest.mark.parametrize(
    "disguise",
    [
        pytest.param(lambda data: data + b"\x00", id="one-byte-appended"),
        pytest.param(lambda data: reencoded(data, "PNG"), id="png"),
        pytest.param(lambda data: reencoded(data, "JPEG", 60), id="jpeg-quality-60"),
    ],
)
async def test_one_probe_in_other_bytes_is_still_one_probe_across_cases(
    stack: Stack, disguise: Any
) -> None:
    for case in ("C-1", "C-2", "C-3"):
        await stack.warrant(f"W-{case}", case_number=case)
    probe = samples.astronaut_variant_jpeg()

    # The limit (data/patterns.yaml): one probe under 2 cases a day. A one-face search
    # under a warrant is lawful: the first two find the astronaut.
    found = (await search_in_case(stack, "C-1", probe))()
    assert [m["Face"]["ExternalImageId"] for m in found["FaceMatches"]] == ["astronaut"]
    (await search_in_case(stack, "C-2", disguise(probe)))()

    disguised = disguise(probe)
    assert disguised != probe
    error = refused(stack, await search_in_case(stack, "C-3", disguised))
    assert reasons(error) == {"probe_across_cases"}
    assert "searched under 3 different cases" in error.response["Error"]["Message"]

    # Another face is another probe: searched under the third case, it goes through.
    other = samples.lfw_face_jpeg(samples.detectable_lfw_indices()[1])
    (await search_in_case(stack, "C-3", other))()
