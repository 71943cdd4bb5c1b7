"""Admin commands run on the gateway host: principals, case sessions, warrants."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from gateway.admin import (
    disable_principal,
    enrol_principal,
    issue_key,
    open_session,
    register_warrant,
    revoke_key,
    withdraw_warrant,
)
from gateway.auth.principals import Role, get_principal, list_principals
from gateway.auth.secrets import MasterKey
from gateway.case import CaseContext, LegalBasis
from gateway.cli.runtime import run, runtime, settings_of
from gateway.context.warrants import (
    WarrantCreate,
    WarrantKind,
    list_warrants,
)
from gateway.errors import MalformedRequest
from gateway.leads.service import set_training
from gateway.operations import OperationKind

principals_app = typer.Typer(
    no_args_is_help=True, help="Enrol principals, issue and revoke API keys, disable them."
)
sessions_app = typer.Typer(no_args_is_help=True, help="Open case sessions for officers.")
warrants_app = typer.Typer(no_args_is_help=True, help="Register and revoke warrants.")


@principals_app.command("add")
def principals_add(
    ctx: typer.Context,
    principal_id: Annotated[str, typer.Argument(help="a stable id, e.g. a badge number")],
    name: Annotated[str, typer.Option()],
    agency: Annotated[str, typer.Option()],
    role: Annotated[list[Role], typer.Option(help="repeat for several roles")],
    trained_until: Annotated[
        datetime | None,
        typer.Option(formats=["%Y-%m-%d"], help="last day the training is valid (reviewers)"),
    ] = None,
) -> None:
    """Enrol a principal and print their first API key (shown once)."""

    async def _run() -> str:
        async with runtime(settings_of(ctx)) as rt:
            now = datetime.now(UTC)
            await enrol_principal(
                db=rt.db,
                principal_id=principal_id,
                name=name,
                agency=agency,
                roles=role,
                now=now,
                record=rt.record,
                trained_until=trained_until.date() if trained_until else None,
            )
            return await issue_key(db=rt.db, principal_id=principal_id, now=now, record=rt.record)

    typer.echo(run(_run()))


@principals_app.command("training")
def principals_training(
    ctx: typer.Context,
    principal_id: str,
    until: Annotated[
        datetime | None,
        typer.Option(formats=["%Y-%m-%d"], help="last day it is valid; omit to clear it"),
    ] = None,
) -> None:
    """Record a principal's training (reviewers need it current to review leads)."""

    async def _run() -> None:
        async with runtime(settings_of(ctx)) as rt:
            await set_training(
                db=rt.db,
                principal_id=principal_id,
                trained_until=until.date() if until else None,
                record=rt.record,
            )

    run(_run())
    typer.echo(f"{principal_id}: trained until {until.date() if until else 'none'}")


@principals_app.command("key")
def principals_key(ctx: typer.Context, principal_id: str) -> None:
    """Issue another API key for a principal (shown once)."""

    async def _run() -> str:
        async with runtime(settings_of(ctx)) as rt:
            return await issue_key(
                db=rt.db, principal_id=principal_id, now=datetime.now(UTC), record=rt.record
            )

    typer.echo(run(_run()))


@principals_app.command("revoke-key")
def principals_revoke_key(
    ctx: typer.Context,
    principal_id: Annotated[str, typer.Argument()],
    key_id: Annotated[str, typer.Argument(help="the id part of fgk_<id>.<secret>")],
) -> None:
    """Revoke one API key of a principal: it is refused from now on."""

    async def _run() -> str:
        async with runtime(settings_of(ctx)) as rt:
            revoked = await revoke_key(
                db=rt.db,
                principal_id=principal_id,
                key_id=key_id,
                now=datetime.now(UTC),
                record=rt.record,
            )
            return revoked.model_dump_json(indent=2)

    typer.echo(run(_run()))


@principals_app.command("disable")
def principals_disable(
    ctx: typer.Context,
    principal_id: Annotated[str, typer.Argument()],
    reason: Annotated[str, typer.Option(help="why, for the audit log")],
) -> None:
    """Disable a principal and revoke its open case sessions and API keys, at once."""

    async def _run() -> str:
        async with runtime(settings_of(ctx)) as rt:
            disabled = await disable_principal(
                db=rt.db,
                principal_id=principal_id,
                reason=reason,
                now=datetime.now(UTC),
                record=rt.record,
            )
            return disabled.model_dump_json(indent=2)

    typer.echo(run(_run()))


@principals_app.command("list")
def principals_list(ctx: typer.Context) -> None:
    async def _run() -> None:
        async with runtime(settings_of(ctx)) as rt:
            for principal in await list_principals(rt.db):
                roles = ",".join(principal.roles)
                typer.echo(f"{principal.id}\t{principal.agency}\t{roles}\t{principal.name}")

    run(_run())


@sessions_app.command("open")
def sessions_open(
    ctx: typer.Context,
    officer: Annotated[str, typer.Option(help="the officer's principal id")],
    purpose: Annotated[str | None, typer.Option()] = None,
    case: Annotated[str | None, typer.Option()] = None,
    offense: Annotated[str | None, typer.Option()] = None,
    legal_basis: Annotated[LegalBasis | None, typer.Option()] = None,
    warrant: Annotated[str | None, typer.Option()] = None,
    ttl_minutes: Annotated[int | None, typer.Option()] = None,
) -> None:
    """Open a case session and print its AWS-style credentials as JSON (shown once)."""
    settings = settings_of(ctx)

    async def _run() -> str:
        async with runtime(settings) as rt:
            principal = await get_principal(rt.db, officer)
            if principal is None:
                raise MalformedRequest(f"no principal {officer!r}")
            issued = await open_session(
                db=rt.db,
                master_key=MasterKey.load_or_create(settings.master_key_file),
                principal=principal,
                context=CaseContext.checked(
                    purpose=purpose,
                    case_number=case,
                    offense=offense,
                    legal_basis=legal_basis,
                    warrant_id=warrant,
                ),
                ttl=timedelta(minutes=ttl_minutes) if ttl_minutes else settings.session_ttl,
                max_ttl=settings.session_max_ttl,
                now=datetime.now(UTC),
                record=rt.record,
            )
            return issued.model_dump_json(indent=2)

    typer.echo(run(_run()))


@warrants_app.command("add")
def warrants_add(
    ctx: typer.Context,
    warrant_id: Annotated[str, typer.Argument()],
    kind: Annotated[WarrantKind, typer.Option()],
    court: Annotated[str, typer.Option(help="the issuing court")],
    case: Annotated[str, typer.Option(help="the case number it was issued for")],
    operation: Annotated[list[OperationKind], typer.Option(help="repeat: kinds it authorises")],
    agency: Annotated[
        str, typer.Option(help="the agency it is issued to: only its officers use it")
    ],
    valid_until: Annotated[datetime, typer.Option(help="UTC, e.g. 2026-12-31T23:59:59")],
    valid_from: Annotated[datetime | None, typer.Option(help="UTC; default now")] = None,
    collection: Annotated[list[str] | None, typer.Option(help="repeat; none means any")] = None,
    realtime: Annotated[bool, typer.Option(help="court orders only")] = False,
    subject: Annotated[str | None, typer.Option(help="subject description")] = None,
    officer: Annotated[
        list[str] | None, typer.Option(help="repeat: the only officers who may use it")
    ] = None,
) -> None:
    """Register a warrant or court order from its signed document."""

    def utc(value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value

    async def _run() -> str:
        async with runtime(settings_of(ctx)) as rt:
            now = datetime.now(UTC)
            try:
                warrant = WarrantCreate(
                    id=warrant_id,
                    kind=kind,
                    issuing_court=court,
                    case_number=case,
                    operations=operation,
                    collections=collection or [],
                    realtime=realtime,
                    subject_description=subject,
                    valid_from=utc(valid_from) if valid_from else now,
                    valid_until=utc(valid_until),
                    agency=agency,
                    officers=officer or [],
                )
            except ValueError as exc:
                raise MalformedRequest(str(exc)) from exc
            created = await register_warrant(
                db=rt.db, warrant=warrant, created_by="cli", now=now, record=rt.record
            )
            return created.model_dump_json(indent=2)

    typer.echo(run(_run()))


@warrants_app.command("list")
def warrants_list(ctx: typer.Context, case: Annotated[str | None, typer.Option()] = None) -> None:
    async def _run() -> None:
        async with runtime(settings_of(ctx)) as rt:
            for warrant in await list_warrants(rt.db, case_number=case):
                typer.echo(json.dumps(warrant.model_dump(mode="json")))

    run(_run())


@warrants_app.command("revoke")
def warrants_revoke(
    ctx: typer.Context,
    warrant_id: str,
    reason: Annotated[str, typer.Option()],
) -> None:
    async def _run() -> None:
        async with runtime(settings_of(ctx)) as rt:
            await withdraw_warrant(
                db=rt.db,
                warrant_id=warrant_id,
                reason=reason,
                now=datetime.now(UTC),
                record=rt.record,
            )

    run(_run())
    typer.echo(f"revoked {warrant_id}")
