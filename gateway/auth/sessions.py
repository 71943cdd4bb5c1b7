"""Case sessions: short-lived credentials an officer obtains for one case.

Most vendor SDKs cannot add headers, so the case context travels with the credentials: the
officer states purpose, case, offence, legal basis and warrant once, and every request
signed with the issued key is judged under that context.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, computed_field
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from gateway.auth.models import CaseSessionRow, PrincipalRow
from gateway.auth.principals import EXCLUSIVE_ROLES, Principal, Role, principal_from_row
from gateway.auth.secrets import MasterKey, new_access_key_id
from gateway.case import CaseContext, CaseFields, LegalBasis
from gateway.context.warrants import WarrantRow
from gateway.errors import MalformedRequest, PermissionDenied


class IssuedCredentials(BaseModel):
    """Returned once, when the session opens. The secret is never stored."""

    access_key_id: str
    secret_access_key: str
    expires_at: datetime
    principal_id: str
    context: CaseContext

    @computed_field  # type: ignore[prop-decorator]
    @property
    def vendor_key(self) -> str:
        """The same credentials for key-header vendors: Ocp-Apim-Subscription-Key, x-api-key."""
        return f"{self.access_key_id}.{self.secret_access_key}"


class BoundSession(BaseModel):
    model_config = ConfigDict(frozen=True)

    access_key_id: str
    principal: Principal
    context: CaseContext
    expires_at: datetime
    revoked: bool
    key_version: int = 1  # of the master key its secret derives under

    def is_live(self, now: datetime) -> bool:
        return not self.revoked and now < self.expires_at


async def open_case_session(
    db: AsyncSession,
    *,
    master_key: MasterKey,
    principal: Principal,
    context: CaseContext,
    ttl: timedelta,
    max_ttl: timedelta,
    now: datetime,
) -> IssuedCredentials:
    if not principal.has_role(Role.OFFICER):
        raise PermissionDenied("only officers can open case sessions")
    if set(principal.roles) >= EXCLUSIVE_ROLES:
        raise PermissionDenied(
            f"{principal.id} holds both the admin and officer roles and may not open case "
            "sessions: the one who registers warrants may not also use them"
        )
    if context.warrant_id:
        await check_warrant_holder(db, principal=principal, warrant_id=context.warrant_id)
    if ttl <= timedelta(0) or ttl > max_ttl:
        raise MalformedRequest(
            f"a session lasts between 1 second and {int(max_ttl.total_seconds())} seconds"
        )
    access_key_id = new_access_key_id()
    expires_at = now + ttl
    master_key.refresh()  # a key rotated in by another process since this one started
    version = master_key.current_version
    db.add(
        CaseSessionRow(
            access_key_id=access_key_id,
            principal_id=principal.id,
            **context.model_dump(mode="json"),  # the case fields, one column each
            # Through the API, the key the officer authenticated with; None from the CLI.
            api_key_id=principal.key_id,
            created_at=now,
            expires_at=expires_at,
            key_version=version,
        )
    )
    await db.flush()
    return IssuedCredentials(
        access_key_id=access_key_id,
        secret_access_key=master_key.session_secret(access_key_id, version),
        expires_at=expires_at,
        principal_id=principal.id,
        context=context,
    )


async def check_warrant_holder(db: AsyncSession, *, principal: Principal, warrant_id: str) -> None:
    """Refuse a session on a warrant that is not the principal's to use: another agency's,
    one naming other officers, or one the principal registered itself.

    The policy refuses the same at every call (`warrant_other_agency`,
    `warrant_not_for_officer`, `warrant_self_issued`), for warrants named by header and for
    sessions opened before a warrant changed; refusing here too tells the officer at once.
    A warrant the registry does not hold is left to the policy, which refuses it with its
    reason on the first call that needs it."""
    row = await db.get(WarrantRow, warrant_id)
    if row is None:
        return
    if row.agency != principal.agency:
        issued_to = f"was issued to {row.agency}" if row.agency else "is bound to no agency"
        raise PermissionDenied(
            f"warrant {warrant_id} {issued_to}, and {principal.id} is of {principal.agency}: "
            "a warrant is used only by its own agency"
        )
    if row.officers and principal.id not in row.officers:
        raise PermissionDenied(
            f"warrant {warrant_id} names the officers who may use it "
            f"({', '.join(sorted(row.officers))}), and {principal.id} is not one of them"
        )
    if row.created_by == principal.id:
        raise PermissionDenied(
            f"warrant {warrant_id} was registered by {principal.id} itself: the one who "
            "registers a warrant may not search under it"
        )


async def revoke_open_sessions(
    db: AsyncSession, *, principal_id: str, now: datetime, api_key_id: str | None = None
) -> list[str]:
    """Revoke every session of the principal that is neither revoked nor expired (only those
    opened with `api_key_id`, when given); their access key ids, oldest first."""
    statement = select(CaseSessionRow).where(
        CaseSessionRow.principal_id == principal_id,
        CaseSessionRow.revoked_at.is_(None),
        CaseSessionRow.expires_at > now,
    )
    if api_key_id is not None:
        statement = statement.where(CaseSessionRow.api_key_id == api_key_id)
    rows = await db.scalars(
        statement.order_by(CaseSessionRow.created_at, CaseSessionRow.access_key_id)
    )
    revoked = []
    for row in rows:
        row.revoked_at = now
        revoked.append(row.access_key_id)
    await db.flush()
    return revoked


# One statement, built once, selecting columns rather than ORM objects: it runs on every
# vendor request. The column names do not clash, so a row reads like a PrincipalRow too.
_LOAD_CASE_SESSION = (
    select(
        CaseSessionRow.access_key_id,
        *(getattr(CaseSessionRow, name) for name in CaseFields.model_fields),
        CaseSessionRow.expires_at,
        CaseSessionRow.revoked_at,
        CaseSessionRow.key_version,
        PrincipalRow.id,
        PrincipalRow.name,
        PrincipalRow.agency,
        PrincipalRow.roles,
        PrincipalRow.disabled_at,
    )
    .join(PrincipalRow, PrincipalRow.id == CaseSessionRow.principal_id)
    .where(CaseSessionRow.access_key_id == bindparam("access_key_id"))
)


async def load_case_session(
    db: AsyncConnection | AsyncSession, access_key_id: str
) -> BoundSession | None:
    """The session and its principal, or None if the key or its principal is unknown/disabled."""
    row = (await db.execute(_LOAD_CASE_SESSION, {"access_key_id": access_key_id})).one_or_none()
    if row is None or row.disabled_at is not None:
        return None
    return BoundSession(
        access_key_id=row.access_key_id,
        principal=principal_from_row(row, key_id=row.access_key_id),
        context=CaseContext.from_store(**_case_fields(row)),
        expires_at=row.expires_at,
        revoked=row.revoked_at is not None,
        key_version=row.key_version,
    )


async def revoke_case_session(
    db: AsyncSession, *, access_key_id: str, by: Principal, now: datetime
) -> None:
    row = await db.get(CaseSessionRow, access_key_id)
    if row is None:
        raise MalformedRequest(f"no session {access_key_id!r}")
    if row.principal_id != by.id and not by.has_role(Role.ADMIN):
        raise PermissionDenied("only the session's officer or an admin can revoke it")
    row.revoked_at = now


def _case_fields(row: Any) -> dict[str, Any]:
    fields = {name: getattr(row, name) for name in CaseFields.model_fields}
    if row.legal_basis:
        fields["legal_basis"] = LegalBasis(row.legal_basis)
    return fields
