"""The OPA-server engine. Without an OPA these tests skip, saying so; in CI they fail."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from policy_support import (
    NO_OPA,
    OPA_URL_VARIABLE,
    an_identification,
    in_ci,
    opa_binary,
    open_test_engine,
    service_for,
)

from gateway.config import Settings
from gateway.policy import opa_server
from gateway.policy.bundle import DATA_KEY, PolicyLoadError, load_bundle
from gateway.policy.engine import POLICY_ERROR, POLICY_TIMEOUT, open_engine
from gateway.policy.opa_server import (
    LAUNCH_ATTEMPTS,
    LAUNCH_LABEL,
    LAUNCHED_GOGC,
    REVISION_MARKER,
    OpaServerEngine,
    RevisionMismatch,
    _free_loopback_port,
    _parse_url,
)


@pytest.fixture
def own_opa(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """An `opa run --server` this test may stop, pause or kill, and its URL.

    Like OpaServerEngine.launch, it waits for its own label at the URL, not for any
    healthy OPA: another worker's OPA can take the port first, and a test that paused
    its own server would then find the other one answering."""
    for _ in range(LAUNCH_ATTEMPTS):
        port = _free_loopback_port()
        url = f"http://127.0.0.1:{port}"
        label = secrets.token_hex(16)
        log_path = tmp_path / f"opa-{port}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    *(opa_binary(), "run", "--server", "--addr", f"127.0.0.1:{port}"),
                    *("--set", f"labels.{LAUNCH_LABEL}={label}"),
                ],
                stdout=log,
                stderr=log,
            )
        try:
            if _wait_for_label(process, url, label):
                yield process, url
                return
        finally:
            process.send_signal(signal.SIGCONT)
            process.kill()
            process.wait()
        assert "address already in use" in log_path.read_text(), log_path.read_text()
    pytest.fail(f"every port the fixture chose was taken ({LAUNCH_ATTEMPTS} tries)")


def _wait_for_label(process: subprocess.Popen[bytes], url: str, label: str) -> bool:
    """True once the server at `url` carries `label`; False if `process` exited first."""
    for _ in range(200):  # waits for the server, not a timing assertion
        try:
            config = httpx.get(f"{url}/v1/config", timeout=1).raise_for_status().json()
            if config["result"]["labels"].get(LAUNCH_LABEL) == label:
                return True
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            return False
        time.sleep(0.05)
    pytest.fail(f"the OPA at {url} did not come up")


def a_document() -> dict[str, Any]:
    """An identification the policy allows, as PolicyService hands it to an engine."""
    return an_identification().model_dump(mode="json", warnings=False)


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
        decision = await engine.evaluate(a_document())
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
        assert await engine.evaluate(a_document()) is None
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
                await first.evaluate(a_document())
            assert (await second.evaluate(a_document()))["allow"] is True
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


async def test_a_launched_opa_whose_port_another_opa_took_serves_from_its_own_server(
    policy_copy: Path,
    own_opa: tuple[subprocess.Popen[bytes], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The free port can be taken between choosing it and OPA binding it (another test's
    OPA, another gateway). That OPA answers the health check too: the engine must tell
    that the server on the port is not the one it started, and start its own elsewhere."""
    foreign, url = own_opa
    taken = urlsplit(url).port
    assert taken is not None
    choices = iter([taken])
    choose_free = opa_server._free_loopback_port
    monkeypatch.setattr(opa_server, "_free_loopback_port", lambda: next(choices, choose_free()))
    engine = await OpaServerEngine.launch(
        load_bundle(policy_copy), opa_binary=opa_binary(), timeout_seconds=5.0
    )
    try:
        foreign.kill()
        foreign.wait()
        assert (await engine.evaluate(a_document()))["allow"] is True
    finally:
        await engine.close()


async def test_a_launch_whose_every_port_is_taken_fails_to_load_saying_so(
    policy_copy: Path,
    own_opa: tuple[subprocess.Popen[bytes], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, url = own_opa
    taken = urlsplit(url).port
    monkeypatch.setattr(opa_server, "_free_loopback_port", lambda: taken)
    with pytest.raises(PolicyLoadError, match=f"port taken {LAUNCH_ATTEMPTS} times"):
        await OpaServerEngine.launch(
            load_bundle(policy_copy), opa_binary=opa_binary(), timeout_seconds=5.0
        )


def opa_children() -> set[str]:
    """The pids of the `opa` processes this test process started and that still run.

    Read from this process's own children lists, not by scanning /proc: another process
    ending between two reads of its entry made the scan fail on a busy machine."""
    tasks = Path("/proc/self/task").iterdir()
    pids = {pid for task in tasks for pid in _read(task / "children").split()}
    return {pid for pid in pids if _read(Path("/proc") / pid / "comm").strip() == "opa"}


def _read(path: Path) -> str:
    """A /proc file's text, or "" when its thread or process ended meanwhile."""
    try:
        return path.read_text()
    except OSError:
        return ""


def environment_of(pid: str) -> dict[str, str]:
    pairs = (Path("/proc") / pid / "environ").read_bytes().split(b"\0")
    return dict(pair.decode().split("=", 1) for pair in pairs if b"=" in pair)


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc")
@pytest.mark.parametrize(("ours", "launched"), [(None, LAUNCHED_GOGC), ("150", "150")])
async def test_a_launched_opa_collects_garbage_less_often_unless_gogc_is_set(
    policy_copy: Path, monkeypatch: pytest.MonkeyPatch, ours: str | None, launched: str
) -> None:
    if ours is None:
        monkeypatch.delenv("GOGC", raising=False)
    else:
        monkeypatch.setenv("GOGC", ours)
    before = opa_children()
    engine = await OpaServerEngine.launch(
        load_bundle(policy_copy), opa_binary=opa_binary(), timeout_seconds=5.0
    )
    try:
        [pid] = opa_children() - before
        assert environment_of(pid)["GOGC"] == launched
    finally:
        await engine.close()


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


async def test_opa_refuses_data_pushed_for_another_revision(
    policy_copy: Path, own_opa: tuple[subprocess.Popen[bytes], str]
) -> None:
    # The window of a push: another revision's data next to this revision's module.
    _, url = own_opa
    bundle = load_bundle(policy_copy)
    engine = await OpaServerEngine.connect(bundle, url=url, timeout_seconds=5.0)
    try:
        assert (await engine.evaluate(a_document()))["allow"] is True
        other = {**bundle.config, REVISION_MARKER: "another-revision"}
        await engine._client.update_or_create_data(other, DATA_KEY)
        with pytest.raises(RevisionMismatch, match="with data another-revision"):
            await engine.evaluate(a_document())
    finally:
        await engine.close()


async def test_an_opa_evaluation_error_gives_policy_error(policy_copy: Path) -> None:
    # Two values for one complete rule: OPA answers 500 (eval_conflict_error).
    (policy_copy / "facegate.rego").write_text(
        "package facegate\n\nimport rego.v1\n\n"
        'decision := {"allow": true, "reasons": [], "obligations": {}} if input.operation\n'
        'decision := {"allow": false, "reasons": [], "obligations": {}} if input.operation\n'
    )
    engine = await open_test_engine("opa", load_bundle(policy_copy))
    service = service_for(engine, policy_copy)
    try:
        decision = await service.decide(an_identification())
        assert not decision.allow
        assert [r.code for r in decision.reasons] == [POLICY_ERROR]
    finally:
        await service.close()


async def test_an_opa_that_is_gone_gives_policy_error(
    policy_copy: Path, own_opa: tuple[subprocess.Popen[bytes], str]
) -> None:
    process, url = own_opa
    engine = await OpaServerEngine.connect(load_bundle(policy_copy), url=url, timeout_seconds=5.0)
    service = service_for(engine, policy_copy)
    try:
        process.kill()
        process.wait()
        decision = await service.decide(an_identification())
        assert not decision.allow
        assert [r.code for r in decision.reasons] == [POLICY_ERROR]
    finally:
        await service.close()


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGSTOP `process`, and return once it has stopped. The signal only asks: under load
    a process went on running, and answered a request sent after it (4 times in 40 on
    this machine with both cores busy), until its threads took the stop."""
    process.send_signal(signal.SIGSTOP)
    status = Path("/proc") / str(process.pid) / "status"
    if not status.exists():
        return  # no /proc: the signal is all there is to go by
    for _ in range(1000):  # waits for the stop, not a timing assertion
        if "\nState:\tT" in status.read_text():
            return
        time.sleep(0.01)
    pytest.fail(f"OPA (pid {process.pid}) did not stop")


async def test_an_opa_that_does_not_answer_gives_policy_timeout(
    policy_copy: Path, own_opa: tuple[subprocess.Popen[bytes], str]
) -> None:
    process, url = own_opa
    engine = await OpaServerEngine.connect(load_bundle(policy_copy), url=url, timeout_seconds=5.0)
    service = service_for(engine, policy_copy, timeout=0.2)
    try:
        stop(process)  # accepts connections, answers nothing
        decision = await service.decide(an_identification())
        assert not decision.allow
        assert [r.code for r in decision.reasons] == [POLICY_TIMEOUT]
    finally:
        process.send_signal(signal.SIGCONT)
        await service.close()
