"""`facegate keys init-log | rotate-master | retire-master`: the audit log's signing key
(rotated with `facegate audit rotate-key`) and the master key of session secrets."""

from __future__ import annotations

import typer

from gateway.cli.runtime import log_signer, run, runtime, settings_of

app = typer.Typer(no_args_is_help=True, help="Signing keys and the master key.")


@app.command("init-log")
def init_log(ctx: typer.Context) -> None:
    """Create the audit log's Ed25519 key (FACEGATE_LOG_KEY_FILE, mode 0600) if missing, and
    print its public key: give that to auditors and witnesses."""
    settings = settings_of(ctx)
    existed = settings.log_key_file.exists()
    signer = log_signer(settings)
    state = "exists" if existed else "created"
    typer.echo(f"{state}: {settings.log_key_file}", err=True)
    typer.echo(str(signer.verifier))


@app.command("rotate-master")
def rotate_master(ctx: typer.Context) -> None:
    """Add a new master key (FACEGATE_MASTER_KEY_FILE): sessions opened from now on derive
    their secrets under it; live sessions keep theirs until they expire. Older keys no
    live session uses are retired. Recorded in the audit log (versions, never keys)."""
    _master(ctx, add=True)


@app.command("retire-master")
def retire_master(ctx: typer.Context) -> None:
    """Retire the older master keys no live session uses any more (recorded)."""
    _master(ctx, add=False)


def _master(ctx: typer.Context, *, add: bool) -> None:
    from datetime import UTC, datetime

    from gateway.auth.secrets import MasterKey
    from gateway.errors import MalformedRequest
    from gateway.rotation import MasterKeyRotated, rotate_master_key

    settings = settings_of(ctx)

    async def _run() -> MasterKeyRotated:
        async with runtime(settings) as rt:
            MasterKey.load_or_create(settings.master_key_file)  # one made before, if none
            try:
                return await rotate_master_key(
                    db=rt.db,
                    key_file=settings.master_key_file,
                    now=datetime.now(UTC),
                    record=rt.record,
                    add=add,
                )
            except ValueError as exc:
                raise MalformedRequest(str(exc)) from exc

    rotated = run(_run())
    # The record is committed: only now is the key file changed (the log may say more was
    # done than was, never less; running the command again completes it).
    rotated.apply()
    typer.echo(
        f"master key version {rotated.version} is current; retired: {rotated.retired or 'none'};"
        f" kept for live sessions: {rotated.kept or 'none'}"
    )
