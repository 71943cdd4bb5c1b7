"""Tables of leads, their reviews and actions, and after-the-fact authorisations.

A lead's candidate id is kept here only (with the salt of its digest): the audit log
commits to it by `candidate_digest`, so deleting the id (and salt) later leaves every proof
intact. Statuses are the contract's (docs/architecture.md, "Leads").
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime


class AuthorisationRow(Base):
    __tablename__ = "authorisations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    search_request_id: Mapped[str] = mapped_column(String(64), index=True)
    agency: Mapped[str] = mapped_column(String(200))
    officer: Mapped[str] = mapped_column(String(64))
    case_number: Mapped[str | None] = mapped_column(String(128), index=True)
    legal_basis: Mapped[str] = mapped_column(String(64))  # the search's, e.g. exigent
    basis: Mapped[str] = mapped_column(String(32))  # exigent | post_remote
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deadline: Mapped[datetime] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(16), index=True)  # pending | granted | refused
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(64))
    authority: Mapped[str | None] = mapped_column(String(200))
    reference: Mapped[str | None] = mapped_column(String(200))
    # When its running out was put on record (an `overdue` authorisation record), once.
    overdue_recorded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LeadRow(Base):
    __tablename__ = "leads"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    search_request_id: Mapped[str] = mapped_column(String(64), index=True)
    rank: Mapped[int] = mapped_column(Integer)
    agency: Mapped[str] = mapped_column(String(200), index=True)
    officer: Mapped[str] = mapped_column(String(64), index=True)
    purpose: Mapped[str | None] = mapped_column(String(100))
    case_number: Mapped[str | None] = mapped_column(String(128), index=True)
    offense: Mapped[str | None] = mapped_column(String(100))
    legal_basis: Mapped[str | None] = mapped_column(String(64))
    warrant_id: Mapped[str | None] = mapped_column(String(128))
    vendor: Mapped[str] = mapped_column(String(64))
    operation: Mapped[str] = mapped_column(String(64))
    collection: Mapped[str | None] = mapped_column(String(256))
    probe_digests: Mapped[list[str]] = mapped_column(JSON)
    candidate_id: Mapped[str | None] = mapped_column(String(512))  # deletable: see above
    candidate_salt: Mapped[str | None] = mapped_column(String(64))
    candidate_digest: Mapped[str] = mapped_column(String(64))
    similarity: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(32), index=True)
    authorisation_id: Mapped[str | None] = mapped_column(ForeignKey("authorisations.id"))


class LeadReviewRow(Base):
    """A verdict recorded (refused attempts are in the audit log only)."""

    __tablename__ = "lead_reviews"
    __table_args__ = (
        UniqueConstraint("lead_id", "reviewer", name="uq_lead_reviews_lead_reviewer"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lead_id: Mapped[str] = mapped_column(ForeignKey("leads.id"), index=True)
    reviewer: Mapped[str] = mapped_column(String(64))
    agency: Mapped[str] = mapped_column(String(200))
    verdict: Mapped[str] = mapped_column(String(16))
    rationale: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LeadActionRow(Base):
    """An action allowed and taken (refused ones are in the audit log only)."""

    __tablename__ = "lead_actions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lead_id: Mapped[str] = mapped_column(ForeignKey("leads.id"), index=True)
    officer: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
