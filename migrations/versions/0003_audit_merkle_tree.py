"""audit_tree and audit_checkpoint: the audit log becomes an RFC 6962 Merkle tree

Every existing audit_log entry becomes a leaf, in seq order: leaf = chain.canonical_bytes
(seq, record), the bytes the hash chain of migration 0001 already hashes. The upgrade walks
the chain first and refuses to run if it is broken, so a tampered log is never sealed
into a tree that later checkpoints would sign. The chain columns stay: they still name the
first bad row of a database on their own, and dropping them would mean rewriting a table
the database refuses to change.

No checkpoint is written here: the migration has no signing key. The gateway signs the
first checkpoint, covering these leaves, with its first batch of appends.

Deployment: run migrations as the role that owns the tables; run the gateway as a role
that may only read and append to them (PostgreSQL):

    CREATE ROLE facegate_gateway LOGIN;
    -- then each statement of gateway.audit.guards.gateway_role_statements("facegate_gateway"):
    GRANT USAGE ON SCHEMA public TO facegate_gateway;
    GRANT SELECT, INSERT ON audit_log, audit_tree, audit_checkpoint TO facegate_gateway;
    GRANT SELECT, INSERT, UPDATE ON principals, api_keys, case_sessions, warrants
        TO facegate_gateway;
    GRANT SELECT ON alembic_version TO facegate_gateway;

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 13:00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from gateway.audit import chain, guards, merkle
from gateway.audit.models import AuditLogEntry
from gateway.audit.records import AuditRecord

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 2000


def upgrade() -> None:
    # Spelled out, not taken from the models, so this revision keeps creating these tables.
    audit_tree = op.create_table(
        "audit_tree",
        sa.Column("level", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name="pk_audit_tree"),
    )
    op.create_table(
        "audit_checkpoint",
        sa.Column("tree_size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tree_size", name="pk_audit_checkpoint"),
    )
    assert audit_tree is not None
    _existing_entries_become_leaves(op.get_bind(), audit_tree)
    for statement in guards.tree_install_statements(op.get_bind().dialect.name):
        op.execute(sa.text(statement))


def _existing_entries_become_leaves(connection: sa.Connection, audit_tree: sa.Table) -> None:
    # The model's table, for its column types: UTCDateTime reads SQLite's naive times back
    # as the UTC instants they were hashed as. audit_log itself is frozen by 0001.
    log = AuditLogEntry.__table__
    compact = merkle.CompactRange()
    prev_hash = chain.GENESIS_HASH
    last = 0
    while True:
        rows = connection.execute(
            sa.select(log).where(log.c.seq > last).order_by(log.c.seq).limit(_BATCH)
        ).all()
        if not rows:
            return
        nodes: list[dict[str, Any]] = []
        for row in rows:
            fields = row._asdict()
            seq = fields["seq"]
            if seq != last + 1:
                raise RuntimeError(
                    f"audit_log is missing seq {last + 1}: run `facegate audit verify` and"
                    " resolve it before upgrading; a broken log is not sealed into the tree"
                )
            record = AuditRecord.model_validate({k: fields[k] for k in AuditRecord.model_fields})
            canonical = chain.canonical_bytes(seq, record)
            expected = chain.chain_hash(prev_hash, canonical).hex()
            if fields["prev_hash"] != prev_hash.hex() or fields["record_hash"] != expected:
                raise RuntimeError(
                    f"the audit_log hash chain is broken at seq {seq}: run `facegate audit"
                    " verify` and resolve it before upgrading; a broken log is not sealed"
                    " into the tree"
                )
            prev_hash = bytes.fromhex(expected)
            for level, index, value in compact.append(merkle.leaf_hash(canonical)):
                nodes.append({"level": level, "idx": index, "hash": value})
            last = seq
        connection.execute(sa.insert(audit_tree), nodes)


def downgrade() -> None:
    for statement in guards.tree_remove_statements(op.get_bind().dialect.name):
        op.execute(sa.text(statement))
    op.drop_table("audit_checkpoint")
    op.drop_table("audit_tree")
