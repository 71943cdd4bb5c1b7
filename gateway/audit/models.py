"""The audit log's tables.

``audit_log``: one row per entry, every ``AuditRecord`` field a column (migration 0001).
``audit_tree``: the Merkle tree's perfect nodes, leaf hashes at level 0 (migration 0003).
``audit_checkpoint``: every signed checkpoint, one per tree size signed (migration 0003).

Rows are written only by ``gateway.audit.log.AuditLog`` and never changed: the database
refuses UPDATE, DELETE and TRUNCATE on all three (see ``gateway.audit.guards``). A change
here needs a new migration.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Double,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime

HEX_SHA256_LENGTH = 64


class AuditLogEntry(Base):
    """One committed entry. ``seq`` comes from the log's sequencer, never from the database."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)

    time: Mapped[datetime] = mapped_column(UTCDateTime)
    request_id: Mapped[str] = mapped_column(String)
    event_type: Mapped[str] = mapped_column(String)
    agency: Mapped[str | None] = mapped_column(String)
    officer: Mapped[str | None] = mapped_column(String)
    key_id: Mapped[str | None] = mapped_column(String)
    client_address: Mapped[str | None] = mapped_column(String)
    vendor: Mapped[str | None] = mapped_column(String)
    operation: Mapped[str | None] = mapped_column(String)
    operation_kind: Mapped[str | None] = mapped_column(String)
    collection: Mapped[str | None] = mapped_column(String)
    purpose: Mapped[str | None] = mapped_column(String)
    case_number: Mapped[str | None] = mapped_column(String)
    offense: Mapped[str | None] = mapped_column(String)
    legal_basis: Mapped[str | None] = mapped_column(String)
    warrant_id: Mapped[str | None] = mapped_column(String)
    decision: Mapped[str | None] = mapped_column(String)
    reason_codes: Mapped[list[str]] = mapped_column(JSON)
    obligations: Mapped[dict[str, Any]] = mapped_column(JSON)
    policy_revision: Mapped[str | None] = mapped_column(String)
    probe_digests: Mapped[list[str]] = mapped_column(JSON)
    upstream_status: Mapped[int | None] = mapped_column(Integer)
    match_count: Mapped[int | None] = mapped_column(Integer)
    top_similarity: Mapped[float | None] = mapped_column(Double)
    latency_ms: Mapped[float | None] = mapped_column(Double)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)

    prev_hash: Mapped[str] = mapped_column(String(HEX_SHA256_LENGTH))
    record_hash: Mapped[str] = mapped_column(String(HEX_SHA256_LENGTH))

    # The auditor filters by these and pages by seq: (column, seq) lets the database walk
    # one index in page order instead of sorting every match.
    __table_args__ = (
        Index("ix_audit_log_case_number_seq", "case_number", "seq"),
        Index("ix_audit_log_agency_seq", "agency", "seq"),
        Index("ix_audit_log_officer_seq", "officer", "seq"),
        Index("ix_audit_log_event_type_seq", "event_type", "seq"),
        Index("ix_audit_log_time", "time"),
    )


class AuditTreeNode(Base):
    """A perfect subtree of the Merkle tree: leaves ``[idx * 2**level, (idx + 1) * 2**level)``.

    Written in the transaction that appends its last leaf, so the tree in the database
    always covers exactly the committed entries. Level 0 holds each entry's leaf hash as it
    was when appended; verification recomputes leaves from the entries and compares.
    """

    __tablename__ = "audit_tree"

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditCheckpoint(Base):
    """A signed checkpoint (C2SP tlog-checkpoint in a signed note) of the first
    ``tree_size`` entries. Committed with the entries it covers, never before them."""

    __tablename__ = "audit_checkpoint"

    tree_size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
