"""`facegate leads` and `facegate authorisations`: thin callers of gateway/leads/, run on the
gateway host. A review or an action is attributed to the principal named (--reviewer,
--officer), done via the CLI by the OS user; a refusal is committed to the log, then the
command exits 1 with the policy's reasons."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated

import typer

from gateway.admin import Actor
from gateway.audit.records import AuditRecord
from gateway.cli.runtime import CliRuntime, run, runtime, settings_of
from gateway.leads import reads, service
from gateway.leads.service import LeadDecision
from gateway.policy.engine import PolicyService

app = typer.Typer(no_args_is_help=True, help="Review leads, record actions, see outcomes.")
authorisations_app = typer.Typer(
    no_args_is_help=True, help="After-the-fact authorisations of exigent searches."
)


def _recorder(rt: CliRuntime) -> service.LeadRecorder:
    async def record(entry: AuditRecord) -> None:
        await rt.audit.append(entry, db=rt.db)

    return record


def _as(principal_id: str) -> Actor:
    """The named principal, acting through the CLI run by this host's OS user."""
    return Actor(officer=principal_id, via="cli")


def _report(result: LeadDecision) -> None:
    if result.allowed:
        typer.echo(f"lead {result.lead_id}: {result.status}")
        return
    for code, message in zip(result.reasons, result.messages, strict=True):
        typer.echo(f"refused: {code}: {message}", err=True)
    raise typer.Exit(1)


@app.command("list")
def leads_list(
    ctx: typer.Context,
    case: Annotated[str | None, typer.Option("--case")] = None,
    status: Annotated[str | None, typer.Option()] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Leads, oldest first (every agency's: the host's operator is not one agency)."""

    async def _run() -> reads.LeadPage:
        async with runtime(settings_of(ctx)) as rt:
            return await reads.list_leads(
                rt.db, agency=None, now=datetime.now(UTC), case_number=case, status=status,
                limit=reads.MAX_LIMIT,
            )  # fmt: skip

    page = run(_run())
    if as_json:
        typer.echo(page.model_dump_json(indent=2))
        return
    for lead in page.leads:
        typer.echo(
            f"{lead.id}  {lead.status:<22} {lead.case_number or '-':<16} {lead.vendor:<11}"
            f" {lead.similarity:6.2f}  {lead.officer}  {lead.created_at.isoformat()}"
        )


@app.command("review")
def leads_review(
    ctx: typer.Context,
    lead_id: str,
    reviewer: Annotated[str, typer.Option(help="the reviewer's principal id")],
    verdict: Annotated[str, typer.Option(help="confirmed | rejected | inconclusive")],
    rationale: Annotated[str, typer.Option()],
) -> None:
    """Record a reviewer's verdict on a lead (refused on record if the policy says no)."""

    async def _run() -> LeadDecision:
        settings = settings_of(ctx)
        policy = await PolicyService.open(settings)
        try:
            async with runtime(settings) as rt:
                return await service.review_lead(
                    db=rt.db, decide=policy.decide, lead_id=lead_id, actor=_as(reviewer),
                    verdict=verdict, rationale=rationale, now=datetime.now(UTC),
                    record=_recorder(rt),
                )  # fmt: skip
        finally:
            await policy.close()

    _report(run(_run()))


@app.command("act")
def leads_act(
    ctx: typer.Context,
    lead_id: str,
    officer: Annotated[str, typer.Option(help="the acting officer's principal id")],
    kind: Annotated[str, typer.Option(help="e.g. arrest_warrant_requested, lineup, excluded")],
    note: Annotated[str, typer.Option()] = "",
) -> None:
    """Record an action an officer took on a lead (most need a verified lead)."""

    async def _run() -> LeadDecision:
        settings = settings_of(ctx)
        policy = await PolicyService.open(settings)
        try:
            async with runtime(settings) as rt:
                return await service.act_on_lead(
                    db=rt.db, decide=policy.decide, lead_id=lead_id, actor=_as(officer),
                    kind=kind, note=note, now=datetime.now(UTC), record=_recorder(rt),
                )  # fmt: skip
        finally:
            await policy.close()

    _report(run(_run()))


@app.command("outcomes")
def leads_outcomes(
    ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """Per vendor and similarity band: leads confirmed, rejected, left unreviewed."""

    async def _run() -> list[reads.OutcomeCounts]:
        settings = settings_of(ctx)
        async with runtime(settings) as rt:
            await rt.record_read("leads.outcomes")
            return await reads.outcomes(rt.db, bands=reads.similarity_bands(settings.policy_dir))

    counts = run(_run())
    if as_json:
        typer.echo(json.dumps([c.model_dump() for c in counts], indent=2))
        return
    typer.echo("vendor       band        confirmed rejected unreviewed in_review void")
    for c in counts:
        typer.echo(
            f"{c.vendor:<12} {c.band:<11} {c.confirmed:>9} {c.rejected:>8} {c.unreviewed:>10}"
            f" {c.in_review:>9} {c.void:>4}"
        )


@authorisations_app.command("list")
def authorisations_list(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option(help="pending | overdue | granted | refused")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Authorisations by state; `overdue`: pending past its deadline."""

    async def _run() -> list[reads.AuthorisationRead]:
        async with runtime(settings_of(ctx)) as rt:
            await rt.record_read("authorisations.list", status=status)
            now = datetime.now(UTC)
            await service.record_overdue(db=rt.db, now=now, record=_recorder(rt))
            return await reads.list_authorisations(rt.db, agency=None, now=now, status=status)

    found = run(_run())
    if as_json:
        typer.echo(json.dumps([a.model_dump(mode="json") for a in found], indent=2))
        return
    for a in found:
        typer.echo(f"{a.id}  {a.state:<8} {a.basis:<11} {a.case_number or '-'}  {a.deadline}")


@authorisations_app.command("decide")
def authorisations_decide(
    ctx: typer.Context,
    authorisation_id: str,
    granted: Annotated[bool, typer.Option("--granted/--refused")],
    authority: Annotated[str, typer.Option(help="who decided, e.g. the court")],
    reference: Annotated[str, typer.Option(help="the decision's reference")],
) -> None:
    """Record the authority's decision; refused voids the search's leads."""

    async def _run() -> service.AuthorisationDecided:
        async with runtime(settings_of(ctx)) as rt:
            return await service.decide_authorisation(
                db=rt.db, authorisation_id=authorisation_id, granted=granted,
                authority=authority, reference=reference, actor=Actor.cli(),
                now=datetime.now(UTC), record=_recorder(rt),
            )  # fmt: skip

    typer.echo(json.dumps(asdict(run(_run()))))
