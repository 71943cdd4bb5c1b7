"""Bearer API keys for the management API (officers opening sessions, auditors, admins).

A key reads `fgk_<key id>.<secret>`; only the SHA-256 of the secret is stored.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.auth.models import ApiKeyRow, PrincipalRow
from gateway.auth.principals import Principal, check_roles, principal_from_row
from gateway.auth.secrets import digest_token
from gateway.errors import ExpiredCredentials, MalformedRequest, UnknownAccessKey

PREFIX = "fgk_"


async def issue_api_key(db: AsyncSession, *, principal_id: str, now: datetime) -> str:
    """Create a key for the principal and return it. This is the only time it is visible.

    Refused for an unknown or disabled principal, and for one enrolled before the rule with
    roles no principal may hold together (see principals.check_roles)."""
    principal = await db.get(PrincipalRow, principal_id)
    if principal is None:
        raise MalformedRequest(f"no principal {principal_id!r}")
    if principal.disabled_at is not None:
        raise MalformedRequest(f"principal {principal_id!r} is disabled")
    check_roles(principal.roles)
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    db.add(
        ApiKeyRow(
            key_id=key_id,
            principal_id=principal_id,
            secret_digest=digest_token(secret),
            created_at=now,
        )
    )
    await db.flush()
    return f"{PREFIX}{key_id}.{secret}"


def key_id_of(presented: str) -> str | None:
    """The key id part of a presented key, for the audit record of a failed attempt."""
    if not presented.startswith(PREFIX) or "." not in presented:
        return None
    return presented[len(PREFIX) :].split(".", 1)[0]


async def authenticate_api_key(db: AsyncSession, presented: str) -> Principal:
    key_id = key_id_of(presented)
    if key_id is None:
        raise UnknownAccessKey("the API key is not of the form fgk_<id>.<secret>")
    secret = presented.split(".", 1)[1]
    row = await db.get(ApiKeyRow, key_id)
    if row is None or not hmac.compare_digest(row.secret_digest, digest_token(secret)):
        raise UnknownAccessKey("unknown API key")
    if row.revoked_at is not None:
        raise ExpiredCredentials("this API key has been revoked")
    principal = await db.get(PrincipalRow, row.principal_id)
    if principal is None or principal.disabled_at is not None:
        raise ExpiredCredentials("the principal of this API key is disabled")
    return principal_from_row(principal, key_id=key_id)


async def revoke_api_key(
    db: AsyncSession, *, principal_id: str, key_id: str, now: datetime
) -> datetime:
    """Revoke one of the principal's keys; it is refused from the commit on. Returns when it
    was revoked (the first time, for a key already revoked)."""
    row = await db.get(ApiKeyRow, key_id)
    if row is None or row.principal_id != principal_id:
        raise MalformedRequest(f"principal {principal_id!r} has no API key {key_id!r}")
    if row.revoked_at is None:
        row.revoked_at = now
        await db.flush()
    return row.revoked_at


async def revoke_all_api_keys(db: AsyncSession, *, principal_id: str, now: datetime) -> list[str]:
    """Revoke every key of the principal not yet revoked; their ids, sorted."""
    rows = await db.scalars(
        select(ApiKeyRow)
        .where(ApiKeyRow.principal_id == principal_id, ApiKeyRow.revoked_at.is_(None))
        .order_by(ApiKeyRow.key_id)
    )
    revoked = []
    for row in rows:
        row.revoked_at = now
        revoked.append(row.key_id)
    await db.flush()
    return revoked
