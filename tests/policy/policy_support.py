"""Helpers for the policy tests: engines of each kind, and inputs."""

from __future__ import annotations

import os
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
NO_OPA = "no `opa` binary on PATH and FACEGATE_TEST_OPA_URL unset"
ENGINE_KINDS = ["embedded", "opa"]


async def open_test_engine(kind: str, bundle: PolicyBundle) -> PolicyEngine:
    """An engine of `kind` for `bundle`; the OPA one skips the test when no OPA is at hand."""
    if kind == "embedded":
        return EmbeddedEngine(bundle)
    url = os.environ.get(OPA_URL_VARIABLE)
    if url:
        return await OpaServerEngine.connect(bundle, url=url, timeout_seconds=5.0)
    binary = shutil.which("opa")
    if binary is None:
        pytest.skip(NO_OPA)
    return await OpaServerEngine.launch(bundle, opa_binary=binary, timeout_seconds=5.0)


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
