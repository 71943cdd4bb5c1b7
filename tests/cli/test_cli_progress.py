"""Progress bars on long CLI work: drawn on stderr when it is a terminal, never in piped
output (scripts read the same output as before)."""

from __future__ import annotations

import asyncio
import os
import pty
import subprocess
from pathlib import Path

from tests.cli.test_cli import FACEGATE, REPO, append_decisions, facegate


def run_on_a_terminal(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """Run facegate with stderr on a pseudo-terminal; (exit code, stdout, the terminal's)."""
    controller, terminal = pty.openpty()
    try:
        process = subprocess.run(
            [FACEGATE, *args], env=env, stdout=subprocess.PIPE, stderr=terminal, check=False
        )
    finally:
        os.close(terminal)
    drawn = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal's other end is closed: all was read
            break
        if not chunk:
            break
        drawn += chunk
    os.close(controller)
    return process.returncode, process.stdout.decode(), drawn.decode("utf-8", "replace")


async def test_export_and_verify_draw_progress_on_a_terminal_only(
    migrated_database_url: str, tmp_path: Path
) -> None:
    await append_decisions(migrated_database_url, 5)
    code, output = await facegate(migrated_database_url, tmp_path, "keys", "init-log")
    assert code == 0, output
    env = {
        **os.environ,
        "FACEGATE_DATABASE_URL": migrated_database_url,
        "FACEGATE_MASTER_KEY_FILE": str(tmp_path / "master.key"),
        "FACEGATE_LOG_KEY_FILE": str(tmp_path / "log.key"),
        "FACEGATE_POLICY_DIR": str(REPO / "policies"),
    }
    code, stdout, drawn = await asyncio.to_thread(
        run_on_a_terminal, env, "audit", "export", str(tmp_path / "export")
    )
    assert code == 0, stdout + drawn
    assert stdout.startswith("exported ")  # the command's output stays on stdout, plain
    assert "exporting" in drawn and "checking the tree" in drawn and "\u2501" in drawn
    (tmp_path / "log.pub").write_text((tmp_path / "export" / "log.pub").read_text())
    verify = ("audit", "verify", "--export", str(tmp_path / "export"))
    code, stdout, drawn = await asyncio.to_thread(
        run_on_a_terminal, env, *verify, "--public-key", str(tmp_path / "log.pub")
    )
    assert code == 0 and stdout.startswith("ok: tree of"), stdout + drawn
    assert "verifying the export" in drawn

    # Piped, as a script reads it: not a byte of the bars.
    code, output = await facegate(
        migrated_database_url, tmp_path, "audit", "export", str(tmp_path / "again"), subprocess=True
    )
    assert code == 0 and output.startswith("exported "), output
    assert "\x1b[" not in output and "exporting" not in output and "\u2501" not in output
