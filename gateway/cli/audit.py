"""`facegate audit list | verify`: what an auditor can do from the gateway host."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from gateway.audit.records import EventType
from gateway.audit.schemas import AuditQuery
from gateway.cli.runtime import run, runtime, settings_of

app = typer.Typer(no_args_is_help=True, help="Read and verify the audit log.")


@app.command("verify")
def verify(ctx: typer.Context) -> None:
    """Re-check the whole hash chain; name the first broken record. Exit 1 if broken."""

    async def _run() -> bool:
        async with runtime(settings_of(ctx)) as rt:
            await rt.record_read("audit.verify")
            report = await rt.audit.verify()
        if report.ok:
            typer.echo(f"ok: {report.entries_checked} records verified, head {report.head_hash}")
        else:
            typer.secho(
                f"BROKEN at record {report.first_bad_seq}: {report.problem} ({report.detail}); "
                f"{report.entries_checked} records before it verified",
                fg=typer.colors.RED,
            )
        return report.ok

    if not run(_run()):
        raise typer.Exit(1)


@app.command("list")
def list_records(
    ctx: typer.Context,
    case: Annotated[str | None, typer.Option()] = None,
    agency: Annotated[str | None, typer.Option()] = None,
    officer: Annotated[str | None, typer.Option()] = None,
    decision: Annotated[str | None, typer.Option()] = None,
    event_type: Annotated[EventType | None, typer.Option()] = None,
    since: Annotated[datetime | None, typer.Option(help="UTC")] = None,
    limit: Annotated[int, typer.Option()] = 100,
) -> None:
    """Print matching records as JSON lines, oldest first."""

    async def _run() -> None:
        filters = AuditQuery(
            case_number=case,
            agency=agency,
            officer=officer,
            decision=decision,
            event_type=event_type,
            time_from=since.astimezone() if since else None,
        )
        async with runtime(settings_of(ctx)) as rt:
            await rt.record_read(
                "audit.list",
                filters=filters.model_dump(mode="json", exclude_none=True),
            )
            page = await rt.audit.query(filters, limit=limit)
        for entry in page.entries:
            typer.echo(entry.model_dump_json())

    run(_run())
