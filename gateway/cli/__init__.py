"""The `facegate` command: serve, demo, db, keys, principals, sessions, warrants, policy, audit."""

from __future__ import annotations

import typer

from gateway.cli import admin, audit, disclose, keys, leads, policy, report, server
from gateway.config import Settings

app = typer.Typer(no_args_is_help=True, help=__doc__, pretty_exceptions_enable=False)


@app.callback()
def main(ctx: typer.Context) -> None:
    """facegate: a policy-enforcing, audited gateway in front of face-recognition vendors.

    Settings come from FACEGATE_* environment variables (see gateway/config.py).
    """
    ctx.obj = Settings()


app.command()(server.serve)
app.command()(server.demo)
app.add_typer(server.db_app, name="db")
app.add_typer(keys.app, name="keys")
app.add_typer(admin.principals_app, name="principals")
app.add_typer(admin.sessions_app, name="sessions")
app.add_typer(admin.warrants_app, name="warrants")
app.add_typer(policy.app, name="policy")
app.add_typer(audit.app, name="audit")
app.command("disclose")(disclose.disclose)
audit.app.command("verify-packet")(disclose.verify_packet_command)
app.add_typer(report.app, name="report")
app.add_typer(leads.app, name="leads")
app.add_typer(leads.authorisations_app, name="authorisations")
