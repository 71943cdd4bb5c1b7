"""`facegate serve`, `facegate demo` and `facegate db upgrade`."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from gateway.cli.runtime import settings_of

db_app = typer.Typer(no_args_is_help=True, help="Database schema.")


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Apply every migration to FACEGATE_DATABASE_URL."""
    from gateway.migrate import upgrade

    upgrade(settings_of(ctx).database_url)
    typer.echo("database is at the latest revision")


def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
    refvendor: Annotated[
        bool, typer.Option(help="also run the local reference vendor and forward to it")
    ] = False,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="processes; each takes a core (they share the log; more than one needs"
            " FACEGATE_REDIS_URL for the activity windows)",
        ),
    ] = 1,
) -> None:
    """Run the gateway (migrating the database first)."""
    import uvicorn

    from gateway.app import create_app
    from gateway.db import is_sqlite
    from gateway.migrate import upgrade
    from gateway.policy.bundle import PolicyLoadError, load_bundle

    settings = settings_of(ctx)
    settings = settings.model_copy(
        update={"host": host or settings.host, "port": port or settings.port}
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # httpx logs every forwarded request at INFO: noise, and work, on the request path.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        load_bundle(settings.policy_dir)  # a clear message now, not a traceback at startup
    except PolicyLoadError as exc:
        typer.secho(f"error: {exc.message} (FACEGATE_POLICY_DIR)", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc
    if workers > 1 and not settings.redis_url:
        # Without Redis each worker counts only the requests it happens to receive, so a
        # limit of 5 per officer becomes 5 per officer per worker; refuse rather than
        # weaken every pattern rule without a word.
        typer.secho(
            f"error: --workers {workers} without FACEGATE_REDIS_URL would give each worker"
            " its own activity windows and multiply every per-officer and per-agency limit"
            f" by {workers}; set FACEGATE_REDIS_URL so the workers share them, or run"
            " --workers 1",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(1)
    if workers > 1 and is_sqlite(settings.database_url):
        typer.secho(
            "warning: SQLite serialises every audit append on one file lock, and a process"
            " waiting for it sleeps in SQLite's busy handler; run one worker on SQLite, or"
            " several on PostgreSQL",
            fg=typer.colors.YELLOW,
            err=True,
        )
    upgrade(settings.database_url)
    with contextlib.ExitStack() as stack:
        if refvendor:
            from gateway.serving import BackgroundServer
            from gateway.vendors.inventory import write_reference_inventory
            from refvendor.app import DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY
            from refvendor.app import create_app as create_refvendor
            from refvendor.azure import DEFAULT_KEY as DEFAULT_AZURE_KEY
            from refvendor.compreface import DEFAULT_KEY as DEFAULT_COMPREFACE_KEY

            # The reference vendor's own credentials, unless the settings name others.
            given = settings.rekognition_secret_access_key
            key_id = settings.rekognition_access_key_id or DEFAULT_ACCESS_KEY_ID
            secret = given.get_secret_value() if given else DEFAULT_SECRET_ACCESS_KEY
            vendor = stack.enter_context(
                BackgroundServer(create_refvendor(access_key_id=key_id, secret_access_key=secret))
            )
            # All three protocols go to the reference vendor, attested and labelled as a demo.
            inventory = write_reference_inventory(
                Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="facegate-"))),
                vendor.url,
                rekognition=(key_id, secret),
                azure_key=DEFAULT_AZURE_KEY,
                compreface_key=DEFAULT_COMPREFACE_KEY,
                attested_on=datetime.now(UTC).date(),
            )
            settings = settings.model_copy(update={"vendors_file": inventory})
            # Worker processes build their Settings from the environment.
            os.environ["FACEGATE_VENDORS_FILE"] = str(inventory)
            typer.echo(f"reference vendor on {vendor.url}")
        uvicorn.run(
            # Several workers each build their own app in their own process.
            "gateway.app:create_app_from_environment" if workers > 1 else create_app(settings),
            factory=workers > 1,
            workers=workers,
            host=settings.host,
            port=settings.port,
            proxy_headers=bool(settings.trusted_proxies),
            forwarded_allow_ips=settings.trusted_proxies or None,
            access_log=False,
        )


def demo(
    ctx: typer.Context,
    workdir: Annotated[str, typer.Option(help="where the demo keeps its database")] = "var/demo",
) -> None:
    """Start the gateway and the reference vendor on loopback and drive a scripted scenario."""
    from refvendor.demo import run_demo

    raise typer.Exit(run_demo(workdir))
