"""Real face photos as JPEG bytes, for tests and the demo; all from scikit-image's bundled data.

- ``astronaut_jpeg()``: Eileen Collins, NASA portrait (public domain), one face.
- ``astronaut_variant_jpeg()``: the same photo cropped to her head and
  enlarged: a different image of the same face (descriptor distance ~0.07 to
  ``astronaut_jpeg()``, similarity ~99.8), not an independent photo of her.
- ``lfw_face_jpeg(index)``: face ``index`` (0-99) of scikit-image's subset of
  Labeled Faces in the Wild, upscaled from 25x25 to 150x150 so that the
  detector can find it. ``detectable_lfw_indices()`` are those in which it
  does. The subset holds several photos of some people, so
  ``distinct_lfw_indices()`` picks detectable faces that are pairwise at
  descriptor distance >= 0.6 (similarity <= 18): clearly different people.
- ``no_face_jpeg()``: a cup of coffee.
- ``crowd_jpeg(count)``: ``count`` faces of different people (LFW, see above) tiled
  on a grey ground: a crowd photo whose true face count is known.

The bytes are encoded once and cached; they are immutable, so sharing is safe.
The index tuples were measured with the engine, and tests/refvendor measure
them again, so that another dlib or JPEG codec cannot silently change them.
"""

from __future__ import annotations

import functools
import io
import math

import numpy as np
import numpy.typing as npt
import skimage.data
from PIL import Image

LFW_FACES = range(100)  # lfw_subset() holds 100 faces, then 100 non-faces

_DETECTABLE_LFW: tuple[int, ...] = (
    0, 1, 2, 3, 5, 6, 7, 8, 10, 11, 12, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23,
    24, 25, 26, 29, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45,
    46, 47, 48, 49, 50, 51, 52, 53, 55, 56, 57, 58, 60, 61, 62, 63, 64, 65, 66,
    69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 83, 84, 85, 86, 87, 88,
    89, 90, 91, 92, 93, 94, 95, 96, 97, 98, 99,
)  # fmt: skip

_DISTINCT_LFW: tuple[int, ...] = (
    0, 1, 2, 5, 6, 7, 11, 12, 15, 17, 18, 20, 22, 26, 31, 32, 35, 41, 42, 45, 46,
    50, 51, 65, 66, 72, 74, 80, 83, 84, 85, 88, 91, 92, 93, 98,
)  # fmt: skip


def detectable_lfw_indices() -> tuple[int, ...]:
    """The LFW faces (indices into ``lfw_face_jpeg``) in which the engine finds a face."""
    return _DETECTABLE_LFW


def distinct_lfw_indices() -> tuple[int, ...]:
    """Detectable LFW faces of clearly different people: pairwise distance >= 0.6."""
    return _DISTINCT_LFW


_LFW_SIDE = 150
# The astronaut's head spans about x 180-265, y 85-170 in the 512x512 original.
_VARIANT_CROP = (120, 30, 360, 270)
_VARIANT_SIDE = 300


# scikit-image's data loaders carry no annotations, hence the type: ignores below.


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@functools.cache
def astronaut_jpeg() -> bytes:
    return _jpeg(Image.fromarray(skimage.data.astronaut()))  # type: ignore[no-untyped-call]


@functools.cache
def astronaut_variant_jpeg() -> bytes:
    original = Image.fromarray(skimage.data.astronaut())  # type: ignore[no-untyped-call]
    closeup = original.crop(_VARIANT_CROP).resize(
        (_VARIANT_SIDE, _VARIANT_SIDE), Image.Resampling.LANCZOS
    )
    return _jpeg(closeup)


@functools.cache
def _lfw_subset() -> npt.NDArray[np.float64]:
    subset: npt.NDArray[np.float64] = skimage.data.lfw_subset()  # type: ignore[no-untyped-call]
    return subset


@functools.cache
def lfw_face_jpeg(index: int) -> bytes:
    """LFW face ``index`` (0-99) as a 150x150 RGB JPEG; see ``detectable_lfw_indices``."""
    if index not in LFW_FACES:
        raise ValueError(f"LFW face index must be in 0-99, not {index}")
    gray = np.round(_lfw_subset()[index] * 255).astype(np.uint8)
    upscaled = Image.fromarray(gray).resize((_LFW_SIDE, _LFW_SIDE), Image.Resampling.BICUBIC)
    return _jpeg(upscaled.convert("RGB"))


@functools.cache
def no_face_jpeg() -> bytes:
    return _jpeg(Image.fromarray(skimage.data.coffee()))  # type: ignore[no-untyped-call]


@functools.cache
def crowd_jpeg(count: int, *, side: int = _LFW_SIDE, gap: int = 20, first: int = 0) -> bytes:
    """``count`` distinct LFW faces, each ``side`` pixels square, in a grid on grey.

    Faces are taken from ``distinct_lfw_indices()`` starting at position ``first`` and
    wrapping around, so up to 36 faces are all of different people.
    """
    faces = distinct_lfw_indices()
    columns = max(1, math.ceil(math.sqrt(count)))
    rows = max(1, math.ceil(count / columns))
    canvas = Image.new("RGB", (columns * (side + gap) + gap, rows * (side + gap) + gap), "#808080")
    for position in range(count):
        index = faces[(first + position) % len(faces)]
        face = Image.open(io.BytesIO(lfw_face_jpeg(index))).resize((side, side))
        column, row = position % columns, position // columns
        canvas.paste(face, (gap + column * (side + gap), gap + row * (side + gap)))
    return _jpeg(canvas)
