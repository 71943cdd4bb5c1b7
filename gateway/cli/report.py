"""`facegate report list | make | verify`: reports from the audit log (gateway/reports/)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from gateway.admin import Actor, action_record
from gateway.audit.records import EventType
from gateway.audit.verifier import CHECKPOINT_FILE
from gateway.cli.runtime import check_schema, log_of, run, settings_of
from gateway.db import create_engine, session_factory
from gateway.reports.render import Format, render
from gateway.reports.service import list_templates, make_report, public_key_of
from gateway.reports.verify import verify_report

app = typer.Typer(no_args_is_help=True, help="Reports from the audit log, every figure provable.")


@app.command("list")
def list_command(ctx: typer.Context) -> None:
    """The installed report templates (policies/reports/templates)."""
    for template in list_templates(policy_dir=settings_of(ctx).policy_dir):
        typer.echo(f"{template.id:18} {template.period:8} {template.law}: {template.title}")


@app.command("make")
def make(
    ctx: typer.Context,
    template: Annotated[str, typer.Argument(help="a template id (facegate report list)")],
    period: Annotated[str, typer.Option(help="2026, 2026-Q4 or 2026-11 (UTC)")],
    out: Annotated[Path, typer.Option(help="the file to write")],
    audience: Annotated[str, typer.Option(help="public or oversight")] = "public",
    fmt: Annotated[str, typer.Option("--format", help="json, csv or html")] = "json",
) -> None:
    """Make a report at the log's latest signed checkpoint; its making is recorded in the
    log (a `report` event with its digest) before the file is written."""
    if fmt not in {"json", "csv", "html"}:
        typer.secho("error: --format must be json, csv or html", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    chosen: Format = "json" if fmt == "json" else "csv" if fmt == "csv" else "html"

    settings = settings_of(ctx)

    async def _run() -> str:
        await check_schema(settings.database_url)  # refuse an unmigrated database, create nothing
        engine = create_engine(settings.database_url)
        sessions = session_factory(engine)
        audit = log_of(sessions, settings)

        async def record(action: str, **detail: Any) -> None:
            entry = action_record(EventType.REPORT, actor=Actor.cli(), action=action, detail=detail)
            await audit.append(entry)  # committed (and signed) before the file is written

        try:
            report = await make_report(
                template_id=template,
                period=period,
                audience=audience,
                policy_dir=settings.policy_dir,
                audit=audit,
                sessions=sessions,
                generated_by=Actor.cli().officer,
                now=datetime.now(UTC),
                record=record,
            )
        finally:
            await audit.aclose()
            await engine.dispose()
        return render(report, chosen)

    out.write_text(run(_run()))
    typer.echo(f"wrote {out}")


@app.command("verify")
def verify(
    report: Annotated[Path, typer.Argument(help="a report in the JSON format")],
    export: Annotated[Path, typer.Option(help="an export of the log (facegate audit export)")],
    public_key: Annotated[
        Path | None,
        typer.Option(
            help="the log's public key, from a source you trust (default: DIR/log.pub, which"
            " only proves the export and the report agree with each other)"
        ),
    ] = None,
) -> None:
    """Recompute every figure of REPORT from the export, check the export against the
    report's checkpoint and the checkpoint's signature. Exit 1 if anything differs."""
    key_path = public_key or export / "log.pub"
    try:
        verifier = public_key_of(key_path.read_text())
        text = report.read_bytes()
    except OSError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc
    if not (export / CHECKPOINT_FILE).exists():
        typer.secho(f"error: {export} is not an export (no checkpoint)", fg="red", err=True)
        raise typer.Exit(2)
    check = verify_report(report_text=text, export_dir=export, verifier=verifier)
    for difference in check.differing:
        typer.secho(
            f"DIFFERS {difference.id}: the report says {difference.stated!r},"
            f" the log gives {difference.recomputed!r}",
            fg=typer.colors.RED,
        )
    for problem in check.problems:
        if not problem.startswith("figure "):
            typer.secho(f"FAILED: {problem}", fg=typer.colors.RED)
    if not check.ok:
        raise typer.Exit(1)
    recorded = (
        f"; its making is recorded at seq {check.recorded_at_seq}"
        if check.recorded_at_seq is not None
        else "; the export holds no record of its making (made after the export, or elsewhere)"
    )
    typer.echo(
        f"ok: {check.figures_checked} figures recomputed from the export, checkpoint signed"
        f" by the log's key{recorded}"
    )
