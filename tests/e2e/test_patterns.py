"""Mass-surveillance patterns end to end: boto3 through the gateway to the reference vendor.

Crowd scans, bursts, watchlist building, rate limits and protected places are refused with
their reason codes and never reach the vendor; bad probes get clear errors; a misbehaving
vendor's answer is cut down to the obligations; two gateways on one Redis share counts.
"""

from __future__ import annotations

import io
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from botocore.exceptions import ClientError
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.app import create_app
from gateway.auth.principals import Role
from gateway.migrate import upgrade_async
from gateway.serving import BackgroundServer
from refvendor import samples
from tests.conftest import REDIS_URL
from tests.context.test_inspection import png_bomb
from tests.e2e.conftest import REPO, Stack, gateway_settings, vendor_calls, vendor_client
from tests.e2e.test_bad_input import records_of

# Inside data/zones.yaml's place of worship, which is protected at all times.
PLACE_OF_WORSHIP = (42.3305, -83.0510)


def policy_with(tmp_path: Path, **patterns: Any) -> Path:
    """A copy of the repository's policy with some pattern limits changed.

    Bursts are counted over an hour here rather than ten seconds, so that requests sent one
    after another make a burst however slowly a busy machine serves them.
    """
    copy = Path(shutil.copytree(REPO / "policies", tmp_path / f"policies-{uuid.uuid4().hex}"))
    path = copy / "data" / "patterns.yaml"
    data = yaml.safe_load(path.read_text())
    data["patterns"]["burst"]["window"] = "hour"
    data["patterns"]["rate_limits"] = {"officer": {"hour": 1000}}
    data["patterns"].update(patterns)
    path.write_text(yaml.safe_dump(data))
    # The cases pinning the shipped limits go with them: a gateway starts only on a revision
    # whose decision cases pass.
    (copy / "cases" / "patterns.yaml").unlink()
    return copy


@pytest.fixture
async def sqlite_database(sqlite_url: str) -> str:
    await upgrade_async(sqlite_url)
    return sqlite_url


@contextmanager
def gateway(
    database_url: str, tmp_path: Path, vendor: BackgroundServer, **overrides: Any
) -> Iterator[Stack]:
    overrides.setdefault("policy_dir", policy_with(tmp_path))
    vendor_url = overrides.pop("vendor_url", vendor.url)
    settings = gateway_settings(database_url, tmp_path, vendor_url, **overrides)
    with BackgroundServer(create_app(settings)) as server:
        yield Stack(settings=settings, url=server.url, vendor=vendor)


@pytest.fixture
def stack(sqlite_database: str, tmp_path: Path, vendor: BackgroundServer) -> Iterator[Stack]:
    with gateway(sqlite_database, tmp_path, vendor) as running:
        yield running


def reasons(error: ClientError) -> set[str]:
    return set(error.response["ResponseMetadata"]["HTTPHeaders"]["x-facegate-reasons"].split(","))


def refused(stack: Stack, call: Any) -> ClientError:
    """The call is refused and the vendor never hears of it."""
    before = vendor_calls(stack.vendor)
    with pytest.raises(ClientError) as raised:
        call()
    assert vendor_calls(stack.vendor) == before, "a refused request reached the vendor"
    return raised.value


def with_location(client: Any, value: str) -> Any:
    def add_header(request: Any, **_: Any) -> None:
        request.headers["X-Facegate-Location"] = value

    client.meta.events.register("before-sign.rekognition.*", add_header)
    return client


def dms(value: float) -> tuple[float, float, float]:
    degrees = int(abs(value))
    minutes = int((abs(value) - degrees) * 60)
    seconds = ((abs(value) - degrees) * 60 - minutes) * 60
    return float(degrees), float(minutes), round(seconds, 4)


def astronaut_taken_at(lat: float, lon: float) -> bytes:
    image = Image.open(io.BytesIO(samples.astronaut_jpeg()))
    exif = Image.Exif()
    exif.get_ifd(0x8825).update(
        {1: "N" if lat >= 0 else "S", 2: dms(lat), 3: "E" if lon >= 0 else "W", 4: dms(lon)}
    )
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90, exif=exif)
    return buffer.getvalue()


async def test_a_crowd_photo_is_refused_and_never_searched(stack: Stack) -> None:
    await stack.warrant("W-1")
    client = stack.rekognition(await stack.session())

    error = refused(
        stack,
        lambda: client.search_faces_by_image(
            CollectionId="mugshots", Image={"Bytes": samples.crowd_jpeg(16)}
        ),
    )

    assert error.response["Error"]["Code"] == "AccessDeniedException"
    assert reasons(error) == {"crowd_scan"}
    assert "crowd_scan: the probe holds 16 faces" in error.response["Error"]["Message"]
    [record] = await records_of(stack, event_type="decision")
    assert record.reason_codes == ["crowd_scan"]
    assert record.detail["faces_in_probe"] == 16


async def test_a_probe_taken_in_a_protected_place_is_refused(stack: Stack) -> None:
    await stack.warrant("W-1")
    credentials = await stack.session()
    lat, lon = PLACE_OF_WORSHIP

    by_exif = stack.rekognition(credentials)
    error = refused(
        stack,
        lambda: by_exif.search_faces_by_image(
            CollectionId="mugshots", Image={"Bytes": astronaut_taken_at(lat, lon)}
        ),
    )
    assert reasons(error) == {"protected_place"}
    assert "Example House of Worship" in error.response["Error"]["Message"]

    by_header = with_location(stack.rekognition(credentials), f"{lat},{lon}")
    error = refused(
        stack,
        lambda: by_header.search_faces_by_image(
            CollectionId="mugshots", Image={"Bytes": samples.astronaut_variant_jpeg()}
        ),
    )
    assert reasons(error) == {"protected_place"}

    elsewhere = with_location(stack.rekognition(credentials), "42.35,-83.07")
    found = elsewhere.search_faces_by_image(
        CollectionId="mugshots", Image={"Bytes": samples.astronaut_variant_jpeg()}
    )
    assert [m["Face"]["ExternalImageId"] for m in found["FaceMatches"]] == ["astronaut"]


def nonsense_gps() -> bytes:
    image = Image.open(io.BytesIO(samples.astronaut_jpeg()))
    exif = Image.Exif()
    exif.get_ifd(0x8825).update({1: "N", 2: (123.0, 75.0, 0.0), 3: "E", 4: (10.0, 0.0, 0.0)})
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    return buffer.getvalue()


BAD_PROBES = {
    "truncated_jpeg": (lambda: samples.astronaut_jpeg()[:20_000], "InvalidImageFormatException"),
    "not_an_image": (lambda: b"%PDF-1.7 a document, not a photo", "InvalidImageFormatException"),
    "png_20000x20000": (lambda: png_bomb(20_000, 20_000), "ImageTooLargeException"),
    "nonsense_gps": (nonsense_gps, "InvalidParameterException"),
    "bad_location_header": (samples.astronaut_jpeg, "InvalidParameterException"),
}


@pytest.mark.parametrize("problem", sorted(BAD_PROBES))
async def test_bad_probes_get_clear_errors_and_never_reach_the_vendor(
    stack: Stack, problem: str
) -> None:
    make, error_type = BAD_PROBES[problem]
    client = stack.rekognition(await stack.session())
    if problem == "bad_location_header":
        with_location(client, "somewhere near the river")
    probe = make()

    error = refused(stack, lambda: client.detect_faces(Image={"Bytes": probe}))

    assert error.response["Error"]["Code"] == error_type
    assert error.response["Error"]["Message"]
    [record] = await records_of(stack, event_type="rejected")
    assert record.decision == "deny"
    assert record.probe_digests  # the digest is kept, the image is not


async def test_frames_sent_one_by_one_are_a_burst_and_refusals_are_not_counted(
    stack: Stack,
) -> None:
    await stack.warrant("W-1")
    client = stack.rekognition(await stack.session())

    # Two crowd scans, refused: they are not counted towards the burst.
    for _ in range(2):
        refused(
            stack,
            lambda: client.search_faces_by_image(
                CollectionId="mugshots", Image={"Bytes": samples.crowd_jpeg(4)}
            ),
        )
    for frame in range(5):  # the limit (data/patterns.yaml): 5 probes per officer
        client.detect_faces(Image={"Bytes": samples.lfw_face_jpeg(frame)})

    error = refused(stack, lambda: client.detect_faces(Image={"Bytes": samples.lfw_face_jpeg(5)}))
    assert reasons(error) == {"burst"}
    assert "sent 6 probe images within one hour" in error.response["Error"]["Message"]


async def test_enrolling_crowds_without_a_warrant_for_it_is_watchlist_building(
    sqlite_database: str, tmp_path: Path, vendor: BackgroundServer
) -> None:
    # Enrolment images of 12 faces are let through here (the repository's policy refuses
    # any enrolment image of more than one face as a crowd scan) to count the faces enrolled.
    crowds = {"kinds": ["identify", "verify", "enroll"], "max_faces_in_probe": 3,
              "max_faces_per_image": {"enroll": 12}}  # fmt: skip
    policy = policy_with(tmp_path, crowd_scan=crowds)
    with gateway(sqlite_database, tmp_path, vendor, policy_dir=policy) as stack:
        await _enrol_crowds_until_refused(stack)


async def _enrol_crowds_until_refused(stack: Stack) -> None:
    collection = f"watch-{uuid.uuid4().hex[:8]}"
    vendor_client(stack.vendor).create_collection(CollectionId=collection)
    # A custodian, who may enrol at all: the watchlist limits bind custodians too.
    client = stack.rekognition(await stack.session(roles=(Role.OFFICER, Role.CUSTODIAN)))

    first = client.index_faces(CollectionId=collection, Image={"Bytes": samples.crowd_jpeg(12)})
    # The vendor is asked for the largest face only (obligation max_faces), but the 12 faces
    # counted in the image are what the enrolment counts.
    assert len(first["FaceRecords"]) == 1

    error = refused(
        stack,
        lambda: client.index_faces(
            CollectionId=collection, Image={"Bytes": samples.crowd_jpeg(12, first=12)}
        ),
    )
    assert reasons(error) == {"watchlist_building"}
    assert "has enrolled 24 faces" in error.response["Error"]["Message"]


async def test_an_officer_over_the_rate_limit_is_refused(
    sqlite_database: str, tmp_path: Path, vendor: BackgroundServer
) -> None:
    policy = policy_with(tmp_path, rate_limits={"officer": {"hour": 3}})
    with gateway(sqlite_database, tmp_path, vendor, policy_dir=policy) as stack:
        client = stack.rekognition(await stack.session())
        for _ in range(3):
            client.list_collections()
        error = refused(stack, client.list_collections)
        assert reasons(error) == {"rate_limit_exceeded"}
        assert (
            "has made 4 requests within one hour (at most 3)" in error.response["Error"]["Message"]
        )


@pytest.mark.postgres
async def test_two_gateways_on_one_redis_share_the_counts(
    postgres_url: str, tmp_path: Path, vendor: BackgroundServer, redis_prefix: str
) -> None:
    """Two replicas on one PostgreSQL and one Redis: a burst split between them is a burst."""
    await upgrade_async(postgres_url)
    policy = policy_with(tmp_path)
    shared = {"policy_dir": policy, "redis_url": REDIS_URL, "activity_key_prefix": redis_prefix}
    with (
        gateway(postgres_url, tmp_path, vendor, **shared) as one,
        gateway(postgres_url, tmp_path, vendor, **shared) as two,
    ):
        credentials = await one.session()
        via_one, via_two = one.rekognition(credentials), two.rekognition(credentials)
        for frame, client in enumerate([via_one, via_two, via_one, via_two, via_one]):
            client.detect_faces(Image={"Bytes": samples.lfw_face_jpeg(frame)})

        error = refused(
            two, lambda: via_two.detect_faces(Image={"Bytes": samples.lfw_face_jpeg(5)})
        )
        assert reasons(error) == {"burst"}
        error = refused(
            one, lambda: via_one.detect_faces(Image={"Bytes": samples.lfw_face_jpeg(6)})
        )
        assert reasons(error) == {"burst"}


def misbehaving_vendor() -> Starlette:
    """A vendor that ignores the obligations: attributes nobody asked for, too many matches."""
    detail = {
        "BoundingBox": {"Width": 0.5, "Height": 0.5, "Left": 0.2, "Top": 0.2},
        "Confidence": 99.9,
        "AgeRange": {"Low": 25, "High": 35},
        "Gender": {"Value": "Female", "Confidence": 99.0},
        "Emotions": [{"Type": "FEAR", "Confidence": 80.0}],
    }

    async def endpoint(request: Request) -> JSONResponse:
        operation = request.headers["x-amz-target"].split(".")[-1]
        if operation == "DetectFaces":
            return JSONResponse({"FaceDetails": [detail]})
        matches = [
            {"Similarity": s, "Face": {"FaceId": f"f{i}", "ExternalImageId": f"p{i}"}}
            for i, s in enumerate([99.9, 99.8, 99.7, 99.6, 99.5, 99.4, 98.0, 40.0])
        ]
        return JSONResponse({"SearchedFaceConfidence": 99.0, "FaceMatches": matches})

    return Starlette(routes=[Route("/", endpoint, methods=["POST"])])


async def test_the_vendors_answer_is_held_to_the_obligations(
    sqlite_database: str, tmp_path: Path, vendor: BackgroundServer
) -> None:
    with (
        BackgroundServer(misbehaving_vendor()) as bad_vendor,
        gateway(sqlite_database, tmp_path, vendor, vendor_url=bad_vendor.url) as stack,
    ):
        await stack.warrant("W-1")
        client = stack.rekognition(await stack.session())

        [face] = client.detect_faces(Image={"Bytes": samples.astronaut_jpeg()})["FaceDetails"]
        assert "AgeRange" not in face and "Gender" not in face and "Emotions" not in face
        assert face["Confidence"] == 99.9

        found = client.search_faces_by_image(
            CollectionId="mugshots", Image={"Bytes": samples.astronaut_jpeg()}
        )
        assert [m["Similarity"] for m in found["FaceMatches"]] == [99.9, 99.8, 99.7, 99.6, 99.5]
        headers = found["ResponseMetadata"]["HTTPHeaders"]
        assert "investigative leads" in headers["x-facegate-lead-notice"]

        outcomes = await records_of(stack, event_type="outcome")
        dropped = [r.detail.get("dropped") for r in outcomes]
        assert {"forbidden_attributes": 3} in dropped
        assert {"below_threshold": 2, "over_result_cap": 1} in dropped
