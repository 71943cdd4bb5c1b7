"""jcs.dumps writes exactly what rfc8785.dumps writes, and refuses what it refuses."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.audit import chain, jcs
from gateway.audit.records import AuditRecord, EventType

# Unicode of every kind, lone surrogates included (both encoders must refuse them), and
# keys outside ASCII, where the UTF-16 order differs from the code point order
# (U+E000..U+FFFF against astral characters).
texts = st.text(st.characters(codec=None), max_size=12) | st.sampled_from(
    ["", "\ue000", "\U0001f600", "\uffff", "\x7f", "\u2028", '"\\\b\f\n\r\t\x00\x1f']
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.integers(min_value=-(2**53) - 2, max_value=2**53 + 2)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.floats(min_value=-1e-5, max_value=1e-5)
    | st.floats(min_value=1e20, max_value=1e22)
    | texts
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(texts, inner, max_size=5)
    ),
    max_leaves=40,
)


def _rfc8785(value: Any) -> bytes | type[BaseException]:
    try:
        return rfc8785.dumps(value)
    except ValueError as exc:  # CanonicalizationError, or UnicodeEncodeError sorting keys
        return type(exc)


@settings(max_examples=1500, deadline=None)
@given(values)
def test_same_bytes_as_rfc8785(value: Any) -> None:
    expected = _rfc8785(value)
    if isinstance(expected, bytes):
        assert jcs.dumps(value) == expected
    else:
        with pytest.raises(ValueError):
            jcs.dumps(value)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.text(max_size=8), values, max_size=6),
    st.lists(st.text(max_size=40), max_size=3),
    st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)),
)
def test_records_encode_as_rfc8785_encodes_them(
    detail: dict[str, Any], reasons: list[str], latency: float | None
) -> None:
    record = AuditRecord(
        time=datetime(2026, 3, 1, 9, 30, 0, 123456, tzinfo=UTC),
        request_id="req-1",
        event_type=EventType.OUTCOME,
        reason_codes=reasons,
        latency_ms=latency,
        detail=detail,
    )
    try:  # chain.canonical_bytes before this change, verbatim
        fields = record.model_dump(mode="json", exclude_none=True)
        fields["time"] = chain.format_time(record.time)
        fields["seq"] = 3
        expected: bytes | type[BaseException] = rfc8785.dumps(fields)
    except ValueError as exc:  # pydantic refuses a lone surrogate before rfc8785 does
        expected = type(exc)
    if isinstance(expected, bytes):
        assert chain.canonical_bytes(3, record) == expected
    else:
        with pytest.raises(ValueError):
            chain.canonical_bytes(3, record)


@pytest.mark.parametrize(
    "value",
    [math.nan, math.inf, 2**53, -(2**53), {1: "a"}, {"a": object()}, b"bytes", "\ud800"],
)
def test_refuses_what_rfc8785_refuses(value: Any) -> None:
    with pytest.raises(rfc8785.CanonicalizationError):
        rfc8785.dumps(value)
    with pytest.raises(rfc8785.CanonicalizationError):
        jcs.dumps(value)


def test_utf16_key_order() -> None:
    # U+E000 sorts before U+1F600 by code point, after it by UTF-16 code units.
    value = {"\U0001f600": 1, "\ue000": 2, "a": 3}
    assert jcs.dumps(value) == rfc8785.dumps(value)
    assert jcs.dumps(value).index("\U0001f600".encode()) < jcs.dumps(value).index("\ue000".encode())
