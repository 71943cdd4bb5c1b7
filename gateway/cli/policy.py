"""`facegate policy test | revision`: check an edited policy before it goes live."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from gateway.cli.runtime import run, settings_of
from gateway.policy.bundle import bundle_revision
from gateway.policy.cases import load_cases, run_cases
from gateway.policy.engine import PolicyService

app = typer.Typer(no_args_is_help=True, help="Check and identify the policy under policies/.")


@app.command("test")
def test(
    ctx: typer.Context,
    engine: Annotated[
        Literal["embedded", "opa"] | None, typer.Option(help="default: FACEGATE_POLICY_ENGINE")
    ] = None,
) -> None:
    """Run every decision case in policies/cases/ on an engine; exit 1 if any fails."""
    settings = settings_of(ctx)
    if engine is not None:
        settings = settings.model_copy(update={"policy_engine": engine})

    async def _run() -> bool:
        service = await PolicyService.open(settings)
        try:
            results = await run_cases(service.decide, load_cases(settings.policy_dir / "cases"))
        finally:
            await service.close()
        failed = [r for r in results if not r.passed]
        for result in failed:
            typer.secho(result.report(), fg=typer.colors.RED)
        typer.echo(
            f"{len(results) - len(failed)} passed, {len(failed)} failed "
            f"on the {service.engine_name} engine, policy {service.revision}"
        )
        return not failed

    if not run(_run()):
        raise typer.Exit(1)


@app.command("revision")
def revision(ctx: typer.Context) -> None:
    """The revision every decision records: a SHA-256 over the policy files."""
    typer.echo(bundle_revision(settings_of(ctx).policy_dir))
