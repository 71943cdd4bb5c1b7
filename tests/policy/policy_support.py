"""Helpers for the policy tests: engines of each kind, and inputs."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from gateway.policy.bundle import PolicyBundle
from gateway.policy.contract import PolicyInput
from gateway.policy.embedded import EmbeddedEngine
from gateway.policy.engine import PolicyEngine, PolicyService
from gateway.policy.opa_server import OpaServerEngine

POLICY_DIR = Path(__file__).resolve().parents[2] / "policies"
OPA_URL_VARIABLE = "FACEGATE_TEST_OPA_URL"
NO_OPA = (
    "no `opa` binary on PATH and FACEGATE_TEST_OPA_URL unset, so the OPA-server engine is"
    " not tested: put OPA on PATH (the repository's CI uses ../shared/bin/opa)"
)
ENGINE_KINDS = ["embedded", "opa"]


def in_ci() -> bool:
    # CI sets CI=true (so do GitHub Actions, GitLab and most others).
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def opa_binary() -> str:
    """The `opa` on PATH. Without one the test is skipped, saying why; in CI it fails,
    because CI is where both engines must be shown to agree, and a skip there would
    pass silently."""
    binary = shutil.which("opa")
    if binary is None:
        if in_ci():
            pytest.fail(f"CI=true but {NO_OPA}", pytrace=False)
        pytest.skip(NO_OPA)
    return binary


async def open_test_engine(kind: str, bundle: PolicyBundle) -> PolicyEngine:
    """An engine of `kind` for `bundle`: the OPA one on FACEGATE_TEST_OPA_URL, or on an
    `opa` launched from PATH (see opa_binary() for when there is none)."""
    if kind == "embedded":
        return EmbeddedEngine(bundle)
    url = os.environ.get(OPA_URL_VARIABLE)
    if url:
        return await OpaServerEngine.connect(bundle, url=url, timeout_seconds=5.0)
    return await OpaServerEngine.launch(bundle, opa_binary=opa_binary(), timeout_seconds=5.0)


def service_for(engine: PolicyEngine, policy_dir: Path, *, timeout: float = 5.0) -> PolicyService:
    kind = engine.name

    async def factory(bundle: PolicyBundle) -> PolicyEngine:
        return await open_test_engine("embedded" if kind == "embedded" else "opa", bundle)

    return PolicyService(
        engine=engine, policy_dir=policy_dir, engine_factory=factory, timeout_seconds=timeout
    )


def an_identification(*, offense: str = "robbery", **activity: object) -> PolicyInput:
    """An identification on an active warrant, which the starting policy allows."""
    return PolicyInput.model_validate(
        {
            "now": "2025-03-01T12:00:00Z",
            "principal": {"id": "officer-7", "name": "O", "agency": "dpd", "roles": ["officer"]},
            "operation": {
                "vendor": "rekognition",
                "name": "SearchFacesByImage",
                "kind": "identify",
                "collection": "mugshots",
                "threshold": 80,
            },
            "vendor": {
                "name": "rekognition-main",
                "protocol": "rekognition",
                "attestations": {
                    "demographic_accuracy_test": {
                        "date": "2024-11-15T00:00:00Z",
                        "source": "NIST FRTE 1:N, demographic differentials",
                    }
                },
            },
            "context": {
                "purpose": "criminal_investigation",
                "case_number": "2025-000123",
                "offense": offense,
                "legal_basis": "warrant",
                "warrant_id": "W-1",
                "warrant": {"status": "active", "id": "W-1", "kind": "warrant", "agency": "dpd"},
            },
            "activity": activity,
        }
    )


def repin_cases_from(policy_dir: Path, offense: str, *, to: str = "arson") -> None:
    """After `offense` becomes serious enough for identification, the decision cases that
    pinned it as not serious pin `to` instead (as an admin making that edit must)."""
    changed = []
    for path in sorted((policy_dir / "cases").glob("*.yaml")):
        text = path.read_text()
        repinned = re.sub(rf"\boffense: {re.escape(offense)}\b", f"offense: {to}", text)
        repinned = repinned.replace(f"""'"{offense}"'""", f"""'"{to}"'""")
        if repinned != text:
            path.write_text(repinned)
            changed.append(path.name)
    assert "identify.yaml" in changed, f"no decision case pinned {offense} as not serious"
