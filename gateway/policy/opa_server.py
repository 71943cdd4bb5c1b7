"""The OPA-server engine: the same module and data, evaluated by an OPA server over HTTP.

Either a server the admin runs (FACEGATE_OPA_URL, e.g. a sidecar) or, when none is
configured, an `opa run --server` this engine starts on a free loopback port and stops; it
uses the port once the OPA answering there carries the label it was started with.

The policy and the data are two writes to OPA, so a server being pushed a new revision
briefly holds the new module with the old data. To keep every decision labelled with the
revision that made it, the pushed module and data each carry the revision as a marker, the
answer rule appended to the module reads the decision and both markers in the same
evaluation (one snapshot of OPA's store) and a result whose markers disagree with this
engine's revision is refused, which fails closed.

Each decision is one `POST /v1/data/facegate/<answer rule>` (OPA's Data API), not an ad-hoc
`POST /v1/query`: OPA prepares a Data API path once and keeps it until the policy changes,
where it parses and compiles an ad-hoc query on every request (OPA 0.61, this policy:
0.15 ms of compiling a request). Nearly all the rest of OPA's CPU per decision (about 3 ms
here, 95 % of its handler's time by its ?metrics) is evaluating the policy itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import tempfile
import time
from contextlib import AsyncExitStack
from typing import IO, Any
from urllib.parse import urlsplit

from opa_client import AsyncOpaClient

from gateway.context.activity import ActivityReads
from gateway.policy.bundle import (
    DATA_KEY,
    READS_QUERY,
    PolicyBundle,
    PolicyLoadError,
    declared_reads,
)

POLICY_ID = "facegate"
# The marker's name in both the module (a rule appended to package facegate) and the data.
REVISION_MARKER = "facegate_pushed_revision"
# The rule each decision evaluates, appended to package facegate next to the marker. Like the
# conjunction the engine queried before, it is undefined when the decision or either marker
# is (an object with an undefined value is undefined), so an undefined decision stays None.
ANSWER_RULE = "facegate_pushed_answer"
ANSWER = (
    f"{ANSWER_RULE} := {{"
    ' "decision": decision,'
    f' "module_revision": {REVISION_MARKER},'
    f' "data_revision": data.{DATA_KEY}.{REVISION_MARKER}'
    " }"
)
# The policy's activity_reads (null when it defines none) with the same markers, asked once
# after each push: the reads of the revision this engine serves, never of another.
READS_ANSWER_RULE = "facegate_pushed_reads"
_MARKERS = (
    f' "module_revision": {REVISION_MARKER}, "data_revision": data.{DATA_KEY}.{REVISION_MARKER}'
)
READS_ANSWER = (
    f"{READS_ANSWER_RULE} := {{"
    f' "reads": reads,{_MARKERS}'
    f" }} if {{ reads := {READS_QUERY} }}"
    f' else := {{ "reads": null,{_MARKERS} }}'
)
STARTUP_SECONDS = 10.0
# Go's garbage collector target for an OPA server the engine launches, unless GOGC is set
# for the gateway: at Go's default (100) collection took about a fifth of OPA's CPU per
# decision (bench/opa_engine_cpu.py, 16 callers: 2.24 ms a decision at 100, 1.81 at 400,
# issue 17). OPA's live heap for this policy is tens of MB, so the peak grows by as much
# again. An OPA server the admin runs (FACEGATE_OPA_URL) takes GOGC from its own setting.
LAUNCHED_GOGC = "400"
# A push makes OPA compile the whole module: 0.05 to 0.2 s for this policy on an idle
# machine, over the 1 s policy timeout on a loaded one, where a push bounded by the decision
# timeout failed the gateway's start or a reload.
PUSH_SECONDS = 30.0
# A launched OPA's label (`opa run --set labels.<name>=<random>`, shown by GET /v1/config)
# by which the engine tells its own server from another on the same port.
LAUNCH_LABEL = "facegate_launch"
LAUNCH_ATTEMPTS = 3


class RevisionMismatch(RuntimeError):
    """The OPA server evaluated another revision than this engine was built from."""


class OpaServerEngine:
    """Evaluates `data.facegate.decision` on an OPA server. Open with connect() or launch()."""

    name = "opa"

    def __init__(
        self,
        *,
        revision: str,
        client: AsyncOpaClient,
        resources: AsyncExitStack,
        timeout_seconds: float,
        activity_reads: ActivityReads = None,
    ):
        self.revision = revision
        self.activity_reads = activity_reads
        self._timeout = timeout_seconds
        self._client = client
        self._resources = resources

    @classmethod
    async def connect(
        cls, bundle: PolicyBundle, *, url: str, timeout_seconds: float
    ) -> OpaServerEngine:
        """Push the bundle to the OPA server at `url` (FACEGATE_OPA_URL) and use it."""
        host, port, tls = _parse_url(url)
        async with AsyncExitStack() as resources:
            client = _client(host, port, tls=tls)
            await resources.enter_async_context(client)
            await _push(client, bundle, where=url)
            reads = await _reads(client, bundle, where=url)
            engine = cls(
                revision=bundle.revision,
                client=client,
                resources=resources.pop_all(),
                timeout_seconds=timeout_seconds,
                activity_reads=reads,
            )
        return engine

    @classmethod
    async def launch(
        cls, bundle: PolicyBundle, *, opa_binary: str, timeout_seconds: float
    ) -> OpaServerEngine:
        """Start `opa run --server` on a free loopback port, push the bundle, and use it.

        The server is stopped by close(). It listens on 127.0.0.1 without authentication,
        like any OPA sidecar: anything on this host could push to it (the revision markers
        make such a push fail closed rather than go unnoticed, unless it copies them).

        The port is free when chosen, but another process can bind it before OPA does; if
        that is another OPA it answers the health check too, and the policy would be pushed
        to it. So the engine starts OPA with a label of its own and uses the port only once
        OPA's configuration there carries that label; an OPA that could not bind is retried
        on another port (LAUNCH_ATTEMPTS in all).
        """
        async with AsyncExitStack() as resources:
            client, port = await _start_own_server(opa_binary, resources)
            where = f"{opa_binary} on 127.0.0.1:{port}"
            await _push(client, bundle, where=where)
            reads = await _reads(client, bundle, where=where)
            engine = cls(
                revision=bundle.revision,
                client=client,
                resources=resources.pop_all(),
                timeout_seconds=timeout_seconds,
                activity_reads=reads,
            )
        return engine

    async def evaluate(self, document: dict[str, Any]) -> Any:
        """The decision document, or None when the policy leaves it undefined.

        Raises TimeoutError when OPA has not answered within the policy timeout (as the
        PolicyService's own bound does: either refuses with policy_timeout)."""
        async with asyncio.timeout(self._timeout):
            response = await self._client.query_rule(document, POLICY_ID, ANSWER_RULE)
        # The Data API omits "result" when the rule is undefined.
        answer = response.get("result")
        if answer is None:
            return None
        served = (answer.get("module_revision"), answer.get("data_revision"))
        if served != (self.revision, self.revision):
            raise RevisionMismatch(
                f"the OPA server evaluated module {served[0]} with data {served[1]},"
                f" not {self.revision}: it is being pushed another policy"
            )
        return answer.get("decision")

    async def close(self) -> None:
        # Closes the HTTP session and, for a launched server, stops it. A server the admin
        # runs keeps the pushed policy: the engine replacing this one on a reload uses it.
        await self._resources.aclose()


async def _push(client: AsyncOpaClient, bundle: PolicyBundle, *, where: str) -> None:
    marker = json.dumps(bundle.revision)
    # Appended as rules of the admin's package; a newline first in case the file has none.
    module = f"{bundle.module}\n\n{REVISION_MARKER} := {marker}\n\n{ANSWER}\n\n{READS_ANSWER}\n"
    config = {**bundle.config, REVISION_MARKER: bundle.revision}
    try:
        # rego_compat=False: the client would otherwise rewrite a module OPA rejects, and
        # the server would evaluate text that the revision does not name.
        await client.update_policy_from_string(module, POLICY_ID, rego_compat=False)
    except Exception as exc:
        raise PolicyLoadError(
            f"OPA ({where}) refused policy module {bundle.module_path}: {exc}"
        ) from exc
    try:
        await client.update_or_create_data(config, DATA_KEY)
    except Exception as exc:
        raise PolicyLoadError(
            f"OPA ({where}) refused the data of {bundle.directory / 'data'}: {exc}"
        ) from exc


async def _reads(client: AsyncOpaClient, bundle: PolicyBundle, *, where: str) -> ActivityReads:
    """The activity counts the pushed revision reads (bundle.declared_reads). Raises
    PolicyLoadError when OPA cannot say, or says it of another revision."""
    try:
        async with asyncio.timeout(PUSH_SECONDS):
            response = await client.query_rule({}, POLICY_ID, READS_ANSWER_RULE)
    except Exception as exc:
        raise PolicyLoadError(f"OPA ({where}) could not evaluate {READS_QUERY}: {exc!r}") from exc
    answer = response.get("result") or {}
    served = (answer.get("module_revision"), answer.get("data_revision"))
    if served != (bundle.revision, bundle.revision):
        raise PolicyLoadError(
            f"OPA ({where}) evaluated {READS_QUERY} of module {served[0]} with data"
            f" {served[1]}, not {bundle.revision}: it is being pushed another policy"
        )
    return declared_reads(bundle, answer.get("reads"))


def _client(host: str, port: int, *, tls: bool) -> AsyncOpaClient:
    # No retries: a failed evaluation fails closed at once, within the policy timeout.
    # The client's own timeout bounds a push; evaluate() bounds a decision by the policy's.
    # Accept-Encoding identity: OPA gzips (at level 9) any answer over 1 KB, which the
    # longest refusals among the decision cases reach with the markers; that would cost
    # both ends CPU to spare a few hundred bytes, mostly on loopback.
    return AsyncOpaClient(
        host=host,
        port=port,
        ssl=tls,
        retries=0,
        timeout=PUSH_SECONDS,
        headers={"Accept-Encoding": "identity"},
    )


def _parse_url(url: str) -> tuple[str, int, bool]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PolicyLoadError(f"FACEGATE_OPA_URL must be http(s)://host[:port], not {url!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        # The client builds every URL from host and port, so a path would be dropped.
        raise PolicyLoadError(f"FACEGATE_OPA_URL must not have a path or query: {url!r}")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return host, port, tls


def _free_loopback_port() -> int:
    # Another process can take the port before OPA binds it: _start_own_server tells.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class _PortTaken(Exception):
    """The launched OPA could not bind its port: another process had taken it."""


async def _start_own_server(binary: str, resources: AsyncExitStack) -> tuple[AsyncOpaClient, int]:
    """A client of an `opa run --server` started here and known to be the one listening,
    and its port.

    The process and the client are left on `resources`, which stops and closes them."""
    for attempt in range(1, LAUNCH_ATTEMPTS + 1):
        async with AsyncExitStack() as this_attempt:
            port = _free_loopback_port()
            label = secrets.token_hex(16)
            # The stack closes it (SIM115 does not see enter_context as a context manager).
            log = this_attempt.enter_context(tempfile.TemporaryFile())  # noqa: SIM115
            process = await asyncio.create_subprocess_exec(
                binary,
                *("run", "--server", "--addr", f"127.0.0.1:{port}"),
                *("--disable-telemetry", "--log-level", "error"),
                *("--set", f"labels.{LAUNCH_LABEL}={label}"),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env={**os.environ, "GOGC": os.environ.get("GOGC", LAUNCHED_GOGC)},
            )
            this_attempt.push_async_callback(_stop, process)
            # A client of its own for each attempt: its pool may hold a connection to
            # another process's server.
            client = _client("127.0.0.1", port, tls=False)
            await this_attempt.enter_async_context(client)
            try:
                await _wait_until_ours(client, process, log, label=label, binary=binary)
            except _PortTaken:
                if attempt == LAUNCH_ATTEMPTS:
                    raise PolicyLoadError(
                        f"{binary} run --server found its port taken {attempt} times"
                    ) from None
                continue
            resources.push_async_callback(this_attempt.pop_all().aclose)
            return client, port
    raise AssertionError("unreachable: the last attempt returns or raises")


async def _wait_until_ours(
    client: AsyncOpaClient,
    process: asyncio.subprocess.Process,
    log: IO[bytes],
    *,
    label: str,
    binary: str,
) -> None:
    """Returns once the server on the client's port is `process` (it carries `label`).

    Raises _PortTaken when the process exited because its port was in use, and
    PolicyLoadError when it exited otherwise or was not up within STARTUP_SECONDS."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while not await _carries_label(client, label):
        if process.returncode is not None or time.monotonic() > deadline:
            log.seek(0)
            output = log.read().decode("utf-8", "replace").strip()
            if process.returncode is not None and "address already in use" in output:
                raise _PortTaken(output)
            state = (
                f"exited with status {process.returncode}"
                if process.returncode is not None
                else f"was not healthy after {STARTUP_SECONDS:.0f}s"
            )
            raise PolicyLoadError(f"{binary} run --server {state}: {output or 'no output'}")
        await asyncio.sleep(0.05)


async def _carries_label(client: AsyncOpaClient, label: str) -> bool:
    try:
        config = await client.get_config()
    except Exception:  # not listening yet, or not an OPA: either way, not ours (yet)
        return False
    labels = (config.get("result") or {}).get("labels") or {}
    return bool(labels.get(LAUNCH_LABEL) == label)


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), timeout=5)
    except TimeoutError:
        process.kill()
        await process.wait()
