"""`facegate audit list | export | verify | pin-head | public-key | rotate-key`: what an
auditor can do from the gateway host, and with an export, anywhere else; and the rotation
of the log's signing key."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from gateway.audit.checkpoint import Checkpoint, CheckpointError, Verifier
from gateway.audit.records import EventType
from gateway.audit.schemas import AuditQuery, TreeReport, VerifyReport
from gateway.audit.verifier import ENTRIES_FILE, verify_export
from gateway.cli.disclose import verify_packet_command
from gateway.cli.progress import progress_bar
from gateway.cli.runtime import CliRuntime, run, runtime, settings_of

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
        with progress_bar("verifying the export", _line_count(export)) as advance:
            report = verify_export(
                export, _verifier(public_key), checkpoint=note, older=older, progress=advance
            )
        _echo_tree(report)
        if not report.ok:
            raise typer.Exit(1)
        return

    async def _run() -> bool:
        async with runtime(settings_of(ctx)) as rt:
            verifier = _verifier(public_key) if public_key else _log_verifier(rt)
            chain, tree = await _check(rt, verifier, checkpoint=note, older=older)
            if await _unsigned_but_sound(rt, chain, note):
                # Nothing signed yet (entries from before the first checkpoint): the read's
                # record signs the first one, then the tree is checked against it.
                await rt.record_read("audit.verify")
                chain, tree = await _check(rt, verifier, checkpoint=note, older=older)
                recorded = True
            else:
                recorded = False
            _echo_chain(chain)
            _echo_tree(tree)
            if not (chain.ok and tree.ok):
                _echo_left_as_found()
                return False
            if not recorded:
                # Sound: only now is the read recorded, after the report it gave.
                await rt.record_read("audit.verify")
        return True

    if not run(_run()):
        raise typer.Exit(1)


@app.command("export")
def export(
    ctx: typer.Context,
    out: Annotated[Path, typer.Argument(help="directory to write entries.jsonl, checkpoint")],
) -> None:
    """Write the latest signed checkpoint and every entry it covers, for offline checking
    with `facegate audit verify --export DIR --public-key FILE`. The log is checked first,
    without writing to it: a damaged log is exported as found, its first bad record named,
    and the command exits 1."""

    async def _run() -> bool:
        async with runtime(settings_of(ctx)) as rt:
            verifier = _log_verifier(rt)
            chain, tree = await _check(rt, verifier)
            if await _unsigned_but_sound(rt, chain, None):
                await rt.record_read("audit.export")
                chain, tree = await _check(rt, verifier)
            sound = chain.ok and tree.ok
            stored = None
            latest = await rt.reader.latest_checkpoint()
            if latest is not None:
                with progress_bar("exporting", latest.tree_size) as advance:
                    stored = await rt.checker.export(out, progress=advance)
                (out / "log.pub").write_text(str(verifier) + "\n")
            if sound:
                await rt.record_read("audit.export")
        if not sound or stored is None:
            _echo_chain(chain)
            _echo_tree(tree)
            if stored is not None:
                typer.secho(f"exported the damaged log as found to {out}", fg=typer.colors.RED)
            _echo_left_as_found()
            return False
        typer.echo(f"exported {stored.tree_size} entries and their checkpoint to {out}")
        return True

    if not run(_run()):
        raise typer.Exit(1)


@app.command("pin-head")
def pin_head(
    ctx: typer.Context,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            help="a checkpoint held outside the database (a witness's or an auditor's copy);"
            " default: the latest the database holds, which trusts the database"
        ),
    ] = None,
) -> None:
    """Check the log against a checkpoint and record it as the last tree the log's key
    signed (the file beside the key). For a lost record, or a gateway upgraded from a
    version that kept none: the log refuses to sign until one is pinned."""
    note = _read(checkpoint, "the checkpoint") if checkpoint else None

    async def _run() -> bool:
        async with runtime(settings_of(ctx)) as rt:
            verifier = _log_verifier(rt)
            chain, tree = await _check(rt, verifier, checkpoint=note)
            if not (chain.ok and tree.ok):
                _echo_chain(chain)
                _echo_tree(tree)
                typer.secho("nothing pinned: the log does not verify", fg=typer.colors.RED)
                return False
            assert tree.tree_size is not None and tree.root_hash is not None  # tree.ok
            pinned = Checkpoint(verifier.name, tree.tree_size, base64.b64decode(tree.root_hash))
            state = rt.audit.signed_state
            assert state is not None  # the CLI's log always has one
            state.record(pinned)
            recorded = state.read()
            await rt.record_read("audit.pin_head", tree_size=pinned.size)
        if recorded != pinned:
            typer.secho(
                f"{state.path} already records a larger tree ({recorded.size if recorded else 0}"
                " entries); left as it was",
                fg=typer.colors.YELLOW,
            )
        else:
            typer.echo(f"pinned the tree of {pinned.size} entries in {state.path}")
        if note is None:
            typer.secho(
                "note: pinned the database's own latest checkpoint; compare it with a copy"
                " held outside the database",
                fg=typer.colors.YELLOW,
            )
        return True

    if not run(_run()):
        raise typer.Exit(1)


async def _check(
    rt: CliRuntime,
    verifier: Verifier,
    *,
    checkpoint: bytes | None = None,
    older: Sequence[bytes] = (),
) -> tuple[VerifyReport, TreeReport]:
    """The chain and the tree, read only: nothing is appended before the log is known sound
    (an append would fail on a damaged log, or build on the damage)."""
    size = await rt.reader.tree_size()
    with progress_bar("checking the hash chain", size) as advance:
        chain = await rt.checker.verify(progress=advance)
    with progress_bar("checking the tree", size) as advance:
        tree = await rt.checker.verify_tree(
            verifier, checkpoint=checkpoint, older=older, all_checkpoints=True, progress=advance
        )
    return chain, tree


def _line_count(export: Path) -> int | None:
    try:
        with (export / ENTRIES_FILE).open("rb") as handle:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    except OSError:
        return None


async def _unsigned_but_sound(rt: CliRuntime, chain: VerifyReport, note: bytes | None) -> bool:
    """A sound chain that no checkpoint covers yet (appended before the key's first
    signature, e.g. just after `facegate db upgrade`): nothing to check the tree against."""
    return chain.ok and note is None and await rt.reader.latest_checkpoint() is None


def _log_verifier(rt: CliRuntime) -> Verifier:
    assert rt.audit.signer is not None  # the CLI's log always has the key
    return rt.audit.signer.verifier


def _echo_chain(chain: VerifyReport) -> None:
    if chain.ok:
        typer.echo(f"ok: {chain.entries_checked} records verified, head {chain.head_hash}")
        return
    typer.secho(
        f"BROKEN at record {chain.first_bad_seq}: {chain.problem} ({chain.detail}); "
        f"{chain.entries_checked} records before it verified",
        fg=typer.colors.RED,
    )


def _echo_left_as_found() -> None:
    typer.secho(
        "the log was left as found: this read was not recorded, nothing was appended",
        fg=typer.colors.RED,
    )


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
            page = await rt.records.query(filters, limit=limit)
        for entry in page.entries:
            typer.echo(entry.model_dump_json())

    run(_run())


@app.command("public-key")
def public_key(
    ctx: typer.Context,
    chain: Annotated[
        bool, typer.Option(help="every key the log has had, oldest first, with its handover")
    ] = False,
) -> None:
    """Print the log's public key (give it to auditors and witnesses); with --chain, every
    key since the first, each with the tree size its handover signed. An auditor who pinned
    any one of them verifies the whole log (`facegate audit verify --public-key`)."""
    from gateway.audit.handover import KeyChain

    async def _run() -> list[str]:
        async with runtime(settings_of(ctx)) as rt:
            current = _log_verifier(rt)
            if not chain:
                return [str(current)]
            keys = KeyChain.build(current, await rt.checker.handovers())
        lines = [str(keys.keys[0])]
        for handover in keys.handovers:
            lines.append(f"{handover.new}\thanded over at tree size {handover.checkpoint.size}")
        return lines

    try:
        lines = run(_run())
    except CheckpointError as exc:
        typer.secho(f"error: the chain of keys does not verify: {exc}", fg="red", err=True)
        raise typer.Exit(1) from exc
    for line in lines:
        typer.echo(line)


@app.command("rotate-key")
def rotate_key(ctx: typer.Context) -> None:
    """Rotate the log's signing key: the log is verified, the old key signs a last
    checkpoint (the handover) naming the new key, and the new key continues the same tree.
    The rotation is an entry in the log. Restart every gateway process afterwards: one
    still holding the old key refuses to sign. Exit 1, changing nothing, if the log does
    not verify."""
    from gateway.admin import Actor
    from gateway.rotation import rotate_log_key

    settings = settings_of(ctx)

    async def _run() -> bool:
        async with runtime(settings) as rt:
            old = _log_verifier(rt)
            chain, tree = await _check(rt, old)
            if not (chain.ok and tree.ok) and await rt.reader.latest_checkpoint() is not None:
                _echo_chain(chain)
                _echo_tree(tree)
                typer.secho("key not rotated: the log does not verify", fg=typer.colors.RED)
                return False
            rotated = await rotate_log_key(
                sessions=rt.sessions, key_file=settings.log_key_file, actor=Actor.cli()
            )
            # Verified again across the handover, as an auditor who pinned the old key would.
            chain, tree = await _check(rt, old)
            _echo_chain(chain)
            _echo_tree(tree)
        where = f"record {rotated.seq}, " if rotated.seq is not None else ""
        typer.echo(
            f"rotated: {where}handover at tree size {rotated.tree_size}\n"
            f"old key: {rotated.old_key}\nnew key: {rotated.new_key}"
        )
        return chain.ok and tree.ok

    try:
        ok = run(_run())
    except CheckpointError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc
    if not ok:
        raise typer.Exit(1)


app.command("verify-packet")(verify_packet_command)
