"""`facegate report list | make | verify` as an operator and an auditor run them."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.audit.log import AuditLog
from gateway.db import create_engine, session_factory
from tests.cli.test_cli import facegate
from tests.reports.support import at, search


async def _searches(database_url: str, count: int) -> None:
    engine = create_engine(database_url)
    try:
        log = AuditLog(session_factory(engine))  # unsigned: the CLI's next append signs
        for day in range(1, count + 1):
            for record in search(when=at(11, day)):
                await log.append(record)
    finally:
        await engine.dispose()


async def test_make_export_verify_and_a_tampered_report(
    migrated_database_url: str, tmp_path: Path
) -> None:
    url = migrated_database_url
    code, output = await facegate(url, tmp_path, "report", "list")
    assert code == 0 and "massachusetts" in output and "eu-ai-act-26-10" in output
    await _searches(url, 7)
    code, output = await facegate(url, tmp_path, "audit", "verify")  # signs a checkpoint
    assert code == 0, output

    report = tmp_path / "ma.json"
    make = ("report", "make", "massachusetts", "--period", "2026-Q4", "--audience", "public")
    code, output = await facegate(url, tmp_path, *make, "--out", str(report))
    assert code == 0, output
    figures = {f["definition"]["id"]: f["value"] for f in json.loads(report.read_text())["figures"]}
    assert figures["searches"] == 7
    for fmt in ("csv", "html"):
        out = tmp_path / f"ma.{fmt}"
        code, output = await facegate(url, tmp_path, *make, "--format", fmt, "--out", str(out))
        assert code == 0 and out.stat().st_size > 0, output

    export = tmp_path / "export"
    code, output = await facegate(url, tmp_path, "audit", "export", str(export))
    assert code == 0, output
    code, output = await facegate(
        url, tmp_path, "report", "verify", str(report), "--export", str(export)
    )
    assert code == 0, output
    assert output.startswith("ok: 6 figures recomputed")  # public: no per-search list

    document = json.loads(report.read_text())
    document["figures"][0]["value"] = 8
    report.write_text(json.dumps(document))
    code, output = await facegate(
        url, tmp_path, "report", "verify", str(report), "--export", str(export)
    )
    assert code == 1
    assert "DIFFERS searches: the report says 8, the log gives 7" in output


async def test_an_unknown_template_or_period_is_a_one_line_error(
    migrated_database_url: str, tmp_path: Path
) -> None:
    out = str(tmp_path / "x.json")
    code, output = await facegate(
        migrated_database_url, tmp_path, "report", "make", "nope", "--period", "2026", "--out", out
    )
    assert code == 1 and "no report template 'nope'" in output
    code, output = await facegate(
        migrated_database_url, tmp_path, "report", "make", "utah", "--period", "26", "--out", out
    )
    assert code == 1 and "must read YYYY, YYYY-Qn or YYYY-MM" in output
