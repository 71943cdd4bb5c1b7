"""The one JSON reader: what two readers could read apart is refused, the rest is read."""

from __future__ import annotations

import pytest

from gateway import strict_json
from gateway.errors import MalformedRequest

REFUSED = {
    "key_twice": b'{"a": 1, "a": 2}',
    "key_twice_deep": b'{"a": [{"b": {"c": 1, "c": 1}}]}',
    "not_utf8": '{"a": "\u00e9"}'.encode("utf-16"),
    "nan": b'{"a": NaN}',
    "infinity": b'{"a": -Infinity}',
    "out_of_range": b'{"a": 1e999}',
    "too_deep": b'{"a": ' + b"[" * 33 + b"]" * 33 + b"}",
    "very_deep": b"[" * 100_000 + b"]" * 100_000,
    "lone_surrogate_value": b'{"a": "x\\udc00"}',
    "lone_surrogate_key": b'{"\\ud800": 1}',
    "huge_integer": b'{"a": ' + b"9" * 5000 + b"}",
    "byte_order_mark": b"\xef\xbb\xbf{}",
    "trailing_data": b"{} {}",
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_ambiguous_or_unreadable_json_is_refused(case: str) -> None:
    with pytest.raises(MalformedRequest):
        strict_json.loads(REFUSED[case])


def test_a_byte_order_mark_is_refused_as_json_loads_refused_it() -> None:
    with pytest.raises(MalformedRequest, match="Unexpected UTF-8 BOM"):
        strict_json.loads(b"\xef\xbb\xbf{}")


def test_plain_json_is_read() -> None:
    text = b'{"a": [1, 2.5, {"b": "\\ud83d\\ude00"}], "c": null, "d": true}'
    assert strict_json.loads(text) == {"a": [1, 2.5, {"b": "\U0001f600"}], "c": None, "d": True}
    nested = b"[" * 32 + b"]" * 32
    assert strict_json.loads(nested) is not None


def test_an_object_is_required_where_one_is_expected() -> None:
    assert strict_json.load_object(b"") == {}
    with pytest.raises(MalformedRequest):
        strict_json.load_object(b"[1]")
