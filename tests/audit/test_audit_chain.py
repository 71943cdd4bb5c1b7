"""The entry hash: canonical bytes per RFC 8785, chained with SHA-256. No database."""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import rfc8785

from gateway.audit import chain
from gateway.audit.records import AuditRecord, EventType

FULL: dict[str, Any] = {
    "time": datetime(2026, 3, 1, 9, 30, 0, 123456, tzinfo=UTC),
    "request_id": "req-0001",
    "event_type": EventType.OUTCOME,
    "agency": "metro-pd",
    "officer": "officer-17",
    "key_id": "AKIAFACEGATE0001",
    "client_address": "10.0.0.7",
    "vendor": "rekognition",
    "operation": "SearchFacesByImage",
    "operation_kind": "identify",
    "collection": "mugshots-2026",
    "purpose": "investigation",
    "case_number": "2026-000123",
    "offense": "robbery",
    "legal_basis": "StPO 98c",
    "warrant_id": "W-42",
    "decision": "allow",
    "reason_codes": ["warrant_valid", "within_limits"],
    "obligations": {"threshold_floor": 0.9, "max_results": 5},
    "policy_revision": "sha256:abc",
    "probe_digests": ["a" * 64],
    "upstream_status": 200,
    "match_count": 3,
    "top_similarity": 0.97,
    "latency_ms": 12.5,
    "detail": {"note": "Zoë", "nested": {"k": [1, 2.5, None, True]}},
}

# For every field, a different value of the right type.
CHANGED: dict[str, Any] = {
    "time": FULL["time"] + timedelta(microseconds=1),
    "request_id": "req-0002",
    "event_type": EventType.DECISION,
    "agency": "state-police",
    "officer": "officer-18",
    "key_id": "AKIAFACEGATE0002",
    "client_address": "10.0.0.8",
    "vendor": "compreface",
    "operation": "DetectFaces",
    "operation_kind": "detect",
    "collection": "mugshots-2025",
    "purpose": "missing-person",
    "case_number": "2026-000124",
    "offense": "burglary",
    "legal_basis": "StPO 100h",
    "warrant_id": "W-43",
    "decision": "deny",
    "reason_codes": ["warrant_valid"],
    "obligations": {"threshold_floor": 0.95, "max_results": 5},
    "policy_revision": "sha256:abd",
    "probe_digests": ["b" * 64],
    "upstream_status": 500,
    "match_count": 4,
    "top_similarity": 0.96,
    "latency_ms": 12.25,
    "detail": {"note": "Zoe", "nested": {"k": [1, 2.5, None, True]}},
}


def test_every_record_field_has_a_changed_value() -> None:
    # A new field in the contract must be added here, or its changes go untested.
    assert set(CHANGED) == set(AuditRecord.model_fields) == set(FULL)


def test_canonical_bytes_match_rfc8785_by_hand() -> None:
    record = AuditRecord(
        time=datetime(2026, 3, 1, 9, 30, 0, 5, tzinfo=UTC),
        request_id="req-1",
        event_type=EventType.DECISION,
        agency="metro-pd",
        reason_codes=["ok"],
        top_similarity=0.5,
    )
    expected = (
        b'{"agency":"metro-pd","detail":{},"event_type":"decision","obligations":{},'
        b'"probe_digests":[],"reason_codes":["ok"],"request_id":"req-1","seq":7,'
        b'"time":"2026-03-01T09:30:00.000005Z","top_similarity":0.5}'
    )
    assert chain.canonical_bytes(7, record) == expected
    assert (
        chain.entry_hash(7, record, chain.GENESIS_HASH)
        == hashlib.sha256(bytes(32) + expected).digest()
    )


def test_genesis_is_32_zero_bytes() -> None:
    assert chain.GENESIS_HASH == b"\x00" * 32


def test_hash_is_deterministic() -> None:
    first = chain.entry_hash(5, AuditRecord(**FULL), chain.GENESIS_HASH)
    second = chain.entry_hash(5, AuditRecord(**FULL), chain.GENESIS_HASH)
    assert first == second
    assert len(first) == 32


def test_field_order_does_not_matter() -> None:
    names = list(FULL)
    random.Random(1).shuffle(names)
    shuffled = AuditRecord.model_validate({name: FULL[name] for name in names})
    reordered_detail = dict(reversed(list(FULL["detail"].items())))
    also_shuffled = AuditRecord(**{**FULL, "detail": reordered_detail})
    reference = chain.canonical_bytes(9, AuditRecord(**FULL))
    assert chain.canonical_bytes(9, shuffled) == reference
    assert chain.canonical_bytes(9, also_shuffled) == reference


@pytest.mark.parametrize("field", sorted(CHANGED))
def test_any_changed_field_changes_the_hash(field: str) -> None:
    original = chain.entry_hash(3, AuditRecord(**FULL), chain.GENESIS_HASH)
    changed = chain.entry_hash(
        3, AuditRecord(**{**FULL, field: CHANGED[field]}), chain.GENESIS_HASH
    )
    assert changed != original


@pytest.mark.parametrize(
    "field", sorted(name for name in FULL if AuditRecord.model_fields[name].default is None)
)
def test_clearing_an_optional_field_changes_the_hash(field: str) -> None:
    original = chain.entry_hash(3, AuditRecord(**FULL), chain.GENESIS_HASH)
    cleared = chain.entry_hash(3, AuditRecord(**{**FULL, field: None}), chain.GENESIS_HASH)
    assert cleared != original


def test_seq_and_prev_hash_change_the_hash() -> None:
    record = AuditRecord(**FULL)
    original = chain.entry_hash(3, record, chain.GENESIS_HASH)
    assert chain.entry_hash(4, record, chain.GENESIS_HASH) != original
    assert chain.entry_hash(3, record, b"\x01" + bytes(31)) != original


def test_time_is_utc_with_microseconds_and_z() -> None:
    plus_two = timezone(timedelta(hours=2))
    local = datetime(2026, 3, 1, 11, 30, 0, tzinfo=plus_two)
    assert chain.format_time(local) == "2026-03-01T09:30:00.000000Z"
    # The same instant written in another zone is the same entry.
    utc = AuditRecord(**{**FULL, "time": local.astimezone(UTC)})
    assert chain.canonical_bytes(1, AuditRecord(**{**FULL, "time": local})) == (
        chain.canonical_bytes(1, utc)
    )


def test_naive_time_is_refused() -> None:
    naive = AuditRecord(**{**FULL, "time": datetime(2026, 3, 1, 9, 30)})
    with pytest.raises(ValueError, match="timezone-aware"):
        chain.canonical_bytes(1, naive)


def test_values_json_cannot_carry_exactly_are_refused() -> None:
    huge = AuditRecord(**{**FULL, "detail": {"n": 2**60}})
    with pytest.raises(rfc8785.IntegerDomainError):
        chain.canonical_bytes(1, huge)


def test_prev_hash_must_be_32_bytes() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        chain.chain_hash(b"\x00" * 31, b"{}")


def _as_before(seq: int, record: AuditRecord) -> bytes:
    """canonical_bytes as it was defined before the log dumped a record once for its hash
    and its columns: model_dump(exclude_none=True), time in RFC 3339, rfc8785 itself."""
    fields = record.model_dump(mode="json", exclude_none=True)
    fields["time"] = chain.format_time(record.time)
    fields["seq"] = seq
    return rfc8785.dumps(fields)


@pytest.mark.parametrize(
    "fields",
    [
        FULL,
        CHANGED,
        {"time": FULL["time"], "request_id": "r", "event_type": EventType.DECISION},
        # Nulls inside detail and obligations are kept; only top-level nulls are left out.
        {**FULL, "detail": {"none": None, "deep": {"x": None}}, "obligations": {"o": None}},
        {**FULL, "agency": None, "top_similarity": None, "match_count": 0, "latency_ms": 0.0},
    ],
)
def test_one_dump_gives_the_bytes_of_before(fields: dict[str, Any]) -> None:
    record = AuditRecord(**fields)
    dumped = chain.json_fields(record)
    copy = dict(dumped)
    assert chain.canonical_bytes(3, record, dumped) == _as_before(3, record)
    assert chain.canonical_bytes(3, record) == _as_before(3, record)
    assert dumped == copy  # read, never changed: the log stores it afterwards


def test_a_nan_where_a_float_goes_is_refused_as_before() -> None:
    record = AuditRecord(**{**FULL, "top_similarity": float("nan")})
    with pytest.raises(ValueError):
        _as_before(1, record)
    with pytest.raises(ValueError):
        chain.canonical_bytes(1, record, chain.json_fields(record))
