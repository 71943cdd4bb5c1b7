"""The policy an admin edits: checked by its decision cases, kept, and activated on record.

An admin raised a limit, `facegate policy test` reported two failures, and the gateway served
the edit two seconds later, with nothing in the audit log. Now a revision whose decision
cases fail is refused (the previous keeps serving; the refusal is logged and recorded), each
activation is recorded with the revision it replaces, and every revision's text is kept, so
the policy behind any decision can be read back. On SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from policy_support import an_identification, repin_cases_from

from gateway.audit.checkpoint import Signer
from gateway.audit.log import AuditLog
from gateway.audit.query import RecordQuery
from gateway.audit.schemas import AuditQuery
from gateway.config import Settings
from gateway.db import create_engine, session_factory
from gateway.policy.bundle import PolicyBundle, PolicyLoadError, load_bundle, revision_of_files
from gateway.policy.cases import CASES_DIR, load_cases
from gateway.policy.engine import PolicyService
from gateway.policy.revisions import AuditedPolicyJournal, keep_revision, read_revision
from tests.cli.test_cli import run_facegate

NOT_SERIOUS = "identification for an offense that is allowed but not serious is refused"


@dataclass
class Gateway:
    service: PolicyService
    audit: AuditLog
    database_url: str
    policy_dir: Path
    engine: Any

    async def policy_records(self) -> list[dict[str, Any]]:
        page = await RecordQuery(self.audit.sessions).query(
            AuditQuery(event_type="policy"), limit=100
        )
        return [entry.detail for entry in page.entries]

    async def kept(self, revision: str) -> dict[str, str] | None:
        async with session_factory(self.engine)() as db:
            return await read_revision(db, revision)


@pytest.fixture
async def gateway(
    migrated_database_url: str, policy_copy: Path, tmp_path: Path
) -> AsyncIterator[Gateway]:
    engine = create_engine(migrated_database_url)
    sessions = session_factory(engine)
    audit = AuditLog(sessions, signer=Signer.load_or_create(tmp_path / "log.key", "test/policy"))
    settings = Settings(
        _env_file=None, policy_dir=policy_copy, policy_engine="embedded", policy_timeout_seconds=5
    )
    service = await PolicyService.open(
        settings, journal=AuditedPolicyJournal(sessions=sessions, audit=audit)
    )
    yield Gateway(service, audit, migrated_database_url, policy_copy, engine)
    await service.close()
    await audit.aclose()
    await engine.dispose()


def make_burglary_serious(policy_dir: Path) -> None:
    """The admin's edit: burglary becomes an offense identification may be used for."""
    path = policy_dir / "data" / "identification.yaml"
    marker = "  serious_offenses:\n"
    path.write_text(path.read_text().replace(marker, f"{marker}    - burglary\n"))


async def test_the_revision_served_at_start_is_kept_and_its_activation_recorded(
    gateway: Gateway,
) -> None:
    revision = gateway.service.revision
    assert await gateway.policy_records() == [
        {
            "action": "policy.activate",
            "revision": revision,
            "replaces": None,
            "cases_passed": len(load_cases(gateway.policy_dir / CASES_DIR)),
        }
    ]
    kept = await gateway.kept(revision)
    assert kept is not None and revision_of_files(kept) == revision
    assert kept["facegate.rego"] == (gateway.policy_dir / "facegate.rego").read_text()


async def test_an_edit_whose_cases_fail_is_not_activated_and_the_refusal_is_recorded(
    gateway: Gateway,
) -> None:
    served = gateway.service.revision
    make_burglary_serious(gateway.policy_dir)
    edited = load_bundle(gateway.policy_dir).revision

    result = await gateway.service.reload_if_changed()

    assert not result.reloaded and result.revision == served == gateway.service.revision
    assert result.error is not None and NOT_SERIOUS in result.error
    burglary = await gateway.service.decide(an_identification(offense="burglary"))
    assert not burglary.allow and burglary.policy_revision == served
    [_, refusal] = await gateway.policy_records()
    assert refusal["action"] == "policy.refuse"
    assert (refusal["revision"], refusal["serving"]) == (edited, served)
    assert NOT_SERIOUS in refusal["failed_cases"]
    assert await gateway.kept(edited) is None  # never served, so not kept

    # The next polls neither retry nor record it again.
    again = await gateway.service.reload_if_changed()
    assert (again.reloaded, again.error) == (False, result.error)
    assert len(await gateway.policy_records()) == 2


async def test_a_start_on_a_revision_whose_cases_fail_is_refused(gateway: Gateway) -> None:
    """What a reload refuses, a restart does not serve either: the service does not open, so
    the gateway does not start, and nothing is activated or kept."""
    make_burglary_serious(gateway.policy_dir)
    edited = load_bundle(gateway.policy_dir).revision
    journal = AuditedPolicyJournal(sessions=session_factory(gateway.engine), audit=gateway.audit)
    settings = Settings(_env_file=None, policy_dir=gateway.policy_dir, policy_engine="embedded")

    with pytest.raises(PolicyLoadError) as refused:
        await PolicyService.open(settings, journal=journal)

    assert edited in refused.value.message and NOT_SERIOUS in refused.value.message
    assert len(await gateway.policy_records()) == 1  # the fixture's own start only
    assert await gateway.kept(edited) is None


async def test_a_start_decides_the_cases_again_when_only_they_changed(gateway: Gateway) -> None:
    """A process remembers that a revision passed its cases at start only with those very
    cases (and timeout): the same revision with its cases edited is decided again."""
    served = gateway.service.revision  # the fixture's start passed its cases
    # The cases now pin, as not serious, an offense the policy holds serious.
    repin_cases_from(gateway.policy_dir, "burglary", to="homicide")
    assert load_bundle(gateway.policy_dir).revision == served
    settings = Settings(
        _env_file=None, policy_dir=gateway.policy_dir, policy_engine="embedded",
        policy_timeout_seconds=5,
    )  # fmt: skip

    with pytest.raises(PolicyLoadError) as refused:
        await PolicyService.open(settings)

    assert NOT_SERIOUS in refused.value.message


async def test_each_activation_is_recorded_with_the_revision_it_replaces_and_its_text_kept(
    gateway: Gateway,
) -> None:
    first = gateway.service.revision
    make_burglary_serious(gateway.policy_dir)
    repin_cases_from(gateway.policy_dir, "burglary")

    result = await gateway.service.reload_if_changed()

    assert result.reloaded and result.error is None
    second = gateway.service.revision
    assert second != first and second == load_bundle(gateway.policy_dir).revision
    assert (await gateway.service.decide(an_identification(offense="burglary"))).allow
    [_, activation] = await gateway.policy_records()
    assert activation["action"] == "policy.activate"
    assert (activation["revision"], activation["replaces"]) == (second, first)
    assert activation["cases_passed"] > 100
    kept = await gateway.kept(second)
    assert kept is not None
    assert (
        kept["data/identification.yaml"]
        == (gateway.policy_dir / "data" / "identification.yaml").read_text()
    )
    assert "- burglary" not in (await gateway.kept(first) or {})["data/identification.yaml"]


async def test_an_edit_that_cannot_be_recorded_is_not_activated(gateway: Gateway) -> None:
    served = gateway.service.revision
    make_burglary_serious(gateway.policy_dir)
    repin_cases_from(gateway.policy_dir, "burglary")

    class Unrecordable(AuditedPolicyJournal):
        async def activated(
            self, bundle: PolicyBundle, *, replaces: str | None, cases: int
        ) -> None:
            raise OSError("the database is down")

    gateway.service._journal = Unrecordable(
        sessions=session_factory(gateway.engine), audit=gateway.audit
    )
    result = await gateway.service.reload_if_changed()
    assert not result.reloaded and gateway.service.revision == served
    assert result.error is not None and "could not be recorded" in result.error


async def test_a_kept_revision_cannot_be_rewritten(gateway: Gateway) -> None:
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        async with gateway.engine.begin() as db:
            await db.execute(sa.text("UPDATE policy_revisions SET files = '{}'"))
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        async with gateway.engine.begin() as db:
            await db.execute(sa.text("DELETE FROM policy_revisions"))


async def facegate(gateway: Gateway, *args: str) -> tuple[int, str]:
    env = {
        "FACEGATE_DATABASE_URL": gateway.database_url,
        "FACEGATE_POLICY_DIR": str(gateway.policy_dir),
    }
    return await run_facegate(env, *args)


async def test_the_policy_of_a_decision_is_read_back_from_its_revision(gateway: Gateway) -> None:
    decision = await gateway.service.decide(an_identification())
    module = (gateway.policy_dir / "facegate.rego").read_text()
    # The directory moves on; the decision's revision still names the text it was made by.
    (gateway.policy_dir / "facegate.rego").write_text(module + "\n# edited since\n")

    code, output = await facegate(gateway, "policy", "show", decision.policy_revision)
    assert code == 0, output
    assert output.startswith("==> facegate.rego <==\n" + module)
    assert "==> data/identification.yaml <==" in output
    assert "edited since" not in output

    code, output = await facegate(
        gateway, "policy", "show", decision.policy_revision, "--file", "facegate.rego"
    )
    assert (code, output) == (0, module)

    code, output = await facegate(gateway, "policy", "show", "sha256:" + "0" * 64)
    assert code == 1 and "no policy revision sha256:000" in output


async def test_a_start_whose_activation_cannot_be_recorded_yet_is_recorded_later(
    gateway: Gateway,
) -> None:
    # The gateway starts with its database down (and refuses requests meanwhile); the
    # activation is recorded once the database takes it.
    class DownAtFirst(AuditedPolicyJournal):
        down = True

        async def activated(
            self, bundle: PolicyBundle, *, replaces: str | None, cases: int
        ) -> None:
            if self.down:
                raise OSError("the database is down")
            await super().activated(bundle, replaces=replaces, cases=cases)

    journal = DownAtFirst(sessions=session_factory(gateway.engine), audit=gateway.audit)
    (gateway.policy_dir / "facegate.rego").write_text(
        (gateway.policy_dir / "facegate.rego").read_text() + "\n# another revision\n"
    )
    settings = Settings(_env_file=None, policy_dir=gateway.policy_dir, policy_engine="embedded")
    service = await PolicyService.open(settings, journal=journal)
    try:
        assert len(await gateway.policy_records()) == 1  # only the fixture's own start
        journal.down = False
        result = await service.reload_if_changed()
        assert not result.reloaded and result.error is None
        started = await gateway.policy_records()
        assert started[-1] == {
            "action": "policy.activate",
            "revision": service.revision,
            "replaces": None,
            "cases_passed": len(load_cases(gateway.policy_dir / CASES_DIR)),
        }
        assert await gateway.kept(service.revision) is not None
    finally:
        await service.close()


async def test_fixing_only_the_cases_of_a_refused_edit_activates_it(gateway: Gateway) -> None:
    served = gateway.service.revision
    make_burglary_serious(gateway.policy_dir)
    refused = await gateway.service.reload_if_changed()
    assert not refused.reloaded and refused.error is not None

    # The revision is the same (cases are not part of it), but the cases now agree with it.
    repin_cases_from(gateway.policy_dir, "burglary")
    result = await gateway.service.reload_if_changed()

    assert result.reloaded and result.error is None and gateway.service.revision != served
    activation = (await gateway.policy_records())[-1]
    assert (activation["action"], activation["replaces"]) == ("policy.activate", served)


async def test_a_revision_another_replica_kept_meanwhile_is_not_an_error(
    migrated_database_url: str, policy_copy: Path
) -> None:
    """Two replicas starting on one policy both keep its text: the second looked for the
    revision before the first committed it, then inserts the same row (the race behind a
    replica's activation going unrecorded until its next poll)."""
    engine = create_engine(migrated_database_url)
    sessions = session_factory(engine)
    bundle = load_bundle(policy_copy)
    try:
        async with sessions() as first, first.begin():
            await keep_revision(first, bundle, now=datetime.now(UTC))

        async def not_committed_yet(*args: object, **kwargs: object) -> None:
            return None

        async with sessions() as second:
            second.get = not_committed_yet  # type: ignore[method-assign]
            async with second.begin():
                await keep_revision(second, bundle, now=datetime.now(UTC))
        async with sessions() as db:
            assert await read_revision(db, bundle.revision) == dict(bundle.files)
    finally:
        await engine.dispose()
