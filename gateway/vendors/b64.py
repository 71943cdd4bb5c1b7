"""Strict base64, as the standard library reads it, at SIMD speed: the probe images.

Every image a vendor request carries as base64 text is decoded by `b64decode` before it is
inspected and digested. The standard library's strict decoder (`base64.b64decode(text,
validate=True)`: a regular expression over the text, then binascii) took about 80 us of CPU
for a 20 KB image, the most of parsing a SearchFacesByImage; pybase64 (libbase64, SIMD)
decodes it in about 2 us.
"""

from __future__ import annotations

import base64

import pybase64


def b64decode(text: str) -> bytes:
    """`base64.b64decode(text, validate=True)`, exactly: the same bytes for every text it
    accepts, ValueError (binascii.Error) for every text it refuses.

    pybase64 accepts a subset of that text and decodes it to the same bytes; what it
    refuses goes to the standard library, which has the last word: it accepts some text
    pybase64 does not (padding after a whole quantum, "AAAA="), and such text is accepted as
    it was. tests/vendors/test_b64.py holds the two to that, in each SIMD path pybase64 can
    take on the machine."""
    try:
        return pybase64.b64decode(text, validate=True)
    except ValueError:
        return base64.b64decode(text, validate=True)
