"""Probe identity: which picture an image is, whatever its bytes.

The probe rules (one face searched under many cases) must follow the picture, not its
encoding: the SHA-256 of the bytes changes with one byte appended, a re-save at another JPEG
quality or a conversion to PNG, while the face does not. An image's identity is a
perceptual hash of its decoded, upright pixels: the 8 x 8 lowest frequencies of the DCT of
the image shrunk to 32 x 32 grey, each bit telling whether a coefficient is above their
median (the "pHash" of Zauner 2010, as the `imagehash` library computes it). A re-encoded
picture flips a few of its 64 bits; a different picture differs in about half.

An exact key on 64 bits would still miss a re-encoding that flips one bit, so the activity
windows key a probe on `identity_keys`: the hash cut into IDENTITY_BANDS bands, one key per
band. Two images are counted as one probe when any band matches, which holds for every
re-encoding that flips fewer bits than there are bands (measured on real faces: see
docs/patterns.md). A false match between two pictures errs towards refusing.

The identity is a digest of pixels: it is recorded and counted, never the pixels themselves.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from PIL import Image

from gateway.context.face_detection import GreyImage

_SIDE = 32  # the image is shrunk to this before the DCT
_LOW = 8  # the 8 x 8 lowest frequencies make the 64 bits
IDENTITY_BANDS = 4  # a probe matches on any of 4 bands of 16 bits
IDENTITY_PREFIX = "phash:"


@functools.cache
def _dct_matrix() -> np.ndarray[Any, np.dtype[np.float64]]:
    # The orthonormal DCT-II as a matrix, so the 2-D transform of a 32 x 32 block is two
    # products: numpy alone, where `imagehash` would bring scipy and PyWavelets into the
    # gateway for this one transform.
    k = np.arange(_SIDE)[:, np.newaxis]
    n = np.arange(_SIDE)[np.newaxis, :]
    matrix: np.ndarray[Any, np.dtype[np.float64]] = np.sqrt(2 / _SIDE) * np.cos(
        np.pi * (2 * n + 1) * k / (2 * _SIDE)
    )
    matrix[0] /= np.sqrt(2)
    return matrix


def perceptual_identity(grey: GreyImage) -> str:
    """The identity of an upright grey image: "phash:" and 16 hex digits."""
    small = Image.fromarray(grey).resize((_SIDE, _SIDE), Image.Resampling.LANCZOS)
    pixels = np.asarray(small, dtype=np.float64)
    dct = _dct_matrix()
    low = (dct @ pixels @ dct.T)[:_LOW, :_LOW]
    bits = (low > np.median(low)).flatten()
    value = int("".join("1" if b else "0" for b in bits), 2)
    return f"{IDENTITY_PREFIX}{value:016x}"


def image_identity(data: bytes) -> str:
    """The identity of JPEG or PNG bytes, decoded as probe inspection decodes them.

    Raises what `decode_probe` raises (InvalidImage, PayloadTooLarge, MalformedRequest).
    This is the one place an image's identity comes from: probe inspection uses the pixels
    it has already decoded, through `perceptual_identity`.
    """
    from gateway.context.inspection import decode_probe

    # The hash reads 32 x 32 pixels: decoding at a tenth of a megapixel is plenty.
    return perceptual_identity(decode_probe(data, scan_pixels=100_000).grey)


def identity_keys(identity: str) -> tuple[str, ...]:
    """The keys two images share when their identities are near: one per band of bits."""
    if not identity.startswith(IDENTITY_PREFIX):
        return (identity,)  # a digest of bytes (no inspection): matched exactly
    digits = identity[len(IDENTITY_PREFIX) :]
    width = len(digits) // IDENTITY_BANDS
    return tuple(
        f"{IDENTITY_PREFIX}{band}:{digits[band * width : (band + 1) * width]}"
        for band in range(IDENTITY_BANDS)
    )
