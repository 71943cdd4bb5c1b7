"""Typed, validated access to a Rekognition request's JSON members.

Each getter checks a member against the constraint Rekognition's API
reference states for it (type, range, length, pattern) and raises
``InvalidParameterException`` naming the member, so a client learns which
member is wrong. Members a request does not use are ignored, as AWS does.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping

from refvendor.errors import ImageTooLargeException, InvalidParameterException

# Rekognition's limit for Image.Bytes, after base64 decoding.
MAX_IMAGE_BYTES = 5 * 1024 * 1024

COLLECTION_ID = re.compile(r"[a-zA-Z0-9_.\-]{1,255}")
EXTERNAL_IMAGE_ID = re.compile(r"[a-zA-Z0-9_.\-:]{1,255}")
FACE_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
USER_ID = re.compile(r"[a-zA-Z0-9_.\-:]{1,128}")


class Params:
    """The members of one request's JSON object."""

    def __init__(self, members: Mapping[str, object]) -> None:
        self._members = members

    def optional_string(self, name: str, *, pattern: re.Pattern[str]) -> str | None:
        value = self._members.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or pattern.fullmatch(value) is None:
            raise InvalidParameterException(f"{name} must be a string matching {pattern.pattern}")
        return value

    def required_string(self, name: str, *, pattern: re.Pattern[str]) -> str:
        value = self.optional_string(name, pattern=pattern)
        if value is None:
            raise InvalidParameterException(f"{name} is required")
        return value

    def integer(self, name: str, *, default: int, minimum: int, maximum: int) -> int:
        value = self._members.get(name)
        if value is None:
            return default
        # bool is an int to Python, never to JSON's producers.
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidParameterException(f"{name} must be an integer")
        if not minimum <= value <= maximum:
            raise InvalidParameterException(f"{name} must be between {minimum} and {maximum}")
        return value

    def percent(self, name: str, *, default: float) -> float:
        value = self._members.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidParameterException(f"{name} must be a number")
        if not 0 <= value <= 100:
            raise InvalidParameterException(f"{name} must be between 0 and 100")
        return float(value)

    def choice(self, name: str, *, choices: tuple[str, ...], default: str) -> str:
        value = self._members.get(name)
        if value is None:
            return default
        if not isinstance(value, str) or value not in choices:
            raise InvalidParameterException(f"{name} must be one of {', '.join(choices)}")
        return value

    def choice_list(self, name: str, *, choices: tuple[str, ...]) -> list[str]:
        value = self._members.get(name)
        if value is None:
            return []
        if not isinstance(value, list) or any(item not in choices for item in value):
            raise InvalidParameterException(
                f"{name} must be a list of values from {', '.join(choices)}"
            )
        return [str(item) for item in value]

    def string_list(
        self, name: str, *, pattern: re.Pattern[str], required: bool = False, max_items: int
    ) -> list[str] | None:
        value = self._members.get(name)
        if value is None:
            if required:
                raise InvalidParameterException(f"{name} is required")
            return None
        if not isinstance(value, list) or not 1 <= len(value) <= max_items:
            raise InvalidParameterException(f"{name} must be a list of 1 to {max_items} items")
        for item in value:
            if not isinstance(item, str) or pattern.fullmatch(item) is None:
                raise InvalidParameterException(
                    f"{name} items must be strings matching {pattern.pattern}"
                )
        return list(value)

    def image(self, name: str) -> bytes:
        """The decoded ``Bytes`` of an ``Image`` member; S3 objects are refused."""
        value = self._members.get(name)
        if value is None:
            raise InvalidParameterException(f"{name} is required")
        if not isinstance(value, Mapping):
            raise InvalidParameterException(f"{name} must be an object with Bytes")
        if "S3Object" in value:
            raise InvalidParameterException(
                f"{name}.S3Object is not supported by the reference vendor; send {name}.Bytes"
            )
        encoded = value.get("Bytes")
        if not isinstance(encoded, str) or not encoded:
            raise InvalidParameterException(f"{name}.Bytes is required")
        # Checked before decoding, so an oversized body costs no decoded copy.
        if len(encoded) * 3 // 4 > MAX_IMAGE_BYTES + 2:
            raise ImageTooLargeException(
                f"{name}.Bytes exceeds the maximum image size of {MAX_IMAGE_BYTES} bytes"
            )
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidParameterException(f"{name}.Bytes is not valid base64") from exc
        if len(data) > MAX_IMAGE_BYTES:
            raise ImageTooLargeException(
                f"{name}.Bytes exceeds the maximum image size of {MAX_IMAGE_BYTES} bytes"
            )
        return data
