"""`opa fmt` must not change what the policy decides.

OPA's formatter drops parentheses it judges redundant; on `(x > y) != (z > y)` it made
`x > y != z > y`, which OPA parses differently, and protected places stopped matching. The
policy is written so that formatting keeps its meaning: format it, then run the zone cases.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from policy_support import opa_binary, open_test_engine, service_for

from gateway.policy.bundle import load_bundle
from gateway.policy.cases import load_cases, run_cases


def _format_with_opa(policy_dir: Path) -> str:
    module = policy_dir / "facegate.rego"
    # `opa fmt` without -w prints the formatted module and leaves the file alone.
    formatted = subprocess.run(
        [opa_binary(), "fmt", str(module)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    module.write_text(formatted)
    return formatted


@pytest.mark.parametrize("engine_kind", ["embedded", "opa"])
async def test_the_zone_cases_pass_on_the_policy_as_opa_fmt_writes_it(
    policy_copy: Path, engine_kind: str
) -> None:
    original = (policy_copy / "facegate.rego").read_text()
    formatted = _format_with_opa(policy_copy)
    assert formatted != original, "opa fmt changed nothing: the test would prove nothing"
    cases = load_cases(policy_copy / "cases")
    zone_cases = [case for case in cases if case.source.name == "zones.yaml"]
    assert any(not case.expect.allow for case in zone_cases), "no zone case refuses"

    engine = await open_test_engine(engine_kind, load_bundle(policy_copy))
    service = service_for(engine, policy_copy)
    try:
        results = await run_cases(service.decide, zone_cases)
    finally:
        await service.close()
    failed = [result.report() for result in results if not result.passed]
    assert not failed, "\n".join(failed)
