"""policy_revisions: the text of every policy revision the gateway served

A decision records the revision of the policy that made it (audit_log.policy_revision); this
table keeps each revision's files, so that policy can be read back (`facegate policy show`).
Rows are added when a revision is activated (gateway/policy/revisions.py) and never changed:
the database refuses UPDATE and DELETE (and TRUNCATE on PostgreSQL), as on the audit tables.
The gateway's role needs SELECT, INSERT on it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 14:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "policy_revisions"


def _guards(dialect: str) -> tuple[str, ...]:
    if dialect == "sqlite":
        return tuple(
            f"""
            CREATE TRIGGER {TABLE}_refuse_{op_name} BEFORE {op_name.upper()} ON {TABLE}
            BEGIN
                SELECT RAISE(ABORT, '{TABLE} is append-only');
            END
            """
            for op_name in ("update", "delete")
        )
    if dialect == "postgresql":
        # audit_tree_refuse_change() is migration 0003's; it names the table refused.
        return (
            f"""
            CREATE TRIGGER {TABLE}_refuse_update_delete BEFORE UPDATE OR DELETE ON {TABLE}
            FOR EACH ROW EXECUTE FUNCTION audit_tree_refuse_change()
            """,
            f"""
            CREATE TRIGGER {TABLE}_refuse_truncate BEFORE TRUNCATE ON {TABLE}
            FOR EACH STATEMENT EXECUTE FUNCTION audit_tree_refuse_change()
            """,
        )
    raise ValueError(f"no append-only guards for database dialect {dialect!r}")


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("revision", sa.String(71), nullable=False),
        sa.Column("files", sa.Text(), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("revision", name="pk_policy_revisions"),
    )
    for statement in _guards(op.get_bind().dialect.name):
        op.execute(sa.text(statement))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for op_name in ("update", "delete"):
            op.execute(sa.text(f"DROP TRIGGER IF EXISTS {TABLE}_refuse_{op_name}"))
    op.drop_table(TABLE)  # PostgreSQL drops the table's triggers with it
