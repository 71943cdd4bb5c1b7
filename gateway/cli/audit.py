"""`facegate audit list | export | verify`: what an auditor can do from the gateway host, and
with an export, anywhere else."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from gateway.audit.checkpoint import CheckpointError, Verifier
from gateway.audit.records import EventType
from gateway.audit.schemas import AuditQuery, TreeReport
from gateway.audit.verifier import verify_export
from gateway.cli.runtime import run, runtime, settings_of

app = typer.Typer(no_args_is_help=True, help="Read, export and verify the audit log.")

PublicKeyOption = Annotated[
    Path | None,
    typer.Option(
        "--public-key",
        help="file holding the log's public key (name+id+key); needed with --export,"
        " default for a live database: the key the log signs with",
    ),
]


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        typer.secho(f"error: cannot read {what} {path}: {exc.strerror}", fg="red", err=True)
        raise typer.Exit(2) from exc


def _verifier(path: Path) -> Verifier:
    try:
        return Verifier.parse(_read(path, "the public key").decode("utf-8", "replace"))
    except CheckpointError as exc:
        typer.secho(f"error: {path}: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc


def _echo_tree(report: TreeReport) -> None:
    if report.ok:
        older = (
            f", consistent with {report.older_checkpoints_checked} older checkpoint(s)"
            if report.older_checkpoints_checked
            else ""
        )
        typer.echo(
            f"ok: tree of {report.tree_size} entries matches the signed checkpoint"
            f" (root {report.root_hash}){older}"
        )
        return
    where = f" at record {report.first_bad_seq}" if report.first_bad_seq is not None else ""
    typer.secho(f"TREE BROKEN{where}: {report.problem} ({report.detail})", fg=typer.colors.RED)


@app.command("verify")
def verify(
    ctx: typer.Context,
    export: Annotated[
        Path | None, typer.Option(help="verify this export directory instead of the database")
    ] = None,
    public_key: PublicKeyOption = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="verify against this checkpoint (default: the latest the log signed)"),
    ] = None,
    older_checkpoint: Annotated[
        list[Path] | None,
        typer.Option(help="an earlier checkpoint that must be a prefix of this log (repeatable)"),
    ] = None,
) -> None:
    """Check the log against a signed checkpoint and the public key; name the first bad
    record. Exit 1 if anything is wrong, 2 if the input cannot be read."""
    older = [_read(path, "the older checkpoint") for path in older_checkpoint or []]
    note = _read(checkpoint, "the checkpoint") if checkpoint else None

    if export is not None:
        if public_key is None:
            typer.secho("error: --export needs --public-key", fg=typer.colors.RED, err=True)
            raise typer.Exit(2)
        report = verify_export(export, _verifier(public_key), checkpoint=note, older=older)
        _echo_tree(report)
        if not report.ok:
            raise typer.Exit(1)
        return

    async def _run() -> bool:
        async with runtime(settings_of(ctx)) as rt:
            await rt.record_read("audit.verify")
            chain = await rt.audit.verify()
            assert rt.audit.signer is not None
            verifier = _verifier(public_key) if public_key else rt.audit.signer.verifier
            tree = await rt.audit.verify_tree(
                verifier, checkpoint=note, older=older, all_checkpoints=True
            )
        if chain.ok:
            typer.echo(f"ok: {chain.entries_checked} records verified, head {chain.head_hash}")
        else:
            typer.secho(
                f"BROKEN at record {chain.first_bad_seq}: {chain.problem} ({chain.detail}); "
                f"{chain.entries_checked} records before it verified",
                fg=typer.colors.RED,
            )
        _echo_tree(tree)
        return chain.ok and tree.ok

    if not run(_run()):
        raise typer.Exit(1)


@app.command("export")
def export(
    ctx: typer.Context,
    out: Annotated[Path, typer.Argument(help="directory to write entries.jsonl, checkpoint")],
) -> None:
    """Write the latest signed checkpoint and every entry it covers, for offline checking
    with `facegate audit verify --export DIR --public-key FILE`."""

    async def _run() -> None:
        async with runtime(settings_of(ctx)) as rt:
            await rt.record_read("audit.export")
            stored = await rt.audit.export(out)
            assert rt.audit.signer is not None
            (out / "log.pub").write_text(str(rt.audit.signer.verifier) + "\n")
        typer.echo(f"exported {stored.tree_size} entries and their checkpoint to {out}")

    run(_run())


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
