"""The `facegate` command: serve, demo, disclose, db, keys, principals, sessions, warrants,
policy, audit, leads, authorisations, report.

Each command group lives in its own module and is imported only when it runs (``LAZY``):
`facegate --help`, or a light command, must not pay for the gateway's heavy imports
(SQLAlchemy, FastAPI, uvicorn, the policy engines, numpy and the face detectors: about two
seconds). A command module keeps its own heavy imports inside the functions that need them
(tests/cli/test_cli_startup.py checks what `facegate --help` and `facegate audit verify
--help` import).
"""

from __future__ import annotations

import importlib
from typing import Any, Final

import typer
import typer.core

from gateway.cli import disclose, server

# name -> ("module:attribute" of its Typer app, its one-line help for `facegate --help`)
LAZY: Final[dict[str, tuple[str, str]]] = {
    "db": ("gateway.cli.server:db_app", "Database schema."),
    "keys": ("gateway.cli.keys:app", "Signing keys and the master key."),
    "principals": (
        "gateway.cli.admin:principals_app",
        "Enrol principals, issue and revoke API keys, disable them.",
    ),
    "sessions": ("gateway.cli.admin:sessions_app", "Open case sessions for officers."),
    "warrants": ("gateway.cli.admin:warrants_app", "Register and revoke warrants."),
    "policy": ("gateway.cli.policy:app", "Check and identify the policy under policies/."),
    "audit": ("gateway.cli.audit:app", "Read, export, verify the audit log; rotate its key."),
    "leads": ("gateway.cli.leads:app", "List leads, review them, record actions on them."),
    "authorisations": (
        "gateway.cli.leads:authorisations_app",
        "After-the-fact authorisations: list them, record an authority's decision.",
    ),
    "report": ("gateway.cli.report:app", "Make, list and verify reports from the log."),
}


class LazyGroup(typer.core.TyperGroup):
    """A group whose subgroups in ``LAZY`` are imported when invoked, not when listed."""

    _listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY})

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in LAZY:
            return super().get_command(ctx, cmd_name)
        target, help_text = LAZY[cmd_name]
        if self._listing:  # the listing needs the name and help only
            return typer.core.TyperCommand(cmd_name, help=help_text)
        module_name, _, attribute = target.partition(":")
        sub_app: typer.Typer = getattr(importlib.import_module(module_name), attribute)
        command = typer.main.get_group(sub_app)
        command.name = cmd_name
        return command


app = typer.Typer(
    no_args_is_help=True,
    help="The `facegate` command: serve, demo, disclose, db, keys, principals, sessions,"
    " warrants, policy, audit, leads, authorisations, report.",
    pretty_exceptions_enable=False,
    cls=LazyGroup,
)


@app.callback()
def main(ctx: typer.Context) -> None:
    """facegate: a policy-enforcing, audited gateway in front of face-recognition vendors.

    Settings come from FACEGATE_* environment variables (see gateway/config.py).
    """
    from gateway.config import Settings

    ctx.obj = Settings()


app.command()(server.serve)
app.command()(server.demo)
app.command("disclose")(disclose.disclose)
