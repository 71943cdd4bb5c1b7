"""`facegate policy test | revision | show`: check an edited policy before it goes live, and
read back the policy any decision was made under."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from gateway.cli.runtime import check_schema, run, settings_of
from gateway.db import create_engine, session_factory
from gateway.policy.bundle import PolicyLoadError, bundle_revision
from gateway.policy.cases import load_cases, run_cases, undeclared_reads
from gateway.policy.engine import PolicyService
from gateway.policy.revisions import read_revision

app = typer.Typer(no_args_is_help=True, help="Check and identify the policy under policies/.")


@app.command("test")
def test(
    ctx: typer.Context,
    engine: Annotated[
        Literal["embedded", "opa"] | None, typer.Option(help="default: FACEGATE_POLICY_ENGINE")
    ] = None,
) -> None:
    """Run every decision case in policies/cases/ on an engine; exit 1 if any fails, or if
    any is decided otherwise on the activity counts the policy declares alone (as a reload
    refuses it: the gateway sends no other)."""
    settings = settings_of(ctx)
    if engine is not None:
        settings = settings.model_copy(update={"policy_engine": engine})

    async def _run() -> bool:
        # Opened without the start's own check of the cases: each one is reported here.
        service = await PolicyService.open(settings, check_cases=False)
        try:
            cases = load_cases(settings.policy_dir / "cases")
            results = await run_cases(service.decide, cases)
            misread = await undeclared_reads(service.decide, cases, service.activity_reads)
        finally:
            await service.close()
        failed = [r for r in results if not r.passed]
        for result in failed:
            typer.secho(result.report(), fg=typer.colors.RED)
        if misread:
            typer.secho(
                f"the policy reads activity counts it does not declare in activity_reads:"
                f" {len(misread)} cases are decided otherwise on the declared counts alone,"
                f" e.g. {misread[0]!r}. Add each [scope, stream, window] a rule reads of"
                " input.activity to activity_reads, beside the rule; a reload refuses it",
                fg=typer.colors.RED,
            )
        typer.echo(
            f"{len(results) - len(failed)} passed, {len(failed)} failed "
            f"on the {service.engine_name} engine, policy {service.revision}"
        )
        return not failed and not misread

    if not run(_run()):
        raise typer.Exit(1)


@app.command("revision")
def revision(ctx: typer.Context) -> None:
    """The revision every decision records: a SHA-256 over the policy files."""
    typer.echo(bundle_revision(settings_of(ctx).policy_dir))


@app.command("show")
def show(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="a policy revision, as a decision records it")],
    file: Annotated[
        str | None, typer.Option(help="print only this file, e.g. facegate.rego")
    ] = None,
) -> None:
    """Print the files of a policy revision the gateway served, from the database.

    Each file is headed `==> path <==`; with --file, only that file's text is printed. The
    kept text is checked against the revision (a SHA-256 over it) before it is printed.
    """
    settings = settings_of(ctx)

    async def _read() -> dict[str, str]:
        await check_schema(settings.database_url)  # creates nothing on a wrong URL
        engine = create_engine(settings.database_url)
        try:
            async with session_factory(engine)() as db:
                files = await read_revision(db, revision)
        except ValueError as exc:
            raise PolicyLoadError(str(exc)) from exc
        finally:
            await engine.dispose()
        if files is None:
            raise PolicyLoadError(
                f"no policy revision {revision} is kept in the database: revisions are kept"
                " from when a gateway first serves them"
            )
        return files

    files = run(_read())
    if file is not None:
        if file not in files:
            typer.secho(
                f"error: revision {revision} has no file {file!r} (it has: {', '.join(files)})",
                fg=typer.colors.RED,
                err=True,
            )
            raise typer.Exit(1)
        typer.echo(files[file], nl=False)
        return
    for path, text in files.items():
        typer.echo(f"==> {path} <==")
        typer.echo(text if text.endswith("\n") else text + "\n", nl=False)
