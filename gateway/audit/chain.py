"""How an audit entry is hashed: pure functions, no database.

An entry is a record plus the sequence number the log gave it. Its canonical bytes are the
RFC 8785 (JCS) encoding of the record's fields in JSON form plus ``seq``, with ``time``
written as RFC 3339 UTC with microseconds and a ``Z``. Fields whose value is null are left
out, so adding an optional field to ``AuditRecord`` (default ``None``) leaves the hashes of
every existing entry unchanged.

Each entry's hash covers its predecessor's::

    record_hash(n) = SHA-256(record_hash(n - 1) || canonical_bytes(n))
    record_hash(0) = GENESIS_HASH (32 zero bytes)

This module is the only place that defines those bytes; the log stores and re-checks them,
and the Merkle tree (RFC 6962, ``gateway.audit.merkle``) takes ``canonical_bytes`` as its
leaf input.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, Final

from gateway.audit import jcs
from gateway.audit.records import AuditRecord

HASH_SIZE: Final = 32
GENESIS_HASH: Final = bytes(HASH_SIZE)


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC, always with six fractional digits and a ``Z``.

    Raises ValueError for a naive datetime: its instant is unknown, so it cannot be hashed.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("audit record time must be timezone-aware")
    utc = value.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds") + "Z"


def json_fields(record: AuditRecord) -> dict[str, Any]:
    """Every field of ``record`` in JSON form, nulls included: what ``canonical_bytes``
    hashes (without the nulls), and what the log's columns store. A new dict each call."""
    return record.model_dump(mode="json")


def canonical_bytes(seq: int, record: AuditRecord, fields: dict[str, Any] | None = None) -> bytes:
    """The RFC 8785 bytes of ``record`` at position ``seq``.

    Deterministic: equal records at equal positions give equal bytes whatever order the
    fields were given in. Raises ValueError (``rfc8785.CanonicalizationError``) for values
    JSON cannot carry exactly, e.g. integers beyond 2**53 inside ``detail``. Encoded by
    ``jcs.dumps``: the bytes ``rfc8785.dumps`` writes, for a fraction of its CPU.

    ``fields`` is ``json_fields(record)`` when the caller has it already (the log stores
    it too, so a record is dumped once, not twice); it is read, never changed.
    """
    if fields is None:
        fields = json_fields(record)
    # A field is left out when its value is None, as model_dump(exclude_none=True) leaves
    # it out: no top-level value dumps to None but None itself (a NaN stays a float, and is
    # refused below), and nulls inside detail or obligations are kept, as it keeps them.
    canonical = {name: value for name, value in fields.items() if value is not None}
    canonical["time"] = format_time(record.time)
    canonical["seq"] = seq
    return jcs.dumps(canonical)


def chain_hash(prev_hash: bytes, canonical: bytes) -> bytes:
    """SHA-256 over the predecessor's hash followed by this entry's canonical bytes."""
    if len(prev_hash) != HASH_SIZE:
        raise ValueError(f"prev_hash must be {HASH_SIZE} bytes, got {len(prev_hash)}")
    return hashlib.sha256(prev_hash + canonical).digest()


def entry_hash(seq: int, record: AuditRecord, prev_hash: bytes) -> bytes:
    """The record_hash of ``record`` stored at ``seq`` after an entry hashing to ``prev_hash``."""
    return chain_hash(prev_hash, canonical_bytes(seq, record))
