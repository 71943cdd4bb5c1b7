"""What CLI commands share: settings, a database session, and recording what they changed.

The CLI talks to the database directly, as the operator of the gateway host. What it changes
is recorded in the audit log like any admin action, attributed to the OS user who ran it.

Light at import: the database and the log are imported when a command opens them, so that
`facegate --help` and commands without a database start at once (gateway/cli/__init__.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

import typer

from gateway.errors import ConfigurationError, FacegateError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from gateway.audit.checkpoint import Signer
    from gateway.audit.fsck import LogChecker
    from gateway.audit.log import AuditLog
    from gateway.audit.query import RecordQuery
    from gateway.audit.reads import LogReader
    from gateway.audit.records import AuditRecord, EventType
    from gateway.config import Settings

T = TypeVar("T")

DATABASE_NOT_READY: Final = 3
"""The exit code of a command refused because the database is missing or not migrated."""


def settings_of(ctx: typer.Context) -> Settings:
    settings: Settings = ctx.obj
    return settings


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; a FacegateError becomes a one-line message and exit code 1
    (DatabaseNotReady: exit code 3)."""
    try:
        return asyncio.run(coroutine)
    except DatabaseNotReady as exc:
        typer.secho(f"error: {exc.message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(DATABASE_NOT_READY) from exc
    except FacegateError as exc:
        typer.secho(f"error: {exc.message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc


class DatabaseNotReady(ConfigurationError):
    """The database a command was pointed at does not exist or is not at facegate's schema
    revision: nothing was created or changed."""


@dataclass
class CliRuntime:
    db: AsyncSession
    audit: AuditLog  # the writer: the command's own records
    reader: LogReader
    records: RecordQuery
    checker: LogChecker
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]

    async def record(self, action: str, **detail: Any) -> None:
        """An admin action, committed with the command's own changes or not at all."""
        from gateway.audit.records import EventType

        await self.audit.append(self._record(EventType.ADMIN_ACTION, action, detail), db=self.db)

    async def record_read(self, action: str, **detail: Any) -> None:
        """An audit read, committed at once: the read that follows must not hold the log."""
        from gateway.audit.records import EventType

        await self.audit.append(self._record(EventType.AUDIT_READ, action, detail))

    def _record(self, event_type: EventType, action: str, detail: dict[str, Any]) -> AuditRecord:
        from gateway.admin import Actor, action_record

        return action_record(event_type, actor=Actor.cli(), action=action, detail=detail)


def log_signer(settings: Settings) -> Signer:
    """The audit log's signing key; a bad key file is a one-line error, not a traceback."""
    from gateway.audit.checkpoint import CheckpointError, Signer

    try:
        return Signer.load_or_create(settings.log_key_file, settings.log_origin)
    except (CheckpointError, OSError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc


def log_of(sessions: async_sessionmaker[AsyncSession], settings: Settings) -> AuditLog:
    """The audit log as the gateway opens it: its key, and the record beside the key of the
    last tree that key signed."""
    from gateway.audit.checkpoint import SignedTreeState
    from gateway.audit.log import AuditLog

    return AuditLog(
        sessions,
        signer=log_signer(settings),
        signed_state=SignedTreeState.beside(settings.log_key_file),
    )


@asynccontextmanager
async def runtime(settings: Settings) -> AsyncIterator[CliRuntime]:
    """A transaction that commits only if the command and its audit record both succeed.

    The database is checked first (``check_schema``): a missing or unmigrated database is
    refused with DatabaseNotReady before anything, the log's key included, is created."""
    from gateway.audit.fsck import LogChecker
    from gateway.audit.query import RecordQuery
    from gateway.audit.reads import LogReader
    from gateway.db import create_engine, session_factory

    await check_schema(settings.database_url)
    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    try:
        audit = log_of(sessions, settings)
    except BaseException:
        await engine.dispose()
        raise
    try:
        async with sessions() as db, db.begin():
            yield CliRuntime(
                db=db,
                audit=audit,
                reader=LogReader(sessions),
                records=RecordQuery(sessions),
                checker=LogChecker(sessions),
                settings=settings,
                sessions=sessions,
            )
    finally:
        await audit.aclose()
        await engine.dispose()


async def check_schema(database_url: str) -> None:
    """Raise DatabaseNotReady unless ``database_url`` names an existing database at the
    migrations' head revision. Creates nothing: an SQLite file that does not exist is not
    opened (opening would create it empty)."""
    from pathlib import Path

    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.ext.asyncio import create_async_engine

    from gateway.migrate import alembic_config

    try:
        url = make_url(database_url)
    except (SQLAlchemyError, ValueError):
        raise DatabaseNotReady("FACEGATE_DATABASE_URL is not a database URL") from None
    shown = url.render_as_string(hide_password=True)
    upgrade = f"run `facegate db upgrade` to create or migrate it (FACEGATE_DATABASE_URL={shown})"
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        path = Path(url.database or "")
        if not path.is_file():  # noqa: ASYNC240 (a stat, before any loop work)
            raise DatabaseNotReady(f"there is no database at {path}: {upgrade}")
    heads = set(ScriptDirectory.from_config(alembic_config(database_url)).get_heads())
    try:
        engine = create_async_engine(database_url)  # no pragmas: a read, changing nothing
    except (SQLAlchemyError, ImportError) as exc:
        raise DatabaseNotReady(f"cannot open the database {shown}: {exc}") from None
    try:
        async with engine.connect() as connection:
            current = await connection.run_sync(
                lambda sync: set(MigrationContext.configure(sync).get_current_heads())
            )
    except (SQLAlchemyError, OSError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise DatabaseNotReady(f"cannot open the database {shown}: {reason}") from None
    finally:
        await engine.dispose()
    if not current:
        raise DatabaseNotReady(f"the database holds no facegate schema: {upgrade}")
    if current != heads:
        raise DatabaseNotReady(
            f"the database is at revision {', '.join(sorted(current))}, this facegate"
            f" expects {', '.join(sorted(heads))}: {upgrade}"
        )
