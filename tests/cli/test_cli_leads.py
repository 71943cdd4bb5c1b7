"""`facegate leads` and `facegate authorisations`, as a host operator runs them: the same
services as the API, so the same refusals and records."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from gateway.audit.checkpoint import SignedTreeState, Signer
from gateway.audit.log import AuditLog
from gateway.audit.records import AuditRecord, EventType
from gateway.db import create_engine, session_factory
from gateway.leads.book import LeadBook, Search
from gateway.vendors.base import Candidate
from tests.cli.test_cli import facegate

CASE = "2026-HOM-7"


async def a_search(url: str, tmp_path: Path, *, exigent: bool = False) -> list[str]:
    """Leads of one identification by officer-1, as the pipeline records them."""
    engine = create_engine(url)
    sessions = session_factory(engine)
    audit = AuditLog(
        sessions,
        signer=Signer.load_or_create(tmp_path / "log.key", "facegate.local/audit"),
        signed_state=SignedTreeState.beside(tmp_path / "log.key"),
    )
    try:
        search = Search(
            fields={
                "time": datetime.now(UTC),
                "request_id": f"req-{exigent}",
                "agency": "Metro PD",
                "officer": "officer-1",
                "vendor": "rekognition",
                "operation": "SearchFacesByImage",
                "collection": "mugshots",
                "case_number": CASE,
                "legal_basis": "exigent" if exigent else "warrant",
                "probe_digests": ["sha256:00"],
            },
            policy_revision="sha256:test",
            authorisation={"basis": "exigent", "hours": 48} if exigent else None,
            received_at=datetime.now(UTC),
        )
        found = [Candidate(id="face-1", similarity=99.4), Candidate(id="face-2", similarity=91.2)]
        return await LeadBook(sessions=sessions, audit=audit).open_leads(
            search=search,
            candidates=found,
            outcome=lambda ids: AuditRecord(
                **search.fields, event_type=EventType.OUTCOME, detail={"leads": ids}
            ),
        )
    finally:
        await audit.aclose()
        await engine.dispose()


async def add(url: str, tmp_path: Path, principal: str, *options: str) -> None:
    code, output = await facegate(
        url, tmp_path, "principals", "add", principal, "--name", principal,
        "--agency", "Metro PD", *options,
    )  # fmt: skip
    assert code == 0, output


async def test_reviewers_verify_a_lead_and_the_officer_acts_on_it_from_the_cli(
    migrated_database_url: str, tmp_path: Path
) -> None:
    url = migrated_database_url
    await add(url, tmp_path, "officer-1", "--role", "officer")
    for examiner in ("examiner-1", "examiner-2"):
        await add(url, tmp_path, examiner, "--role", "reviewer", "--trained-until", "2999-12-31")
    await add(url, tmp_path, "examiner-untrained", "--role", "reviewer")
    best, _ = await a_search(url, tmp_path)

    code, output = await facegate(url, tmp_path, "leads", "list", "--case", CASE, "--json")
    assert code == 0, output
    listed = json.loads(output)["leads"]
    assert [(lead["candidate_id"], lead["status"]) for lead in listed] == [
        ("face-1", "pending"),
        ("face-2", "pending"),
    ]

    def review(reviewer: str) -> tuple[str, ...]:
        return (
            "leads", "review", best, "--reviewer", reviewer, "--verdict", "confirmed",
            "--rationale", "same scar, same ear",
        )  # fmt: skip

    code, output = await facegate(url, tmp_path, *review("examiner-untrained"))
    assert code == 1 and "reviewer_training_lapsed" in output
    training = ("principals", "training", "examiner-untrained", "--until", "2999-12-31")
    assert (await facegate(url, tmp_path, *training))[0] == 0
    act = ("leads", "act", best, "--officer", "officer-1", "--kind", "lineup")
    code, output = await facegate(url, tmp_path, *act)
    assert code == 1 and "lead_not_verified" in output
    assert (await facegate(url, tmp_path, *review("examiner-untrained")))[0] == 0
    code, output = await facegate(url, tmp_path, *review("examiner-2"))
    assert code == 0 and "verified" in output
    assert (await facegate(url, tmp_path, *act))[0] == 0

    code, output = await facegate(url, tmp_path, "leads", "outcomes", "--json")
    assert code == 0, output
    counts = {(c["vendor"], c["band"]): c for c in json.loads(output)}
    assert counts["rekognition", "[99,100]"]["confirmed"] == 1
    assert counts["rekognition", "[90,95)"]["unreviewed"] == 1


async def test_an_authorisation_refused_from_the_cli_voids_its_leads(
    migrated_database_url: str, tmp_path: Path
) -> None:
    url = migrated_database_url
    leads = await a_search(url, tmp_path, exigent=True)
    code, output = await facegate(
        url, tmp_path, "authorisations", "list", "--status", "pending", "--json"
    )
    assert code == 0, output
    [pending] = json.loads(output)
    code, output = await facegate(
        url, tmp_path, "authorisations", "decide", pending["id"], "--refused",
        "--authority", "Judge Doe", "--reference", "EX-1",
    )  # fmt: skip
    assert code == 0, output
    assert sorted(json.loads(output)["voided_leads"]) == sorted(leads)
    code, output = await facegate(url, tmp_path, "leads", "list", "--status", "void", "--json")
    assert len(json.loads(output)["leads"]) == 2
