"""Admin actions, each written once: the management API and the CLI call these and only
these, so both change the same rows and record the same fields.

Each action takes keyword-only arguments and a `record` callable that writes its audit
record in the caller's transaction: the change and its record commit together or not at
all, and the change takes effect (the key or session is refused) from that commit on.
Every recorder builds its record with `action_record`, so an action is recorded alike
whoever calls it; only the attribution (`Actor`) differs.

Admin actions are not all about authentication (warrants; next, leads, reviews and
reports), so they live here, beside the request path rather than inside one of its parts.
A new action: a function here, then a route in gateway/api/ and a command in gateway/cli/.
"""

from __future__ import annotations

import getpass
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.audit.records import AuditRecord, EventType
from gateway.auth.api_keys import issue_api_key, key_id_of, revoke_all_api_keys, revoke_api_key
from gateway.auth.models import PrincipalRow
from gateway.auth.principals import Principal, Role, create_principal
from gateway.auth.secrets import MasterKey
from gateway.auth.sessions import (
    IssuedCredentials,
    open_case_session,
    revoke_case_session,
    revoke_open_sessions,
)
from gateway.case import CaseContext
from gateway.context.warrants import WarrantCreate, WarrantRead, create_warrant, revoke_warrant
from gateway.errors import MalformedRequest


class Recorder(Protocol):
    """Writes one admin action's audit record in the caller's transaction (the API's
    record_change, the CLI's CliRuntime.record), attributed to whoever acts."""

    async def __call__(self, action: str, **detail: Any) -> None: ...


@dataclass(frozen=True)
class Actor:
    """Whom an admin action or an audit read is attributed to in the log."""

    officer: str
    agency: str | None = None
    key_id: str | None = None
    client_address: str | None = None
    via: str | None = None  # "cli": run on the gateway's host, not through the API

    @classmethod
    def principal(cls, principal: Principal, *, client_address: str | None) -> Actor:
        """A principal acting through the management API with its API key."""
        return cls(
            officer=principal.id,
            agency=principal.agency,
            key_id=principal.key_id,
            client_address=client_address,
        )

    @classmethod
    def cli(cls) -> Actor:
        """The OS user running a `facegate` command on the gateway's host."""
        return cls(officer=f"cli:{getpass.getuser()}", via="cli")


def action_record(
    event_type: EventType,
    *,
    actor: Actor,
    action: str,
    detail: Mapping[str, Any],
    request_id: str | None = None,
) -> AuditRecord:
    """The audit record of an admin action (or an audit read): the one place it is built."""
    via = {"via": actor.via} if actor.via is not None else {}
    return AuditRecord(
        time=datetime.now(UTC),
        request_id=request_id or uuid.uuid4().hex,
        event_type=event_type,
        agency=actor.agency,
        officer=actor.officer,
        key_id=actor.key_id,
        client_address=actor.client_address,
        detail={"action": action, **via, **detail},
    )


class ApiKeyRevoked(BaseModel):
    principal_id: str
    api_key_id: str
    revoked_at: datetime
    revoked_sessions: list[str]  # access key ids of the open sessions opened with the key


class PrincipalDisabled(BaseModel):
    principal_id: str
    disabled_at: datetime
    revoked_sessions: list[str]  # access key ids of the case sessions it had open
    revoked_api_keys: list[str]  # key ids


async def enrol_principal(
    *,
    db: AsyncSession,
    principal_id: str,
    name: str,
    agency: str,
    roles: Sequence[Role],
    now: datetime,
    record: Recorder,
    trained_until: date | None = None,
) -> Principal:
    """Enrol a principal (recorded as `principal.create`, with its training's last day)."""
    principal = await create_principal(
        db,
        principal_id=principal_id,
        name=name,
        agency=agency,
        roles=roles,
        now=now,
        trained_until=trained_until,
    )
    training = {"trained_until": trained_until.isoformat()} if trained_until else {}
    await record("principal.create", principal=principal.model_dump(mode="json"), **training)
    return principal


async def issue_key(*, db: AsyncSession, principal_id: str, now: datetime, record: Recorder) -> str:
    """Issue an API key, returned whole this once (recorded as `api_key.issue`, by id)."""
    api_key = await issue_api_key(db, principal_id=principal_id, now=now)
    await record("api_key.issue", principal_id=principal_id, api_key_id=key_id_of(api_key))
    return api_key


async def open_session(
    *,
    db: AsyncSession,
    master_key: MasterKey,
    principal: Principal,
    context: CaseContext,
    ttl: timedelta,
    max_ttl: timedelta,
    now: datetime,
    record: Recorder,
) -> IssuedCredentials:
    """Open a case session (recorded as `session.open`: its key id, principal, expiry and
    case context; never the secret)."""
    issued = await open_case_session(
        db,
        master_key=master_key,
        principal=principal,
        context=context,
        ttl=ttl,
        max_ttl=max_ttl,
        now=now,
    )
    await record(
        "session.open",
        access_key_id=issued.access_key_id,
        principal_id=principal.id,
        expires_at=issued.expires_at.isoformat(),
        **issued.context.model_dump(mode="json"),
    )
    return issued


async def close_session(
    *, db: AsyncSession, access_key_id: str, by: Principal, now: datetime, record: Recorder
) -> None:
    """Revoke a case session: its officer's or, for anyone's, an admin's (`session.revoke`)."""
    await revoke_case_session(db, access_key_id=access_key_id, by=by, now=now)
    await record("session.revoke", access_key_id=access_key_id)


async def register_warrant(
    *,
    db: AsyncSession,
    warrant: WarrantCreate,
    created_by: str,
    now: datetime,
    record: Recorder,
) -> WarrantRead:
    """Register a warrant (recorded as `warrant.create`, without the subject description)."""
    created = await create_warrant(db, warrant=warrant, created_by=created_by, now=now)
    await record(
        "warrant.create", warrant=created.model_dump(mode="json", exclude={"subject_description"})
    )
    return created


async def withdraw_warrant(
    *, db: AsyncSession, warrant_id: str, reason: str, now: datetime, record: Recorder
) -> WarrantRead:
    """Revoke a warrant; identifications under it are refused from the commit on
    (`warrant.revoke`)."""
    revoked = await revoke_warrant(db, warrant_id=warrant_id, reason=reason, now=now)
    await record("warrant.revoke", warrant_id=warrant_id, reason=reason)
    return revoked


async def revoke_key(
    *, db: AsyncSession, principal_id: str, key_id: str, now: datetime, record: Recorder
) -> ApiKeyRevoked:
    """Revoke one API key of a principal and the open case sessions opened with it (a leaked
    key's sessions stop with it); recorded as `api_key.revoke`."""
    revoked_at = await revoke_api_key(db, principal_id=principal_id, key_id=key_id, now=now)
    sessions = await revoke_open_sessions(db, principal_id=principal_id, now=now, api_key_id=key_id)
    await record(
        "api_key.revoke", principal_id=principal_id, api_key_id=key_id, revoked_sessions=sessions
    )
    return ApiKeyRevoked(
        principal_id=principal_id,
        api_key_id=key_id,
        revoked_at=revoked_at,
        revoked_sessions=sessions,
    )


async def disable_principal(
    *, db: AsyncSession, principal_id: str, reason: str, now: datetime, record: Recorder
) -> PrincipalDisabled:
    """Disable a principal, revoke its open case sessions and its API keys (recorded as
    `principal.disable` with the reason and what was revoked).

    Disabling alone already refuses the principal's keys and sessions (both are loaded with
    their principal); revoking them as well keeps them dead should the principal be enabled
    again, and names in the log exactly which credentials stopped.
    """
    row = await db.get(PrincipalRow, principal_id)
    if row is None:
        raise MalformedRequest(f"no principal {principal_id!r}")
    if row.disabled_at is None:
        row.disabled_at = now
    sessions = await revoke_open_sessions(db, principal_id=principal_id, now=now)
    keys = await revoke_all_api_keys(db, principal_id=principal_id, now=now)
    await record(
        "principal.disable",
        principal_id=principal_id,
        reason=reason,
        revoked_sessions=sessions,
        revoked_api_keys=keys,
    )
    return PrincipalDisabled(
        principal_id=principal_id,
        disabled_at=row.disabled_at,
        revoked_sessions=sessions,
        revoked_api_keys=keys,
    )
