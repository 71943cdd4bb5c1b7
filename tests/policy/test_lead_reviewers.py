"""A jurisdiction may require fewer than two reviewers only by naming the act that allows it
(policies/data/leads.yaml `leads.reviewers`), on both engines."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.policy.bundle import load_bundle
from gateway.policy.cases import load_cases
from gateway.policy.lead_input import AnyPolicyInput
from tests.policy.policy_support import open_test_engine, service_for

ENGINES = ("embedded", "opa")


def _first_confirmation(policy_dir: Path) -> AnyPolicyInput:
    [case] = [
        c
        for c in load_cases(policy_dir / "cases")
        if c.name == "a first confirmation is recorded and leaves the lead pending"
    ]
    return case.input


@pytest.mark.parametrize("engine_kind", ENGINES)
@pytest.mark.parametrize(
    ("legal_act", "status"),
    [(None, "pending"), ("", "pending"), ("Example Act 2026 s. 4(2)", "verified")],
)
async def test_one_reviewer_only_with_a_legal_act(
    policy_copy: Path, engine_kind: str, legal_act: str | None, status: str
) -> None:
    path = policy_copy / "data" / "leads.yaml"
    data = yaml.safe_load(path.read_text())
    data["leads"]["reviewers"] = {"required": 1, "legal_act": legal_act}
    path.write_text(yaml.safe_dump(data))
    service = service_for(
        await open_test_engine(engine_kind, load_bundle(policy_copy)), policy_copy
    )
    try:
        decision = await service.decide(_first_confirmation(policy_copy))
    finally:
        await service.close()
    assert decision.allow, decision.reasons
    assert getattr(decision.obligations, "lead_status", None) == status
