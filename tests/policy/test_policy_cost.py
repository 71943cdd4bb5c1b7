"""What keeps the policy cheap to evaluate on every request (issue 17).

regorus evaluates each rule a decision reaches at about 2 us, and a read through a rule more
than the path it names: rules or functions that only name an input or data path (`op :=
input.operation`, `cfg := data.config`, an `activity_count` that only wraps object.get) were
14% of the instructions of a decision on a recorded input. The policy reads those paths
in full instead (see the top of policies/facegate.rego); these tests keep it that way.
"""

from __future__ import annotations

import re

from policy_support import POLICY_DIR

# A rule or function whose whole value is a path into input or data, or an object.get of
# one: `name := input.a.b`, `name(x) := data.config[x]`, `f(a, b) := object.get(input, ...)`.
_ALIAS = re.compile(
    r"^(?P<name>\w+)(\([^)]*\))? := (object\.get\()?(input|data)\b[\w.\[\]\"]*(,.*\))?$"
)


def aliases(module: str) -> list[str]:
    return [
        match["name"] for line in module.splitlines() if (match := _ALIAS.match(line)) is not None
    ]


def test_the_policy_reads_input_and_data_by_their_paths_not_through_alias_rules() -> None:
    module = (POLICY_DIR / "facegate.rego").read_text()
    assert aliases(module) == []


def test_the_alias_pattern_finds_the_aliases_the_policy_once_had() -> None:
    # The rules issue 17 took out, as they were written: the pattern must see each of them.
    removed = """\
cfg := data.config
ctx := input.context
op := input.operation
warrant := input.context.warrant
patterns := cfg.patterns
lead := input.lead
attestation := input.vendor.attestations[required_attestation]
required_attestation := data.config.vendors.identification_attestation
activity_count(scope, stream, window) := object.get(input.activity, [scope, stream, window], 0)
"""
    assert aliases(removed) == [
        "cfg",
        "ctx",
        "op",
        "warrant",
        "lead",
        "attestation",
        "required_attestation",
        "activity_count",
    ]
    # A rule that computes something from a path is not an alias.
    assert aliases('now_ns := time.parse_rfc3339_ns(input.now)\nx := input.a == "b"\n') == []
