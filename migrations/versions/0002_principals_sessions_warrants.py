"""Principals, their API keys and case sessions; the warrant registry.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "principals",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("agency", sa.String(200), nullable=False, index=True),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("disabled_at", _TIME, nullable=True),
    )
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column(
            "principal_id",
            sa.String(64),
            sa.ForeignKey("principals.id"),
            nullable=False,
            index=True,
        ),
        sa.Column("secret_digest", sa.String(64), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("revoked_at", _TIME, nullable=True),
    )
    op.create_table(
        "case_sessions",
        sa.Column("access_key_id", sa.String(32), primary_key=True),
        sa.Column(
            "principal_id",
            sa.String(64),
            sa.ForeignKey("principals.id"),
            nullable=False,
            index=True,
        ),
        sa.Column("purpose", sa.String(100), nullable=True),
        sa.Column("case_number", sa.String(100), nullable=True, index=True),
        sa.Column("offense", sa.String(100), nullable=True),
        sa.Column("legal_basis", sa.String(32), nullable=True),
        sa.Column("warrant_id", sa.String(100), nullable=True),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("expires_at", _TIME, nullable=False),
        sa.Column("revoked_at", _TIME, nullable=True),
    )
    op.create_table(
        "warrants",
        sa.Column("id", sa.String(100), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("issuing_court", sa.String(200), nullable=False),
        sa.Column("case_number", sa.String(100), nullable=False, index=True),
        sa.Column("operations", sa.JSON(), nullable=False),
        sa.Column("collections", sa.JSON(), nullable=False),
        sa.Column("realtime", sa.Boolean(), nullable=False),
        sa.Column("subject_description", sa.Text(), nullable=True),
        sa.Column("valid_from", _TIME, nullable=False),
        sa.Column("valid_until", _TIME, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("revoked_at", _TIME, nullable=True),
        sa.Column("revoked_reason", sa.Text(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("warrants")
    op.drop_table("case_sessions")
    op.drop_table("api_keys")
    op.drop_table("principals")
