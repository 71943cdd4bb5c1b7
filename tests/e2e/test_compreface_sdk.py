"""compreface-sdk through the gateway to the reference vendor and back.

The SDK returns the server's JSON whatever the status, so a refusal is read from the body:
CompreFace's `{"message", "code"}` shape.
"""

from __future__ import annotations

import pytest

from gateway.auth.principals import Role
from refvendor import samples
from tests.e2e.conftest import Stack, vendor_calls


@pytest.fixture
def stack(unlimited_stack: Stack) -> Stack:
    """One officer makes many calls within seconds here: these tests are about the protocol,
    so the burst and rate limits are lifted (test_patterns.py tests those limits)."""
    return unlimited_stack


async def test_recognition_under_a_warrant_is_floored_and_capped(stack: Stack) -> None:
    await stack.warrant("W-1")
    recognition = stack.compreface(await stack.session()).recognition
    before = vendor_calls(stack.vendor)

    # The SDK's own query string: `?&limit=0&prediction_count=10&status=True`.
    answer = recognition.recognize(
        samples.astronaut_variant_jpeg(), {"limit": 0, "prediction_count": 10, "status": True}
    )

    assert vendor_calls(stack.vendor) == before + 1
    [face] = answer["result"]
    # Asked for 10 predictions: capped at 5 upstream, and all but the match are under 0.99.
    assert [s["subject"] for s in face["subjects"]] == ["astronaut"]
    assert face["subjects"][0]["similarity"] >= 0.99


async def test_recognition_without_a_warrant_is_refused_in_compreface_shape(stack: Stack) -> None:
    recognition = stack.compreface(await stack.session(warrant_id="W-NONE")).recognition
    before = vendor_calls(stack.vendor)

    answer = recognition.recognize(samples.astronaut_variant_jpeg())

    assert vendor_calls(stack.vendor) == before
    assert answer["code"] == 403
    assert "warrant_unknown" in answer["message"]


async def test_age_and_gender_plugins_are_refused(stack: Stack) -> None:
    detection = stack.compreface(await stack.session()).detection
    before = vendor_calls(stack.vendor)

    answer = detection.detect(samples.astronaut_jpeg(), {"face_plugins": "age,gender"})

    assert vendor_calls(stack.vendor) == before
    assert answer["code"] == 403
    assert "forbidden_attributes" in answer["message"]


async def test_detection_with_landmarks_is_allowed(stack: Stack) -> None:
    detection = stack.compreface(await stack.session()).detection

    answer = detection.detect(samples.astronaut_jpeg(), {"face_plugins": "landmarks"})

    [face] = answer["result"]
    assert face["box"]["probability"] > 0.9 and face["landmarks"]


async def test_verification_keeps_only_matches_over_the_floor(stack: Stack) -> None:
    verification = stack.compreface(await stack.session()).verification

    same = verification.verify(samples.astronaut_jpeg(), samples.astronaut_variant_jpeg())
    other = verification.verify(
        samples.astronaut_jpeg(), samples.lfw_face_jpeg(samples.detectable_lfw_indices()[0])
    )

    assert [m["similarity"] >= 0.99 for m in same["result"][0]["face_matches"]] == [True]
    # The vendor answered with a low-similarity match; the gateway dropped it.
    assert other["result"][0]["face_matches"] == []


async def test_enrolment_and_subject_management(stack: Stack) -> None:
    custodian = await stack.session(roles=(Role.OFFICER, Role.CUSTODIAN))
    collection = stack.compreface(custodian).recognition.get_face_collection()
    subjects = stack.compreface(custodian).recognition.get_subjects()

    added = collection.add(samples.lfw_face_jpeg(samples.detectable_lfw_indices()[5]), "suspect")

    assert added["subject"] == "suspect" and added["image_id"]
    assert "suspect" in subjects.list()["subjects"]
    assert collection.delete(added["image_id"]) == {
        "image_id": added["image_id"],
        "subject": "suspect",
    }
    assert subjects.delete("suspect") == {"subject": "suspect"}


async def test_a_key_that_is_not_a_case_session_is_refused(stack: Stack) -> None:
    from tests.e2e.conftest import compreface_sdk

    before = vendor_calls(stack.vendor)
    answer = compreface_sdk(stack.url, "FGAKNOTASESSION.secret").detection.detect(
        samples.astronaut_jpeg()
    )

    assert vendor_calls(stack.vendor) == before
    assert answer["code"] == 401


async def test_a_crowd_photo_is_refused_whichever_vendor_it_goes_to(stack: Stack) -> None:
    await stack.warrant("W-1")
    recognition = stack.compreface(await stack.session()).recognition
    before = vendor_calls(stack.vendor)

    answer = recognition.recognize(samples.crowd_jpeg(16))

    assert vendor_calls(stack.vendor) == before
    assert answer["code"] == 403
    assert "crowd_scan: the probe holds 16 faces" in answer["message"]
