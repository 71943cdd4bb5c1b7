"""Tables for principals, their API keys and their case sessions. No secret is stored in clear."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Date, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime


class PrincipalRow(Base):
    __tablename__ = "principals"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    agency: Mapped[str] = mapped_column(String(200), index=True)
    roles: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The last day the principal's training is valid for (reviewers: Maryland wants it
    # yearly); None: no training on record. Read by the lead policy, not here.
    trained_until: Mapped[date | None] = mapped_column(Date, default=None)


class ApiKeyRow(Base):
    """A bearer key for the management API. Only the SHA-256 digest of its secret part is kept."""

    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    principal_id: Mapped[str] = mapped_column(ForeignKey("principals.id"), index=True)
    secret_digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CaseSessionRow(Base):
    """Short-lived vendor-style credentials bound to one case. The secret is derived, not stored."""

    __tablename__ = "case_sessions"

    access_key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    principal_id: Mapped[str] = mapped_column(ForeignKey("principals.id"), index=True)
    purpose: Mapped[str | None] = mapped_column(String(100))
    case_number: Mapped[str | None] = mapped_column(String(100), index=True)
    offense: Mapped[str | None] = mapped_column(String(100))
    legal_basis: Mapped[str | None] = mapped_column(String(32))
    warrant_id: Mapped[str | None] = mapped_column(String(100))
    # The API key the session was opened with (None from the CLI): revoking that key ends
    # the sessions it opened, so a leaked key's sessions stop with it.
    api_key_id: Mapped[str | None] = mapped_column(String(32), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The master key version its secret derives under (auth/secrets.py): a session keeps
    # it until it expires, across `facegate keys rotate-master`.
    key_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
