"""gateway/vendors/b64.py decodes exactly as `base64.b64decode(text, validate=True)`: the
same bytes, the same text refused, in every SIMD path pybase64 can take here."""

from __future__ import annotations

import base64
import binascii
import itertools
import random
from collections.abc import Iterator

import pybase64
import pytest

from gateway.vendors.b64 import b64decode

try:
    from pybase64._pybase64 import (  # private: which SIMD code decodes
        _get_simd_flags_runtime,
        _get_simd_path,
        _set_simd_path,
    )
except ImportError:  # the pure-Python fallback: no SIMD path to choose
    PATHS: list[int | None] = [None]
else:
    _runtime = _get_simd_flags_runtime()
    PATHS = [0] + [1 << bit for bit in range(32) if _runtime & (1 << bit)]


def _reference(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _ours(text: str) -> bytes | None:
    try:
        return b64decode(text)
    except ValueError:
        return None


@pytest.fixture(params=PATHS, ids=lambda path: f"simd-{path}")
def simd_path(request: pytest.FixtureRequest) -> Iterator[None]:
    path = request.param
    if path is None:
        yield
        return
    before = _get_simd_path()
    _set_simd_path(path)
    try:
        yield
    finally:
        _set_simd_path(before)


def _corrupted(rng: random.Random) -> Iterator[str]:
    odd = ["=", "==", "===", "\n", " ", "\t", "-", "_", ".", "\x00", "é", "\ud800", "A=", "AB="]
    for _ in range(800):
        size = rng.choice([rng.randrange(0, 64), rng.randrange(0, 4000), 20_000])
        text = base64.b64encode(rng.randbytes(size)).decode()
        spot = rng.randrange(len(text) + 1)
        yield text
        yield text[:spot] + rng.choice(odd) + text[spot:]  # a character inserted anywhere
        yield text[:spot] + rng.choice(odd) + text[spot + 1 :]  # or replacing one
        yield text[: max(0, len(text) - rng.randrange(1, 4))]  # a cut quantum
        yield text + rng.choice(["=", "==", "A", "AA==", "\n"])  # past the end


@pytest.mark.usefixtures("simd_path")
def test_short_texts_decode_as_the_standard_library_does() -> None:
    # Every text of up to 7 characters over an alphabet that holds each way to go wrong.
    for length in range(8):
        for chars in itertools.product("A/=\n", repeat=length):
            text = "".join(chars)
            assert _ours(text) == _reference(text), repr(text)


@pytest.mark.usefixtures("simd_path")
def test_long_and_corrupted_texts_decode_as_the_standard_library_does() -> None:
    for text in _corrupted(random.Random(17)):
        assert _ours(text) == _reference(text), (len(text), repr(text[-8:]))


def test_text_pybase64_refuses_is_still_accepted_as_before() -> None:
    # Padding after a whole quantum: the standard library accepts it, pybase64 does not,
    # and the fallback keeps it accepted.
    with pytest.raises(ValueError):
        pybase64.b64decode("AAAA=", validate=True)
    assert b64decode("AAAA=") == base64.b64decode("AAAA=", validate=True) == b"\0\0\0"
