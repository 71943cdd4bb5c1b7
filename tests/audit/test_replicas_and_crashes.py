"""One log across processes: two gateway replicas under concurrent load on one PostgreSQL,
and appending processes killed with SIGKILL mid-append. After each, the whole log and
every checkpoint verify."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import sys
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit import merkle
from gateway.audit.checkpoint import Checkpoint, Signer
from gateway.audit.log import AuditLog
from gateway.audit.records import EventType
from gateway.audit.stores.base import LOG_TABLE, SEQUENCER_LOCK_ID
from gateway.db import create_engine, session_factory
from gateway.migrate import upgrade_async
from gateway.serving import free_port
from tests.audit.conftest import make_record, reader_of
from tests.audit.test_tree_log import check_everything

REPO = Path(__file__).resolve().parents[2]
FACEGATE = str(Path(sys.executable).with_name("facegate"))
ORIGIN = "test.example/facegate"


async def wait_until_up(url: str, process: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + 90
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise RuntimeError(f"the gateway on {url} exited with {process.returncode}")
            try:
                if (await client.get(url + "/facegate/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"the gateway on {url} did not start")


@pytest.mark.postgres
async def test_two_gateway_replicas_keep_one_log(postgres_url: str, tmp_path: Path) -> None:
    await upgrade_async(postgres_url)
    env = {
        **os.environ,
        "FACEGATE_DATABASE_URL": postgres_url,
        "FACEGATE_MASTER_KEY_FILE": str(tmp_path / "master.key"),
        "FACEGATE_LOG_KEY_FILE": str(tmp_path / "log.key"),
        "FACEGATE_LOG_ORIGIN": ORIGIN,
        "FACEGATE_POLICY_DIR": str(REPO / "policies"),
        # A Rekognition backend (never reached), so each request is refused at
        # authentication rather than as a protocol with no backend.
        "FACEGATE_REKOGNITION_ACCESS_KEY_ID": "replica-test",
        "FACEGATE_REKOGNITION_SECRET_ACCESS_KEY": "replica-test-secret",
    }
    signer = Signer.load_or_create(tmp_path / "log.key", ORIGIN)  # both replicas share it
    ports = [free_port(), free_port()]
    processes = [
        await asyncio.create_subprocess_exec(
            FACEGATE,
            "serve",
            "--port",
            str(port),
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for port in ports
    ]
    try:
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        for url, process in zip(urls, processes, strict=True):
            await wait_until_up(url, process)
        # Unsigned vendor requests: each is refused and recorded (auth_failure) by the
        # replica that got it, through its own group commit, on the one shared log.
        per_replica = 150
        limits = httpx.Limits(max_connections=20)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            responses = await asyncio.gather(
                *(
                    client.post(
                        url + "/",
                        content=b"{}",
                        headers={"Content-Type": "application/x-amz-json-1.1"},
                    )
                    for _ in range(per_replica)
                    for url in urls
                )
            )
        assert all(r.status_code in (400, 403) for r in responses), {
            r.status_code for r in responses
        }
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            await process.wait()

    engine = create_engine(postgres_url)
    try:
        log = AuditLog(session_factory(engine), signer=signer)
        size = await reader_of(log).tree_size()
        # Each replica also recorded the policy it activated when it started.
        assert size == 2 * per_replica + 2
        entries = [e async for e in reader_of(log).leaves()]
        refused = [
            e for e in entries if f'"event_type":"{EventType.AUTH_FAILURE.value}"'.encode() in e
        ]
        activations = [e for e in entries if b'"action":"policy.activate"' in e]
        assert (len(refused), len(activations)) == (2 * per_replica, 2)
        checkpoints = await check_everything(log, signer)
        assert checkpoints > 1
        # Every request's record was signed; a policy activation is appended with its
        # revision's text, unsigned, and may come last (the next signed batch covers it).
        last_signed = max(i for i, e in enumerate(entries) if e in refused)
        latest = await reader_of(log).latest_checkpoint()
        assert latest is not None and last_signed < latest.tree_size <= size
    finally:
        await engine.dispose()


async def settled_tree_size(engine: AsyncEngine, log: AuditLog) -> int:
    """The tree's size once a killed appender's last transaction has ended. PostgreSQL
    still executes a COMMIT that reached it before the client died (the outcome the log
    calls unknown), so it can land after the kill: taking the sequencer waits for it."""
    if engine.dialect.name != "postgresql":
        return await reader_of(log).tree_size()
    async with engine.begin() as connection:
        await connection.execute(sa.text(f"SELECT pg_advisory_xact_lock({SEQUENCER_LOCK_ID:d})"))
        size = await connection.scalar(sa.text(f"SELECT max(seq) FROM {LOG_TABLE}"))
    return int(size or 0)


async def test_a_process_killed_mid_append_leaves_a_log_that_verifies(
    migrated_database_url: str, tmp_path: Path
) -> None:
    key_file = tmp_path / "log.key"
    signer = Signer.load_or_create(key_file, ORIGIN)
    engine = create_engine(migrated_database_url)
    log = AuditLog(session_factory(engine), signer=signer)
    acknowledged: list[int] = []
    try:
        for round_ in range(3):
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.audit.append_worker",
                migrated_database_url,
                str(key_file),
                ORIGIN,
                "16",
                cwd=REPO,
                stdout=asyncio.subprocess.PIPE,
            )
            assert process.stdout is not None
            target = 150 * (round_ + 1)
            seen = 0
            # Kill it at an arbitrary point of its append loop, once it has done some work.
            while seen < target:
                line = await asyncio.wait_for(process.stdout.readline(), timeout=60)
                assert line, "the worker stopped on its own"
                acknowledged.append(int(line))
                seen = max(seen, int(line))
            process.send_signal(signal.SIGKILL)
            rest, _ = await process.communicate()
            acknowledged.extend(int(x) for x in rest.split())

            # On restart: everything acknowledged is in the tree, and the log verifies and
            # keeps growing from where the dead process left it.
            size = await settled_tree_size(engine, log)
            assert max(acknowledged) <= size
            entry = await log.append(make_record(request_id=f"after-kill-{round_}"))
            assert entry.seq == size + 1
            await check_everything(log, signer)

        latest = await reader_of(log).latest_checkpoint()
        assert latest is not None
        checkpoint = Checkpoint.open(latest.note, signer.verifier)
        for seq in sorted(set(acknowledged))[:: max(1, len(acknowledged) // 20)]:
            page = await reader_of(log).entries(seq, seq + 1)
            proof = await reader_of(log).inclusion_proof(seq, checkpoint.size)
            merkle.verify_inclusion(
                merkle.leaf_hash(page.entries[0].leaf.encode()),
                seq - 1,
                checkpoint.size,
                [base64.b64decode(h) for h in proof.hashes],
                checkpoint.root_hash,
            )
    finally:
        await log.aclose()
        await engine.dispose()
