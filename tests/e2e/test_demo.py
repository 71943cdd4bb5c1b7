"""`facegate demo`, the README's first command, and the verify command it tells the user to run."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FACEGATE = Path(sys.executable).with_name("facegate")


def test_the_demo_tells_its_story_and_its_verify_hint_works(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    demo = subprocess.run(
        [str(FACEGATE), "demo", "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    lines = demo.stdout.splitlines()
    decisions = [
        line.split()[0]
        for line in lines
        if line.startswith("   ALLOWED") or line.startswith("   DENIED")
    ]
    assert decisions == ["ALLOWED"] + ["DENIED"] * 5
    # The allowed search's lead ids, one per match, as the x-facegate-leads header gave them.
    [lead_ids] = [line.split(": ", 1)[1] for line in lines if line.startswith("   lead ids:")]
    assert len(lead_ids.split(",")) >= 1 and "none" not in lead_ids
    for reason in (
        "missing_case_number",
        "warrant_expired",
        "forbidden_attributes",
        "realtime_requires_court_order",
        "crowd_scan",
    ):
        assert reason in demo.stdout
    assert "auditor: verify -> ok=True" in demo.stdout

    # The last line is the command the demo offers; run it as a user would, elsewhere.
    hint = shlex.split(lines[-1])
    assignments = dict(word.split("=", 1) for word in hint if "=" in word)
    command = [word for word in hint if "=" not in word]
    assert command == ["facegate", "audit", "verify"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    verify = subprocess.run(
        [str(FACEGATE), *command[1:]],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=elsewhere,
        env={key: value for key, value in os.environ.items() if not key.startswith("FACEGATE_")}
        | assignments,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "ok:" in verify.stdout
    assert list(elsewhere.iterdir()) == []  # no stray key left where it was run
