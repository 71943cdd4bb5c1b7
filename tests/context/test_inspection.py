"""Probe inspection on real photos: face counts, EXIF GPS, and every way a probe can be bad."""

from __future__ import annotations

import io
import struct
import zlib
from fractions import Fraction
from typing import Any

import pytest
from PIL import Image

from gateway.context.inspection import (
    ProbeInspector,
    decode_probe,
    parse_location_header,
)
from gateway.errors import InvalidImage, MalformedRequest, PayloadTooLarge
from refvendor import samples


@pytest.fixture(scope="module")
def inspector() -> ProbeInspector:
    return ProbeInspector()


def test_one_face_in_the_astronaut(inspector: ProbeInspector) -> None:
    assert inspector.inspect_image(samples.astronaut_jpeg()).faces == 1


def test_no_face_in_a_cup_of_coffee(inspector: ProbeInspector) -> None:
    assert inspector.inspect_image(samples.no_face_jpeg()).faces == 0


@pytest.mark.parametrize("count", [1, 4, 16])
def test_faces_in_a_crowd_are_counted(inspector: ProbeInspector, count: int) -> None:
    assert inspector.inspect_image(samples.crowd_jpeg(count)).faces == count


def test_a_crowd_of_36_is_counted_as_a_crowd(inspector: ProbeInspector) -> None:
    # The CNN counts all 36; HOG, the fallback, misses one (bench/inspection_accuracy.py).
    assert inspector.inspect_image(samples.crowd_jpeg(36)).faces >= 35


async def test_a_request_reports_the_most_faces_in_any_probe(inspector: ProbeInspector) -> None:
    inspection = await inspector.inspect(
        [samples.astronaut_jpeg(), samples.crowd_jpeg(4)], headers={}
    )
    assert inspection.faces_in_probe == 4
    assert [image.faces for image in inspection.images] == [1, 4]
    assert inspection.locations == ()


def with_gps(gps: dict[int, Any], *, image_format: str = "JPEG") -> bytes:
    image = Image.new("RGB", (64, 48), "white")
    exif = Image.Exif()
    exif.get_ifd(0x8825).update(gps)
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, exif=exif)
    return buffer.getvalue()


def test_exif_gps_gives_the_location(inspector: ProbeInspector) -> None:
    data = with_gps({1: "N", 2: (42.0, 19.0, 39.0), 3: "W", 4: (83.0, 2.0, 38.4)})
    location = inspector.inspect_image(data).location
    assert location is not None
    assert (round(location.lat, 4), round(location.lon, 4), location.source) == (
        42.3275,
        -83.044,
        "exif",
    )


def test_a_gps_block_without_a_position_is_no_location(inspector: ProbeInspector) -> None:
    data = with_gps({6: Fraction(120, 1)})  # altitude only
    assert inspector.inspect_image(data).location is None


@pytest.mark.parametrize(
    ("gps", "complaint"),
    [
        ({1: "N", 2: (123.0, 0.0, 0.0), 3: "E", 4: (10.0, 0.0, 0.0)}, "latitude 123.0"),
        ({1: "N", 2: (42.0, 75.0, 0.0), 3: "E", 4: (10.0, 0.0, 0.0)}, "degrees/minutes/seconds"),
        ({1: "Q", 2: (42.0, 1.0, 0.0), 3: "E", 4: (10.0, 0.0, 0.0)}, "hemisphere"),
        ({1: "N", 2: (42.0, 1.0), 3: "E", 4: (10.0, 0.0, 0.0)}, "three numbers"),
        ({1: "N", 2: (42.0, 1.0, 0.0)}, "latitude or longitude alone"),
        ({1: "N", 2: (42.0, 1.0, 0.0), 3: "E", 4: (190.0, 0.0, 0.0)}, "longitude 190.0"),
    ],
)
def test_nonsense_gps_is_refused_with_a_clear_error(
    inspector: ProbeInspector, gps: dict[int, Any], complaint: str
) -> None:
    with pytest.raises(MalformedRequest, match=complaint):
        inspector.inspect_image(with_gps(gps))


def test_a_truncated_jpeg_is_an_invalid_image(inspector: ProbeInspector) -> None:
    data = samples.astronaut_jpeg()
    with pytest.raises(InvalidImage, match="corrupt or truncated"):
        inspector.inspect_image(data[: len(data) // 2])


@pytest.mark.parametrize(
    "data", [b"not an image at all", b"\xff\xd8\xff", b"GIF89a" + b"\0" * 64, b""]
)
def test_bytes_that_are_no_jpeg_or_png_are_an_invalid_image(
    inspector: ProbeInspector, data: bytes
) -> None:
    with pytest.raises(InvalidImage, match="not a JPEG or PNG"):
        inspector.inspect_image(data)


def png_bomb(width: int, height: int) -> bytes:
    """A valid grey PNG of width x height black pixels: a few hundred KB that decode to GBs."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    compressor = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # filter byte + one byte per pixel
    compressed = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", compressed)
        + chunk(b"IEND", b"")
    )


def test_a_20000_by_20000_png_is_refused_before_decoding(inspector: ProbeInspector) -> None:
    bomb = png_bomb(20_000, 20_000)
    assert len(bomb) < 5 * 1024 * 1024  # under Rekognition's byte limit: only pixels stop it
    # Pillow itself refuses this one on open (past twice its own limit); a smaller bomb
    # passes Pillow and stops at facegate's cap, still before decoding.
    with pytest.raises(PayloadTooLarge, match="more pixels than the 25000000"):
        inspector.inspect_image(bomb)
    with pytest.raises(PayloadTooLarge, match="6000x6000 pixels"):
        inspector.inspect_image(png_bomb(6_000, 6_000))


def test_the_pixel_cap_is_a_setting() -> None:
    with pytest.raises(PayloadTooLarge):
        decode_probe(samples.astronaut_jpeg(), max_pixels=512 * 512 - 1)
    assert decode_probe(samples.astronaut_jpeg(), max_pixels=512 * 512).grey.shape == (512, 512)


def test_the_location_header() -> None:
    location = parse_location_header(" 42.3305, -83.0510 ")
    assert (location.lat, location.lon, location.source) == (42.3305, -83.051, "header")
    for bad in ("42.3", "north,west", "91,0", "0,181", "nan,0", "1,2,3"):
        with pytest.raises(MalformedRequest, match="X-Facegate-Location"):
            parse_location_header(bad)


async def test_header_and_exif_locations_are_both_reported(inspector: ProbeInspector) -> None:
    data = with_gps({1: "N", 2: (42.0, 19.0, 39.0), 3: "W", 4: (83.0, 2.0, 38.4)})
    inspection = await inspector.inspect([data], {"x-facegate-location": "42.35,-83.07"})
    assert [loc.source for loc in inspection.locations] == ["exif", "header"]
