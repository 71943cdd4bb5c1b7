"""PolicyService fails closed: whatever an engine does, decide() returns a refusal."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from policy_support import an_identification, service_for

from gateway.policy.bundle import load_bundle
from gateway.policy.contract import PolicyInput
from gateway.policy.embedded import EmbeddedEngine
from gateway.policy.engine import (
    POLICY_ERROR,
    POLICY_INPUT_INVALID,
    POLICY_TIMEOUT,
    POLICY_UNDEFINED,
)


class FailingEngine(EmbeddedEngine):
    async def evaluate(self, document: dict[str, Any]) -> Any:
        raise RuntimeError("the evaluator fell over")


class HangingEngine(EmbeddedEngine):
    """Never answers: waits on an event nobody sets (cancelled by the timeout)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cancelled = False

    async def evaluate(self, document: dict[str, Any]) -> Any:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


def write_module(policy_dir: Path, rego: str) -> None:
    (policy_dir / "facegate.rego").write_text("package facegate\n\nimport rego.v1\n\n" + rego)


async def test_the_starting_policy_allows_a_well_formed_identification(policy_copy: Path) -> None:
    bundle = load_bundle(policy_copy)
    service = service_for(EmbeddedEngine(bundle), policy_copy)
    decision = await service.decide(an_identification())
    assert decision.allow
    assert decision.policy_revision == bundle.revision == service.revision
    assert decision.engine == "embedded" == service.engine_name
    assert decision.obligations.min_threshold == 99
    await service.close()


async def test_an_engine_that_raises_gives_policy_error(policy_copy: Path) -> None:
    bundle = load_bundle(policy_copy)
    service = service_for(FailingEngine(bundle), policy_copy)
    decision = await service.decide(an_identification())
    assert not decision.allow
    assert [r.code for r in decision.reasons] == [POLICY_ERROR]
    assert "RuntimeError" in decision.reasons[0].message
    assert decision.policy_revision == bundle.revision
    assert decision.engine == "embedded"
    await service.close()


async def test_an_engine_that_never_answers_gives_policy_timeout(policy_copy: Path) -> None:
    engine = HangingEngine(load_bundle(policy_copy))
    service = service_for(engine, policy_copy, timeout=0.05)
    decision = await service.decide(an_identification())
    assert not decision.allow
    assert [r.code for r in decision.reasons] == [POLICY_TIMEOUT]
    assert engine.cancelled
    await service.close()


async def test_a_slow_rego_evaluation_gives_policy_timeout(policy_copy: Path) -> None:
    # Real regorus work in a worker thread: over a second for two million numbers here, far
    # past the 50 ms timeout. regorus holds the GIL meanwhile, so the timer may only run
    # once the result is in; the late result must still be refused.
    write_module(
        policy_copy,
        'decision := {"allow": true, "reasons": [], "obligations": {}} if {\n'
        "\tcount([x | some x in numbers.range(1, input.activity.officer.requests.spin);"
        " x % 7 == 0]) > 0\n"
        "}\n",
    )
    service = service_for(EmbeddedEngine(load_bundle(policy_copy)), policy_copy, timeout=0.05)
    decision = await service.decide(an_identification(officer={"requests": {"spin": 2_000_000}}))
    assert not decision.allow
    assert [r.code for r in decision.reasons] == [POLICY_TIMEOUT]
    await service.close()


async def test_an_undefined_decision_gives_policy_undefined(policy_copy: Path) -> None:
    write_module(
        policy_copy,
        'decision := {"allow": true, "reasons": [], "obligations": {}} if {\n'
        '\tinput.operation.kind == "celebrity"\n'
        "}\n",
    )
    bundle = load_bundle(policy_copy)
    service = service_for(EmbeddedEngine(bundle), policy_copy)
    decision = await service.decide(an_identification())
    assert not decision.allow
    assert [r.code for r in decision.reasons] == [POLICY_UNDEFINED]
    assert decision.policy_revision == bundle.revision
    await service.close()


@pytest.mark.parametrize(
    ("document", "complaint"),
    [
        ('"allow"', "decision"),
        ('{"allow": "true", "reasons": [], "obligations": {}}', "allow"),
        ('{"allow": true, "reasons": []}', "obligations"),
        ('{"allow": true, "reasons": [{"code": "x"}], "obligations": {}}', "reasons.0.message"),
        (
            '{"allow": true, "reasons": [], "obligations": {"max_results": "five"}}',
            "obligations.max_results",
        ),
        (
            '{"allow": true, "reasons": [], "obligations": {"min_threshold": "99"}}',
            "obligations.min_threshold",
        ),
    ],
)
async def test_a_malformed_decision_gives_policy_error(
    policy_copy: Path, document: str, complaint: str
) -> None:
    write_module(policy_copy, f"decision := {document}\n")
    service = service_for(EmbeddedEngine(load_bundle(policy_copy)), policy_copy)
    decision = await service.decide(an_identification())
    assert not decision.allow
    assert [r.code for r in decision.reasons] == [POLICY_ERROR]
    assert complaint in decision.reasons[0].message
    await service.close()


async def test_extra_obligations_an_admin_adds_are_kept(policy_copy: Path) -> None:
    write_module(
        policy_copy,
        'decision := {"allow": true, "reasons": [], "note": "ignored",'
        ' "obligations": {"min_threshold": 95, "notify": "supervisor"}}\n',
    )
    service = service_for(EmbeddedEngine(load_bundle(policy_copy)), policy_copy)
    decision = await service.decide(an_identification())
    assert decision.allow
    assert decision.obligations.min_threshold == 95
    assert decision.obligations.model_dump()["notify"] == "supervisor"
    await service.close()


async def test_concurrent_decisions_on_one_embedded_engine(policy_copy: Path) -> None:
    service = service_for(EmbeddedEngine(load_bundle(policy_copy)), policy_copy)
    inputs = [an_identification(offense=o) for o in ("robbery", "burglary", "littering") * 20]
    decisions = await asyncio.gather(*(service.decide(i) for i in inputs))
    codes = [[r.code for r in d.reasons] for d in decisions]
    assert codes == [[], ["offense_not_serious_enough"], ["offense_not_allowed"]] * 20
    await service.close()


async def test_each_refusal_keeps_its_code_and_its_whole_message(policy_copy: Path) -> None:
    bundle = load_bundle(policy_copy)

    async def refusal(engine: EmbeddedEngine, policy_input: PolicyInput) -> tuple[str, str]:
        service = service_for(engine, policy_copy, timeout=0.05)
        decision = await service.decide(policy_input)
        await service.close()
        assert not decision.allow
        assert decision.engine == "embedded"
        assert decision.policy_revision == engine.revision
        [reason] = decision.reasons
        return reason.code, reason.message

    not_strict = an_identification().model_copy(update={"now": "2025-02-30T12:00:00Z"})
    assert await refusal(EmbeddedEngine(bundle), not_strict) == (
        POLICY_INPUT_INVALID,
        "the policy input is not one the policy contract allows (now: must be an RFC 3339"
        " time in UTC (YYYY-MM-DDThh:mm:ss[.ffffff]Z), not '2025-02-30T12:00:00Z');"
        " the request is refused",
    )
    assert await refusal(FailingEngine(bundle), an_identification()) == (
        POLICY_ERROR,
        "the policy engine failed (RuntimeError); the request is refused",
    )
    assert await refusal(HangingEngine(bundle), an_identification()) == (
        POLICY_TIMEOUT,
        "the policy engine gave no decision within 0.05s; the request is refused",
    )
    write_module(policy_copy, 'decision := {"allow": 1, "reasons": [], "obligations": {}}\n')
    assert await refusal(EmbeddedEngine(load_bundle(policy_copy)), an_identification()) == (
        POLICY_ERROR,
        "the policy's decision is malformed (allow: Input should be a valid boolean);"
        " the request is refused",
    )
    write_module(policy_copy, 'decision := {"allow": true} if { input.now == "never" }\n')
    assert await refusal(EmbeddedEngine(load_bundle(policy_copy)), an_identification()) == (
        POLICY_UNDEFINED,
        "the policy gave no decision for this request; the request is refused",
    )
