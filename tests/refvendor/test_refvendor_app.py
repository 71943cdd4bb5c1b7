"""boto3's own Rekognition client against the reference vendor on a loopback socket."""

from __future__ import annotations

import io
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from PIL import Image

from refvendor import samples
from refvendor.app import create_app
from refvendor.faces import DecodedImage, Face, FaceEngine
from refvendor.params import MAX_IMAGE_BYTES

# Fixtures from conftest.py: running_vendor (.app, .url), rekognition (a boto3
# client for it), make_client, serve, credentials, face_engine.
Client = Any

DEADLOCK_GUARD_SECONDS = 60  # never a timing assertion; only so a hang fails


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _error_code(error: ClientError) -> str:
    code: str = error.response["Error"]["Code"]
    return code


@pytest.fixture
def collection(rekognition: Client) -> Iterator[str]:
    collection_id = f"people-{uuid.uuid4().hex[:8]}"
    rekognition.create_collection(CollectionId=collection_id)
    yield collection_id
    rekognition.delete_collection(CollectionId=collection_id)


def _index(rekognition: Client, collection_id: str, image: bytes, external_id: str) -> str:
    records = rekognition.index_faces(
        CollectionId=collection_id, Image={"Bytes": image}, ExternalImageId=external_id
    )["FaceRecords"]
    assert len(records) == 1
    face_id: str = records[0]["Face"]["FaceId"]
    return face_id


# --- collections ----------------------------------------------------------------------


def test_collection_lifecycle(rekognition: Client) -> None:
    created = rekognition.create_collection(CollectionId="lifecycle")
    assert created["StatusCode"] == 200
    assert created["CollectionArn"].endswith(":collection/lifecycle")

    assert "lifecycle" in rekognition.list_collections()["CollectionIds"]
    described = rekognition.describe_collection(CollectionId="lifecycle")
    assert described["FaceCount"] == 0
    assert described["CollectionARN"] == created["CollectionArn"]
    assert described["CreationTimestamp"].year >= 2024

    with pytest.raises(rekognition.exceptions.ResourceAlreadyExistsException):
        rekognition.create_collection(CollectionId="lifecycle")

    assert rekognition.delete_collection(CollectionId="lifecycle")["StatusCode"] == 200
    with pytest.raises(rekognition.exceptions.ResourceNotFoundException):
        rekognition.describe_collection(CollectionId="lifecycle")
    with pytest.raises(rekognition.exceptions.ResourceNotFoundException):
        rekognition.delete_collection(CollectionId="lifecycle")


def test_list_collections_pages(rekognition: Client) -> None:
    ids = [f"page-{n}" for n in range(3)]
    for collection_id in ids:
        rekognition.create_collection(CollectionId=collection_id)
    try:
        seen: list[str] = []
        paginator = rekognition.get_paginator("list_collections")
        for page in paginator.paginate(PaginationConfig={"PageSize": 1}):
            assert len(page["CollectionIds"]) <= 1
            seen += page["CollectionIds"]
        assert [cid for cid in seen if cid.startswith("page-")] == ids
    finally:
        for collection_id in ids:
            rekognition.delete_collection(CollectionId=collection_id)


def test_an_unknown_collection_is_resource_not_found(rekognition: Client) -> None:
    with pytest.raises(rekognition.exceptions.ResourceNotFoundException) as raised:
        rekognition.search_faces_by_image(
            CollectionId="nobody-made-this", Image={"Bytes": samples.astronaut_jpeg()}
        )
    assert "nobody-made-this" in raised.value.response["Error"]["Message"]


# --- indexing and search --------------------------------------------------------------


def test_index_then_search_finds_the_same_face(rekognition: Client, collection: str) -> None:
    indexed = rekognition.index_faces(
        CollectionId=collection,
        Image={"Bytes": samples.astronaut_jpeg()},
        ExternalImageId="astronaut",
        DetectionAttributes=["DEFAULT"],
    )
    record = indexed["FaceRecords"][0]
    assert record["Face"]["ExternalImageId"] == "astronaut"
    assert set(record["FaceDetail"]) == {"BoundingBox", "Landmarks", "Confidence"}
    assert indexed["UnindexedFaces"] == []
    for index in samples.distinct_lfw_indices()[:3]:
        _index(rekognition, collection, samples.lfw_face_jpeg(index), f"lfw-{index}")

    response = rekognition.search_faces_by_image(
        CollectionId=collection, Image={"Bytes": samples.astronaut_variant_jpeg()}
    )

    matches = response["FaceMatches"]
    assert [m["Face"]["ExternalImageId"] for m in matches] == ["astronaut"]
    assert matches[0]["Similarity"] >= 99
    assert matches[0]["Face"]["FaceId"] == record["Face"]["FaceId"]
    assert matches[0]["Face"]["IndexFacesModelVersion"] == response["FaceModelVersion"]
    box = response["SearchedFaceBoundingBox"]
    assert 0 < box["Width"] < 1 and 0 < box["Left"] < 1
    assert response["SearchedFaceConfidence"] > 90


def test_a_stranger_finds_no_match_at_the_default_threshold(
    rekognition: Client, collection: str
) -> None:
    _index(rekognition, collection, samples.astronaut_jpeg(), "astronaut")
    first, *_, stranger = samples.distinct_lfw_indices()
    _index(rekognition, collection, samples.lfw_face_jpeg(first), "lfw")

    response = rekognition.search_faces_by_image(
        CollectionId=collection, Image={"Bytes": samples.lfw_face_jpeg(stranger)}
    )
    assert response["FaceMatches"] == []

    # Every face is still there, just below the threshold.
    everyone = rekognition.search_faces_by_image(
        CollectionId=collection,
        Image={"Bytes": samples.lfw_face_jpeg(stranger)},
        FaceMatchThreshold=0,
    )["FaceMatches"]
    assert len(everyone) == 2
    assert all(m["Similarity"] < 20 for m in everyone)
    assert everyone[0]["Similarity"] >= everyone[1]["Similarity"]


def test_search_by_image_searches_the_largest_face_and_max_faces_limits_indexing(
    rekognition: Client, collection: str
) -> None:
    lfw_index = samples.distinct_lfw_indices()[0]
    canvas = Image.open(io.BytesIO(samples.astronaut_jpeg())).convert("RGB")
    lfw = Image.open(io.BytesIO(samples.lfw_face_jpeg(lfw_index))).convert("RGB")
    canvas.paste(lfw, (362, 362))  # this face is larger than hers
    group = _jpeg(canvas)

    indexed = rekognition.index_faces(
        CollectionId=collection, Image={"Bytes": group}, ExternalImageId="group", MaxFaces=1
    )
    assert len(indexed["FaceRecords"]) == 1
    assert [u["Reasons"] for u in indexed["UnindexedFaces"]] == [["EXCEEDS_MAX_FACES"]]
    _index(rekognition, collection, samples.astronaut_jpeg(), "astronaut")

    matches = rekognition.search_faces_by_image(CollectionId=collection, Image={"Bytes": group})[
        "FaceMatches"
    ]
    assert [m["Face"]["ExternalImageId"] for m in matches] == ["group"]
    assert indexed["FaceRecords"][0]["Face"]["BoundingBox"]["Left"] > 0.6


def test_search_faces_by_face_id(rekognition: Client, collection: str) -> None:
    first = _index(rekognition, collection, samples.astronaut_jpeg(), "first")
    second = _index(rekognition, collection, samples.astronaut_variant_jpeg(), "second")
    _index(rekognition, collection, samples.lfw_face_jpeg(0), "lfw")

    response = rekognition.search_faces(CollectionId=collection, FaceId=first)

    assert response["SearchedFaceId"] == first
    assert [m["Face"]["FaceId"] for m in response["FaceMatches"]] == [second]
    assert response["FaceMatches"][0]["Similarity"] >= 99
    with_everyone = rekognition.search_faces(
        CollectionId=collection, FaceId=first, FaceMatchThreshold=0, MaxFaces=1
    )
    assert len(with_everyone["FaceMatches"]) == 1

    with pytest.raises(rekognition.exceptions.InvalidParameterException):
        rekognition.search_faces(CollectionId=collection, FaceId=str(uuid.uuid4()))


def test_search_without_a_face_in_the_image_is_an_invalid_parameter(
    rekognition: Client, collection: str
) -> None:
    with pytest.raises(rekognition.exceptions.InvalidParameterException, match="no faces"):
        rekognition.search_faces_by_image(
            CollectionId=collection, Image={"Bytes": samples.no_face_jpeg()}
        )


def test_list_and_delete_faces(rekognition: Client, collection: str) -> None:
    ids = [
        _index(rekognition, collection, samples.lfw_face_jpeg(index), f"lfw-{index}")
        for index in samples.distinct_lfw_indices()[:3]
    ]

    listed: list[str] = []
    for page in rekognition.get_paginator("list_faces").paginate(
        CollectionId=collection, PaginationConfig={"PageSize": 2}
    ):
        assert page["FaceModelVersion"]
        listed += [face["FaceId"] for face in page["Faces"]]
    assert listed == ids
    only = rekognition.list_faces(CollectionId=collection, FaceIds=[ids[1]])["Faces"]
    assert [face["ExternalImageId"] for face in only] == [
        f"lfw-{samples.distinct_lfw_indices()[1]}"
    ]

    missing = str(uuid.uuid4())
    deleted = rekognition.delete_faces(CollectionId=collection, FaceIds=[ids[0], missing])
    assert deleted["DeletedFaces"] == [ids[0]]
    assert deleted["UnsuccessfulFaceDeletions"] == [
        {"FaceId": missing, "Reasons": ["FACE_NOT_FOUND"]}
    ]
    assert rekognition.describe_collection(CollectionId=collection)["FaceCount"] == 2

    with pytest.raises(rekognition.exceptions.InvalidPaginationTokenException):
        rekognition.list_faces(CollectionId=collection, NextToken="not-a-token")


# --- compare and detect ---------------------------------------------------------------


def test_compare_faces_same_and_different(rekognition: Client) -> None:
    same = rekognition.compare_faces(
        SourceImage={"Bytes": samples.astronaut_jpeg()},
        TargetImage={"Bytes": samples.astronaut_variant_jpeg()},
    )
    assert len(same["FaceMatches"]) == 1
    assert same["FaceMatches"][0]["Similarity"] >= 99
    assert "Landmarks" in same["FaceMatches"][0]["Face"]
    assert same["UnmatchedFaces"] == []
    assert same["SourceImageFace"]["Confidence"] > 90

    different = rekognition.compare_faces(
        SourceImage={"Bytes": samples.astronaut_jpeg()},
        TargetImage={"Bytes": samples.lfw_face_jpeg(samples.distinct_lfw_indices()[0])},
    )
    assert different["FaceMatches"] == []
    assert len(different["UnmatchedFaces"]) == 1

    lenient = rekognition.compare_faces(
        SourceImage={"Bytes": samples.astronaut_jpeg()},
        TargetImage={"Bytes": samples.lfw_face_jpeg(samples.distinct_lfw_indices()[0])},
        SimilarityThreshold=0,
    )
    assert len(lenient["FaceMatches"]) == 1
    assert lenient["FaceMatches"][0]["Similarity"] < 20

    with pytest.raises(rekognition.exceptions.InvalidParameterException):
        rekognition.compare_faces(
            SourceImage={"Bytes": samples.no_face_jpeg()},
            TargetImage={"Bytes": samples.astronaut_jpeg()},
        )


def test_detect_faces_returns_only_what_is_computed(rekognition: Client) -> None:
    for attributes in (["DEFAULT"], ["ALL"]):
        faces = rekognition.detect_faces(
            Image={"Bytes": samples.astronaut_jpeg()}, Attributes=attributes
        )["FaceDetails"]
        assert len(faces) == 1
        assert set(faces[0]) == {"BoundingBox", "Landmarks", "Confidence"}
        box = faces[0]["BoundingBox"]
        assert 0.3 < box["Left"] < 0.4 and 0.1 < box["Top"] < 0.2
        types = {mark["Type"] for mark in faces[0]["Landmarks"]}
        assert {"eyeLeft", "eyeRight", "nose"} <= types
        assert all(0 <= mark["X"] <= 1 and 0 <= mark["Y"] <= 1 for mark in faces[0]["Landmarks"])

    assert rekognition.detect_faces(Image={"Bytes": samples.no_face_jpeg()})["FaceDetails"] == []

    with pytest.raises(rekognition.exceptions.InvalidParameterException, match="EMOTIONS"):
        rekognition.detect_faces(Image={"Bytes": samples.astronaut_jpeg()}, Attributes=["EMOTIONS"])


# --- errors ---------------------------------------------------------------------------


def test_image_errors_surface_as_typed_exceptions(rekognition: Client) -> None:
    with pytest.raises(rekognition.exceptions.InvalidImageFormatException):
        rekognition.detect_faces(Image={"Bytes": b"\x00garbage bytes, not an image"})

    with pytest.raises(rekognition.exceptions.ImageTooLargeException):
        rekognition.detect_faces(Image={"Bytes": b"\xff" * (MAX_IMAGE_BYTES + 1)})

    with pytest.raises(rekognition.exceptions.InvalidParameterException, match="S3"):
        rekognition.detect_faces(Image={"S3Object": {"Bucket": "photos", "Name": "a.jpg"}})


def test_bad_parameters_name_the_member(rekognition: Client, collection: str) -> None:
    with pytest.raises(rekognition.exceptions.InvalidParameterException, match="MaxFaces"):
        rekognition.search_faces_by_image(
            CollectionId=collection, Image={"Bytes": samples.astronaut_jpeg()}, MaxFaces=5000
        )
    with pytest.raises(rekognition.exceptions.InvalidParameterException, match="FaceId"):
        rekognition.search_faces(CollectionId=collection, FaceId="not-a-face-id")


def test_a_wrong_secret_is_an_invalid_signature(
    running_vendor: Any, make_client: Callable[..., Client]
) -> None:
    client = make_client(running_vendor.url, secret_access_key="not-the-secret")
    with pytest.raises(ClientError) as raised:
        client.list_collections()
    assert _error_code(raised.value) == "InvalidSignatureException"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_an_unknown_access_key_is_an_unrecognized_client(
    running_vendor: Any, make_client: Callable[..., Client]
) -> None:
    client = make_client(running_vendor.url, access_key_id="AKIDSOMEONEELSE")
    with pytest.raises(ClientError) as raised:
        client.list_collections()
    assert _error_code(raised.value) == "UnrecognizedClientException"


def test_an_operation_the_vendor_lacks_is_unknown(rekognition: Client) -> None:
    with pytest.raises(ClientError) as raised:
        rekognition.start_stream_processor(Name="plaza-cam")
    assert _error_code(raised.value) == "UnknownOperationException"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def _signed_post(credentials: Any, url: str, target: str, body: bytes) -> httpx.Response:
    request = AWSRequest(
        method="POST",
        url=f"{url}/",
        data=body,
        headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target},
    )
    signer = SigV4Auth(
        Credentials(credentials.access_key_id, credentials.secret_access_key),
        "rekognition",
        credentials.region,
    )
    signer.add_auth(request)
    return httpx.post(f"{url}/", content=body, headers=dict(request.headers.items()))


def test_raw_protocol_errors(running_vendor: Any, credentials: Any) -> None:
    url = running_vendor.url

    unsigned = httpx.post(
        f"{url}/", content=b"{}", headers={"X-Amz-Target": "RekognitionService.ListCollections"}
    )
    assert unsigned.status_code == 400
    assert unsigned.json()["__type"] == "MissingAuthenticationTokenException"

    not_json = _signed_post(credentials, url, "RekognitionService.ListCollections", b"{not json")
    assert not_json.status_code == 400
    assert not_json.json()["__type"] == "SerializationException"
    assert not_json.headers["content-type"] == "application/x-amz-json-1.1"

    unknown = _signed_post(credentials, url, "RekognitionService.NoSuchThing", b"{}")
    assert (unknown.status_code, unknown.json()) == (400, {"__type": "UnknownOperationException"})

    ok = _signed_post(credentials, url, "RekognitionService.ListCollections", b"{}")
    assert ok.status_code == 200
    assert ok.headers["x-amzn-requestid"]


# --- call counter ---------------------------------------------------------------------


def test_every_request_that_reaches_the_vendor_is_counted(
    running_vendor: Any, rekognition: Client, make_client: Callable[..., Client]
) -> None:
    def counts() -> dict[str, int]:
        document: dict[str, int] = httpx.get(f"{running_vendor.url}/__refvendor/calls").json()
        return document

    before = counts()
    rekognition.list_collections()
    with pytest.raises(ClientError):
        make_client(running_vendor.url, secret_access_key="wrong").list_collections()
    with pytest.raises(ClientError):
        rekognition.start_stream_processor(Name="plaza-cam")
    after = counts()

    assert after["ListCollections"] == before.get("ListCollections", 0) + 2
    assert after["StartStreamProcessor"] == before.get("StartStreamProcessor", 0) + 1
    assert sum(after.values()) == sum(before.values()) + 3
    assert dict(running_vendor.app.state.calls) == after


# --- concurrency ----------------------------------------------------------------------


class _GatedEngine(FaceEngine):
    """The session's engine, but detect() waits until the test opens the gate."""

    def __init__(self, inner: FaceEngine) -> None:  # models stay loaded once, in `inner`
        self._inner = inner
        self.entered = threading.Event()
        self.gate = threading.Event()

    def detect(self, image: DecodedImage) -> list[Face]:
        self.entered.set()
        self.gate.wait(DEADLOCK_GUARD_SECONDS)
        return self._inner.detect(image)

    def describe(self, image: DecodedImage, face: Face) -> Any:
        return self._inner.describe(image, face)


def test_the_event_loop_serves_requests_while_dlib_works(
    face_engine: FaceEngine,
    credentials: Any,
    serve: Callable[[Any], Any],
    make_client: Callable[..., Client],
) -> None:
    engine = _GatedEngine(face_engine)
    app = create_app(
        access_key_id=credentials.access_key_id,
        secret_access_key=credentials.secret_access_key,
        region=credentials.region,
        engine=engine,
    )
    with serve(app) as server, ThreadPoolExecutor(max_workers=1) as pool:
        client = make_client(server.url)
        detecting = pool.submit(client.detect_faces, Image={"Bytes": samples.astronaut_jpeg()})
        assert engine.entered.wait(DEADLOCK_GUARD_SECONDS)

        # The detection is parked inside the engine; the vendor still answers.
        assert client.list_collections()["CollectionIds"] == []
        assert httpx.get(f"{server.url}/__refvendor/calls").json()["DetectFaces"] == 1
        assert not detecting.done()

        engine.gate.set()
        assert len(detecting.result(DEADLOCK_GUARD_SECONDS)["FaceDetails"]) == 1
