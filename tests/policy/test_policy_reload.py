"""An admin's edit of the policy directory takes effect on reload; a broken one does not."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from policy_support import an_identification, repin_cases_from

from gateway.config import Settings
from gateway.policy.bundle import PolicyBundle, load_bundle
from gateway.policy.embedded import EmbeddedEngine
from gateway.policy.engine import POLICY_INPUT_INVALID, PolicyEngine, PolicyService


def settings_for(policy_dir: Path) -> Settings:
    return Settings(
        _env_file=None, policy_dir=policy_dir, policy_engine="embedded", policy_timeout_seconds=5.0
    )


def add_serious_offense(policy_dir: Path, offense: str) -> None:
    path = policy_dir / "data" / "identification.yaml"
    text = path.read_text()
    marker = "  serious_offenses:\n"
    assert marker in text
    path.write_text(text.replace(marker, f"{marker}    - {offense}\n"))
    # Its decision cases must agree, or the edit is not activated (test_policy_activation.py).
    repin_cases_from(policy_dir, offense)


async def test_an_edit_to_a_data_file_changes_decision_and_revision(policy_copy: Path) -> None:
    service = await PolicyService.open(settings_for(policy_copy))
    burglary = an_identification(offense="burglary")
    before = await service.decide(burglary)
    assert [r.code for r in before.reasons] == ["offense_not_serious_enough"]

    add_serious_offense(policy_copy, "burglary")
    result = await service.reload_if_changed()

    after = await service.decide(burglary)
    assert result.reloaded and result.error is None
    assert after.allow
    assert after.policy_revision == result.revision == service.revision
    assert after.policy_revision != before.policy_revision
    assert after.policy_revision == load_bundle(policy_copy).revision
    await service.close()


async def test_nothing_is_reloaded_when_nothing_changed(policy_copy: Path) -> None:
    service = await PolicyService.open(settings_for(policy_copy))
    revision = service.revision
    (policy_copy / "cases" / "officers.yaml").write_text("cases: []\n")  # cases are not policy
    result = await service.reload_if_changed()
    assert (result.reloaded, result.error, result.revision) == (False, None, revision)
    await service.close()


async def test_a_broken_edit_keeps_the_old_policy_serving_and_says_why(
    policy_copy: Path,
) -> None:
    service = await PolicyService.open(settings_for(policy_copy))
    served = service.revision
    broken = policy_copy / "data" / "identification.yaml"
    original = broken.read_text()
    broken.write_text(original + "  serious_offenses: [unclosed\n")

    result = await service.reload_if_changed()
    assert not result.reloaded
    assert result.revision == served == service.revision
    assert result.error is not None and str(broken) in result.error
    decision = await service.decide(an_identification())
    assert decision.allow and decision.policy_revision == served

    # Asked again, the same broken revision is not parsed again, and still reported.
    again = await service.reload_if_changed()
    assert (again.reloaded, again.error) == (False, result.error)

    # A module that no longer compiles is refused the same way.
    broken.write_text(original)
    module = policy_copy / "facegate.rego"
    module.write_text(module.read_text() + "\nnot rego at all\n")
    result = await service.reload_if_changed()
    assert not result.reloaded and result.error is not None and str(module) in result.error
    assert service.revision == served

    # Fixed, it loads.
    module.write_text(module.read_text().replace("\nnot rego at all\n", ""))
    add_serious_offense(policy_copy, "burglary")
    result = await service.reload_if_changed()
    assert result.reloaded and result.error is None and service.revision != served
    assert (await service.decide(an_identification(offense="burglary"))).allow
    await service.close()


async def test_a_missing_module_keeps_the_old_policy_serving(policy_copy: Path) -> None:
    service = await PolicyService.open(settings_for(policy_copy))
    served = service.revision
    (policy_copy / "facegate.rego").unlink()
    result = await service.reload_if_changed()
    assert not result.reloaded and result.revision == served
    assert result.error is not None and "does not exist" in result.error
    assert (await service.decide(an_identification())).allow
    await service.close()


class GatedEngine(EmbeddedEngine):
    """Holds each evaluation until the test opens the gate; records its own closing."""

    def __init__(self, bundle: PolicyBundle, gate: asyncio.Event) -> None:
        super().__init__(bundle)
        self.gate = gate
        self.started = asyncio.Event()
        self.closed = False

    async def evaluate(self, document: dict[str, Any]) -> Any:
        self.started.set()
        await self.gate.wait()
        return super().evaluate(document)

    async def close(self) -> None:
        self.closed = True
        await super().close()


async def test_a_decision_in_flight_during_a_reload_is_made_wholly_by_the_old_policy(
    policy_copy: Path,
) -> None:
    gate = asyncio.Event()
    old_engine = GatedEngine(load_bundle(policy_copy), gate)

    async def factory(bundle: PolicyBundle) -> PolicyEngine:
        return EmbeddedEngine(bundle)

    service = PolicyService(
        engine=old_engine, policy_dir=policy_copy, engine_factory=factory, timeout_seconds=30
    )
    burglary = an_identification(offense="burglary")
    in_flight = asyncio.create_task(service.decide(burglary))
    await old_engine.started.wait()

    add_serious_offense(policy_copy, "burglary")
    reload = asyncio.create_task(service.reload_if_changed())
    # The new engine serves new requests while the old one still holds its evaluation.
    # (The swap signals nothing to wait on; it comes a few loop turns after the reload starts.)
    while service.revision == old_engine.revision and not reload.done():  # noqa: ASYNC110
        await asyncio.sleep(0)
    assert service.revision != old_engine.revision
    assert (await service.decide(burglary)).allow
    assert not old_engine.closed

    gate.set()
    old_decision, result = await in_flight, await reload
    assert not old_decision.allow
    assert old_decision.policy_revision == old_engine.revision != result.revision
    assert old_engine.closed
    await service.close()


def add_hourly_rate_limit(policy_dir: Path) -> None:
    patterns = policy_dir / "data" / "patterns.yaml"
    text = patterns.read_text()
    assert text.count("      minute: 60\n") == 1  # the officer's
    patterns.write_text(text.replace("      minute: 60\n", "      minute: 60\n      hour: 500\n"))


async def test_a_reload_that_reads_more_never_decides_on_a_gather_without_it(
    policy_copy: Path,
) -> None:
    gate = asyncio.Event()
    incoming: list[GatedEngine] = []

    async def factory(bundle: PolicyBundle) -> PolicyEngine:
        incoming.append(GatedEngine(bundle, gate))
        return incoming[-1]

    service = PolicyService(
        engine=EmbeddedEngine(load_bundle(policy_copy)),
        policy_dir=policy_copy,
        engine_factory=factory,
        timeout_seconds=30,
    )
    before = service.activity_reads
    assert before is not None and ("officer", "requests", "hour") not in before

    add_hourly_rate_limit(policy_copy)
    reload = asyncio.create_task(service.reload_if_changed())
    while not incoming:  # noqa: ASYNC110
        await asyncio.sleep(0)
    await incoming[0].started.wait()  # its decision cases are running, held at the gate
    # A request gathered now may be decided by either revision: it gathers what both read.
    during = service.activity_reads
    after = incoming[0].activity_reads
    assert after is not None and during == before | after
    assert ("officer", "requests", "hour") in during

    gate.set()
    assert (await reload).reloaded
    assert service.activity_reads == after

    # Gathered before the reload, decided after it: the new revision reads a count the
    # input lacks (it would read 0 there), so it does not decide.
    stale = await service.decide(an_identification(), gathered_reads=before)
    assert [reason.code for reason in stale.reasons] == [POLICY_INPUT_INVALID]
    assert stale.policy_revision == service.revision
    for gathered in (during, after, None):
        assert (await service.decide(an_identification(), gathered_reads=gathered)).allow
    await service.close()
