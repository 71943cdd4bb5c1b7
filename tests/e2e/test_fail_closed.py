"""An error in authentication, policy or audit refuses the request; nothing reaches the vendor."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from botocore.exceptions import ClientError

from gateway.app import create_app
from gateway.audit.query import RecordQuery
from gateway.audit.schemas import AuditQuery
from gateway.db import create_engine, session_factory
from gateway.serving import BackgroundServer
from refvendor import samples
from tests.e2e.conftest import CASE, REPO, Stack, gateway_settings, vendor_calls

RAISING_POLICY = """package facegate

import rego.v1

# Evaluation fails at run time: division by zero.
decision := {"allow": true, "reasons": [], "obligations": {}} if {
\t1 / count([]) > 0
}
"""

UNDEFINED_POLICY = """package facegate

import rego.v1

decision := {"allow": true, "reasons": [], "obligations": {}} if {
\tinput.never_set == "never"
}
"""


@asynccontextmanager
async def gateway_with(stack: Stack, tmp_path: Path, **overrides: Any) -> AsyncIterator[Stack]:
    """Another gateway on the same database and vendor, with different settings."""
    database_url = overrides.pop("database_url", stack.settings.database_url)
    vendor_url = overrides.pop("vendor_url", stack.vendor.url)
    settings = gateway_settings(database_url, tmp_path, vendor_url, **overrides)
    with BackgroundServer(create_app(settings)) as gateway:
        yield Stack(settings=settings, url=gateway.url, vendor=stack.vendor)


def search(client: Any) -> Callable[[], Any]:
    return lambda: client.search_faces_by_image(
        CollectionId="mugshots", Image={"Bytes": samples.astronaut_variant_jpeg()}
    )


def refused(stack: Stack, call: Callable[[], Any]) -> ClientError:
    before = vendor_calls(stack.vendor)
    with pytest.raises(ClientError) as raised:
        call()
    assert vendor_calls(stack.vendor) == before, "a refused request reached the vendor"
    return raised.value


def policy_dir_with(tmp_path: Path, module: str) -> Path:
    policy_dir = tmp_path / "policies"
    policy_dir.mkdir()
    (policy_dir / "facegate.rego").write_text(module)
    return policy_dir


def shipped_policy_without_cases(tmp_path: Path) -> Path:
    """The shipped policy without its decision cases: with a timeout no decision can meet,
    its cases would time out at start, and a gateway does not start on a revision whose
    cases fail; here the timeout is to be met by a request."""
    policy_dir = Path(shutil.copytree(REPO / "policies", tmp_path / "policies"))
    shutil.rmtree(policy_dir / "cases")
    return policy_dir


async def test_audit_log_that_cannot_be_written_refuses_with_503(stack: Stack) -> None:
    await stack.warrant("W-1")
    client = stack.rekognition(await stack.session())
    engine = create_engine(stack.settings.database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(sa.text("ALTER TABLE audit_log RENAME TO audit_log_away"))
        error = refused(stack, search(client))
        assert error.response["Error"]["Code"] == "ServiceUnavailableException"
        assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    finally:
        async with engine.begin() as connection:
            await connection.execute(sa.text("ALTER TABLE audit_log_away RENAME TO audit_log"))
        await engine.dispose()
    # Back to normal once the log can be written again.
    assert search(client)()["FaceMatches"]


async def test_unreachable_database_refuses_with_503(stack: Stack, tmp_path: Path) -> None:
    client_credentials = await stack.session()
    async with gateway_with(
        stack, tmp_path, database_url="postgresql+asyncpg://postgres@127.0.0.1:9/nowhere"
    ) as broken:
        error = refused(broken, search(broken.rekognition(client_credentials)))
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 503


@pytest.mark.parametrize(
    ("module", "overrides", "code"),
    [
        (RAISING_POLICY, {}, "policy_error"),
        (UNDEFINED_POLICY, {}, "policy_undefined"),
        (None, {"policy_timeout_seconds": 1e-9}, "policy_timeout"),
    ],
    ids=["raising", "undefined", "timeout"],
)
async def test_policy_failures_are_denials(
    stack: Stack, tmp_path: Path, module: str | None, overrides: dict[str, Any], code: str
) -> None:
    await stack.warrant("W-1")
    credentials = await stack.session()
    overrides["policy_dir"] = (
        shipped_policy_without_cases(tmp_path)
        if module is None
        else policy_dir_with(tmp_path, module)
    )
    async with gateway_with(stack, tmp_path, **overrides) as gateway:
        error = refused(gateway, search(gateway.rekognition(credentials)))
    assert error.response["Error"]["Code"] == "AccessDeniedException"
    assert code in error.response["Error"]["Message"]


async def test_an_admins_policy_edit_changes_the_next_decision(
    stack: Stack, tmp_path: Path
) -> None:
    await stack.warrant("W-1")
    policy_dir = tmp_path / "policies"
    shutil.copytree(REPO / "policies", policy_dir)
    # Polling the same search several times a second is a burst (data/patterns.yaml); this
    # test is about the reload, so its copy lifts the pattern limits the polling would hit.
    patterns_file = policy_dir / "data" / "patterns.yaml"
    patterns = yaml.safe_load(patterns_file.read_text())
    patterns["patterns"]["burst"]["max_probes"] = {"officer": 1000, "case": 1000}
    patterns["patterns"]["rate_limits"] = {}
    patterns_file.write_text(yaml.safe_dump(patterns))
    # The cases pinning those limits go with them: a reload runs the copy's cases.
    (policy_dir / "cases" / "patterns.yaml").unlink()
    credentials = await stack.session(offense="stalking")
    async with gateway_with(stack, tmp_path, policy_dir=policy_dir) as gateway:
        client = gateway.rekognition(credentials)
        error = refused(gateway, search(client))
        assert "offense_not_allowed" in error.response["Error"]["Message"]

        # The admin adds stalking to the offenses identification may be used for. Every
        # decision case still passes, so the edit is activated (one that fails a case is
        # not: tests/policy/test_policy_activation.py).
        for name, marker, item in (
            ("case.yaml", "offenses:\n", "  - stalking\n"),
            ("identification.yaml", "  serious_offenses:\n", "    - stalking\n"),
        ):
            data = policy_dir / "data" / name
            data.write_text(data.read_text().replace(marker, marker + item, 1))

        # The gateway re-reads policies/ every couple of seconds. A refused search is not
        # forwarded, so repeating it is no replay (gateway/auth/replay.py).
        for _ in range(50):
            try:
                assert search(client)()["FaceMatches"]
                break
            except ClientError as exc:
                assert "offense_not_allowed" in exc.response["Error"]["Message"]
            await asyncio.sleep(0.2)
        else:
            pytest.fail("the edited policy never took effect")


async def test_an_unreachable_vendor_is_an_error_on_record(stack: Stack, tmp_path: Path) -> None:
    await stack.warrant("W-1")
    credentials = await stack.session()
    async with gateway_with(stack, tmp_path, vendor_url="http://127.0.0.1:9") as gateway:
        with pytest.raises(ClientError) as raised:
            search(gateway.rekognition(credentials))()
    assert raised.value.response["Error"]["Code"] == "InternalServerError"

    engine = create_engine(stack.settings.database_url)
    try:
        page = await RecordQuery(session_factory(engine)).query(AuditQuery(case_number=CASE))
    finally:
        await engine.dispose()
    assert [(e.event_type, e.decision) for e in page.entries] == [
        ("decision", "allow"),
        ("outcome", "error"),
    ]
    assert "could not be reached" in page.entries[1].detail["error"]
