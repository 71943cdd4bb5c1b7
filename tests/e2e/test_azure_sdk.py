"""Both Azure Face SDKs through the gateway to the reference vendor and back.

azure-ai-vision-face speaks /face/v1.2-preview.1; azure-cognitiveservices-vision-face speaks
/face/v1.0 and streams image bodies chunked, with no Content-Length.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from azure.ai.vision.face.models import FaceDetectionModel, FaceRecognitionModel
from azure.core.exceptions import HttpResponseError

from gateway.auth.key_header import vendor_key
from gateway.auth.principals import Role
from gateway.auth.sessions import IssuedCredentials
from gateway.case import LegalBasis
from refvendor import samples
from tests.e2e.conftest import Stack, vendor_calls


@pytest.fixture
def stack(unlimited_stack: Stack) -> Stack:
    """One officer makes many calls within seconds here: these tests are about the protocol,
    so the burst and rate limits are lifted (test_patterns.py tests those limits)."""
    return unlimited_stack


DETECT = {
    "detection_model": FaceDetectionModel.DETECTION03,
    "recognition_model": FaceRecognitionModel.RECOGNITION04,
    "return_face_id": True,
}


def v1_client(stack: Stack, credentials: IssuedCredentials) -> Any:
    from azure.cognitiveservices.vision.face import FaceClient
    from msrest.authentication import CognitiveServicesCredentials

    key = vendor_key(credentials.access_key_id, credentials.secret_access_key)
    return FaceClient(stack.url, CognitiveServicesCredentials(key))


async def test_identification_under_a_warrant_is_floored_and_capped(
    stack: Stack, azure_mugshots: dict[str, str]
) -> None:
    await stack.warrant("W-1")
    face, _ = stack.azure(await stack.session())
    [probe] = face.detect(samples.astronaut_variant_jpeg(), **DETECT)
    before = vendor_calls(stack.vendor)

    [result] = face.identify_from_large_person_group(
        face_ids=[probe.face_id],
        large_person_group_id="mugshots",
        max_num_of_candidates_returned=10,
        confidence_threshold=0.01,
    )

    assert vendor_calls(stack.vendor) == before + 1
    # The threshold was raised to 0.99 upstream, and the answer checked against it.
    assert [c.person_id for c in result.candidates] == [azure_mugshots["astronaut"]]
    assert result.candidates[0].confidence >= 0.99


async def test_identification_without_a_warrant_raises_the_sdks_own_error(stack: Stack) -> None:
    face, _ = stack.azure(await stack.session(warrant_id="W-NONE"))
    [probe] = face.detect(samples.astronaut_variant_jpeg(), **DETECT)
    before = vendor_calls(stack.vendor)

    with pytest.raises(HttpResponseError) as raised:
        face.identify_from_large_person_group(
            face_ids=[probe.face_id], large_person_group_id="mugshots"
        )

    assert vendor_calls(stack.vendor) == before
    assert raised.value.status_code == 403
    assert raised.value.error is not None and raised.value.error.code == "PermissionDenied"
    assert "warrant_unknown" in raised.value.error.message


async def test_age_gender_and_emotion_are_refused(stack: Stack) -> None:
    # azure-ai-vision-face 1.0.0b2 no longer offers them; the v1.0 SDK still asks.
    from azure.cognitiveservices.vision.face.models import APIErrorException

    client = v1_client(stack, await stack.session())
    before = vendor_calls(stack.vendor)

    with pytest.raises(APIErrorException) as raised:
        client.face.detect_with_stream(
            io.BytesIO(samples.astronaut_jpeg()), return_face_attributes=["age", "emotion"]
        )

    assert vendor_calls(stack.vendor) == before
    assert raised.value.response.status_code == 403
    assert raised.value.error.error.code == "PermissionDenied"
    assert "age, emotions" in raised.value.error.error.message


async def test_verification_under_the_floor_is_not_identical(stack: Stack) -> None:
    face, _ = stack.azure(await stack.session())
    [a] = face.detect(samples.astronaut_jpeg(), **DETECT)
    [b] = face.detect(samples.astronaut_variant_jpeg(), **DETECT)
    [other] = face.detect(samples.lfw_face_jpeg(samples.detectable_lfw_indices()[0]), **DETECT)

    assert face.verify_face_to_face(face_id1=a.face_id, face_id2=b.face_id).is_identical
    assert not face.verify_face_to_face(face_id1=a.face_id, face_id2=other.face_id).is_identical


async def test_find_similar_keeps_only_candidates_over_the_floor(stack: Stack) -> None:
    # FindSimilar over faceIds names no collection, so no warrant covers it (see
    # test_warrants_and_roles.py); an exigent search, flagged for authorisation, may.
    face, _ = stack.azure(await stack.session(legal_basis=LegalBasis.EXIGENT, warrant_id=None))
    [probe] = face.detect(samples.astronaut_variant_jpeg(), **DETECT)
    gallery = [
        face.detect(image, **DETECT)[0].face_id
        for image in (
            samples.astronaut_jpeg(),
            *(samples.lfw_face_jpeg(i) for i in samples.detectable_lfw_indices()[:3]),
        )
    ]

    similar = face.find_similar(face_id=probe.face_id, face_ids=gallery)

    assert [s.face_id for s in similar] == [gallery[0]]


async def test_enrolment_into_a_large_person_group(stack: Stack) -> None:
    _, admin = stack.azure(await stack.session(roles=(Role.OFFICER, Role.CUSTODIAN)))
    admin.large_person_group.create(
        "case-watchlist",
        name="Case watchlist",
        recognition_model=FaceRecognitionModel.RECOGNITION04,
    )
    person = admin.large_person_group.create_person("case-watchlist", name="suspect")
    added = admin.large_person_group.add_face(
        "case-watchlist",
        person.person_id,
        samples.lfw_face_jpeg(samples.detectable_lfw_indices()[5]),
        detection_model=FaceDetectionModel.DETECTION03,
    )
    admin.large_person_group.begin_train("case-watchlist", polling_interval=0.01).result()

    assert added.persisted_face_id
    assert [p.name for p in admin.large_person_group.get_persons("case-watchlist")] == ["suspect"]
    admin.large_person_group.delete("case-watchlist")


async def test_the_v1_sdk_streams_chunked_images_and_identifies(
    stack: Stack, azure_mugshots: dict[str, str]
) -> None:
    from azure.cognitiveservices.vision.face import FaceClient
    from azure.cognitiveservices.vision.face.models import APIErrorException
    from msrest.authentication import CognitiveServicesCredentials

    await stack.warrant("W-1")
    client = v1_client(stack, await stack.session())

    [probe] = client.face.detect_with_stream(io.BytesIO(samples.astronaut_variant_jpeg()))
    [result] = client.face.identify(
        [probe.face_id], large_person_group_id="mugshots", max_num_of_candidates_returned=3
    )
    assert [c.person_id for c in result.candidates] == [azure_mugshots["astronaut"]]

    refused = FaceClient(stack.url, CognitiveServicesCredentials("FGAKNOTASESSION.secret"))
    before = vendor_calls(stack.vendor)
    with pytest.raises(APIErrorException) as raised:
        refused.face.detect_with_stream(io.BytesIO(samples.astronaut_jpeg()))
    assert vendor_calls(stack.vendor) == before
    assert raised.value.error.error.code == "401"


async def test_identifying_a_crowd_detected_earlier_is_a_crowd_scan(
    stack: Stack, azure_mugshots: dict[str, str]
) -> None:
    await stack.warrant("W-1")
    face, _ = stack.azure(await stack.session())
    # Detection alone is allowed; identifying every face it found at once is not.
    probes = face.detect(samples.crowd_jpeg(4), **DETECT)
    assert len(probes) == 4
    before = vendor_calls(stack.vendor)

    with pytest.raises(HttpResponseError) as raised:
        face.identify_from_large_person_group(
            face_ids=[p.face_id for p in probes], large_person_group_id="mugshots"
        )

    assert vendor_calls(stack.vendor) == before
    assert raised.value.error is not None
    assert "crowd_scan: the probe holds 4 faces" in raised.value.error.message
