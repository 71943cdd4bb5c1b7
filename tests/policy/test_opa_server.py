"""The OPA-server engine. Without an OPA these tests skip, saying so; in CI they fail."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from policy_support import (
    NO_OPA,
    OPA_URL_VARIABLE,
    an_identification,
    in_ci,
    opa_binary,
    open_test_engine,
)

from gateway.config import Settings
from gateway.policy.bundle import PolicyLoadError, load_bundle
from gateway.policy.engine import open_engine
from gateway.policy.opa_server import OpaServerEngine, RevisionMismatch, _parse_url


def test_the_opa_url_is_split_for_the_client() -> None:
    assert _parse_url("http://opa:8181") == ("opa", 8181, False)
    assert _parse_url("https://opa.internal/") == ("opa.internal", 443, True)
    assert _parse_url("http://[::1]:8181") == ("[::1]", 8181, False)


@pytest.mark.parametrize("url", ["opa:8181", "ftp://opa:8181", "http://opa:8181/v1/data"])
def test_an_opa_url_the_client_cannot_use_names_the_setting(url: str) -> None:
    with pytest.raises(PolicyLoadError, match="FACEGATE_OPA_URL"):
        _parse_url(url)


async def test_opa_without_url_or_binary_is_a_load_error(
    policy_copy: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no `opa` on it
    settings = Settings(_env_file=None, policy_dir=policy_copy, policy_engine="opa", opa_url=None)
    with pytest.raises(PolicyLoadError, match="FACEGATE_OPA_URL or an `opa` binary"):
        await open_engine(load_bundle(policy_copy), settings)


async def test_opa_evaluates_the_pushed_revision(policy_copy: Path) -> None:
    engine = await open_test_engine("opa", load_bundle(policy_copy))
    try:
        decision = await engine.evaluate(an_identification())
        assert decision["allow"] is True
        assert decision["obligations"]["max_results"] == 5
    finally:
        await engine.close()


async def test_opa_reports_an_undefined_decision_as_none(policy_copy: Path) -> None:
    (policy_copy / "facegate.rego").write_text(
        'package facegate\n\nimport rego.v1\n\ndecision := {"allow": true} if input.never\n'
    )
    engine = await open_test_engine("opa", load_bundle(policy_copy))
    try:
        assert await engine.evaluate(an_identification()) is None
    finally:
        await engine.close()


async def test_opa_refuses_a_result_from_another_revision(policy_copy: Path) -> None:
    if not os.environ.get(OPA_URL_VARIABLE):
        opa_binary()  # skips, or fails in CI, without one
    first = await open_test_engine("opa", load_bundle(policy_copy))
    try:
        if isinstance(first, OpaServerEngine) and not os.environ.get(OPA_URL_VARIABLE):
            # A launched server is this engine's alone; push the second revision to it.
            url = f"http://{first._client.host}:{first._client.port}"
        else:
            url = os.environ[OPA_URL_VARIABLE]
        (policy_copy / "data" / "extra.yaml").write_text("extra: 1\n")
        second = await OpaServerEngine.connect(
            load_bundle(policy_copy), url=url, timeout_seconds=5.0
        )
        try:
            with pytest.raises(RevisionMismatch):
                await first.evaluate(an_identification())
            assert (await second.evaluate(an_identification()))["allow"] is True
        finally:
            await second.close()
    finally:
        await first.close()


async def test_a_launched_opa_is_stopped_on_close(policy_copy: Path) -> None:
    engine = await OpaServerEngine.launch(
        load_bundle(policy_copy), opa_binary=opa_binary(), timeout_seconds=5.0
    )
    client = engine._client
    assert await client.check_health()
    await engine.close()
    probe = type(client)(host=client.host, port=client.port, retries=0, timeout=1.0)
    async with probe:
        assert not await probe.check_health()


def test_a_missing_opa_fails_in_ci_and_skips_with_its_reason_elsewhere(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no `opa` on it
    monkeypatch.setenv("CI", "true")
    assert in_ci()
    with pytest.raises(pytest.fail.Exception, match="CI=true but no `opa` binary on PATH"):
        opa_binary()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception) as skipped:
        opa_binary()
    assert str(skipped.value) == NO_OPA
