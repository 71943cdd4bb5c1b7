"""The `facegate` command as an admin or auditor runs it on the gateway host."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import threading
import traceback
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from gateway.audit.log import AuditLog
from gateway.audit.records import AuditRecord, EventType
from gateway.db import create_engine, session_factory
from gateway.serving import free_port

FACEGATE = str(Path(sys.executable).with_name("facegate"))
REPO = Path(__file__).resolve().parents[2]
SERIOUS = "  serious_offenses:\n"  # the list's line in data/identification.yaml


# One command at a time per process: CliRunner swaps os.environ and sys.stdout/stderr while it
# runs, so two in-process commands at once would see each other's settings and output.
_IN_PROCESS = threading.Lock()


def _run_in_process(env: Mapping[str, str], args: Sequence[str]) -> tuple[int, str]:
    from typer.testing import CliRunner

    from gateway.cli import app

    with _IN_PROCESS:
        result = CliRunner().invoke(app, list(args), env=dict(env), prog_name="facegate")
    output = result.output  # stdout and stderr interleaved, as the process's STDOUT merge
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        # The real process prints the traceback of an uncaught error on stderr.
        output += "".join(traceback.format_exception(result.exception))
    return result.exit_code, output


async def run_facegate(
    env: Mapping[str, str], *args: str, subprocess: bool = False
) -> tuple[int, str]:
    """Run `facegate *args` with the FACEGATE_* settings in ``env``: (exit code, stdout+stderr).

    In process by default (each real process pays ~1.5 s of imports); in a worker thread
    because the commands call asyncio.run, which cannot run inside the test's loop.
    ``subprocess=True`` spawns the real entry point, for tests whose point is the process
    (its imports, its exit code, a terminal, signals); cancelled (by a caller's
    asyncio.timeout, around a `serve` expected to refuse to start), it is terminated."""
    if not subprocess:
        return await asyncio.to_thread(_run_in_process, env, args)
    process = await asyncio.create_subprocess_exec(
        FACEGATE,
        *args,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()
    return process.returncode or 0, output.decode()


async def facegate(
    database_url: str, tmp_path: Path, *args: str, subprocess: bool = False
) -> tuple[int, str]:
    env = {
        "FACEGATE_DATABASE_URL": database_url,
        "FACEGATE_MASTER_KEY_FILE": str(tmp_path / "master.key"),
        "FACEGATE_LOG_KEY_FILE": str(tmp_path / "log.key"),
        "FACEGATE_POLICY_DIR": str(REPO / "policies"),
    }
    return await run_facegate(env, *args, subprocess=subprocess)


async def append_decisions(database_url: str, count: int) -> None:
    engine = create_engine(database_url)
    try:
        log = AuditLog(session_factory(engine))
        for index in range(count):
            await log.append(
                AuditRecord(
                    time=datetime.now(UTC),
                    request_id=f"req-{index}",
                    event_type=EventType.DECISION,
                    case_number="2026-1",
                    decision="allow",
                )
            )
    finally:
        await engine.dispose()


async def test_verify_finds_a_row_altered_behind_the_triggers_back(
    migrated_database_url: str, tmp_path: Path
) -> None:
    await append_decisions(migrated_database_url, 5)
    # The smoke test of the real `facegate` entry point; the rest of the CLI tests run in process.
    code, output = await facegate(
        migrated_database_url, tmp_path, "audit", "verify", subprocess=True
    )
    assert code == 0, output
    # Five decisions, and the auditor's own verify, which is recorded before it runs.
    assert output.startswith("ok: 6 records verified")

    engine = create_engine(migrated_database_url)
    try:
        async with engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                # A superuser can switch triggers off for a session; the chain still holds.
                await connection.execute(sa.text("SET LOCAL session_replication_role = replica"))
                await connection.execute(
                    sa.text("UPDATE audit_log SET decision = 'deny' WHERE seq = 3")
                )
            else:
                triggers = (
                    await connection.execute(
                        sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")
                    )
                ).all()
                for name, _ in triggers:
                    await connection.execute(sa.text(f'DROP TRIGGER "{name}"'))
                await connection.execute(
                    sa.text("UPDATE audit_log SET decision = 'deny' WHERE seq = 3")
                )
                for _, sql in triggers:
                    await connection.execute(sa.text(sql))
    finally:
        await engine.dispose()

    code, output = await facegate(migrated_database_url, tmp_path, "audit", "verify")
    assert code == 1
    assert "BROKEN at record 3" in output


async def test_admin_commands_set_up_an_officer_and_record_it(
    migrated_database_url: str, tmp_path: Path
) -> None:
    url = migrated_database_url
    code, api_key = await facegate(
        url,
        tmp_path,
        "principals",
        "add",
        "officer-3",
        "--name",
        "Officer Three",
        "--agency",
        "Metro PD",
        "--role",
        "officer",
    )
    assert code == 0, api_key
    assert api_key.startswith("fgk_")

    code, output = await facegate(
        url,
        tmp_path,
        "warrants",
        "add",
        "W-9",
        "--kind",
        "warrant",
        "--court",
        "District Court",
        "--case",
        "2026-9",
        "--operation",
        "identify",
        "--agency",
        "Metro PD",
        "--valid-until",
        "2030-01-01T00:00:00",
    )
    assert code == 0, output
    assert json.loads(output)["operations"] == ["identify"]

    code, output = await facegate(
        url,
        tmp_path,
        "sessions",
        "open",
        "--officer",
        "officer-3",
        "--purpose",
        "criminal_investigation",
        "--case",
        "2026-9",
        "--offense",
        "robbery",
        "--legal-basis",
        "warrant",
        "--warrant",
        "W-9",
    )
    assert code == 0, output
    credentials = json.loads(output)
    assert credentials["access_key_id"].startswith("FGAK")
    assert len(credentials["secret_access_key"]) == 40

    code, output = await facegate(url, tmp_path, "audit", "list", "--event-type", "admin_action")
    assert code == 0, output
    actions = [json.loads(line)["detail"]["action"] for line in output.splitlines()]
    # The same actions, with the same fields, as through the management API.
    assert actions == ["principal.create", "api_key.issue", "warrant.create", "session.open"]
    assert credentials["secret_access_key"] not in output
    assert api_key.split(".")[1].strip() not in output


async def test_a_bad_command_gets_a_one_line_error(
    migrated_database_url: str, tmp_path: Path
) -> None:
    code, output = await facegate(
        migrated_database_url, tmp_path, "sessions", "open", "--officer", "nobody"
    )
    assert code == 1
    assert output.strip() == "error: no principal 'nobody'"


async def test_policy_test_runs_every_decision_case(tmp_path: Path) -> None:
    code, output = await facegate(
        f"sqlite+aiosqlite:///{tmp_path}/x.db", tmp_path, "policy", "test"
    )
    assert code == 0, output
    assert " 0 failed on the embedded engine" in output


async def test_policy_test_fails_a_policy_that_reads_a_count_it_does_not_declare(
    tmp_path: Path,
) -> None:
    policy_dir = Path(shutil.copytree(REPO / "policies", tmp_path / "policies"))
    module = policy_dir / "facegate.rego"
    module.write_text(
        module.read_text()
        + '\ndeny contains reason("agency_identifications", "too many") if {\n'
        + '\tobject.get(input.activity, ["agency", "identifications", "hour"], 0) > 100\n}\n'
    )
    env = {
        "FACEGATE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/x.db",
        "FACEGATE_MASTER_KEY_FILE": str(tmp_path / "master.key"),
        "FACEGATE_LOG_KEY_FILE": str(tmp_path / "log.key"),
        "FACEGATE_POLICY_DIR": str(policy_dir),
    }
    code, output = await run_facegate(env, "policy", "test")
    assert code == 1, output
    assert "does not declare in activity_reads" in output
    assert " 0 failed on the embedded engine" in output  # its cases alone all pass


async def test_serve_does_not_start_on_a_policy_that_fails_its_decision_cases(
    tmp_path: Path,
) -> None:
    # An admin's edit a reload would refuse (burglary made serious, its case left as it
    # was): a restart does not serve it either.
    policy_dir = Path(shutil.copytree(REPO / "policies", tmp_path / "policies"))
    data = policy_dir / "data" / "identification.yaml"
    data.write_text(data.read_text().replace(SERIOUS, f"{SERIOUS}    - burglary\n"))
    env = {
        "FACEGATE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/x.db",
        "FACEGATE_MASTER_KEY_FILE": str(tmp_path / "master.key"),
        "FACEGATE_LOG_KEY_FILE": str(tmp_path / "log.key"),
        "FACEGATE_POLICY_DIR": str(policy_dir),
    }
    async with asyncio.timeout(60):
        code, text = await run_facegate(env, "serve", "--port", str(free_port()), subprocess=True)
    assert code != 0
    assert "decision cases fail" in text
    assert "identification for an offense that is allowed but not serious is refused" in text


async def test_serve_warns_that_sqlite_wants_one_worker(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "FACEGATE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/x.db",
        "FACEGATE_MASTER_KEY_FILE": str(tmp_path / "master.key"),
        "FACEGATE_LOG_KEY_FILE": str(tmp_path / "log.key"),
        "FACEGATE_POLICY_DIR": str(REPO / "policies"),
        # Several workers need shared activity windows (see the test below).
        "FACEGATE_REDIS_URL": "redis://127.0.0.1:6379/0",
        "FACEGATE_ACTIVITY_KEY_PREFIX": f"facegate:test-cli:{uuid.uuid4().hex}:",
    }
    process = await asyncio.create_subprocess_exec(
        FACEGATE,
        *("serve", "--workers", "2", "--port", str(free_port())),
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        first_line = await asyncio.wait_for(process.stderr.readline(), timeout=60)
    finally:
        process.terminate()
        await process.wait()
    assert first_line.decode().startswith("warning: SQLite serialises every audit append")


async def test_serve_refuses_several_workers_without_redis(tmp_path: Path) -> None:
    # Each worker would keep its own activity windows, so every per-officer limit would
    # silently be multiplied by the number of workers.
    env = {
        "FACEGATE_REDIS_URL": "",  # none, whatever the environment says
        "FACEGATE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/x.db",
        "FACEGATE_MASTER_KEY_FILE": str(tmp_path / "master.key"),
        "FACEGATE_LOG_KEY_FILE": str(tmp_path / "log.key"),
        "FACEGATE_POLICY_DIR": str(REPO / "policies"),
    }
    async with asyncio.timeout(30):
        code, message = await run_facegate(
            env, "serve", "--workers", "3", "--port", str(free_port()), subprocess=True
        )
    assert code == 1, message
    assert message.startswith("error: --workers 3 without FACEGATE_REDIS_URL"), message
    assert "limit" in message and "--workers 1" in message
