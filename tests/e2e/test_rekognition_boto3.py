"""boto3's Rekognition client through the gateway to the reference vendor and back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from gateway.case import LegalBasis
from gateway.context.warrants import WarrantKind
from gateway.operations import OperationKind
from refvendor import samples
from tests.e2e.conftest import Stack, vendor_calls


def denied_codes(error: ClientError) -> set[str]:
    headers = error.response["ResponseMetadata"]["HTTPHeaders"]
    return set(headers.get("x-facegate-reasons", "").split(","))


async def test_identification_under_a_warrant_reaches_the_vendor_with_obligations(
    stack: Stack,
) -> None:
    await stack.warrant("W-1")
    client = stack.rekognition(await stack.session(warrant_id="W-1"))
    before = vendor_calls(stack.vendor)

    response = client.search_faces_by_image(
        CollectionId="mugshots",
        Image={"Bytes": samples.astronaut_variant_jpeg()},
        FaceMatchThreshold=70,
        MaxFaces=50,
    )

    assert vendor_calls(stack.vendor) == before + 1
    matches = response["FaceMatches"]
    assert [m["Face"]["ExternalImageId"] for m in matches] == ["astronaut"]
    assert matches[0]["Similarity"] >= 99
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    assert "investigative leads" in headers["x-facegate-lead-notice"]


async def test_a_search_without_a_case_is_refused_with_reasons_and_never_forwarded(
    stack: Stack,
) -> None:
    client = stack.rekognition(
        await stack.session(case_number=None, warrant_id=None, legal_basis=None)
    )
    before = vendor_calls(stack.vendor)

    with pytest.raises(client.exceptions.AccessDeniedException) as raised:
        client.search_faces_by_image(
            CollectionId="mugshots", Image={"Bytes": samples.astronaut_variant_jpeg()}
        )

    assert vendor_calls(stack.vendor) == before
    assert {"missing_case_number", "missing_legal_basis"} <= denied_codes(raised.value)
    assert "missing_case_number" in raised.value.response["Error"]["Message"]


async def test_an_expired_warrant_is_refused(stack: Stack) -> None:
    now = datetime.now(UTC)
    await stack.warrant(
        "W-OLD", valid_from=now - timedelta(days=60), valid_until=now - timedelta(days=1)
    )
    client = stack.rekognition(await stack.session(warrant_id="W-OLD"))

    with pytest.raises(client.exceptions.AccessDeniedException) as raised:
        client.search_faces_by_image(
            CollectionId="mugshots", Image={"Bytes": samples.astronaut_variant_jpeg()}
        )

    assert "warrant_expired" in denied_codes(raised.value)


async def test_a_warrant_for_another_collection_is_out_of_scope(stack: Stack) -> None:
    await stack.warrant("W-DMV", collections=("dmv-photos",))
    client = stack.rekognition(await stack.session(warrant_id="W-DMV"))

    with pytest.raises(client.exceptions.AccessDeniedException) as raised:
        client.search_faces_by_image(
            CollectionId="mugshots", Image={"Bytes": samples.astronaut_variant_jpeg()}
        )

    assert "warrant_out_of_scope" in denied_codes(raised.value)


async def test_emotion_detection_is_refused_but_plain_detection_works(stack: Stack) -> None:
    client = stack.rekognition(await stack.session())

    with pytest.raises(client.exceptions.AccessDeniedException) as raised:
        client.detect_faces(Image={"Bytes": samples.astronaut_jpeg()}, Attributes=["ALL"])
    assert "forbidden_attributes" in denied_codes(raised.value)

    faces = client.detect_faces(Image={"Bytes": samples.astronaut_jpeg()})["FaceDetails"]
    assert len(faces) == 1


async def test_compare_faces_is_verification(stack: Stack) -> None:
    client = stack.rekognition(await stack.session())
    response = client.compare_faces(
        SourceImage={"Bytes": samples.astronaut_jpeg()},
        TargetImage={"Bytes": samples.astronaut_variant_jpeg()},
        SimilarityThreshold=10,
    )
    assert len(response["FaceMatches"]) == 1
    assert response["FaceMatches"][0]["Similarity"] >= 99


async def test_stream_processing_needs_a_realtime_court_order(stack: Stack) -> None:
    client = stack.rekognition(await stack.session())
    before = vendor_calls(stack.vendor)

    with pytest.raises(client.exceptions.AccessDeniedException) as raised:
        client.create_stream_processor(
            Input={"KinesisVideoStream": {"Arn": "arn:aws:kinesisvideo:us-east-1:1:stream/cam/1"}},
            Output={"KinesisDataStream": {"Arn": "arn:aws:kinesis:us-east-1:1:stream/out"}},
            Name="plaza-cam",
            Settings={"FaceSearch": {"CollectionId": "mugshots", "FaceMatchThreshold": 99}},
            RoleArn="arn:aws:iam::1:role/r",
        )

    assert "realtime_requires_court_order" in denied_codes(raised.value)
    assert vendor_calls(stack.vendor) == before


async def test_realtime_court_order_allows_stream_setup(stack: Stack) -> None:
    await stack.warrant(
        "CO-7", kind=WarrantKind.COURT_ORDER, operations=(OperationKind.STREAM,), realtime=True
    )
    client = stack.rekognition(
        await stack.session(legal_basis=LegalBasis.COURT_ORDER, warrant_id="CO-7")
    )
    before = vendor_calls(stack.vendor)

    # Allowed by policy, so it is forwarded; the reference vendor has no video and says so.
    with pytest.raises(ClientError) as raised:
        client.start_stream_processor(Name="plaza-cam")

    assert vendor_calls(stack.vendor) == before + 1
    assert raised.value.response["Error"]["Code"] != "AccessDeniedException"


async def test_celebrity_recognition_is_refused(stack: Stack) -> None:
    client = stack.rekognition(await stack.session())
    with pytest.raises(client.exceptions.AccessDeniedException) as raised:
        client.recognize_celebrities(Image={"Bytes": samples.astronaut_jpeg()})
    assert "celebrity_recognition_refused" in denied_codes(raised.value)


async def test_collection_management_needs_a_case_too(stack: Stack) -> None:
    client = stack.rekognition(await stack.session())
    assert "mugshots" in client.list_collections()["CollectionIds"]

    no_case = stack.rekognition(await stack.session(case_number=None))
    with pytest.raises(no_case.exceptions.AccessDeniedException):
        no_case.list_collections()
