"""RFC 8785 (JSON Canonicalization Scheme) encoding, byte for byte what the ``rfc8785``
package writes, at a fraction of its CPU: every audit entry is encoded once on the append
path (``chain.canonical_bytes``), and ``rfc8785.dumps`` in pure Python, one ``write`` per
token, cost 75 us of an 80 us canonical encoding (bench/append_throughput.py).

What makes it faster, and why each shortcut gives the same bytes:

* Strings go through ``json``'s C string encoder (``ensure_ascii=False``). It escapes
  exactly what RFC 8785 3.2.2.2 escapes, the way ``rfc8785`` does: ``"`` and ``\\``,
  ``\\b \\f \\n \\r \\t`` by their short forms, every other character below U+0020 as
  ``\\u00xx`` in lower-case hex, nothing else. A lone surrogate passes it and is refused
  when the whole text is encoded to UTF-8, as ``rfc8785`` refuses it.
* Object keys are ordered by their UTF-16 code units (3.2.3). For keys that are all ASCII,
  which every key the gateway writes is, that is Python's own string order; any other key
  set is sorted by its UTF-16BE encoding, as ``rfc8785`` sorts every object.
* Numbers: integers as decimal within +/-(2**53 - 1), refused beyond (``rfc8785``'s
  domain); floats by ``rfc8785`` itself (ECMAScript's number to string), which is rare
  enough on this path not to matter.

Anything else (a type JSON has no form for, a non-string key, NaN, infinity, an integer
out of range, a surrogate) raises ``rfc8785.CanonicalizationError``, a ValueError, as
``rfc8785.dumps`` does. ``tests/audit/test_jcs.py`` compares the two on generated values.
"""

from __future__ import annotations

import json.encoder
from collections.abc import Callable
from typing import Any, Final

import rfc8785

_INT_MAX: Final = 2**53 - 1
# The C encoder where CPython has it (json.encoder picks it), as json.dumps uses.
_encode_string: Final[Callable[[str], str]] = json.encoder.encode_basestring


def dumps(value: Any) -> bytes:
    """The RFC 8785 bytes of ``value`` (None, bool, int, float, str, list, tuple, dict)."""
    parts: list[str] = []
    _encode(value, parts)
    try:
        return "".join(parts).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise rfc8785.CanonicalizationError("input contains non-UTF-8 codepoints") from exc


def _utf16(key: str) -> bytes:
    return key.encode("utf-16be", "surrogatepass")


def _float(value: float) -> str:
    text = float.__repr__(value)
    if "e" in text or "n" in text or value == 0:
        # Exponents, -0.0, NaN and infinity: rfc8785's rules, or its refusal.
        return rfc8785.dumps(value).decode("ascii")
    # Without an exponent Python's shortest round-trip digits are ECMAScript's, written
    # the same way but for a trailing ".0".
    return text[:-2] if text.endswith(".0") else text


def _encode(value: Any, parts: list[str]) -> None:
    # Exact types first (all a model_dump(mode="json") holds), then subclasses, in
    # rfc8785's order: bool before int, str before the containers.
    kind = type(value)
    if kind is str:
        parts.append(_encode_string(value))
    elif kind is dict:
        _encode_object(value, parts)
    elif value is None:
        parts.append("null")
    elif value is True:
        parts.append("true")
    elif value is False:
        parts.append("false")
    elif kind is int:
        if not -_INT_MAX <= value <= _INT_MAX:
            raise rfc8785.IntegerDomainError(value)
        parts.append(int.__repr__(value))
    elif kind is list or kind is tuple:
        _encode_array(value, parts)
    elif kind is float:
        parts.append(_float(value))
    elif isinstance(value, str):
        parts.append(_encode_string(value))
    elif isinstance(value, bool):
        parts.append("true" if value else "false")
    elif isinstance(value, int):
        _encode(int(value), parts)
    elif isinstance(value, float):
        parts.append(_float(float(value)))
    elif isinstance(value, list | tuple):
        _encode_array(value, parts)
    elif isinstance(value, dict):
        _encode_object(value, parts)
    else:
        raise rfc8785.CanonicalizationError(f"unsupported type: {type(value)}")


def _encode_array(value: list[Any] | tuple[Any, ...], parts: list[str]) -> None:
    if not value:
        parts.append("[]")
        return
    parts.append("[")
    for item in value:
        _encode(item, parts)
        parts.append(",")
    parts[-1] = "]"


def _encode_object(value: dict[Any, Any], parts: list[str]) -> None:
    if not value:
        parts.append("{}")
        return
    keys = list(value)
    for key in keys:
        if not isinstance(key, str):
            raise rfc8785.CanonicalizationError("object keys must be strings")
    if "".join(keys).isascii():
        keys.sort()
    else:
        keys.sort(key=_utf16)
    parts.append("{")
    for key in keys:
        parts.append(_encode_string(key))
        parts.append(":")
        _encode(value[key], parts)
        parts.append(",")
    parts[-1] = "}"
