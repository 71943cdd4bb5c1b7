"""Decision cases: what the policy must decide for given inputs, checked on any engine.

A case file (policies/cases/*.yaml) holds an optional `base` input and a list of cases.
Each case's input is merged over the base (mappings key by key, anything else replaced),
so a case states only what it is about:

    base:                       # a PolicyInput, shared by the cases below
      principal: {id: officer-7, name: Officer Seven, agency: dpd, roles: [officer]}
      ...
    cases:
      - name: identification on an expired warrant is refused
        input: {context: {warrant: {status: expired}}}
        expect:
          allow: false
          reasons: [warrant_expired]          # the exact set of reason codes
          messages: {warrant_expired: W-1}    # text each named reason's message contains
          obligations: {max_results: 5}       # only the keys given are compared

Used by tests/policy and `facegate policy test`: load_cases(), then run_cases() with the
decide() of a PolicyService, then report each failed CaseResult. undeclared_reads() checks,
on the same cases, that the policy reads no activity count it does not declare.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway import yaml_files
from gateway.context.activity import COUNTED, WINDOWS, ActivityReads
from gateway.policy.bundle import PolicyLoadError
from gateway.policy.contract import Decision, PolicyInput
from gateway.policy.lead_input import AnyPolicyInput, LeadPolicyInput

Decide = Callable[[AnyPolicyInput], Awaitable[Decision]]
# Where a policy directory keeps its decision cases.
CASES_DIR = "cases"
# Every count undeclared_reads() sets: above any limit a policy sets, and exact on every
# engine (a count is below 2**53, contract.strict_input_problems).
READ_CHECK_COUNT = 10**15


class Expectation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    allow: bool
    reasons: frozenset[str] = frozenset()
    messages: dict[str, str] = Field(default_factory=dict)
    obligations: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class DecisionCase:
    name: str
    source: Path
    input: AnyPolicyInput
    expect: Expectation


@dataclass(frozen=True)
class CaseResult:
    case: DecisionCase
    decision: Decision
    problems: tuple[str, ...]  # empty when the decision is as expected

    @property
    def passed(self) -> bool:
        return not self.problems

    def report(self) -> str:
        """What differs, and what the policy decided, for a person reading a test run."""
        reasons = "; ".join(f"{r.code}: {r.message}" for r in self.decision.reasons) or "none"
        lines = [
            f"case {self.case.name!r} ({self.case.source}):",
            *(f"  {problem}" for problem in self.problems),
            f"  decided: allow={self.decision.allow}, reasons: {reasons}",
            f"  obligations: {self.decision.obligations.model_dump()}",
        ]
        return "\n".join(lines)


def load_cases(cases_dir: Path) -> list[DecisionCase]:
    """Every case in cases_dir/*.yaml, in file then listed order. Raises PolicyLoadError
    naming the file (and the case) that is malformed, or a name used twice."""
    cases: list[DecisionCase] = []
    seen: dict[str, Path] = {}
    for path in sorted(cases_dir.glob("*.yaml")):
        for case in _load_case_file(path):
            if case.name in seen:
                raise PolicyLoadError(
                    f"decision case {case.name!r} is in both {seen[case.name]} and {path}"
                    if seen[case.name] != path
                    else f"decision case {case.name!r} is listed twice in {path}"
                )
            seen[case.name] = path
            cases.append(case)
    return cases


def cases_digest(cases_dir: Path) -> str:
    """A SHA-256 over the case files (names and bytes): changes when any case does."""
    digest = hashlib.sha256()
    for path in sorted(cases_dir.glob("*.yaml")):
        try:
            content = path.read_bytes()
        except OSError:
            content = b""  # unreadable: load_cases() will say so
        digest.update(f"{path.name}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()


async def run_cases(decide: Decide, cases: Iterable[DecisionCase]) -> list[CaseResult]:
    return [check(case, await decide(case.input)) for case in cases]


async def undeclared_reads(
    decide: Decide, cases: Iterable[DecisionCase], reads: ActivityReads
) -> list[str]:
    """The names of the cases (vendor calls; a lead's review or action reads no activity)
    the policy decides otherwise when given only the counts it declares (`reads`, its
    activity_reads), as the gateway sends them, than when given every count it keeps.
    Empty for a policy that declares none (it is sent every count).

    A rule reading an undeclared count finds it missing. Each case is decided with the
    declared counts at READ_CHECK_COUNT, above any limit, and the others (a) missing, (b)
    at READ_CHECK_COUNT too: a rule that depends on the count's value (a limit fires on (b)
    alone, a floor read through object.get(..., 0) on (a) alone), and (c) at 0: a rule read
    without a default (input.activity.s.t.w < 1 fires at 0, is undefined when missing).
    The whole decision is compared, messages and obligations too: a new limit may add a
    reason whose code another limit, already over, has added."""
    if reads is None:
        return []
    declared = _counts(reads, READ_CHECK_COUNT)
    high = _counts(_KEPT, READ_CHECK_COUNT)
    zero = _counts(_KEPT, 0, over=declared)
    found = []
    for case in cases:
        if not isinstance(case.input, PolicyInput):
            continue
        sent = _outcome(await decide(case.input.model_copy(update={"activity": declared})))
        for activity in (high, zero):
            if _outcome(await decide(case.input.model_copy(update={"activity": activity}))) != sent:
                found.append(case.name)
                break
    return found


# Every count the gateway keeps, as (scope, stream, window).
_KEPT = tuple((scope, stream, window) for scope, stream in sorted(COUNTED) for window in WINDOWS)


def _counts(
    triples: Iterable[tuple[str, str, str]], n: int, *, over: dict[str, Any] | None = None
) -> dict[str, Any]:
    """An activity document of `triples` at n, each count `over` holds kept at its own."""
    document: dict[str, Any] = {}
    for scope, stream, window in triples:
        document.setdefault(scope, {}).setdefault(stream, {})[window] = n
    for scope, streams in (over or {}).items():
        for stream, windows in streams.items():
            document[scope][stream].update(windows)
    return document


def _outcome(decision: Decision) -> tuple[bool, list[tuple[str, str]], dict[str, Any]]:
    reasons = sorted((reason.code, reason.message) for reason in decision.reasons)
    return decision.allow, reasons, decision.obligations.model_dump()


def check(case: DecisionCase, decision: Decision) -> CaseResult:
    """Compare one decision with what its case expects."""
    expect = case.expect
    problems: list[str] = []
    if decision.allow != expect.allow:
        problems.append(f"allow: expected {expect.allow}, got {decision.allow}")

    codes = {reason.code for reason in decision.reasons}
    missing, unexpected = expect.reasons - codes, codes - expect.reasons
    if missing or unexpected:
        problems.append(
            f"reasons: missing {sorted(missing) or 'none'},"
            f" unexpected {sorted(unexpected) or 'none'}"
        )

    for code, text in expect.messages.items():
        messages = [reason.message for reason in decision.reasons if reason.code == code]
        if not any(text in message for message in messages):
            problems.append(f"message of {code}: expected it to contain {text!r}, got {messages}")

    actual = decision.obligations.model_dump()
    for key, wanted in expect.obligations.items():
        if key not in actual:
            problems.append(f"obligations.{key}: expected {wanted!r}, but there is none")
        elif actual[key] != wanted:
            problems.append(f"obligations.{key}: expected {wanted!r}, got {actual[key]!r}")

    return CaseResult(case=case, decision=decision, problems=tuple(problems))


def _load_case_file(path: Path) -> list[DecisionCase]:
    try:
        document = yaml_files.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise PolicyLoadError(f"decision case file {path} cannot be read: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("cases"), list):
        raise PolicyLoadError(f"decision case file {path} must have a list under `cases`")
    unknown = set(document) - {"base", "cases"}
    if unknown:
        raise PolicyLoadError(f"decision case file {path} has unknown keys {sorted(unknown)}")
    base = document.get("base") or {}
    if not isinstance(base, dict):
        raise PolicyLoadError(f"decision case file {path}: `base` must be a mapping")

    cases = []
    for index, entry in enumerate(document["cases"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise PolicyLoadError(f"decision case #{index + 1} in {path} has no name")
        name = entry["name"]
        unknown = set(entry) - {"name", "input", "expect"}
        if unknown:
            raise PolicyLoadError(
                f"decision case {name!r} in {path} has unknown keys {sorted(unknown)}"
            )
        try:
            merged = _merge(base, entry.get("input") or {})
            # An input with a `kind` is a lead's review or action (gateway/policy/lead_input.py).
            model = LeadPolicyInput if "kind" in merged else PolicyInput
            policy_input: AnyPolicyInput = model.model_validate(merged)
            expect = Expectation.model_validate(entry.get("expect"))
        except ValidationError as exc:
            raise PolicyLoadError(f"decision case {name!r} in {path} is malformed: {exc}") from exc
        cases.append(DecisionCase(name=name, source=path, input=policy_input, expect=expect))
    return cases


def _merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = _merge(base.get(key), value) if key in base else value
        return merged
    return override
