"""Request-side obligations, proven where they land: at the vendor, on every protocol.

The reference vendor records what each call it received asked for (refvendor.received):
the threshold, the result cap, the attributes, the collection and the images' digests.
A gateway that judged and recorded one request but forwarded the client's own bytes would
pass a test that reads only the answer; these read what the vendor got, and compare it with
the decision record.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gateway.app import create_app
from gateway.serving import BackgroundServer
from refvendor import samples
from tests.e2e.conftest import Stack, gateway_settings, policy_without_rate_limits
from tests.e2e.test_azure_sdk import DETECT
from tests.e2e.test_bad_input import records_of


def received(stack: Stack) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = httpx.get(f"{stack.vendor.url}/__refvendor/requests").json()
    return calls


def new_calls(stack: Stack, before: int) -> list[dict[str, Any]]:
    return received(stack)[before:]


def policy_that_strips_attributes(tmp_path: Path) -> Path:
    """The repository's policy (rate limits lifted) letting a caller ask for age and gender,
    which it strips: so the request-side removal, not a refusal, is what the vendor sees."""
    policies = policy_without_rate_limits(tmp_path)
    path = policies / "data" / "attributes.yaml"
    data = yaml.safe_load(path.read_text())
    data["attributes"]["forbidden"] = ["all"]
    path.write_text(yaml.safe_dump(data))
    # The cases pinning the shipped list of forbidden attributes go with it: a gateway
    # starts only on a revision whose decision cases pass.
    for pinned in ("answers.yaml", "refused.yaml"):
        (policies / "cases" / pinned).unlink()
    return policies


@pytest.fixture
async def removing_stack(
    migrated_database_url: str, tmp_path: Path, vendor: BackgroundServer
) -> AsyncIterator[Stack]:
    policies = policy_that_strips_attributes(tmp_path)
    settings = gateway_settings(migrated_database_url, tmp_path, vendor.url, policy_dir=policies)
    with BackgroundServer(create_app(settings)) as gateway:
        yield Stack(settings=settings, url=gateway.url, vendor=vendor)


async def decision_of(stack: Stack, operation: str) -> Any:
    [record] = [
        r for r in await records_of(stack, event_type="decision") if r.operation == operation
    ]
    return record


# -- Amazon Rekognition (boto3) -----------------------------------------------------------


async def test_rekognition_search_reaches_the_vendor_floored_and_capped(
    unlimited_stack: Stack,
) -> None:
    stack = unlimited_stack
    await stack.warrant("W-1")
    client = stack.rekognition(await stack.session())
    before = len(received(stack))

    client.search_faces_by_image(
        CollectionId="mugshots",
        Image={"Bytes": samples.astronaut_variant_jpeg()},
        FaceMatchThreshold=70,
        MaxFaces=50,
    )

    [call] = new_calls(stack, before)
    record = await decision_of(stack, "SearchFacesByImage")
    assert call["call"] == "SearchFacesByImage"
    assert call["threshold"] == 99
    assert call["max_results"] == 5
    assert call["collection"] == record.collection == "mugshots"
    assert call["image_digests"] == record.probe_digests


async def test_rekognition_detection_reaches_the_vendor_without_removed_attributes(
    removing_stack: Stack,
) -> None:
    stack = removing_stack
    client = stack.rekognition(await stack.session())
    before = len(received(stack))

    client.detect_faces(
        Image={"Bytes": samples.astronaut_jpeg()}, Attributes=["DEFAULT", "AGE_RANGE"]
    )

    [call] = new_calls(stack, before)
    assert call["attributes"] == ["DEFAULT"]
    assert call["image_digests"] == (await decision_of(stack, "DetectFaces")).probe_digests


# -- Azure AI Face (azure-ai-vision-face) ---------------------------------------------------


async def test_azure_identification_reaches_the_vendor_floored_and_capped(
    unlimited_stack: Stack, azure_mugshots: dict[str, str]
) -> None:
    stack = unlimited_stack
    await stack.warrant("W-1")
    face, _ = stack.azure(await stack.session())
    before = len(received(stack))
    [probe] = face.detect(samples.astronaut_variant_jpeg(), **DETECT)

    face.identify_from_large_person_group(
        face_ids=[probe.face_id],
        large_person_group_id="mugshots",
        max_num_of_candidates_returned=50,
        confidence_threshold=0.01,
    )

    detect, identify = new_calls(stack, before)
    assert detect["image_digests"] == (await decision_of(stack, "Detect")).probe_digests
    record = await decision_of(stack, "Identify")
    assert identify["call"] == "azure:identify"
    assert identify["threshold"] == 0.99
    assert identify["max_results"] == 5
    assert identify["collection"] == record.collection == "mugshots"


async def test_azure_detection_reaches_the_vendor_without_removed_attributes(
    removing_stack: Stack,
) -> None:
    stack = removing_stack
    face, _ = stack.azure(await stack.session())
    before = len(received(stack))

    face.detect(samples.astronaut_jpeg(), return_face_attributes=["age"], **DETECT)

    [call] = new_calls(stack, before)
    assert call["attributes"] == []
    assert call["image_digests"] == (await decision_of(stack, "Detect")).probe_digests


# -- CompreFace (compreface-sdk) -------------------------------------------------------------


async def test_compreface_recognition_reaches_the_vendor_capped(unlimited_stack: Stack) -> None:
    stack = unlimited_stack
    await stack.warrant("W-1")
    recognition = stack.compreface(await stack.session()).recognition
    before = len(received(stack))

    recognition.recognize(
        samples.astronaut_variant_jpeg(), {"limit": 0, "prediction_count": 50, "status": True}
    )

    [call] = new_calls(stack, before)
    record = await decision_of(stack, "Recognize")
    assert call["call"] == "compreface:Recognize"
    assert call["max_results"] == 5
    assert call["image_digests"] == record.probe_digests


async def test_compreface_detection_reaches_the_vendor_without_removed_plugins(
    removing_stack: Stack,
) -> None:
    stack = removing_stack
    detection = stack.compreface(await stack.session()).detection
    before = len(received(stack))

    answer = detection.detect(samples.astronaut_jpeg(), {"face_plugins": "age,landmarks"})

    [call] = new_calls(stack, before)
    assert call["attributes"] == ["landmarks"], answer
    assert call["image_digests"] == (await decision_of(stack, "Detect")).probe_digests
