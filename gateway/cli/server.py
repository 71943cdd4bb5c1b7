"""`facegate serve`, `facegate demo` and `facegate db upgrade`."""

from __future__ import annotations

import contextlib
import logging
from typing import Annotated

import typer
import uvicorn

from gateway.app import create_app
from gateway.cli.runtime import settings_of
from gateway.migrate import upgrade

db_app = typer.Typer(no_args_is_help=True, help="Database schema.")


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Apply every migration to FACEGATE_DATABASE_URL."""
    upgrade(settings_of(ctx).database_url)
    typer.echo("database is at the latest revision")


def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
    refvendor: Annotated[
        bool, typer.Option(help="also run the local reference vendor and forward to it")
    ] = False,
) -> None:
    """Run the gateway (migrating the database first)."""
    settings = settings_of(ctx)
    settings = settings.model_copy(
        update={"host": host or settings.host, "port": port or settings.port}
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    upgrade(settings.database_url)
    with contextlib.ExitStack() as stack:
        if refvendor:
            from gateway.serving import BackgroundServer
            from refvendor.app import create_app as create_refvendor

            vendor = stack.enter_context(
                BackgroundServer(
                    create_refvendor(
                        access_key_id=settings.rekognition_access_key_id,
                        secret_access_key=settings.rekognition_secret_access_key.get_secret_value(),
                    )
                )
            )
            settings = settings.model_copy(update={"rekognition_endpoint": vendor.url})
            typer.echo(f"reference vendor on {vendor.url}")
        uvicorn.run(
            create_app(settings),
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
    from gateway.demo import run_demo

    raise typer.Exit(run_demo(workdir))
