"""audit_log: the append-only, hash-chained audit log, its indexes and its guards

Revision ID: 0001
Revises:
Create Date: 2026-11-26 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from gateway.audit import guards

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The table is spelled out rather than taken from gateway.audit.models, so that this
    # migration keeps creating the same table whatever the model becomes later. The guard
    # DDL is taken from gateway.audit.guards, which keeps it fixed for this revision.
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(), nullable=False),
        sa.Column("event_type", sa.String(), nullable=False),
        sa.Column("agency", sa.String(), nullable=True),
        sa.Column("officer", sa.String(), nullable=True),
        sa.Column("key_id", sa.String(), nullable=True),
        sa.Column("client_address", sa.String(), nullable=True),
        sa.Column("vendor", sa.String(), nullable=True),
        sa.Column("operation", sa.String(), nullable=True),
        sa.Column("operation_kind", sa.String(), nullable=True),
        sa.Column("collection", sa.String(), nullable=True),
        sa.Column("purpose", sa.String(), nullable=True),
        sa.Column("case_number", sa.String(), nullable=True),
        sa.Column("offense", sa.String(), nullable=True),
        sa.Column("legal_basis", sa.String(), nullable=True),
        sa.Column("warrant_id", sa.String(), nullable=True),
        sa.Column("decision", sa.String(), nullable=True),
        sa.Column("reason_codes", sa.JSON(), nullable=False),
        sa.Column("obligations", sa.JSON(), nullable=False),
        sa.Column("policy_revision", sa.String(), nullable=True),
        sa.Column("probe_digests", sa.JSON(), nullable=False),
        sa.Column("upstream_status", sa.Integer(), nullable=True),
        sa.Column("match_count", sa.Integer(), nullable=True),
        sa.Column("top_similarity", sa.Double(), nullable=True),
        sa.Column("latency_ms", sa.Double(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("record_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_case_number_seq", "audit_log", ["case_number", "seq"])
    op.create_index("ix_audit_log_agency_seq", "audit_log", ["agency", "seq"])
    op.create_index("ix_audit_log_officer_seq", "audit_log", ["officer", "seq"])
    op.create_index("ix_audit_log_event_type_seq", "audit_log", ["event_type", "seq"])
    op.create_index("ix_audit_log_time", "audit_log", ["time"])
    for statement in guards.install_statements(op.get_bind().dialect.name):
        op.execute(sa.text(statement))


def downgrade() -> None:
    for statement in guards.remove_statements(op.get_bind().dialect.name):
        op.execute(sa.text(statement))
    op.drop_index("ix_audit_log_time", table_name="audit_log")
    op.drop_index("ix_audit_log_event_type_seq", table_name="audit_log")
    op.drop_index("ix_audit_log_officer_seq", table_name="audit_log")
    op.drop_index("ix_audit_log_agency_seq", table_name="audit_log")
    op.drop_index("ix_audit_log_case_number_seq", table_name="audit_log")
    op.drop_table("audit_log")
