"""Families of deny rules behind one gate each (issue 17).

regorus spends ~10k instructions on every definition of `deny` a decision reaches, even one
whose first test fails, so rules that share a precondition add to a family set
`deny_<family>`, which one `deny contains r if { <precondition>; some r in deny_<family> }`
gathers (see the top of policies/facegate.rego). Two ways to lose a guardrail that way, each
held here: a family set no gate gathers (its rules would never refuse anything), and a gate
stricter than a rule of its family (the rule would refuse nothing where the gate fails).
"""

from __future__ import annotations

import copy
import json
import re
import tempfile
from pathlib import Path
from typing import Any

import opa_eval
from policy_support import POLICY_DIR

from gateway.operations import OperationKind
from gateway.policy.bundle import load_bundle
from gateway.policy.cases import CASES_DIR, load_cases
from gateway.policy.contract import PolicyInput, WarrantStatus, strict_input_problems

# `name contains ...` starting a definition of a family set, and the gate that gathers one.
_FAMILY_RULE = re.compile(r"^(deny_\w+) contains\b", re.MULTILINE)
_GATE = re.compile(r"^deny contains r if \{\n\t[^\n]+\n\tsome r in (deny_\w+)\n\}$", re.MULTILINE)


def families(module: str) -> set[str]:
    return set(_FAMILY_RULE.findall(module))


def gathered(module: str) -> list[str]:
    return _GATE.findall(module)


def test_every_family_set_is_gathered_into_deny_by_exactly_one_gate() -> None:
    module = (POLICY_DIR / "facegate.rego").read_text()
    assert families(module), "the policy has no family sets: update this test"
    gates = gathered(module)
    assert sorted(gates) == sorted(families(module))


def test_a_family_without_a_gate_is_found() -> None:
    module = """\
deny_kind contains reason("a", "b") if {
\tinput.operation.kind == "stream"
}

deny_never contains reason("c", "d") if {
\tinput.operation.kind == "celebrity"
}

deny contains r if {
\tinput.operation.kind in {"stream"}
\tsome r in deny_kind
}
"""
    assert families(module) == {"deny_kind", "deny_never"}
    assert gathered(module) == ["deny_kind"]


def _leak_query(module: str) -> str:
    """The policy with one more rule: each reason a family holds that deny does not."""
    sets = ", ".join(f'"{name}": {name}' for name in sorted(families(module)))
    return (
        module
        + "\n\nfamily_leaks contains [family, r] if {\n"
        + f"\tsome family, reasons in {{{sets}}}\n"
        + "\tsome r in reasons\n"
        + "\tnot r in deny\n"
        + "}\n"
    )


def _inputs() -> list[dict[str, Any]]:
    """Every vendor-call decision case the gateway would send an engine (not those its
    strict check refuses), and each again with every operation kind and every warrant
    status: inputs on both sides of each gate."""
    documents: list[dict[str, Any]] = []
    for case in load_cases(POLICY_DIR / CASES_DIR):
        if not isinstance(case.input, PolicyInput):
            continue  # a lead's review or action: decided by lead_deny, no families
        document = json.loads(case.input.model_dump_json())
        if strict_input_problems(document):
            continue
        documents.append(document)
        for kind in OperationKind:
            variant = copy.deepcopy(document)
            variant["operation"]["kind"] = kind.value
            documents.append(variant)
        for status in WarrantStatus:
            variant = copy.deepcopy(document)
            variant["context"]["warrant"]["status"] = status.value
            documents.append(variant)
    return documents


def test_no_family_holds_a_reason_the_decision_lacks() -> None:
    bundle = load_bundle(POLICY_DIR)
    with tempfile.TemporaryDirectory(prefix="facegate-families-") as scratch:
        module = Path(scratch) / "facegate.rego"
        module.write_text(_leak_query(bundle.module), encoding="utf-8")
        evaluator = opa_eval.OpaEval(
            str(module),
            data_json=json.dumps(bundle.data_document()),
            query="data.facegate.family_leaks",
        )
    leaks = []
    for document in _inputs():
        found = evaluator.evaluate_parsed(json.dumps(document))
        if found:
            leaks.append((document["operation"]["kind"], document["context"], found))
    assert leaks == []
