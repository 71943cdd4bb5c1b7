"""Leads, their reviews and actions, after-the-fact authorisations; principals' training.

A lead is one candidate an identification produced. Its candidate id lives only here (the
audit log holds a salted hash of it, so the id can be deleted without breaking a proof).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("principals") as batch:
        batch.add_column(sa.Column("trained_until", sa.Date(), nullable=True))
    op.create_table(
        "authorisations",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("search_request_id", sa.String(64), nullable=False, index=True),
        sa.Column("agency", sa.String(200), nullable=False),
        sa.Column("officer", sa.String(64), nullable=False),
        sa.Column("case_number", sa.String(128), nullable=True, index=True),
        sa.Column("legal_basis", sa.String(64), nullable=False),
        sa.Column("basis", sa.String(32), nullable=False),
        sa.Column("opened_at", TIME, nullable=False),
        sa.Column("deadline", TIME, nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("decided_at", TIME, nullable=True),
        sa.Column("decided_by", sa.String(64), nullable=True),
        sa.Column("authority", sa.String(200), nullable=True),
        sa.Column("reference", sa.String(200), nullable=True),
        sa.Column("overdue_recorded_at", TIME, nullable=True),
    )
    op.create_table(
        "leads",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("created_at", TIME, nullable=False, index=True),
        sa.Column("search_request_id", sa.String(64), nullable=False, index=True),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("agency", sa.String(200), nullable=False, index=True),
        sa.Column("officer", sa.String(64), nullable=False, index=True),
        sa.Column("purpose", sa.String(100), nullable=True),
        sa.Column("case_number", sa.String(128), nullable=True, index=True),
        sa.Column("offense", sa.String(100), nullable=True),
        sa.Column("legal_basis", sa.String(64), nullable=True),
        sa.Column("warrant_id", sa.String(128), nullable=True),
        sa.Column("vendor", sa.String(64), nullable=False),
        sa.Column("operation", sa.String(64), nullable=False),
        sa.Column("collection", sa.String(256), nullable=True),
        sa.Column("probe_digests", sa.JSON(), nullable=False),
        sa.Column("candidate_id", sa.String(512), nullable=True),
        sa.Column("candidate_salt", sa.String(64), nullable=True),
        sa.Column("candidate_digest", sa.String(64), nullable=False),
        sa.Column("similarity", sa.Float(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False, index=True),
        sa.Column(
            "authorisation_id", sa.String(32), sa.ForeignKey("authorisations.id"), nullable=True
        ),
    )
    op.create_table(
        "lead_reviews",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("lead_id", sa.String(32), sa.ForeignKey("leads.id"), nullable=False, index=True),
        sa.Column("reviewer", sa.String(64), nullable=False),
        sa.Column("agency", sa.String(200), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("rationale", sa.Text(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.UniqueConstraint("lead_id", "reviewer", name="uq_lead_reviews_lead_reviewer"),
    )
    op.create_table(
        "lead_actions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("lead_id", sa.String(32), sa.ForeignKey("leads.id"), nullable=False, index=True),
        sa.Column("officer", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("lead_actions")
    op.drop_table("lead_reviews")
    op.drop_table("leads")
    op.drop_table("authorisations")
    with op.batch_alter_table("principals") as batch:
        batch.drop_column("trained_until")
