"""Console sessions: an API key, presented once at sign-in, exchanged for a session cookie.

Only the SHA-256 of the session token is stored (as API key secrets are), so a copy of the
database signs nobody in. Each session remembers the API key it was opened with and is
checked against it on every request: revoking the key or disabling the principal ends the
session at once, not at its expiry. Each session has its own CSRF token (synchronizer
token pattern), which every form of the console carries and every POST must return.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ForeignKey, String, delete
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from gateway.auth.api_keys import authenticate_api_key
from gateway.auth.models import ApiKeyRow, PrincipalRow
from gateway.auth.principals import Principal, Role, principal_from_row
from gateway.auth.secrets import digest_token
from gateway.db import Base, UTCDateTime
from gateway.errors import PermissionDenied

# The roles that have console pages. An officer's or custodian's work is done through the
# vendor APIs and the CLI; they are refused at sign-in, on record.
CONSOLE_ROLES = frozenset({Role.AUDITOR, Role.ADMIN, Role.REVIEWER})


class ConsoleSessionRow(Base):
    __tablename__ = "console_sessions"

    token_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    principal_id: Mapped[str] = mapped_column(ForeignKey("principals.id"), index=True)
    api_key_id: Mapped[str] = mapped_column(String(32), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    """A live session: who it is for (as of this request) and the CSRF token of its forms."""

    principal: Principal
    csrf_token: str
    expires_at: datetime


class ConsoleRoleMissing(PermissionDenied):
    code = "console_role_missing"

    def __init__(self, principal: Principal) -> None:
        super().__init__("the console is for auditors, admins and reviewers")
        self.principal = principal


async def sign_in(
    db: AsyncSession, *, api_key: str, ttl: timedelta, now: datetime
) -> tuple[str, ConsoleSession]:
    """Exchange ``api_key`` for a new session; return its token (the cookie's value, never
    stored) and the session. Raises the AuthenticationError of ``authenticate_api_key`` for
    a bad, revoked or disabled key, and ConsoleRoleMissing for a principal with no console
    role. Expired sessions are deleted on the way, so the table holds live ones only."""
    principal = await authenticate_api_key(db, api_key.strip())
    if not CONSOLE_ROLES.intersection(principal.roles):
        raise ConsoleRoleMissing(principal)
    await db.execute(delete(ConsoleSessionRow).where(ConsoleSessionRow.expires_at <= now))
    assert principal.key_id is not None  # authenticate_api_key always names the key
    token = secrets.token_urlsafe(32)
    row = ConsoleSessionRow(
        token_digest=digest_token(token),
        principal_id=principal.id,
        api_key_id=principal.key_id,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        expires_at=now + ttl,
    )
    db.add(row)
    await db.flush()
    return token, ConsoleSession(principal, row.csrf_token, row.expires_at)


async def find_session(db: AsyncSession, token: str, *, now: datetime) -> ConsoleSession | None:
    """The live session of ``token``, or None: unknown, expired, its API key revoked or
    its principal disabled. The principal's roles are read now, not copied at sign-in, so
    a role taken away is taken away from open sessions too."""
    row = await db.get(ConsoleSessionRow, digest_token(token))
    if row is None or row.expires_at <= now:
        return None
    key = await db.get(ApiKeyRow, row.api_key_id)
    principal = await db.get(PrincipalRow, row.principal_id)
    if key is None or key.revoked_at is not None or key.principal_id != row.principal_id:
        return None
    if principal is None or principal.disabled_at is not None:
        return None
    return ConsoleSession(
        principal_from_row(principal, key_id=row.api_key_id), row.csrf_token, row.expires_at
    )


async def sign_out(db: AsyncSession, token: str) -> None:
    """End the session of ``token`` (nothing happens for an unknown one)."""
    await db.execute(
        delete(ConsoleSessionRow).where(ConsoleSessionRow.token_digest == digest_token(token))
    )


def csrf_matches(expected: str, presented: str | None) -> bool:
    """Constant-time comparison of a form's CSRF token with the session's."""
    return presented is not None and hmac.compare_digest(expected.encode(), presented.encode())
