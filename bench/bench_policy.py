"""The repository's policy with the mass-surveillance limits lifted, for load benchmarks.

A benchmark sends the same probe from one officer hundreds of times a second: the policy
would rightly refuse that as a burst and over the rate limits. The benchmarks measure the
gateway's machinery (inspection, windows, decision, audit), so they run on this copy, which
keeps every rule and only raises the numbers. The decision cases that pin those numbers
(cases/patterns.yaml) go with them: a gateway does not start on a revision failing its cases.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
LIFTED = 10**9


def lifted_policy(workdir: Path, source: Path = REPO / "policies") -> Path:
    """A lifted copy of `source` (by default this checkout's policies) under `workdir`."""
    copy = Path(shutil.copytree(source, workdir / "policies", dirs_exist_ok=True))
    path = copy / "data" / "patterns.yaml"
    data = yaml.safe_load(path.read_text())
    patterns = data["patterns"]
    patterns["burst"]["max_probes"] = dict.fromkeys(patterns["burst"]["max_probes"], LIFTED)
    patterns["rate_limits"] = {
        scope: dict.fromkeys(limits, LIFTED) for scope, limits in patterns["rate_limits"].items()
    }
    path.write_text(yaml.safe_dump(data))
    (copy / "cases" / "patterns.yaml").unlink()
    return copy
