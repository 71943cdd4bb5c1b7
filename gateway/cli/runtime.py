"""What CLI commands share: settings, a database session, and recording what they changed.

The CLI talks to the database directly, as the operator of the gateway host. What it changes
is recorded in the audit log like any admin action, attributed to the OS user who ran it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.admin import Actor, action_record
from gateway.audit.checkpoint import CheckpointError, SignedTreeState, Signer
from gateway.audit.fsck import LogChecker
from gateway.audit.log import AuditLog
from gateway.audit.query import RecordQuery
from gateway.audit.reads import LogReader
from gateway.audit.records import AuditRecord, EventType
from gateway.config import Settings
from gateway.db import create_engine, session_factory
from gateway.errors import FacegateError

T = TypeVar("T")


def settings_of(ctx: typer.Context) -> Settings:
    settings: Settings = ctx.obj
    return settings


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; a FacegateError becomes a one-line message and exit code 1."""
    try:
        return asyncio.run(coroutine)
    except FacegateError as exc:
        typer.secho(f"error: {exc.message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc


@dataclass
class CliRuntime:
    db: AsyncSession
    audit: AuditLog  # the writer: the command's own records
    reader: LogReader
    records: RecordQuery
    checker: LogChecker
    settings: Settings

    async def record(self, action: str, **detail: Any) -> None:
        """An admin action, committed with the command's own changes or not at all."""
        await self.audit.append(self._record(EventType.ADMIN_ACTION, action, detail), db=self.db)

    async def record_read(self, action: str, **detail: Any) -> None:
        """An audit read, committed at once: the read that follows must not hold the log."""
        await self.audit.append(self._record(EventType.AUDIT_READ, action, detail))

    def _record(self, event_type: EventType, action: str, detail: dict[str, Any]) -> AuditRecord:
        return action_record(event_type, actor=Actor.cli(), action=action, detail=detail)


def log_signer(settings: Settings) -> Signer:
    """The audit log's signing key; a bad key file is a one-line error, not a traceback."""
    try:
        return Signer.load_or_create(settings.log_key_file, settings.log_origin)
    except (CheckpointError, OSError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc


def log_of(sessions: async_sessionmaker[AsyncSession], settings: Settings) -> AuditLog:
    """The audit log as the gateway opens it: its key, and the record beside the key of the
    last tree that key signed."""
    return AuditLog(
        sessions,
        signer=log_signer(settings),
        signed_state=SignedTreeState.beside(settings.log_key_file),
    )


@asynccontextmanager
async def runtime(settings: Settings) -> AsyncIterator[CliRuntime]:
    """A transaction that commits only if the command and its audit record both succeed."""
    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    audit = log_of(sessions, settings)
    try:
        async with sessions() as db, db.begin():
            yield CliRuntime(
                db=db,
                audit=audit,
                reader=LogReader(sessions),
                records=RecordQuery(sessions),
                checker=LogChecker(sessions),
                settings=settings,
            )
    finally:
        await audit.aclose()
        await engine.dispose()
