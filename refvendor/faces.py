"""Real face detection and matching with dlib: the reference vendor's engine.

Three pretrained models do the work, all loaded once by ``FaceEngine()``:

- dlib's HOG frontal face detector finds faces (boxes and a detector score);
- the 5-point shape predictor places two corners of each eye and the base of
  the nose;
- the ResNet face recognition model maps an aligned face to a 128-d
  descriptor, where faces of one person lie close together (dlib's own cut
  for "same person" is a Euclidean distance of 0.6).

Images arrive as untrusted bytes, so ``decode_image`` only accepts JPEG and
PNG and refuses to decode more than ``max_pixels`` pixels. Nothing here logs
or stores pixels.
"""

from __future__ import annotations

import importlib.util
import io
import math
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import dlib
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps

# Rekognition reads JPEG and PNG only; refusing every other format also keeps
# Pillow's rarer (and less hardened) decoders out of reach of untrusted bytes.
ACCEPTED_FORMATS = ("JPEG", "PNG")

# 25 megapixels decode to 75 MB of RGB, and a 5 MB PNG of one flat colour can
# declare far more than that: the cap is checked against the header, before
# any pixel is decoded.
DEFAULT_MAX_PIXELS = 25_000_000

# Upsampling doubles each side so that faces under the detector's 80x80
# window are found, at four times the time and memory. Beyond this size an
# image is large enough that its faces are too, so the second pass is skipped.
UPSAMPLE_MAX_PIXELS = 4_000_000

# The detector's SVM score a detection needs. dlib's own threshold is 0, but
# at 0 JPEG artefacts on the astronaut's suit pass as a second face (score
# 0.00-0.10 at every JPEG quality from 75 to 100, and once larger than her
# real face). At 0.2 that is gone while 89 of the 100 LFW sample faces are
# still found (92 at 0). Rekognition-scale confidence at 0.2 is 69.
DETECTION_THRESHOLD = 0.2

Descriptor = npt.NDArray[np.float64]


class InvalidImage(ValueError):
    """The bytes are not a JPEG or PNG image this engine can decode."""


class ImageTooLarge(InvalidImage):
    """The image declares more pixels than the engine will decode."""


@dataclass(frozen=True, slots=True)
class DecodedImage:
    """An upright RGB image: ``pixels`` has shape (height, width, 3), dtype uint8."""

    pixels: npt.NDArray[np.uint8]

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


@dataclass(frozen=True, slots=True)
class Box:
    """A face's bounding box in pixels; it may extend past the image's edges."""

    left: int
    top: int
    width: int
    height: int

    @property
    def area(self) -> int:
        return self.width * self.height


@dataclass(frozen=True, slots=True)
class Landmark:
    """A facial point in pixels, named by Rekognition's ``LandmarkType``.

    Left and right are as seen in the image (``eyeLeft`` has the smaller x),
    which is how Rekognition names them.
    """

    type: str
    x: float
    y: float


@dataclass(frozen=True, slots=True)
class Face:
    """One detected face.

    ``confidence`` is on a 0-100 scale: ``100 / (1 + exp(-4 * score))`` of the
    HOG detector's SVM score. A score of 0 (dlib's own threshold) would map to
    50; ``DETECTION_THRESHOLD`` keeps only faces at 69 or more, and clear
    frontal faces score 1-2.5 (98-100). It is monotone in the detector's
    certainty, not a calibrated probability.
    """

    box: Box
    confidence: float
    landmarks: tuple[Landmark, ...]


def models_dir() -> Path:
    """Where the ``face_recognition_models`` package keeps its model files."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the face_recognition_models package is not installed")
    return Path(spec.submodule_search_locations[0]) / "models"


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode JPEG or PNG bytes into an upright RGB image.

    Raises ``ImageTooLarge`` when the header declares more than ``max_pixels``
    pixels, and ``InvalidImage`` for anything that is not a decodable JPEG or
    PNG (truncated files included).
    """
    try:
        with warnings.catch_warnings():
            # Pillow warns about large images on open; the cap below decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"the image declares too many pixels: {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidImage("the bytes are not a JPEG or PNG image") from exc

    with image:
        # Image.open has read the header only, so this check runs before a
        # single pixel is decoded: a decompression bomb stops here.
        if image.width * image.height > max_pixels:
            raise ImageTooLarge(
                f"the image is {image.width}x{image.height} pixels;"
                f" at most {max_pixels} pixels are decoded"
            )
        try:
            # Phone cameras store portraits sideways plus an EXIF rotation;
            # the detector only finds upright faces.
            upright = ImageOps.exif_transpose(image)
            rgb = upright.convert("RGB")
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise InvalidImage("the image data is corrupt or truncated") from exc
    return DecodedImage(pixels=np.asarray(rgb, dtype=np.uint8))


def similarity(distance: float) -> float:
    """Map a descriptor distance to Rekognition's 0-100 similarity scale.

    ``100 / (1 + exp(15 * (distance - 0.5)))``: a logistic centred on 0.5 and
    steep enough that the scale's landmarks fall where dlib's distances do.
    The same face photographed twice (distance ~0.1) scores ~99.7; Rekognition's
    default match threshold of 80 sits at distance 0.41; dlib's own
    same-person cut of 0.6 scores ~18, and different people (median distance
    ~0.75) score ~2.
    """
    exponent = 15.0 * (distance - 0.5)
    if exponent > 700.0:  # math.exp overflows past ~709; the limit is 0 anyway
        return 0.0
    return 100.0 / (1.0 + math.exp(exponent))


def distances(descriptor: Descriptor, others: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Euclidean distances from one descriptor to each row of ``others`` (n, 128)."""
    if len(others) == 0:
        return np.empty(0, dtype=np.float64)
    result: npt.NDArray[np.float64] = np.linalg.norm(others - descriptor, axis=1)
    return result


def _detector_confidence(score: float) -> float:
    return 100.0 / (1.0 + math.exp(-4.0 * score))


# The 5-point predictor's parts, in its fixed order: parts 0-1 are the outer
# and inner corner of the eye on the image's right, 2-3 the outer and inner
# corner of the eye on the image's left, 4 the base of the nose.
_PART_NAMES = ("rightEyeRight", "rightEyeLeft", "leftEyeLeft", "leftEyeRight", "nose")


def _landmarks(shape: dlib.full_object_detection) -> tuple[Landmark, ...]:
    parts = [(float(shape.part(i).x), float(shape.part(i).y)) for i in range(5)]
    named = [Landmark(name, x, y) for name, (x, y) in zip(_PART_NAMES, parts, strict=True)]
    # Rekognition's default landmarks name the eye centres; the midpoint of
    # the two measured corners is where the eye's centre is.
    (rrx, rry), (rlx, rly), (llx, lly), (lrx, lry), _ = parts
    return (
        Landmark("eyeLeft", (llx + lrx) / 2, (lly + lry) / 2),
        Landmark("eyeRight", (rlx + rrx) / 2, (rly + rry) / 2),
        *named,
    )


class FaceEngine:
    """dlib's detector, shape predictor and ResNet descriptor model, loaded once.

    Safe to share between threads: dlib's objects are not (concurrent
    detection crashes the interpreter), so every call into them holds one lock.

    Run it in a worker thread, not on an event loop. The detector releases the
    GIL while it scans; the descriptor network does not, so each ``describe``
    holds the GIL for its whole ~90 ms and other threads, an event loop
    included, run between descriptors but not during one.
    """

    def __init__(self, models: Path | None = None) -> None:
        directory = models if models is not None else models_dir()
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(
            str(directory / "shape_predictor_5_face_landmarks.dat")
        )
        self._net = dlib.face_recognition_model_v1(
            str(directory / "dlib_face_recognition_resnet_model_v1.dat")
        )
        self._lock = threading.Lock()

    def detect(self, image: DecodedImage) -> list[Face]:
        """Every frontal face in the image, largest first.

        Tries the image as it is, then (if nothing was found and the image is
        at most ``UPSAMPLE_MAX_PIXELS``) once more upsampled, to find faces
        smaller than the detector's 80x80 pixel window.
        """
        passes = (0, 1) if image.width * image.height <= UPSAMPLE_MAX_PIXELS else (0,)
        for upsample in passes:
            with self._lock:
                rects, scores, _ = self._detector.run(image.pixels, upsample, DETECTION_THRESHOLD)
                shapes = [self._predictor(image.pixels, rect) for rect in rects]
            if len(rects) > 0:
                break
        faces = [
            Face(
                box=Box(left=rect.left(), top=rect.top(), width=rect.width(), height=rect.height()),
                confidence=_detector_confidence(score),
                landmarks=_landmarks(shape),
            )
            for rect, score, shape in zip(rects, scores, shapes, strict=True)
        ]
        faces.sort(key=lambda face: face.box.area, reverse=True)
        return faces

    def describe(self, image: DecodedImage, face: Face) -> Descriptor:
        """The 128-d descriptor of a face that ``detect`` found in this image."""
        box = face.box
        # dlib's rectangles are inclusive: right = left + width - 1.
        rect = dlib.rectangle(box.left, box.top, box.left + box.width - 1, box.top + box.height - 1)
        with self._lock:
            # The predictor is deterministic, so re-fitting the shape from the
            # box gives back exactly the landmarks detect() reported.
            shape = self._predictor(image.pixels, rect)
            vector = self._net.compute_face_descriptor(image.pixels, shape)
        return np.asarray(vector, dtype=np.float64)
