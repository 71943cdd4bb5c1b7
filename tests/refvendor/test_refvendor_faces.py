"""The dlib face engine: safe decoding, detection, descriptors, the similarity scale, samples."""

from __future__ import annotations

import io
import itertools
import math
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from refvendor import samples
from refvendor.faces import (
    DecodedImage,
    Face,
    FaceEngine,
    ImageTooLarge,
    InvalidImage,
    decode_image,
    distances,
    similarity,
)


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height RGB pixels, with almost no data.

    A decompression bomb looks like this to a decoder that trusts the header.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def _astronaut() -> Image.Image:
    return Image.open(io.BytesIO(samples.astronaut_jpeg())).convert("RGB")


# --- decoding -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not an image at all",
        samples.astronaut_jpeg()[: len(samples.astronaut_jpeg()) // 2],  # truncated JPEG
        _encode(Image.new("RGB", (32, 32)), "GIF"),  # an image, but not JPEG or PNG
    ],
    ids=["empty", "text", "truncated-jpeg", "gif"],
)
def test_bytes_that_are_not_a_jpeg_or_png_are_an_invalid_image(data: bytes) -> None:
    with pytest.raises(InvalidImage) as raised:
        decode_image(data)
    assert not isinstance(raised.value, ImageTooLarge)


def test_pixel_cap_is_checked_against_the_header_before_decoding() -> None:
    bomb = _png_declaring(6000, 6000)
    assert len(bomb) < 200

    with pytest.raises(ImageTooLarge, match="6000x6000"):
        decode_image(bomb, max_pixels=25_000_000)


def test_an_image_pillow_itself_calls_a_bomb_is_too_large() -> None:
    # Past twice Pillow's MAX_IMAGE_PIXELS, Image.open refuses by itself.
    with pytest.raises(ImageTooLarge):
        decode_image(_png_declaring(20_000, 20_000), max_pixels=10**12)


def test_images_under_the_cap_decode_to_rgb_uint8() -> None:
    gray = _encode(Image.new("L", (40, 30), color=128), "PNG")
    rgba = _encode(Image.new("RGBA", (40, 30), color=(1, 2, 3, 4)), "PNG")

    for data in (gray, rgba, samples.astronaut_jpeg()):
        image = decode_image(data, max_pixels=512 * 512)
        assert image.pixels.dtype == np.uint8
        assert image.pixels.shape == (image.height, image.width, 3)
    assert decode_image(rgba).pixels[0, 0].tolist() == [1, 2, 3]


def test_exif_orientation_is_applied_so_sideways_photos_are_upright(
    face_engine: FaceEngine,
) -> None:
    # What a phone stores for a portrait: the pixels turned on their side,
    # and EXIF orientation 6 ("rotate 90° clockwise to view").
    sideways = _astronaut().transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    with_tag = _encode(sideways, "JPEG", quality=90, exif=exif.tobytes())
    without_tag = _encode(sideways, "JPEG", quality=90)

    assert face_engine.detect(decode_image(without_tag)) == []
    upright = decode_image(with_tag)
    assert (upright.width, upright.height) == (512, 512)
    assert len(face_engine.detect(upright)) == 1


# --- detection ------------------------------------------------------------------------


def test_the_astronaut_has_exactly_one_face_with_plausible_landmarks(
    face_engine: FaceEngine,
) -> None:
    faces = face_engine.detect(decode_image(samples.astronaut_jpeg()))

    assert len(faces) == 1
    face = faces[0]
    # Her head spans about x 180-265, y 85-170.
    assert 170 <= face.box.left <= 190 and 75 <= face.box.top <= 95
    assert 75 <= face.box.width <= 100
    assert face.confidence > 95
    marks = {mark.type: mark for mark in face.landmarks}
    assert set(marks) == {
        "eyeLeft",
        "eyeRight",
        "leftEyeLeft",
        "leftEyeRight",
        "rightEyeLeft",
        "rightEyeRight",
        "nose",
    }
    # Left and right as seen in the image; corners bracket the eye centres.
    assert marks["leftEyeLeft"].x < marks["eyeLeft"].x < marks["leftEyeRight"].x
    assert marks["leftEyeRight"].x < marks["rightEyeLeft"].x
    assert marks["rightEyeLeft"].x < marks["eyeRight"].x < marks["rightEyeRight"].x
    assert marks["nose"].y > max(marks["eyeLeft"].y, marks["eyeRight"].y)
    for mark in face.landmarks:
        assert face.box.left <= mark.x <= face.box.left + face.box.width
        assert face.box.top <= mark.y <= face.box.top + face.box.height


def test_no_face_in_the_coffee(face_engine: FaceEngine) -> None:
    assert face_engine.detect(decode_image(samples.no_face_jpeg())) == []


def test_faces_smaller_than_the_detector_window_are_found_by_upsampling(
    face_engine: FaceEngine,
) -> None:
    small = _encode(_astronaut().resize((300, 300), Image.Resampling.LANCZOS), "JPEG")

    faces = face_engine.detect(decode_image(small))

    assert len(faces) == 1
    # Unsampled, the HOG detector cannot see a face under its 80x80 window.
    assert faces[0].box.width < 80


def test_faces_come_largest_first(face_engine: FaceEngine) -> None:
    canvas = _astronaut()
    lfw = Image.open(io.BytesIO(samples.lfw_face_jpeg(samples.distinct_lfw_indices()[0])))
    canvas.paste(lfw.convert("RGB"), (362, 362))

    faces = face_engine.detect(decode_image(_encode(canvas, "JPEG", quality=90)))

    assert len(faces) == 2
    assert faces[0].box.area > faces[1].box.area
    assert faces[0].box.left > 300  # the pasted LFW face, larger than hers


# --- descriptors and similarity -------------------------------------------------------


def _descriptor(engine: FaceEngine, data: bytes) -> np.ndarray:
    image = decode_image(data)
    faces = engine.detect(image)
    assert faces, "no face found"
    return engine.describe(image, faces[0])


def test_the_same_face_is_near_and_different_people_are_far(face_engine: FaceEngine) -> None:
    astronaut = _descriptor(face_engine, samples.astronaut_jpeg())
    variant = _descriptor(face_engine, samples.astronaut_variant_jpeg())
    others = np.stack(
        [
            _descriptor(face_engine, samples.lfw_face_jpeg(index))
            for index in samples.distinct_lfw_indices()[:5]
        ]
    )

    assert astronaut.shape == (128,)
    same = float(np.linalg.norm(astronaut - variant))
    assert same < 0.2
    assert similarity(same) >= 99
    different = distances(astronaut, others)
    assert different.shape == (5,)
    assert (different > 0.6).all()
    assert all(similarity(float(d)) < 20 for d in different)


def test_similarity_scale_is_the_documented_logistic() -> None:
    assert similarity(0.5) == pytest.approx(50)
    assert similarity(0.12) == pytest.approx(99.67, abs=0.01)
    assert similarity(0.6) == pytest.approx(18.24, abs=0.01)
    # Rekognition's default threshold of 80 sits at distance 0.5 - ln(4)/15.
    assert similarity(0.5 - math.log(4) / 15) == pytest.approx(80)
    scale = [similarity(d / 100) for d in range(0, 201)]
    assert all(a > b for a, b in itertools.pairwise(scale))
    assert 0 <= similarity(1e6) < 1e-9 and similarity(0.0) < 100


def test_the_engine_is_safe_to_share_between_threads(face_engine: FaceEngine) -> None:
    # dlib's detector is not thread-safe (unlocked, this test crashes the
    # interpreter); the engine's lock must make concurrent use give the same
    # answers as sequential use.
    images = [
        decode_image(data)
        for data in (
            samples.astronaut_jpeg(),
            samples.astronaut_variant_jpeg(),
            *(samples.lfw_face_jpeg(i) for i in samples.distinct_lfw_indices()[:4]),
        )
    ]

    def analyze(image: DecodedImage) -> tuple[list[Face], np.ndarray]:
        faces = face_engine.detect(image)
        return faces, face_engine.describe(image, faces[0])

    sequential = [analyze(image) for image in images]
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(analyze, images * 4))

    for i, (faces, descriptor) in enumerate(concurrent):
        expected_faces, expected_descriptor = sequential[i % len(images)]
        assert faces == expected_faces
        np.testing.assert_array_equal(descriptor, expected_descriptor)


# --- samples --------------------------------------------------------------------------


def test_detectable_lfw_indices_are_exactly_those_the_engine_detects(
    face_engine: FaceEngine,
) -> None:
    detected = tuple(
        index
        for index in samples.LFW_FACES
        if face_engine.detect(decode_image(samples.lfw_face_jpeg(index)))
    )
    assert detected == samples.detectable_lfw_indices()
    assert len(detected) >= 80


def test_distinct_lfw_faces_are_pairwise_different_people(face_engine: FaceEngine) -> None:
    distinct = samples.distinct_lfw_indices()
    assert set(distinct) <= set(samples.detectable_lfw_indices())
    vectors = {i: _descriptor(face_engine, samples.lfw_face_jpeg(i)) for i in distinct}

    for a, b in itertools.combinations(distinct, 2):
        assert np.linalg.norm(vectors[a] - vectors[b]) >= 0.6, (a, b)


def test_samples_are_cached_jpeg_bytes() -> None:
    assert samples.astronaut_jpeg() is samples.astronaut_jpeg()
    for data in (
        samples.astronaut_jpeg(),
        samples.astronaut_variant_jpeg(),
        samples.lfw_face_jpeg(0),
        samples.no_face_jpeg(),
    ):
        assert data[:3] == b"\xff\xd8\xff"
    with pytest.raises(ValueError):
        samples.lfw_face_jpeg(100)
