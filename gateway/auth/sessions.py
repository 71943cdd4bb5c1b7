"""Case sessions: short-lived credentials an officer obtains for one case.

Most vendor SDKs cannot add headers, so the case context travels with the credentials: the
officer states purpose, case, offence, legal basis and warrant once, and every request
signed with the issued key is judged under that context.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, SkipValidation, computed_field
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from gateway.auth.models import CaseSessionRow, PrincipalRow
from gateway.auth.principals import EXCLUSIVE_ROLES, Principal, Role, principal_from_row
from gateway.auth.secrets import MasterKey, new_access_key_id
from gateway.case import CaseContext, CaseFields, LegalBasis
from gateway.context.warrants import (
    WARRANT_COLUMNS,
    PrefetchedWarrant,
    WarrantRow,
    driver_warrant_columns,
    prefetched_warrant,
)
from gateway.db import RequestReader, map_database_errors, stored_utc
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
    # The registry's row for the context's warrant, read with the session (read_case_session)
    # and judged by gather (gateway.context.warrants.find_warrant); None when the context
    # names no warrant or the session was not read from the store. Not part of the session
    # as recorded or shown; not validated again (read and decoded at this request).
    warrant: SkipValidation[PrefetchedWarrant | None] = Field(
        default=None, exclude=True, repr=False
    )

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
# The session's warrant comes in the same statement (a LEFT JOIN on the warrant id the
# session is bound to): gather would read it next, one more round trip on PostgreSQL.
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
        *WARRANT_COLUMNS,
    )
    .join(PrincipalRow, PrincipalRow.id == CaseSessionRow.principal_id)
    .outerjoin(WarrantRow, WarrantRow.id == CaseSessionRow.warrant_id)
    .where(CaseSessionRow.access_key_id == bindparam("access_key_id"))
)


async def load_case_session(
    db: AsyncConnection | AsyncSession, access_key_id: str
) -> BoundSession | None:
    """The session and its principal, or None if the key or its principal is unknown/disabled.
    With the registry's row for the warrant its context names (`BoundSession.warrant`),
    read in the same statement."""
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
        warrant=prefetched_warrant(row.warrant_id, row[-len(WARRANT_COLUMNS) :], from_driver=False),
    )


async def read_case_session(reads: RequestReader, access_key_id: str) -> BoundSession | None:
    """As `load_case_session`, through `reads` (the request path's reader); every vendor
    request authenticates with it.

    Read from the database at each call, never from a cache: a revocation or an expiry
    committed before the call is seen by it, so a revoked session is refused from the next
    request on. A database error raises StorageUnavailable (fail closed: no session is
    assumed), its connection is discarded rather than used again.

    The warrant the session's context names is read in the same statement, on every path
    (`BoundSession.warrant`, for gather's `find_warrant`): on PostgreSQL one round trip
    rather than two per request. The same holds for it as for the session: read at this
    call, a warrant revoked before it is seen revoked; and a registry that cannot be read
    fails the session's read too (StorageUnavailable: they are one database).

    On PostgreSQL on asyncpg and on a SQLite file it runs one SELECT on the reader's own
    connection, without SQLAlchemy's Connection, Result and Row around it (autocommit
    either way: asyncpg opens no transaction, sqlite3 none for a SELECT). Checkout, read
    and return measured 0.57 ms of CPU through SQLAlchemy on PostgreSQL, 0.92 ms on SQLite
    (several hops to aiosqlite's thread); this way about 0.25 ms on PostgreSQL, and 0.014 ms
    on SQLite, where the raw read on aiosqlite's connection had still cost 0.16 ms, its one
    hop to aiosqlite's thread and back (issue 17). Any other database takes the SQLAlchemy
    path."""
    with map_database_errors("the session store could not be read"):
        if reads.on_asyncpg:
            return _from_driver_row(await reads.fetchrow(_ASYNCPG_SQL, access_key_id))
        if reads.on_sqlite_file:
            rows = reads.sqlite_fetchall(_SQLITE_SQL, access_key_id)
            return _from_driver_row(rows[0] if rows else None)
        async with reads.engine.connect() as db:
            return await load_case_session(db, access_key_id)


# The columns of `_LOAD_CASE_SESSION`, in plain SQL for the drivers: times as stored
# (timestamptz on PostgreSQL, SQLAlchemy's UTC text on SQLite), roles as JSON text.
_CASE_COLUMNS: Final = ", ".join(f"s.{name}" for name in CaseFields.model_fields)
_DRIVER_SQL: Final = (
    f"SELECT s.access_key_id, {_CASE_COLUMNS}, s.expires_at, s.revoked_at IS NOT NULL,"  # noqa: S608 (model columns)
    " s.key_version, p.id, p.name, p.agency, p.roles{cast}, p.disabled_at IS NOT NULL,"
    " {warrant}"
    " FROM case_sessions AS s JOIN principals AS p ON p.id = s.principal_id"
    " LEFT JOIN warrants AS w ON w.id = s.warrant_id"
    " WHERE s.access_key_id = {parameter}"
)
_ASYNCPG_SQL: Final = _DRIVER_SQL.format(
    cast="::text", parameter="$1", warrant=driver_warrant_columns("w", postgresql=True)
)
_SQLITE_SQL: Final = _DRIVER_SQL.format(
    cast="", parameter="?", warrant=driver_warrant_columns("w", postgresql=False)
)
_WARRANT_ID_AT: Final = 1 + list(CaseFields.model_fields).index("warrant_id")
_SESSION_COLUMNS: Final = 1 + len(CaseFields.model_fields) + 8


def _from_driver_row(row: Sequence[Any] | None) -> BoundSession | None:
    if row is None:
        return None
    fields = len(CaseFields.model_fields)
    access_key_id, case_values = row[0], tuple(row[1 : 1 + fields])
    expires_at, revoked, key_version, principal_id, name, agency, roles, disabled = row[
        1 + fields : _SESSION_COLUMNS
    ]
    if disabled:
        return None
    return BoundSession(
        access_key_id=access_key_id,
        principal=_principal(principal_id, name, agency, roles, access_key_id),
        context=_stored_context(case_values),
        expires_at=stored_utc(expires_at),
        revoked=bool(revoked),
        key_version=key_version,
        warrant=prefetched_warrant(row[_WARRANT_ID_AT], row[_SESSION_COLUMNS:], from_driver=True),
    )


# A session's principal and context are the same at each of its requests, and checking a
# context's syntax (CaseContext.from_store) cost more than the read itself: both are pure
# functions of the stored values, so they are built once per distinct values (frozen
# models, shared). Whether the session is revoked or expired is never cached: those come
# from the row read at this request.
@functools.lru_cache(maxsize=1024)
def _stored_context(values: tuple[str | None, ...]) -> CaseContext:
    fields: dict[str, Any] = dict(zip(CaseFields.model_fields, values, strict=True))
    if fields["legal_basis"]:
        fields["legal_basis"] = LegalBasis(fields["legal_basis"])
    return CaseContext.from_store(**fields)


@functools.lru_cache(maxsize=1024)
def _principal(
    principal_id: str, name: str, agency: str, roles: str, access_key_id: str
) -> Principal:
    return Principal(
        id=principal_id,
        name=name,
        agency=agency,
        roles=tuple(Role(r) for r in json.loads(roles)),
        key_id=access_key_id,
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
