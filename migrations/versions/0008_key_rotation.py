"""Key rotation: each case session remembers the master key version its secret derives
under, so that `facegate keys rotate-master` leaves live sessions working until they
expire. Sessions opened before this revision derive under version 1, the key they were
opened with (a key file of one bare line is version 1).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("case_sessions") as batch:
        batch.add_column(
            sa.Column("key_version", sa.Integer(), nullable=False, server_default=sa.text("1"))
        )


def downgrade() -> None:
    with op.batch_alter_table("case_sessions") as batch:
        batch.drop_column("key_version")
