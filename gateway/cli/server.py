"""`facegate serve`, `facegate demo` and `facegate db upgrade`.

The reference vendor (`serve --refvendor`) and the demo live in `refvendor/`, loaded only
when asked for: this module, like the rest of the gateway, never imports them at import."""

from __future__ import annotations

import contextlib
import os
import tempfile
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
    # Imported here: `facegate --help` and the light commands must not pay for them.
    import uvicorn

    from gateway.app import create_app
    from gateway.db import is_sqlite
    from gateway.migrate import upgrade
    from gateway.observability.logs import configure_logging
    from gateway.policy.bundle import PolicyLoadError, load_bundle
    from gateway.serving import prepare_heap_for_serving

    settings = settings_of(ctx)
    settings = settings.model_copy(
        update={"host": host or settings.host, "port": port or settings.port}
    )
    configure_logging()  # JSON lines (gateway/observability/logs.py)
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
    if settings.migrate_on_start:
        upgrade(settings.database_url)
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Each worker writes its series here and /metrics sums them (gateway/observability/
        # metrics.py); set before the workers start, which import prometheus_client anew.
        metrics_dir = tempfile.mkdtemp(prefix="facegate-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    with contextlib.ExitStack() as stack:
        if refvendor:
            # Loaded on demand: the product package never imports the reference vendor.
            from refvendor.boot import serve_with_reference_vendor

            settings, vendor_url = stack.enter_context(serve_with_reference_vendor(settings))
            typer.echo(f"reference vendor on {vendor_url}")
        # Several workers each build their own app in their own process
        # (create_app_from_environment prepares each worker's heap for serving).
        app = "gateway.app:create_app_from_environment" if workers > 1 else create_app(settings)
        if workers == 1:
            prepare_heap_for_serving()
        uvicorn.run(
            app,
            factory=workers > 1,
            workers=workers,
            host=settings.host,
            port=settings.port,
            proxy_headers=bool(settings.trusted_proxies),
            forwarded_allow_ips=settings.trusted_proxies or None,
            access_log=False,
            # uvicorn stops accepting at SIGTERM and waits for in-flight requests.
            timeout_graceful_shutdown=settings.shutdown_grace_seconds,
            log_config=None,  # keep the JSON handler configure_logging installed
        )


def demo(
    ctx: typer.Context,
    workdir: Annotated[str, typer.Option(help="where the demo keeps its database")] = "var/demo",
) -> None:
    """Start the gateway and the reference vendor on loopback and drive a scripted scenario."""
    from refvendor.demo import run_demo

    raise typer.Exit(run_demo(workdir))
