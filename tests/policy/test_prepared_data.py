"""data.config.prepared: the lists the policy normalises, normalised once at load (issue 17).

What the policy decides must not depend on whether bundle.py prepared a list or left it to
the policy to normalise on each evaluation: both paths are run here on both engines.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from policy_support import (
    ENGINE_KINDS,
    POLICY_DIR,
    an_identification,
    open_test_engine,
    service_for,
)

from gateway.policy.bundle import PREPARED_KEY, PolicyBundle, PolicyLoadError, load_bundle
from gateway.policy.cases import CASES_DIR, load_cases, run_cases


def unprepared(bundle: PolicyBundle) -> PolicyBundle:
    """`bundle` as if bundle.py had prepared nothing: the policy normalises every list."""
    return dataclasses.replace(bundle, config={**bundle.config, PREPARED_KEY: {}})


def test_the_lists_the_policy_normalises_are_prepared_at_load() -> None:
    config = load_bundle(POLICY_DIR).config
    prepared = config[PREPARED_KEY]
    assert prepared["offenses"] == dict.fromkeys(config["offenses"], True)
    assert prepared["removed_attributes"] == dict.fromkeys(
        config["attributes"]["removed_from_responses"], True
    )
    assert prepared["warrantless_flags"] == config["identification"]["without_warrant"]


def test_untidy_entries_are_normalised_as_the_policy_would(policy_copy: Path) -> None:
    (policy_copy / "data" / "case.yaml").write_text(
        'purposes: ["  Criminal_Investigation\\t", missing_person]\n'
        "offenses: [Robbery, ' arson ']\n"
    )
    prepared = load_bundle(policy_copy).config[PREPARED_KEY]
    assert prepared["purposes"] == {"criminal_investigation": True, "missing_person": True}
    assert prepared["offenses"] == {"robbery": True, "arson": True}


def test_a_list_not_plain_ascii_is_left_to_the_policy(policy_copy: Path) -> None:
    # Lower-casing beyond ASCII is where Python, Go and Rust may part ways.
    (policy_copy / "data" / "case.yaml").write_text(
        "purposes: [criminal_investigation]\noffenses: [ROBBERY, KİDNAPPİNG, 7]\n"
    )
    prepared = load_bundle(policy_copy).config[PREPARED_KEY]
    assert "purposes" in prepared
    assert "offenses" not in prepared


def test_a_data_file_may_not_define_the_prepared_key(policy_copy: Path) -> None:
    (policy_copy / "data" / "extra.yaml").write_text("prepared: {offenses: {anything: true}}\n")
    with pytest.raises(PolicyLoadError, match=r"extra\.yaml.*reserved"):
        load_bundle(policy_copy)


@pytest.mark.parametrize("kind", ENGINE_KINDS)
async def test_every_decision_case_passes_with_nothing_prepared(kind: str) -> None:
    engine = await open_test_engine(kind, unprepared(load_bundle(POLICY_DIR)))
    service = service_for(engine, POLICY_DIR)
    try:
        results = await run_cases(service.decide, load_cases(POLICY_DIR / CASES_DIR))
    finally:
        await service.close()
    assert [result.report() for result in results if not result.passed] == []


@pytest.mark.parametrize("kind", ENGINE_KINDS)
async def test_untidy_data_decides_alike_prepared_or_not(kind: str, policy_copy: Path) -> None:
    (policy_copy / "data" / "case.yaml").write_text(
        "purposes: [' Criminal_Investigation ']\noffenses: [Robbery, ' ARSON', KİDNAPPİNG]\n"
    )
    bundle = load_bundle(policy_copy)
    decisions = []
    for variant in (bundle, unprepared(bundle)):
        service = service_for(await open_test_engine(kind, variant), policy_copy)
        try:
            decisions.append(
                [
                    await service.decide(an_identification(offense=offense))
                    for offense in ("robbery", "arson", "kidnapping", "burglary")
                ]
            )
        finally:
            await service.close()
    prepared, unprepared_ = decisions
    assert [(d.allow, d.reasons, d.obligations) for d in prepared] == [
        (d.allow, d.reasons, d.obligations) for d in unprepared_
    ]
    robbery, arson, _, burglary = prepared
    assert robbery.allow
    assert not arson.allow  # listed, but not serious enough to identify
    assert not burglary.allow  # no longer listed
