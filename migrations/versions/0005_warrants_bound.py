"""Warrants bound to an agency and, optionally, to named officers; case sessions remember
the API key they were opened with, so revoking the key ends them.

A warrant registered before this revision is bound to the agency of the principal that
registered it; one registered from the CLI (created_by "cli") has no such principal and is
left unbound, which the policy refuses: register it again with its agency.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # batch mode: SQLite cannot ALTER a table to add a NOT NULL column without a default.
    with op.batch_alter_table("warrants") as batch:
        batch.add_column(sa.Column("agency", sa.String(200), nullable=True))
        batch.add_column(
            sa.Column("officers", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )
    with op.batch_alter_table("case_sessions") as batch:
        batch.add_column(sa.Column("api_key_id", sa.String(32), nullable=True))
        batch.create_index("ix_case_sessions_api_key_id", ["api_key_id"])
    op.execute(
        "UPDATE warrants SET agency = "
        "(SELECT principals.agency FROM principals WHERE principals.id = warrants.created_by)"
    )


def downgrade() -> None:
    with op.batch_alter_table("case_sessions") as batch:
        batch.drop_index("ix_case_sessions_api_key_id")
        batch.drop_column("api_key_id")
    with op.batch_alter_table("warrants") as batch:
        batch.drop_column("officers")
        batch.drop_column("agency")
