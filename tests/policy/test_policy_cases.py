"""Every decision case in policies/cases/ on every engine, and the case runner itself."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from policy_support import POLICY_DIR

from gateway.errors import Reason
from gateway.policy.bundle import PolicyLoadError
from gateway.policy.cases import DecisionCase, check, load_cases, run_cases
from gateway.policy.codes import reason_codes
from gateway.policy.contract import Decision, Obligations, PolicyInput
from gateway.policy.engine import POLICY_INPUT_INVALID, PolicyService

CASES = load_cases(POLICY_DIR / "cases")


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_decision_case(repository_policy: PolicyService, case: DecisionCase) -> None:
    [result] = await run_cases(repository_policy.decide, [case])
    assert result.passed, result.report()
    assert result.decision.policy_revision == repository_policy.revision


def test_every_reason_code_in_the_policy_has_a_case() -> None:
    rego = (POLICY_DIR / "facegate.rego").read_text()
    in_policy = reason_codes(rego)
    expected_somewhere = {code for case in CASES for code in case.expect.reasons}
    assert in_policy, "the pattern no longer finds the policy's reason codes"
    assert in_policy - expected_somewhere == set(), "reason codes without a decision case"
    # The service refuses a non-strict input itself, before the policy reads it.
    made_by_the_service = {POLICY_INPUT_INVALID}
    assert expected_somewhere - in_policy - made_by_the_service == set(), (
        "cases expect codes the policy lacks"
    )


def test_cases_cover_both_outcomes_of_every_operation_kind() -> None:
    outcomes = {
        (case.input.operation.kind.value, case.expect.allow)
        if isinstance(case.input, PolicyInput)
        else (case.input.kind, case.expect.allow)
        for case in CASES
    }
    for kind in ("detect", "verify", "identify", "enroll", "manage", "stream"):
        assert (kind, True) in outcomes and (kind, False) in outcomes, kind
    assert ("celebrity", False) in outcomes
    for kind in ("lead_review", "lead_action"):
        assert (kind, True) in outcomes and (kind, False) in outcomes, kind


def _decision(**changes: object) -> Decision:
    fields: dict[str, object] = {
        "allow": False,
        "reasons": [Reason(code="warrant_expired", message="warrant W-1 is not in force now")],
        "obligations": Obligations(min_threshold=99, max_results=5),
        "policy_revision": "sha256:00",
        "engine": "embedded",
    }
    fields.update(changes)
    return Decision.model_validate(fields)


def test_check_reports_every_difference() -> None:
    [case] = [c for c in CASES if c.name == "identification on an expired warrant is refused"]
    assert check(case, _decision()).passed

    result = check(
        case,
        _decision(
            allow=True,
            reasons=[Reason(code="warrant_revoked", message="warrant W-1 has been revoked")],
        ),
    )
    assert not result.passed
    report = result.report()
    assert "allow: expected False, got True" in report
    assert "missing ['warrant_expired'], unexpected ['warrant_revoked']" in report
    assert "message of warrant_expired" in report
    assert case.name in report and "identify.yaml" in report


def test_check_compares_only_the_obligations_a_case_names() -> None:
    [case] = [c for c in CASES if c.name.startswith("identification on an active warrant is")]
    allowed = _decision(allow=True, reasons=[])
    result = check(case, allowed)
    assert result.problems == (
        "obligations.remove_attributes: expected ['age', 'emotions', 'gender'], got []",
    )
    capped_at_ten = _decision(
        allow=True,
        reasons=[],
        obligations=Obligations(
            min_threshold=99, max_results=10, remove_attributes=["age", "emotions", "gender"]
        ),
    )
    assert check(case, capped_at_ten).problems == ("obligations.max_results: expected 5, got 10",)


def test_a_case_input_is_merged_over_the_file_base(tmp_path: Path) -> None:
    (tmp_path / "one.yaml").write_text(
        """
base:
  now: "2025-03-01T12:00:00Z"
  principal: {id: p, name: P, agency: a, roles: [officer]}
  operation: {vendor: v, name: N, kind: detect, attributes: [default]}
  context: {purpose: criminal_investigation, offense: robbery}
cases:
  - name: merged
    input: {context: {offense: arson}, operation: {attributes: [all]}}
    expect: {allow: false}
"""
    )
    [case] = load_cases(tmp_path)
    assert case.input.context.purpose == "criminal_investigation"
    assert case.input.context.offense == "arson"
    assert case.input.operation.attributes == ["all"]
    assert case.input.operation.kind == "detect"


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("cases: [", "cannot be read"),
        ("base: {}\n", "must have a list under `cases`"),
        ("cases:\n  - input: {}\n", "#1 in"),
        ("cases:\n  - name: x\n    expect: {allow: true}\n", "'x' in"),
        ("cases:\n  - name: x\n    expected: {allow: true}\n", "unknown keys ['expected']"),
    ],
)
def test_a_malformed_case_file_is_named(tmp_path: Path, text: str, complaint: str) -> None:
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(PolicyLoadError, match=re.escape(complaint)) as raised:
        load_cases(tmp_path)
    assert str(tmp_path / "bad.yaml") in raised.value.message


def test_a_case_name_used_twice_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text((POLICY_DIR / "cases" / "officers.yaml").read_text())
    (tmp_path / "b.yaml").write_text((POLICY_DIR / "cases" / "officers.yaml").read_text())
    with pytest.raises(PolicyLoadError, match="is in both"):
        load_cases(tmp_path)
