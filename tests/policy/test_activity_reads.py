"""The policy reads no activity count it does not declare (`activity_reads`).

The gateway sends the policy only the counts its `activity_reads` names. A rule reading a
count left out would read 0 there, and no limit on it would ever refuse: so every decision
case, and every case's input under generated counts (all huge, and random around the
limits), must be decided alike on the full activity and on the declared part alone, on both
engines. Deleting any one family of declared reads from the policy makes these tests find a
disagreement (test_each_family_of_reads_is_needed shows it for each, on the embedded
engine).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from policy_support import POLICY_DIR, open_test_engine, service_for

from gateway.context.activity import COUNTED, WINDOWS, ActivityReads
from gateway.policy.bundle import MODULE_FILE, PolicyLoadError, load_bundle
from gateway.policy.cases import load_cases
from gateway.policy.contract import Decision, PolicyInput
from gateway.policy.embedded import EmbeddedEngine
from gateway.policy.engine import PolicyService

CASES = load_cases(POLICY_DIR / "cases")
# Every input a case decides (the lead cases read no activity).
INPUTS = [case.input for case in CASES if isinstance(case.input, PolicyInput)]
# Every count the windows keep, in a fixed order.
TRIPLES = sorted((scope, stream, window) for scope, stream in COUNTED for window in WINDOWS)
HUGE = 1_000_000


def activity_of(counts: Iterable[tuple[tuple[str, str, str], int]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for (scope, stream, window), n in counts:
        document.setdefault(scope, {}).setdefault(stream, {})[window] = n
    return document


def restricted(policy_input: PolicyInput, reads: ActivityReads) -> PolicyInput:
    """The input with only the counts of `reads`, as the gateway sends it."""
    assert reads is not None
    kept = activity_of(
        ((scope, stream, window), n)
        for scope, streams in policy_input.activity.items()
        for stream, windows in streams.items()
        for window, n in windows.items()
        if (scope, stream, window) in reads
    )
    return policy_input.model_copy(update={"activity": kept})


def outcome(decision: Decision) -> tuple[bool, list[tuple[str, str]], dict[str, Any]]:
    return (
        decision.allow,
        sorted((reason.code, reason.message) for reason in decision.reasons),
        decision.obligations.model_dump(),
    )


async def disagreements(service: PolicyService, inputs: Iterable[PolicyInput]) -> list[str]:
    """Each input decided otherwise on its declared counts alone, with both outcomes."""
    reads = service.activity_reads
    found = []
    for policy_input in inputs:
        full = outcome(await service.decide(policy_input))
        declared = outcome(await service.decide(restricted(policy_input, reads)))
        if full != declared:
            found.append(f"{policy_input.operation.name}: {full} != {declared}")
    return found


def with_every_count(n: int) -> list[PolicyInput]:
    """Each case's input with every count the windows keep set to n."""
    activity = activity_of((triple, n) for triple in TRIPLES)
    return [policy_input.model_copy(update={"activity": activity}) for policy_input in INPUTS]


async def test_both_engines_declare_the_same_reads(
    repository_policy: PolicyService,
) -> None:
    reads = repository_policy.activity_reads
    assert reads is not None
    assert reads == EmbeddedEngine(load_bundle(POLICY_DIR)).activity_reads
    # The rules read about a dozen of the ~110 counts the windows keep.
    assert 0 < len(reads) < len(TRIPLES) / 4


async def test_every_case_is_decided_alike_on_its_declared_counts(
    repository_policy: PolicyService,
) -> None:
    assert await disagreements(repository_policy, INPUTS) == []


@pytest.mark.parametrize("n", [0, HUGE])
async def test_every_case_under_every_count_is_decided_alike_on_its_declared_counts(
    repository_policy: PolicyService, n: int
) -> None:
    assert await disagreements(repository_policy, with_every_count(n)) == []


# Around every limit of data/patterns.yaml and identities.yaml, and anywhere.
counts = st.sampled_from([0, 1, 2, 3, 4, 5, 6, 11, 21, 51, 61, 1001]) | st.integers(0, 1200)
activities = st.lists(counts, min_size=len(TRIPLES), max_size=len(TRIPLES)).map(
    lambda values: activity_of(zip(TRIPLES, values, strict=True))
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(base=st.sampled_from(INPUTS), activity=activities)
async def test_generated_counts_are_decided_alike_on_the_declared_ones(
    repository_policy: PolicyService, base: PolicyInput, activity: dict[str, Any]
) -> None:
    policy_input = base.model_copy(update={"activity": activity})
    assert await disagreements(repository_policy, [policy_input]) == []


# --- without the declaration of any one family of reads, the tests above go red ----------


def _families(module: str) -> list[str]:
    """Each `activity_reads contains` rule of the module, as written."""
    return [
        paragraph
        for paragraph in module.split("\n\n")
        if paragraph.startswith("activity_reads contains")
    ]


MODULE = (POLICY_DIR / MODULE_FILE).read_text()
FAMILIES = _families(MODULE)


def test_every_family_of_reads_is_found() -> None:
    # burst, sweep (officer), sweep (probe), watchlist, rate limits, verification, sources
    assert len(FAMILIES) == 7
    reading_rules = len(re.findall(r"^[^#\n]*object\.get\(input\.activity,", MODULE, re.M))
    assert reading_rules == len(FAMILIES)


@pytest.fixture
def policy_without(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    family: str = request.param
    copy = tmp_path / "policies"
    (copy / "data").mkdir(parents=True)
    for data_file in (POLICY_DIR / "data").iterdir():
        (copy / "data" / data_file.name).write_bytes(data_file.read_bytes())
    (copy / MODULE_FILE).write_text(MODULE.replace(family, "", 1))
    return copy


@pytest.mark.parametrize(
    "policy_without", FAMILIES, ids=[f.split("\n")[0][:60] for f in FAMILIES], indirect=True
)
async def test_each_family_of_reads_is_needed(policy_without: Path) -> None:
    service = service_for(EmbeddedEngine(load_bundle(policy_without)), policy_without)
    found = await disagreements(service, [*INPUTS, *with_every_count(HUGE)])
    await service.close()
    assert found, "deleting a family of reads went unnoticed"


@pytest.fixture(scope="module")
async def policy_without_reads(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Path]:
    copy = tmp_path_factory.mktemp("no-reads") / "policies"
    (copy / "data").mkdir(parents=True)
    for data_file in (POLICY_DIR / "data").iterdir():
        (copy / "data" / data_file.name).write_bytes(data_file.read_bytes())
    module = MODULE
    for family in FAMILIES:
        module = module.replace(family, "", 1)
    (copy / MODULE_FILE).write_text(module)
    yield copy


@pytest.mark.parametrize("kind", ["embedded", "opa"])
async def test_a_policy_that_declares_no_reads_is_sent_every_count(
    policy_without_reads: Path, kind: str
) -> None:
    engine = await open_test_engine(kind, load_bundle(policy_without_reads))
    try:
        assert engine.activity_reads is None
    finally:
        await engine.close()


@pytest.mark.parametrize("kind", ["embedded", "opa"])
async def test_a_policy_that_declares_a_count_no_store_keeps_is_refused_at_load(
    tmp_path: Path, kind: str
) -> None:
    copy = tmp_path / "policies"
    (copy / "data").mkdir(parents=True)
    for data_file in (POLICY_DIR / "data").iterdir():
        (copy / "data" / data_file.name).write_bytes(data_file.read_bytes())
    (copy / MODULE_FILE).write_text(
        MODULE + '\nactivity_reads contains ["officer", "requests", "week"]\n'
    )
    with pytest.raises(PolicyLoadError, match="week"):
        engine = await open_test_engine(kind, load_bundle(copy))
        await engine.close()
