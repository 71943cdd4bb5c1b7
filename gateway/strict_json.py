"""The one JSON reader for every request body, vendor protocols and management API alike.

The gateway judges what it parsed; whoever reads the same bytes after it (the vendor, a
proxy, a log tool) must not be able to read something else. So a body is refused, never
guessed at, when two readers could disagree on it or when it cannot be read to the end:

- a key given twice in one object, at any depth (RFC 8259 leaves the winner to the reader:
  Python keeps the last, others the first);
- bytes that are not UTF-8 (``json.loads`` would guess UTF-16 or UTF-32 from a BOM);
- ``NaN``, ``Infinity`` and ``-Infinity``, which are not JSON, and numbers out of a double's
  range;
- nesting deeper than `MAX_DEPTH` (no request any vendor defines nests past six; a
  100,000-deep array would otherwise end in a RecursionError);
- a lone UTF-16 surrogate (``"\\ud800"``), which no UTF-8 encoder, database or vendor can
  store;
- an integer of more digits than Python converts.

Every refusal is a MalformedRequest: a 400 in the caller's protocol, on record.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from gateway.errors import MalformedRequest

MAX_DEPTH = 32

# Only a \u escape can put a surrogate into a decoded string: strict UTF-8 refuses encoded
# ones. Paired escapes (an emoji) are legitimate, so a match only means "walk and look".
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class _Duplicate(ValueError):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Duplicate(key)
            seen.add(key)
    return document


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e999: valid JSON text, but no reader agrees on its value
        raise ValueError(f"{text[:32]} is out of range")
    return value


# json.loads with hooks builds a decoder and its scanner on every call; one serves every
# request (the stdlib shares its own default decoder the same way, across threads).
_DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_constant=_constant, parse_float=_float)


def loads(data: bytes) -> Any:
    """The JSON document in `data`, or MalformedRequest (see the module's rules)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedRequest("the request body is not UTF-8") from exc
    try:
        if text.startswith("\ufeff"):  # refused with the message json.loads gave
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        document = _DECODER.decode(text)
    except _Duplicate as exc:
        raise MalformedRequest(f"the key {_shown(str(exc))} is given twice in one object") from exc
    except RecursionError as exc:
        raise MalformedRequest(f"the request body nests deeper than {MAX_DEPTH} levels") from exc
    except ValueError as exc:  # JSONDecodeError, a constant, an integer too long to convert
        raise MalformedRequest(f"the request body is not valid JSON: {_shown(str(exc))}") from exc
    # No backslash, no escape: a byte search (memchr) spares the regular expression's walk
    # over the whole body (9 us for a 20 KB image's, against under 1).
    _check(document, surrogates=b"\\" in data and _SURROGATE_ESCAPE.search(data) is not None)
    return document


def load_object(data: bytes) -> dict[str, Any]:
    """`loads` for a body that must be a JSON object; an empty body is the empty object."""
    document = loads(data) if data else {}
    if not isinstance(document, dict):
        raise MalformedRequest("the request body must be a JSON object")
    return document


def _check(document: Any, *, surrogates: bool) -> None:
    """Depth and (when the text could hold one) lone surrogates, walked without recursion."""
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            items: list[Any] = list(value.values())
            if surrogates:
                items += list(value.keys())
        elif isinstance(value, list):
            items = value
        else:
            if surrogates and isinstance(value, str) and _LONE_SURROGATE.search(value):
                raise MalformedRequest("the request body holds a lone UTF-16 surrogate")
            continue
        if depth > MAX_DEPTH:
            raise MalformedRequest(f"the request body nests deeper than {MAX_DEPTH} levels")
        stack.extend((item, depth + 1) for item in items)


def _shown(text: str) -> str:
    """A caller's text inside an error message: bounded, and printable in any encoding."""
    return repr(text[:64]).encode("ascii", "backslashreplace").decode("ascii")
