"""A revision that reads an activity count it does not declare is refused at activation.

The gateway sends the policy only the counts its `activity_reads` declares. An admin who
adds a limit on another count, without declaring it, would see the limit never fire (it
reads 0): so a reload decides the revision's cases on the declared counts alone and on
every count, on its own engine, and refuses it when they differ (cases.undeclared_reads);
the previous revision keeps serving, and the refusal names the cases.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from policy_support import ENGINE_KINDS, POLICY_DIR, an_identification, open_test_engine

from gateway.config import Settings
from gateway.policy.bundle import MODULE_FILE, PolicyBundle, PolicyLoadError, load_bundle
from gateway.policy.cases import load_cases, undeclared_reads
from gateway.policy.contract import Decision
from gateway.policy.engine import PolicyEngine, PolicyService

CASES = load_cases(POLICY_DIR / "cases")
READ = '["agency", "identifications", "hour"]'
# A limit on a count the shipped policy does not declare, with a code of its own.
NEW_LIMIT = f"""
deny contains reason("agency_identifications", "the agency has identified too often") if {{
	object.get(input.activity, {READ}, 0) > 100
}}
"""
# The same limit under a code a declared limit already gives at a high count: allow and
# the codes agree on every count high, only the reasons' messages tell.
SAME_CODE_LIMIT = f"""
deny contains reason("rate_limit_exceeded", "the agency has identified too often") if {{
	object.get(input.activity, {READ}, 0) > 100
}}
"""
# A floor read without object.get's default: undefined when the count is not sent, so
# only a run with the undeclared counts at 0 tells.
DIRECT_FLOOR = """
deny contains reason("agency_idle", "the agency has identified no one today") if {
	input.activity.agency.identifications.day < 1
}
"""
DECLARED = f"\nactivity_reads contains {READ}\n"


class Journal:
    """What a PolicyJournal is told, without a database."""

    def __init__(self) -> None:
        self.refusals: list[dict[str, Any]] = []

    async def activated(self, bundle: PolicyBundle, *, replaces: str | None, cases: int) -> None:
        pass

    async def refused(self, **detail: Any) -> None:
        self.refusals.append(detail)


async def open_service(kind: str, policy_dir: Path) -> tuple[PolicyService, Journal]:
    async def factory(bundle: PolicyBundle) -> PolicyEngine:
        return await open_test_engine(kind, bundle)

    journal = Journal()
    service = PolicyService(
        engine=await factory(load_bundle(policy_dir)),
        policy_dir=policy_dir,
        engine_factory=factory,
        timeout_seconds=5.0,
        journal=journal,  # type: ignore[arg-type]
    )
    return service, journal


def add_rules(policy_dir: Path, *rules: str) -> None:
    module = policy_dir / MODULE_FILE
    module.write_text(module.read_text() + "".join(rules))


async def test_the_shipped_policy_reads_only_what_it_declares(
    repository_policy: PolicyService,
) -> None:
    reads = repository_policy.activity_reads
    assert await undeclared_reads(repository_policy.decide, CASES, reads) == []


@pytest.mark.parametrize("kind", ENGINE_KINDS)
async def test_an_undeclared_read_is_refused_and_the_previous_revision_keeps_serving(
    policy_copy: Path, kind: str
) -> None:
    service, journal = await open_service(kind, policy_copy)
    served = service.revision
    try:
        add_rules(policy_copy, NEW_LIMIT)
        # Its decision cases send no such count, so they pass: only the read check refuses.
        result = await service.reload_if_changed()

        assert not result.reloaded and result.revision == served == service.revision
        assert result.error is not None
        assert "reads activity counts it does not declare in activity_reads" in result.error
        assert "Add each [scope, stream, window]" in result.error
        [refusal] = journal.refusals
        assert refusal["error"] == result.error and refusal["serving"] == served
        failed = refusal["failed_cases"]
        assert failed and set(failed) <= {case.name for case in CASES}
        assert repr(failed[0]) in result.error
        decision = await service.decide(an_identification())
        assert decision.allow and decision.policy_revision == served

        # Declared, the same limit is activated, and fires.
        add_rules(policy_copy, DECLARED)
        result = await service.reload_if_changed()
        assert result.reloaded and result.error is None, result.error
        assert ("agency", "identifications", "hour") in (service.activity_reads or ())
        busy = an_identification(agency={"identifications": {"hour": 101}})
        assert "agency_identifications" in {r.code for r in (await service.decide(busy)).reasons}
    finally:
        await service.close()


async def test_a_start_on_a_revision_that_reads_an_undeclared_count_is_refused(
    policy_copy: Path,
) -> None:
    add_rules(policy_copy, NEW_LIMIT)
    settings = Settings(
        _env_file=None, policy_dir=policy_copy, policy_engine="embedded", policy_timeout_seconds=5
    )
    with pytest.raises(PolicyLoadError, match="does not declare in activity_reads"):
        await PolicyService.open(settings)
    # `facegate policy test` opens it without the check, to report each case itself.
    service = await PolicyService.open(settings, check_cases=False)
    await service.close()


@pytest.mark.parametrize("kind", ENGINE_KINDS)
async def test_the_shipped_policy_edited_is_activated(policy_copy: Path, kind: str) -> None:
    service, journal = await open_service(kind, policy_copy)
    try:
        add_rules(policy_copy, "\n# an admin's note\n")
        result = await service.reload_if_changed()
        assert result.reloaded and result.error is None, result.error
        assert journal.refusals == []
    finally:
        await service.close()


@pytest.mark.parametrize("rule", [SAME_CODE_LIMIT, DIRECT_FLOOR], ids=["same-code", "direct"])
async def test_an_undeclared_read_that_only_a_message_or_a_zero_tells_is_refused(
    policy_copy: Path, rule: str
) -> None:
    service, journal = await open_service("embedded", policy_copy)
    served = service.revision
    try:
        add_rules(policy_copy, rule)
        result = await service.reload_if_changed()
        assert not result.reloaded and service.revision == served
        assert result.error is not None and "does not declare" in result.error
        assert journal.refusals[0]["failed_cases"]
    finally:
        await service.close()


async def test_a_policy_that_declares_no_reads_is_not_checked() -> None:
    async def decide(_: object) -> Decision:
        raise AssertionError("a policy sent every count reads nothing undeclared")

    assert await undeclared_reads(decide, CASES, None) == []
