"""Principals: the people (and their agencies) that act through facegate."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.auth.models import PrincipalRow
from gateway.errors import MalformedRequest


class Role(StrEnum):
    OFFICER = "officer"  # opens case sessions and searches
    REVIEWER = "reviewer"  # verifies leads by hand
    AUDITOR = "auditor"  # reads and verifies the audit log
    ADMIN = "admin"  # manages principals, warrants, vendors and policy
    # Enrols into and deletes from the reference collections (mugshots): a planted face is a
    # later false lead, so officers do not change them by default (policies/data/roles.yaml).
    CUSTODIAN = "custodian"


class Principal(BaseModel):
    """An authenticated caller, as the policy and the audit log see it."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    agency: str
    roles: tuple[Role, ...]
    key_id: str | None = None  # the access key or API key the request was made with

    def has_role(self, role: Role) -> bool:
        return role in self.roles


# Whoever registers warrants and enrols principals must not also search under them (issue
# 10, detour 10): an admin who is an officer can issue itself a warrant. The policy refuses
# such a principal too (`admin_and_officer`), for any enrolled before this rule.
EXCLUSIVE_ROLES = frozenset({Role.ADMIN, Role.OFFICER})


def check_roles(roles: Sequence[Role | str]) -> None:
    """Raise MalformedRequest for a set of roles no principal may hold."""
    if {Role(r) for r in roles} >= EXCLUSIVE_ROLES:
        raise MalformedRequest(
            "a principal may not hold both the admin and officer roles: the one who registers "
            "warrants may not also use them; enrol two principals"
        )


async def create_principal(
    db: AsyncSession,
    *,
    principal_id: str,
    name: str,
    agency: str,
    roles: Sequence[Role],
    now: datetime,
    trained_until: date | None = None,
) -> Principal:
    if not roles:
        raise MalformedRequest("a principal needs at least one role")
    check_roles(roles)
    if await db.get(PrincipalRow, principal_id) is not None:
        raise MalformedRequest(f"principal {principal_id!r} already exists")
    row = PrincipalRow(
        id=principal_id,
        name=name,
        agency=agency,
        roles=[Role(r).value for r in roles],
        created_at=now,
        trained_until=trained_until,
    )
    db.add(row)
    await db.flush()
    return principal_from_row(row)


async def get_principal(db: AsyncSession, principal_id: str) -> Principal | None:
    """The principal, or None if unknown or disabled."""
    row = await db.get(PrincipalRow, principal_id)
    if row is None or row.disabled_at is not None:
        return None
    return principal_from_row(row)


async def list_principals(db: AsyncSession) -> list[Principal]:
    rows = await db.scalars(select(PrincipalRow).order_by(PrincipalRow.id))
    return [principal_from_row(row) for row in rows if row.disabled_at is None]


def principal_from_row(
    row: PrincipalRow | Row[*tuple[Any, ...]], *, key_id: str | None = None
) -> Principal:
    return Principal(
        id=row.id,
        name=row.name,
        agency=row.agency,
        roles=tuple(Role(r) for r in row.roles),
        key_id=key_id,
    )
