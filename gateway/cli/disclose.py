"""`facegate disclose` builds one case's disclosure packet from the log; `facegate audit
verify-packet` checks a packet anywhere, with the log's public key and nothing else."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gateway.cli.runtime import check_schema, log_of, run, settings_of

if TYPE_CHECKING:
    from gateway.audit.packet_verifier import PacketReport
    from gateway.audit.records import AuditRecord

# The heavy imports are inside the commands: `verify-packet` hangs under `facegate audit`,
# whose --help must not load SQLAlchemy or the app (tests/cli/test_cli_startup.py).


def disclose(
    ctx: typer.Context,
    case: Annotated[str, typer.Option("--case", help="the case number")],
    out: Annotated[Path, typer.Option("--out", help="directory to write the packet into")],
) -> None:
    """Write the disclosure packet of one case: every log entry of the case with its
    inclusion proof against a freshly signed checkpoint (packet.json, packet.html,
    checkpoint, log.pub). The disclosure is recorded in the log as an audit read."""
    from gateway.audit.disclosure import build_packet, write_packet
    from gateway.db import create_engine, session_factory

    settings = settings_of(ctx)

    async def _run() -> tuple[int, int]:
        await check_schema(settings.database_url)  # refuse an unmigrated database, create nothing
        engine = create_engine(settings.database_url)
        sessions = session_factory(engine)
        audit = log_of(sessions, settings)
        try:
            packet = await build_packet(
                audit=audit,
                sessions=sessions,
                case_number=case,
                read_record=_cli_read,
                now=datetime.now(UTC),
            )
        finally:
            await audit.aclose()
            await engine.dispose()
        write_packet(packet, out)
        return packet.entry_count, packet.checkpoint.tree_size

    count, size = run(_run())
    typer.echo(
        f"wrote the packet of case {case} to {out}: {count} entries of the case and the"
        f" disclosure record, proved against the checkpoint of {size} entries"
    )


def _cli_read(action: str, detail: Mapping[str, Any]) -> AuditRecord:
    from gateway.admin import Actor, action_record
    from gateway.audit.records import EventType

    return action_record(EventType.AUDIT_READ, actor=Actor.cli(), action=action, detail=detail)


def verify_packet_command(
    directory: Annotated[Path, typer.Argument(help="the packet directory")],
    public_key: Annotated[
        Path,
        typer.Option(
            "--public-key",
            help="file holding the log's public key (name+id+key), obtained from the log's"
            " operator or a witness, not from the packet",
        ),
    ],
    older_checkpoint: Annotated[
        list[Path] | None,
        typer.Option(
            help="a checkpoint you hold (e.g. an earlier packet's) that must be a"
            " prefix of this packet's (repeatable)"
        ),
    ] = None,
) -> None:
    """Verify a disclosure packet offline: the checkpoint's signature, each entry's leaf
    hash and inclusion proof, and that no entry of the case was dropped from or added to
    the packet. No database, no settings. Exit 1 if anything fails, 2 if the key or an
    older checkpoint cannot be read."""
    from gateway.audit.checkpoint import CheckpointError, Verifier
    from gateway.audit.packet_verifier import verify_packet

    try:
        verifier = Verifier.parse(public_key.read_text(encoding="utf-8", errors="replace"))
        older = [path.read_bytes() for path in older_checkpoint or []]
    except (OSError, CheckpointError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc
    report = verify_packet(directory, verifier, older=older)
    _echo(report)
    if not report.ok:
        raise typer.Exit(1)


def _echo(report: PacketReport) -> None:
    for entry in report.entries:
        if entry.ok:
            typer.echo(f"ok      seq {entry.seq} ({entry.event_type})")
        else:
            typer.secho(
                f"FAILED  seq {entry.seq} ({entry.event_type}): {entry.problem}",
                fg=typer.colors.RED,
            )
    for warning in report.warnings:
        typer.secho(f"warning {warning}", fg=typer.colors.YELLOW)
    for problem in report.problems:
        typer.secho(f"FAILED  {problem}", fg=typer.colors.RED)
    if report.ok:
        typer.echo(
            f"ok: case {report.case_number}: {report.entry_count} entries and the disclosure"
            f" record are in the log's signed tree of {report.tree_size} entries"
            f" (root {report.root_hash}), none missing from the disclosure record's list"
        )
    else:
        failed = sum(1 for e in report.entries if not e.ok) + len(report.problems)
        typer.secho(f"PACKET DOES NOT VERIFY: {failed} failure(s)", fg=typer.colors.RED)
