"""`facegate keys init-log`: the audit log's signing key."""

from __future__ import annotations

import typer

from gateway.cli.runtime import log_signer, settings_of

app = typer.Typer(no_args_is_help=True, help="Signing keys.")


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
